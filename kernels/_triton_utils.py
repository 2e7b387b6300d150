"""Small helpers shared by the Triton kernels. Importing this module never imports triton.

* `triton_available()`: triton importable (cached).
* `interpreting()`: `TRITON_INTERPRET=1` (Triton runs kernels on CPU tensors through numpy; tests only).
* `triton_on_cpu()`: tests may route the public ops' CPU tensors to the Triton kernels under the interpreter by
  setting `HYBRIDSERVE_TRITON_ON_CPU=1` as well; without it CPU tensors always run the PyTorch references.
* `use_triton(...)`: the dispatch rule; `HYBRIDSERVE_KERNELS=reference|triton|auto` overrides it (reference:
  never Triton; triton: Triton on CUDA for any head dim, lifting the head-dim guard). On CUDA, auto sends only the
  head dims in `cuda_head_dims()` to Triton: CUDA_VALIDATED_HEAD_DIMS plus `HYBRIDSERVE_TRITON_HEAD_DIMS=64x64,...`.
* `on_tensor_device`: decorator running a launcher on its first tensor's CUDA device.
* `first_config_only(configs)`: under the interpreter an autotuner with several configs would time them through a
  GPU driver that is not there; with one config Triton's autotuner does not benchmark at all.
* `tuned_configs(kernel, configs)`: the configs an autotuned kernel registers: the first only under the interpreter,
  one pinned config with `HYBRIDSERVE_TRITON_CONFIG=kernel=i` (the GPU probes bisect a crash to one config).
* `state_pass_stages(default, K, V)`: software-pipelining depth of a sequential chunk pass: `HYBRIDSERVE_STATE_STAGES`,
  or the default its launcher measured (at the head dims measured; 1 elsewhere).
"""

from __future__ import annotations

import functools
import os

import torch


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception:  # ImportError, or a broken install: the references still work
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_on_cpu() -> bool:
    return interpreting() and os.environ.get("HYBRIDSERVE_TRITON_ON_CPU", "0") == "1"


# (K, V) head dims whose Triton kernels passed benchmarks/probe_kernels_gpu.py and check_kernels_gpu.py on the GPU
# image (H200, torch 2.11, triton 3.6). K = V = 64 (SmolLM2) joined after the probes named the culprit of its crash (a
# ptxas 12.8 miscompile of one autotune config of the GDN output kernel, now dropped): 12/12 probes and 39/39
# real-size checks pass (docs/benchmarks/kernels-sessions-3-7.md, "K = 64").
CUDA_VALIDATED_HEAD_DIMS = frozenset({(128, 128), (64, 64)})


def cuda_head_dims() -> frozenset:
    """The (K, V) pairs auto-dispatch sends to Triton on CUDA: the validated ones plus HYBRIDSERVE_TRITON_HEAD_DIMS
    ("64x64,96x96": opt in to dims checked on your own GPU, without lifting the guard for every dim)."""
    extra = set()
    for item in os.environ.get("HYBRIDSERVE_TRITON_HEAD_DIMS", "").split(","):
        if item.strip():
            k, _, v = item.strip().lower().partition("x")
            if not (k.isdigit() and v.isdigit()):
                raise ValueError(f"HYBRIDSERVE_TRITON_HEAD_DIMS: {item!r} is not KxV (e.g. 64x64)")
            extra.add((int(k), int(v)))
    return CUDA_VALIDATED_HEAD_DIMS | extra


def use_triton(*tensors: torch.Tensor, head_dims: bool = True) -> bool:
    """True when these tensors should run through the Triton kernels (CUDA + triton importable, or the test-only
    interpreter routing). tensors = (q, k, v, ...): K is q's last dim, V v's. float64 always runs the references:
    the kernels accumulate in float32. head_dims=False: a kernel with no head dims (the short conv), no guard."""
    t = tensors[0]
    mode = os.environ.get("HYBRIDSERVE_KERNELS", "auto")
    if mode == "reference":  # user switch: PyTorch references everywhere
        return False
    # CUDA: only head dims validated on the GPU (see CUDA_VALIDATED_HEAD_DIMS); the others run the references, and
    # HYBRIDSERVE_KERNELS=triton lifts this guard (to probe other dims: benchmarks/probe_kernels_gpu.py).
    if (head_dims and mode != "triton" and t.is_cuda and not interpreting()
            and (t.shape[-1], tensors[2].shape[-1]) not in cuda_head_dims()):
        return False
    if any(x is not None and x.dtype == torch.float64 for x in tensors):
        return False
    if t.is_cuda:
        return triton_available()
    return t.device.type == "cpu" and triton_on_cpu() and triton_available()


def on_tensor_device(fn):
    """Launch on the device of the first argument: Triton launches on the *current* CUDA device, so tensors on
    another GPU would otherwise be touched by a kernel running elsewhere (an illegal memory access)."""

    @functools.wraps(fn)
    def wrapped(q, *args, **kwargs):
        if q.is_cuda and q.device.index != torch.cuda.current_device():
            with torch.cuda.device(q.device):
                return fn(q, *args, **kwargs)
        return fn(q, *args, **kwargs)

    return wrapped


def first_config_only(configs: list) -> list:
    return configs[:1] if interpreting() else configs


def pinned_configs() -> dict[str, int]:
    """HYBRIDSERVE_TRITON_CONFIG="_gdn_chunk_out_kernel=2,_gdn_chunk_prep_kernel=0" -> {name: index}."""
    pins = {}
    for item in os.environ.get("HYBRIDSERVE_TRITON_CONFIG", "").split(","):
        if item.strip():
            name, _, idx = item.partition("=")
            pins[name.strip()] = int(idx)
    return pins


def tuned_configs(kernel: str, configs: list) -> list:
    """The autotune configs `kernel` registers (read when its module is imported). An autotuner times every config
    on the first call of each key, so one miscompiled config crashes the call even when another would win: pinning
    one config per subprocess is how benchmarks/probe_kernels_gpu.py finds the culprit."""
    pin = pinned_configs().get(kernel)
    if pin is not None:
        if not 0 <= pin < len(configs):
            raise ValueError(f"HYBRIDSERVE_TRITON_CONFIG: {kernel} has {len(configs)} configs, not index {pin}")
        return [configs[pin]]
    return first_config_only(configs)


# Pipelining depth of the four sequential chunk passes (GDN forward state, GDN backward dh, GLA state, GLA dh):
# each program walks its sequence chunk after chunk. With 1 stage every step waits for its chunk's tiles to arrive
# from global memory; with 2-3 stages Triton's pipeliner fetches the next chunks' tiles (cp.async into shared
# memory) while this one computes -- compiled for sm_90a, 22-90 cp.async per kernel, no extra registers or spills.
# Each launcher passes its pass's default: the depth measured fastest at its tile on the H200 once the GPU has also
# checked it against the reference (docs/benchmarks/kernels.md, thirteenth session: the GDN forward's state pass,
# 2-3x faster than 1 stage for one sequence), else 1. HYBRIDSERVE_STATE_STAGES overrides them all.
# TUNED_HEAD_DIMS: the (K, V) at which those defaults, and the one-launch short prefill's (fused_chunk.py), were
# checked and timed on the GPU. Other head dims keep what was validated before (1 stage, no one-launch route) until
# checked there: at K = 64 ptxas has miscompiled a pipelined tile of the chunk out kernel before.
TUNED_HEAD_DIMS = frozenset({(128, 128)})


def tuned_head_dims(K: int, V: int) -> bool:
    return (K, V) in TUNED_HEAD_DIMS


def tuned_dims_prune(n_everywhere: int):
    """An autotuner's early_config_prune: its first n_everywhere configs at any head dims, the ones after them (added
    once the GPU had checked and timed them at the TUNED_HEAD_DIMS) only there. Elsewhere a config no GPU has checked
    must not win an autotune: ptxas has miscompiled pipelined tiles at K = 64 that were right at 128."""
    def prune(configs, nargs, **kwargs):
        args = {**nargs, **kwargs}
        if len(configs) <= n_everywhere or tuned_head_dims(args["K"], args["V"]):
            return configs
        return configs[:n_everywhere]
    return prune


def env_choice(name: str, choices, tuned: str, untuned: str, K: int | None = None, V: int | None = None) -> str:
    """A kernel switch read at every call: the environment variable `name` if set (one of `choices`, else one clear
    ValueError), otherwise `tuned` at the TUNED_HEAD_DIMS and `untuned` elsewhere (K, V left out: `untuned`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return tuned if K is not None and tuned_head_dims(K, V) else untuned
    if raw not in choices:
        raise ValueError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def state_pass_stages(default: int, K: int, V: int) -> int:
    """HYBRIDSERVE_STATE_STAGES (1-4), else `default` at the TUNED_HEAD_DIMS and 1 elsewhere: the num_stages of a
    sequential chunk pass with head dims K, V."""
    raw = os.environ.get("HYBRIDSERVE_STATE_STAGES", "").strip()
    if not raw:
        return default if tuned_head_dims(K, V) else 1
    if not (raw.isdigit() and 1 <= int(raw) <= 4):
        raise ValueError(f"HYBRIDSERVE_STATE_STAGES={raw!r}: expected 1, 2, 3 or 4")
    return int(raw)


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    return -(-a // b)
