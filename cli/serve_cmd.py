"""`hybridserve serve MODEL` and `hybridserve bench --model HYBRID --baseline TEACHER`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import List

import typer
from rich.console import Console

_console = Console(stderr=True, soft_wrap=True)
_out = Console(soft_wrap=True)


def _fail(message: str) -> None:
    _console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


def serve_command(
    model: str = typer.Argument(..., help="An exported hybrid (or any model folder vLLM can serve)."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="Port of the OpenAI-compatible API."),
    api_key: str = typer.Option(None, envvar="HYBRIDSERVE_API_KEY", help="Require this bearer token."),
    max_model_len: int = typer.Option(None, help="Context length (default: the model's max positions)."),
    prefix_caching: bool = typer.Option(True, help="vLLM prefix caching (hybrid states cached at block boundaries)."),
    dtype: str = typer.Option("auto", help="auto, bfloat16, float16 or float32."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "-tp", help="GPUs to split heads across."),
    gpu_memory_utilization: float = typer.Option(None, help="Share of GPU memory vLLM may use (vLLM's default 0.9)."),
    enforce_eager: bool = typer.Option(False, help="No torch.compile / CUDA graphs (faster start, slower serving)."),
    dry_run: bool = typer.Option(False, help="Print the server command instead of running it."),
    extra: List[str] = typer.Argument(None, help="After `--`: more vLLM server options, passed as they are."),
) -> None:
    """Serve MODEL through vLLM's OpenAI-compatible server (the hybridserve plugin loads automatically)."""
    from .serve.compat import VllmVersionError, check_vllm
    from .serve.server import ServeError, server_args, server_env

    try:
        args = server_args(model, host=host, port=port, api_key=api_key, max_model_len=max_model_len,
                           prefix_caching=prefix_caching, dtype=dtype, tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=gpu_memory_utilization, enforce_eager=enforce_eager,
                           extra=list(extra or []))
        if dry_run:
            _out.print(shlex.join(args), highlight=False)
            return
        version = check_vllm()
    except (ServeError, VllmVersionError) as e:
        _fail(str(e))
    _console.print(f"serving {model} with vLLM {version} on http://{host}:{port}/v1", highlight=False)
    sys.stdout.flush()
    os.execve(args[0], args, server_env())  # the server owns the process (signals, exit code) from here


def bench_command(
    model: str = typer.Option(..., "--model", help="The hybrid checkpoint."),
    baseline: str = typer.Option(..., "--baseline", help="Its teacher (or any model to compare against)."),
    also: List[str] = typer.Option(None, "--also", help="More models as NAME=PATH (e.g. an anchor hybrid)."),
    out_dir: Path = typer.Option(Path("bench"), "--out", "-o", help="Folder for bench.json, bench.md, bench.png."),
    rows: str = typer.Option(None, help="INPUT:OUTPUT:PROMPTS,... (default: four GPU rows, or two tiny rows on CPU)."),
    max_model_len: int = typer.Option(None, help="Engine context length (default: the longest row)."),
    dtype: str = typer.Option("auto", help="auto, bfloat16, float16 or float32."),
    gpu_memory_utilization: float = typer.Option(0.9, help="Same memory share for every model."),
    max_num_seqs: int = typer.Option(256, help="Most sequences vLLM runs at once."),
    enforce_eager: bool = typer.Option(False, help="No torch.compile / CUDA graphs."),
    timeout: float = typer.Option(3600, help="Seconds per model before it is stopped."),
    repeats: int = typer.Option(3, help="Timed runs of every row; the report gives the median run and the range "
                                        "(one run's rate can move by tens of percent on a host-bound engine)."),
    baseline_scheduler: str = typer.Option("vllm", help="The baseline's vLLM scheduler: vllm (as vLLM serves it) or "
                                                        "hybridserve (the hybrid's, serve/scheduler.py: compares the "
                                                        "models on one engine)."),
    fresh: bool = typer.Option(False, "--fresh", help="Serve every model again. By default a rerun into the same "
                                                      "--out reuses each model's complete result when its settings, "
                                                      "files and this machine are unchanged."),
) -> None:
    """Run the hybrid and its baseline in vLLM on this machine: throughput, latency, memory, concurrency."""
    from .serve.bench import CPU_ROWS, GPU_ROWS, BenchError, BenchModel, parse_rows, run_bench
    from .serve.compat import VllmVersionError, check_vllm
    from .serve.plugin import SCHEDULER

    try:
        if baseline_scheduler not in ("vllm", "hybridserve"):
            raise BenchError(f"--baseline-scheduler is vllm or hybridserve, not {baseline_scheduler!r}")
        check_vllm()
        chosen = {"scheduler_cls": SCHEDULER} if baseline_scheduler == "hybridserve" else None
        models = [BenchModel("hybrid", model), BenchModel("baseline", baseline, chosen)]
        for item in also or []:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise BenchError(f"--also takes NAME=PATH, got {item!r}")
            models.append(BenchModel(name, path))
        if rows is None:
            import torch

            rows = GPU_ROWS if torch.cuda.is_available() else CPU_ROWS
        run_bench(models, parse_rows(rows), out_dir, max_model_len=max_model_len, dtype=dtype,
                           gpu_memory_utilization=gpu_memory_utilization, max_num_seqs=max_num_seqs,
                           enforce_eager=enforce_eager, repeats=repeats, timeout=timeout, resume=not fresh,
                           command=shlex.join(["hybridserve", *sys.argv[1:]]),
                           log=lambda m: _console.print(m, highlight=False))
    except (BenchError, VllmVersionError) as e:
        _fail(str(e))
    _out.print((out_dir / "bench.md").read_text(), highlight=False)
    _out.print(f"written: {out_dir / 'bench.json'}, {out_dir / 'bench.md'}, {out_dir / 'bench.png'}")
