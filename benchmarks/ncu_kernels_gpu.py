"""One call of a kernel path inside a CUDA profiler range, for Nsight Compute's hardware counters (not a timing).

Issue #7 asks for every missed target to be explained by a measured cause. Timings and byte counts say how far a
kernel is from its floor, not why: the chunk forward's prep kernel runs at 3.3x its memory floor, the backward's
dqkw and wy kernels at 2.6x and 3.6x, and the bf16 decode kernel at 62-75 % of copy bandwidth (docs/benchmarks/
kernels.md). Nsight Compute's warp-state, occupancy and memory sections say where their warps wait. This script
runs the path twice outside the range (compiles, autotunes: the autotuner's own launches stay out of the profile),
then once between cudaProfilerStart and cudaProfilerStop, so `ncu --profile-from-start off` profiles exactly one
launch of each kernel of that path:

    ncu --clock-control none --profile-from-start off --section SpeedOfLight --section Occupancy \\
        --section WarpStateStats --section MemoryWorkloadAnalysis --section LaunchStats \\
        python3 benchmarks/ncu_kernels_gpu.py --what fwd --shape 8x32768

--what fwd: chunk_gdn_fwd (prep, state, out); bwd: chunk_gdn_bwd (its forward recompute, W and U from the X and G
the training op's forward keeps, and the four backward kernels); gla_fwd: chunk_gla_fwd; gla_bwd: chunk_gla_bwd
(its recompute and its four kernels); decode: one decode step of the serving op on a state pool (--batch,
--state-dtype). H = 16, K = V = 128, bf16 inputs, the defaults the environment sets (HYBRIDSERVE_* variables apply as everywhere). `--impl fla` profiles fla-core's op on the same
inputs instead, kernel for kernel beside ours: its forward for fwd / gla_fwd, its forward and backward through
autograd for bwd / gla_bwd (its triton guard on the backward lifted: times only, fla #640).
`--cpu-smoke`: the same plumbing on CPU through the Triton interpreter at toy sizes, without a profiler range.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402


def fla_call(what: str, B: int, T: int):
    """fla-core's op on the same inputs as ours (fla takes [B, T, H, D] and the GLA decay as gk)."""
    fla = chk.load_fla(unguarded=True)
    if fla is None:
        raise SystemExit("--impl fla: fla-core is not importable")
    if what == "gla_fwd":
        q, k, v, gk = chk.gla_inputs(B, T, seed=1)
        return lambda: fla["chunk_gla"](q, k, v, gk)
    if what == "gla_bwd":
        q, k, v, gk = chk.gla_inputs(B, T, seed=1, req=True)
        do = torch.randn_like(v)
        return lambda: fla["chunk_gla"](q, k, v, gk)[0].backward(do)
    if what == "fwd":
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=1)
        return lambda: fla["chunk_gdn"](q, k, v, g, beta)
    if what != "bwd":
        raise SystemExit(f"--impl fla profiles fwd, bwd, gla_fwd and gla_bwd, not {what}")
    q, k, v, g, beta = chk.gdn_inputs(B, T, seed=1, req=True)
    do = torch.randn_like(v)
    return lambda: fla["chunk_gdn"](q, k, v, g, beta)[0].backward(do)


def path_call(what: str, B: int, T: int, batch: int, state_dtype: torch.dtype):
    """A no-argument function that runs the path once (inputs built here, outside the profiled range)."""
    kernels = chk.load_kernels()
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd
    from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    H, K, V, dev = chk.H, chk.K, chk.V, chk.DEV
    if what == "decode":
        gen = torch.Generator(device=dev).manual_seed(0)
        q, k = (torch.randn(batch, H, K, device=dev, generator=gen).bfloat16() for _ in range(2))
        v = torch.randn(batch, H, V, device=dev, generator=gen).bfloat16()
        a, b = (torch.randn(batch, H, device=dev, generator=gen).bfloat16() for _ in range(2))
        A_log = torch.log(torch.rand(H, device=dev, generator=gen) * 15 + 1)
        dt_bias = torch.rand(H, device=dev, generator=gen) - 3
        pool = (torch.randn(batch, H, K, V, device=dev, generator=gen) * 0.1).to(state_dtype)
        idx = torch.arange(batch, device=dev, dtype=torch.int32)
        return lambda: kernels.gdn_decode_(q, k, v, a, b, A_log, dt_bias, pool, idx, use_qk_l2norm=True)
    if what == "gla_fwd":
        q, k, v, gk = chk.gla_inputs(B, T, seed=1)
        return lambda: chunk_gla_fwd(q, k, v, gk)
    if what == "gla_bwd":
        q, k, v, gk = chk.gla_inputs(B, T, seed=1)
        do = torch.randn_like(v)
        return lambda: chunk_gla_bwd(q, k, v, gk, K**-0.5, None, do, None)
    q, k, v, g, beta = chk.gdn_inputs(B, T, seed=1)
    if what == "fwd":
        return lambda: chunk_gdn_fwd(q, k, v, g, beta)
    do = torch.randn_like(v)
    # as training runs it (gdn_chunk_train): the forward's X and G handed over, so the recompute is the W, U kernel
    _, X, G = chunk_gdn_fwd(q, k, v, g, beta, K**-0.5, keep_inverse=True)
    return lambda: chunk_gdn_bwd(q, k, v, g, beta, K**-0.5, None, do, None, inverse=X, gcum=G)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--what", choices=("fwd", "bwd", "gla_fwd", "gla_bwd", "decode"), required=True)
    ap.add_argument("--impl", choices=("ours", "fla"), default="ours")
    ap.add_argument("--shape", default="8x32768", help="B x T of fwd / bwd (default 8x32768)")
    ap.add_argument("--batch", type=int, default=512, help="decode: sequences per step (default 512)")
    ap.add_argument("--state-dtype", choices=("float32", "bfloat16"), default="bfloat16", help="decode's state pool")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    if args.cpu_smoke:
        chk.setup_cpu_smoke()
    B, T = (int(x) for x in args.shape.lower().split("x"))
    if args.cpu_smoke:
        B, T, args.batch = 1, 70, 3
    if args.impl == "fla":
        call = fla_call(args.what, B, T)
    else:
        call = path_call(args.what, B, T, args.batch, getattr(torch, args.state_dtype))
    for _ in range(2):  # compile and autotune outside the profiled range
        call()
    on_gpu = chk.DEV == "cuda"
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStart()
    call()
    if on_gpu:
        torch.cuda.synchronize()
        torch.cuda.cudart().cudaProfilerStop()
    what = f"batch {args.batch}, {args.state_dtype} state" if args.what == "decode" else f"{B}x{T}"
    print(f"profiled one call: {args.impl} {args.what} {what}")


if __name__ == "__main__":
    main()
