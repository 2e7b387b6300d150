"""`hybridserve serve MODEL`: vLLM's OpenAI-compatible server with the plugin and long-context defaults.

The server is vLLM's own (`vllm.entrypoints.openai.api_server`, which both the GPU wheel and the CPU build
provide; the CPU build's `vllm` console script cannot find its own distribution name). The plugin is loaded
by vLLM itself through the `vllm.general_plugins` entry point, in every process it starts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


class ServeError(ValueError):
    """A model folder or option the server cannot use."""


def model_config(model: str) -> dict:
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ServeError(f"{model} is not a model folder (no config.json); export one with `hybridserve export`")
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ServeError(f"{path / 'config.json'} is not valid JSON: {e}") from None
    if "serve_state_pack" in config and "layer_types" in config:  # checked here, not in a vLLM worker's traceback
        from .state_packing import packing_plan

        try:
            packing_plan(config["layer_types"], config["serve_state_pack"])
        except ValueError as e:
            raise ServeError(f"{path / 'config.json'}: {e}") from None
    return config


def python_command() -> list[str]:
    """This Python, without the current directory on sys.path (`-P`, Python 3.11+): run from a source checkout,
    its folders (`kernels/`, `eval/`, a stale `*.egg-info`) would shadow installed packages and entry points."""
    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]


def server_args(model: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_model_len: int | None = None, prefix_caching: bool = True, dtype: str = "auto",
                tensor_parallel_size: int = 1, served_model_name: str | None = None,
                gpu_memory_utilization: float | None = None, enforce_eager: bool = False,
                extra: list[str] | None = None) -> list[str]:
    """The api_server command line for `model` (validated first)."""
    config = model_config(model)
    positions = config.get("max_position_embeddings")
    if max_model_len is None:
        max_model_len = positions  # the whole context the teacher was trained for: hybrids exist for long context
    elif positions and max_model_len > positions:
        raise ServeError(f"--max-model-len {max_model_len} exceeds the model's {positions} positions")
    if not 0 < port < 65536:
        raise ServeError(f"--port must be in 1..65535, got {port}")
    if tensor_parallel_size < 1:
        raise ServeError("--tensor-parallel-size must be >= 1")
    args = [*python_command(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--host", host,
            "--port", str(port), "--dtype", dtype, "--tensor-parallel-size", str(tensor_parallel_size),
            "--served-model-name", served_model_name or Path(model).resolve().name,
            "--enable-prefix-caching" if prefix_caching else "--no-enable-prefix-caching"]
    if max_model_len:
        args += ["--max-model-len", str(max_model_len)]
    if api_key:
        args += ["--api-key", api_key]
    if gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    if enforce_eager:
        args.append("--enforce-eager")
    return args + list(extra or [])


def server_env() -> dict:
    """Environment for the server: CPU-build defaults that are harmless on GPUs, offline Hub."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on the CPU build
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder never needs the Hub
    return env
