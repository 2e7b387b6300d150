"""Benchmark hybridserve's linear-attention kernels on one CUDA GPU; prints a markdown report.

Prefill (chunked GDN, H = 16, K = V = 128, bf16): B x T in {1x4K, 4x8K, 1x32K, 8x32K}, forward and forward +
backward TFLOP/s with the FLOP convention of shared/gpu/README.md (1.83e5 FLOP per token per head forward at
C = 64, K = V = 128: 6KV + C(6K + 4V) + (2/3)C^2; fwd + bwd = 3 x fwd). Decode (one token per sequence, fused
gates + L2 norm, state pool updated in place): batch in {1, 16, 64, 256, 512}, float32 and bf16 state, GB/s of
state bytes read + written per step, against the device-to-device copy bandwidth measured in the same run.
Ours vs fla-core (when importable) vs the PyTorch reference. GLA rows alongside.

Timing: CUDA events; prefill through triton.testing.do_bench (median, L2 flushed before every run); decode as
CUDA-graph replays (how vLLM runs decode) of several calls that rotate over disjoint state slots, so the state
never sits in L2 between calls; median of repeats.

    python benchmarks/kernels.py [--check] [--quick] [--out DIR]
    python benchmarks/kernels.py --cpu-smoke   # toy sizes through the Triton interpreter, wall-clock "timings":
                                               # exercises the script's plumbing without a GPU, numbers meaningless

--check runs benchmarks/check_kernels_gpu.py first (correctness at real sizes) and puts both in one report.
Needs torch + triton only (torch 2.11 / triton 3.6 on the GPU image); fla-core is optional.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402

H, K, V, C = 16, 128, 128, 64
RESULTS = {"info": {}, "rows": []}
SMOKE = False
DEV = "cuda"
DEADLINE = [float("inf")]  # time.time() after which no new measurement starts


def setup_cpu_smoke():
    """Toy sizes on CPU through the Triton interpreter; wall-clock stand-ins for the CUDA timers."""
    global H, K, V, SMOKE, DEV, bench, graph_time_ms
    chk.setup_cpu_smoke()
    H, K, V, SMOKE, DEV = chk.H, chk.K, chk.V, True, "cpu"

    def wall(fn, grad_to_none=None, warmup=0, rep=0):
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3

    def wall_calls(calls, replays=1, repeats=1):
        t = time.perf_counter()
        for f in calls:
            f()
        return (time.perf_counter() - t) * 1e3 / len(calls)

    bench, graph_time_ms = wall, wall_calls


def empty_cache():
    if DEV == "cuda":
        torch.cuda.empty_cache()


def gdn_flops_fwd(B, T):
    return B * T * H * (6 * K * V + C * (6 * K + 4 * V) + (2 / 3) * C * C)


def row(**kw):
    RESULTS["rows"].append(kw)
    print("ROW", json.dumps(kw), flush=True)


def bench(fn, grad_to_none=None, warmup=25, rep=100):
    from triton.testing import do_bench

    return do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def graph_time_ms(calls, replays=10, repeats=5):
    """Capture `calls` (a list of zero-argument functions) in one CUDA graph; median ms per call over replays."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in calls[:2]:
            f()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for f in calls:
            f()
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(replays):
            g.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / (replays * len(calls)))
    del g
    return sorted(times)[len(times) // 2]


def ceilings():
    n = 1 << 30  # 1 Gi bf16 = 2 GiB per buffer
    a = torch.randn(n, device=DEV, dtype=torch.bfloat16)
    b = torch.empty_like(a)
    ms = bench(lambda: b.copy_(a))
    copy_bw = 2 * a.numel() * 2 / (ms * 1e-3) / 1e12
    row(kind="copy", ms=ms, TBps=copy_bw)
    del a, b
    x = torch.randn(8192, 8192, device=DEV, dtype=torch.bfloat16)
    y = torch.randn_like(x)
    ms = bench(lambda: x @ y)
    row(kind="matmul8192_bf16", ms=ms, TFLOPs=2 * 8192**3 / (ms * 1e-3) / 1e12)
    del x, y
    torch.cuda.empty_cache()
    return copy_bw


def _try(label, fn):
    if time.time() > DEADLINE[0]:
        return "skipped (time budget)"
    try:
        return fn()
    except torch.cuda.OutOfMemoryError as e:
        empty_cache()
        return f"OOM ({str(e)[:80]})"
    except Exception as e:  # report and go on: one failing row must not lose the whole report
        print(f"  {label}: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=2)
        return f"{type(e).__name__}: {str(e)[:100]}"


def prefill_gdn(kernels, fla, grid, with_bwd):
    from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule

    impls = {"ours": lambda q, k, v, g, b: kernels.chunk_gated_delta_rule(q, k, v, g, b)[0]}
    if fla is not None:
        impls["fla"] = lambda q, k, v, g, b: fla["chunk_gdn"](q, k, v, g, b)[0]
    impls["torch ref"] = lambda q, k, v, g, b: naive_chunk_gated_delta_rule(q, k, v, g, b)[0]
    for B, T in grid:
        fl = gdn_flops_fwd(B, T)
        for name, f in impls.items():
            q, k, v, g, beta = chk.gdn_inputs(B, T, seed=1)
            res = _try(f"{name} fwd {B}x{T}", lambda: bench(lambda: f(q, k, v, g, beta)))
            r = dict(kind="gdn_prefill", impl=name, B=B, T=T)
            if isinstance(res, float):
                r.update(fwd_ms=res, fwd_TFLOPs=fl / (res * 1e-3) / 1e12, fwd_Mtok_s=B * T / (res * 1e-3) / 1e6)
            else:
                r.update(fwd_error=res)
            if name == "ours" and isinstance(res, float):  # GPU time without host launch overhead
                from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

                gres = _try("ours graph", lambda: graph_time_ms([lambda: chunk_gdn_fwd(q, k, v, g, beta)],
                                                                replays=3, repeats=3))
                if isinstance(gres, float):
                    r.update(fwd_graph_ms=gres, fwd_graph_TFLOPs=fl / (gres * 1e-3) / 1e12)
            del q, k, v, g, beta
            empty_cache()
            if with_bwd["on"] and (B, T) in with_bwd["grid"] and not (name == "torch ref" and B * T > 32768):
                xs = chk.gdn_inputs(B, T, seed=2, req=True)
                do = torch.randn(B, T, H, V, device=DEV, dtype=torch.bfloat16)

                def fb():
                    f(*xs).backward(do)
                res = _try(f"{name} fwd+bwd {B}x{T}", lambda: bench(fb, grad_to_none=xs, warmup=5, rep=20))
                if isinstance(res, float):
                    r.update(fwdbwd_ms=res, fwdbwd_TFLOPs=3 * fl / (res * 1e-3) / 1e12,
                             fwdbwd_Mtok_s=B * T / (res * 1e-3) / 1e6)
                else:
                    r.update(fwdbwd_error=res)
                for x in xs:
                    x.grad = None
                del xs, do
                empty_cache()
            row(**r)


def prefill_gla(kernels, fla, grid, with_ref=True):
    from hybridserve.kernels.gla.naive import naive_chunk_gla

    impls = {"ours": lambda q, k, v, gk: kernels.chunk_gla(q, k, v, gk)[0]}
    if fla is not None:
        impls["fla"] = lambda q, k, v, gk: fla["chunk_gla"](q, k, v, gk)[0]
    if with_ref:
        impls["torch ref"] = lambda q, k, v, gk: naive_chunk_gla(q, k, v, gk, chunk_size=16)[0]
    for B, T in grid:
        for name, f in impls.items():
            if name == "torch ref" and B * T > 4 * 8192:
                continue
            q, k, v, gk = chk.gla_inputs(B, T, seed=3)
            res = _try(f"gla {name} {B}x{T}", lambda: bench(lambda: f(q, k, v, gk)))
            r = dict(kind="gla_prefill", impl=name, B=B, T=T)
            if isinstance(res, float):
                r.update(fwd_ms=res, fwd_Mtok_s=B * T / (res * 1e-3) / 1e6)
            else:
                r.update(fwd_error=res)
            row(**r)
            del q, k, v, gk
            empty_cache()


def _rotations(bytes_per_call):
    """Calls per graph, each on its own slots, so that one replay touches > 256 MB of state (several times L2)."""
    return int(min(4 if SMOKE else 256, max(1, math.ceil(256e6 / bytes_per_call))))


def decode_gdn(kernels, fla, batches, copy_bw, BV=None, num_warps=None, only_ours=False, tag="",
               dtypes=(torch.float32, torch.bfloat16)):
    from hybridserve.kernels.gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

    dev = DEV
    for state_dtype in dtypes:
        esz = torch.tensor([], dtype=state_dtype).element_size()
        for N in batches:
            state_bytes = 2 * N * H * K * V * esz
            R = _rotations(state_bytes)
            gen = torch.Generator(device=dev).manual_seed(N)
            q = torch.randn(N, H, K, device=dev, generator=gen).bfloat16()
            k = torch.randn(N, H, K, device=dev, generator=gen).bfloat16()
            v = torch.randn(N, H, V, device=dev, generator=gen).bfloat16()
            a = torch.randn(N, H, device=dev, generator=gen).bfloat16()
            b = torch.randn(N, H, device=dev, generator=gen).bfloat16()
            A_log = torch.log(torch.rand(H, device=dev, generator=gen) * 15 + 1)
            dt_bias = torch.rand(H, device=dev, generator=gen) - 3
            pool = (torch.randn(R * N, H, K, V, device=dev, generator=gen) * 0.1).to(state_dtype)
            idx = [torch.arange(r * N, (r + 1) * N, device=dev, dtype=torch.int32) for r in range(R)]
            sd = str(state_dtype).replace("torch.", "")
            impls = {}
            if BV is None and num_warps is None:
                impls["ours (op, fused gates + l2norm)"] = [
                    (lambda i=i: kernels.gdn_decode_(q, k, v, a, b, A_log, dt_bias, pool, i, use_qk_l2norm=True))
                    for i in idx]
            g = -A_log.exp() * F.softplus(a.float() + dt_bias)
            beta = torch.sigmoid(b.float())
            impls[f"ours (kernel, g/beta given){tag}"] = [
                (lambda i=i: fused_recurrent_gdn_fwd(q, k, v, g, beta, initial_state=pool, final_state=pool,
                                                     state_indices=i, BV=BV, num_warps=num_warps)) for i in idx]
            if not only_ours:
                if fla is not None:
                    q4, k4, v4 = q[:, None], k[:, None], v[:, None]
                    g4, b4 = g[:, None], beta[:, None]
                    impls["fla fused_recurrent (new state out)"] = [
                        (lambda r=r: fla["recurrent_gdn"](q4, k4, v4, g=g4, beta=b4,
                                                          initial_state=pool[r * N:(r + 1) * N],
                                                          output_final_state=True)) for r in range(R)]

                def ref(i):
                    S = pool[i].float()
                    o, S = naive_recurrent_gated_delta_rule(q[:, None], k[:, None], v[:, None], g[:, None],
                                                            beta[:, None], None, S, True)
                    pool[i] = S.to(pool.dtype)
                impls["torch ref (gather, step, scatter)"] = [(lambda i=i: ref(i)) for i in idx[:min(R, 16)]]
            for name, calls in impls.items():
                res = _try(f"decode {name} N={N}", lambda: graph_time_ms(calls))
                r = dict(kind="gdn_decode", impl=name, N=N, state=sd, rotations=len(calls), BV=BV,
                         num_warps=num_warps)
                if isinstance(res, float):
                    tbps = state_bytes / (res * 1e-3) / 1e12
                    r.update(us=res * 1e3, state_TBps=tbps, frac_of_copy=tbps / copy_bw)
                else:
                    r.update(error=res)
                row(**r)
            del pool, idx, impls
            empty_cache()


def decode_gla(kernels, fla, batches, copy_bw):
    dev = DEV
    for N in batches:
        state_bytes = 2 * N * H * K * V * 4
        R = _rotations(state_bytes)
        q = torch.randn(N, H, K, device=dev).bfloat16()
        k = (torch.randn(N, H, K, device=dev) * K**-0.5).bfloat16()
        v = torch.randn(N, H, V, device=dev).bfloat16()
        logits = torch.randn(N, H, K, device=dev)
        pool = torch.randn(R * N, H, K, V, device=dev) * 0.1
        idx = [torch.arange(r * N, (r + 1) * N, device=dev, dtype=torch.int32) for r in range(R)]
        impls = {"ours (op, fused gate)": [
            (lambda i=i: kernels.gla_decode_(q, k, v, logits, pool, i, gate_logit_normalizer=16.0)) for i in idx]}
        if fla is not None:
            gk = F.logsigmoid(logits) / 16
            impls["fla fused_recurrent_gla (new state out)"] = [
                (lambda r=r: fla["recurrent_gla"](q[:, None], k[:, None], v[:, None], gk[:, None],
                                                  initial_state=pool[r * N:(r + 1) * N], output_final_state=True))
                for r in range(R)]
        for name, calls in impls.items():
            res = _try(f"gla decode {name} N={N}", lambda: graph_time_ms(calls))
            r = dict(kind="gla_decode", impl=name, N=N, state="float32", rotations=len(calls))
            if isinstance(res, float):
                tbps = state_bytes / (res * 1e-3) / 1e12
                r.update(us=res * 1e3, state_TBps=tbps, frac_of_copy=tbps / copy_bw)
            else:
                r.update(error=res)
            row(**r)
        del pool, idx
        empty_cache()


def config_str(cfg) -> str | None:
    """A triton.Config as "BV=64 w4 s2" (None for None: an autotuner's best_config before it ran)."""
    if cfg is None:
        return None
    kw = ",".join(f"{k}={v}" for k, v in cfg.kwargs.items())
    return f"{kw + ' ' if kw else ''}w{cfg.num_warps} s{cfg.num_stages}"


INVERSES = {  # label: (HYBRIDSERVE_GDN_BLOCKED_INVERSE, HYBRIDSERVE_GDN_DIAG_INVERSE)
    "16x16 blocks": ("1", "substitution"),  # the default
    "16x16 blocks, diagonal by doubling": ("1", "doubling"),
    "row by row": ("0", "substitution"),  # the first version
}


def chunk_phase_breakdown(grid):
    """Time the forward's kernels (prep: cumsum + (I + A)^-1 + W, U or X; then the sequential state pass and the output
    kernel, or the two fused: the route chunk_state_out.state_out_route picks) one by one on the same buffers, with
    each way to (I + A)^-1: where the forward's time goes."""
    from hybridserve.kernels.gated_delta_rule.chunk import _gdn_chunk_prep_kernel, chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.chunk_state_out import state_out_route

    names = ("HYBRIDSERVE_GDN_BLOCKED_INVERSE", "HYBRIDSERVE_GDN_DIAG_INVERSE")
    saved = {n: os.environ.get(n) for n in names}
    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=5)
        for label, values in INVERSES.items():
            os.environ.update(zip(names, values))
            phases = []
            chunk_gdn_fwd(q, k, v, g, beta, _phases=phases)
            r = dict(kind="gdn_chunk_phases", B=B, T=T, inverse=label, route=state_out_route(B, H, K, V))
            for name, launch in phases:
                res = _try(f"phase {name} {B}x{T}", lambda: bench(launch))
                r[f"{name}_ms"] = res
            r["prep_config"] = config_str(getattr(_gdn_chunk_prep_kernel, "best_config", None))  # tuned here
            row(**r)
            del phases
        del q, k, v, g, beta
        empty_cache()
    for n, value in saved.items():
        if value is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = value


def chunk_state_sweep(grid):
    """The chunk state pass is sequential over chunks; its V split (BV) trades parallelism for re-reads."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=4)
        for bv in (16, 32, 64):
            for nw in (4, 8):
                res = _try(f"state sweep BV={bv} nw={nw}", lambda: bench(
                    lambda: chunk_gdn_fwd(q, k, v, g, beta, BV_state=bv, num_warps_state=nw)))
                r = dict(kind="gdn_chunk_state_sweep", B=B, T=T, BV_state=bv, num_warps_state=nw)
                if isinstance(res, float):
                    r.update(fwd_ms=res, fwd_TFLOPs=gdn_flops_fwd(B, T) / (res * 1e-3) / 1e12)
                else:
                    r.update(error=res)
                row(**r)
        del q, k, v, g, beta
        empty_cache()


def fmt(x, spec=".3g"):
    return "–" if x is None else (format(x, spec) if isinstance(x, float) else str(x).replace("|", "/"))


def markdown(_unused=None):
    rows = RESULTS["rows"]
    info = RESULTS["info"]
    out = ["# hybridserve kernels: benchmark\n",
           f"{info['gpu']} ({info['sms']} SMs) | torch {info['torch']} | triton {info['triton']} | CUDA {info['cuda']}"
           f" | fla {info['fla']} | `{info['command']}`\n"]
    by = lambda kind: [r for r in rows if r["kind"] == kind]  # noqa: E731
    out.append("## Ceilings (this run)\n")
    for r in by("copy"):
        out.append(f"- device-to-device copy (read + write): **{r['TBps']:.2f} TB/s**")
    for r in by("matmul8192_bf16"):
        out.append(f"- bf16 matmul 8192^3: **{r['TFLOPs']:.0f} TFLOP/s**")
    out.append("\n## GDN chunked prefill (H=16, K=V=128, bf16; TFLOP/s by the 1.83e5 FLOP/token/head convention, "
               "fwd+bwd = 3x fwd)\n")
    out.append("| B x T | impl | fwd ms | fwd TFLOP/s | fwd Mtok/s | fwd GPU-only ms (graph) | fwd+bwd ms | "
               "fwd+bwd TFLOP/s |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in by("gdn_prefill"):
        out.append(f"| {r['B']}x{r['T']} | {r['impl']} | {fmt(r.get('fwd_ms', r.get('fwd_error')))} | "
                   f"{fmt(r.get('fwd_TFLOPs'))} | {fmt(r.get('fwd_Mtok_s'))} | {fmt(r.get('fwd_graph_ms'))} | "
                   f"{fmt(r.get('fwdbwd_ms', r.get('fwdbwd_error')))} | {fmt(r.get('fwdbwd_TFLOPs'))} |")
    out.append("\nOurs fwd+bwd = Triton forward + Triton backward (forward recomputed inside the backward, as fla "
               "does). fla rows: fla's own Hopper/triton<3.7.1 guard on its backward is bypassed for timing only.\n")
    if by("gla_prefill"):
        out.append("## GLA chunked prefill (H=16, K=V=128, bf16)\n")
        out.append("| B x T | impl | fwd ms | fwd Mtok/s |")
        out.append("|---|---|---|---|")
        for r in by("gla_prefill"):
            out.append(f"| {r['B']}x{r['T']} | {r['impl']} | {fmt(r.get('fwd_ms', r.get('fwd_error')))} | "
                       f"{fmt(r.get('fwd_Mtok_s'))} |")
    for kind, title in (("gdn_decode", "GDN decode"), ("gla_decode", "GLA decode")):
        rs = [r for r in by(kind) if r.get("BV") is None and r.get("num_warps") is None]
        if not rs:
            continue
        out.append(f"\n## {title}: one token per sequence, H=16, K=V=128, bf16 q/k/v, state pool in place; "
                   f"CUDA-graph replays rotating over disjoint slots\n")
        out.append("| batch | state | impl | µs / step | state TB/s (read + write) | % of copy BW |")
        out.append("|---|---|---|---|---|---|")
        for r in rs:
            out.append(f"| {r['N']} | {r['state']} | {r['impl']} | {fmt(r.get('us', r.get('error')))} | "
                       f"{fmt(r.get('state_TBps'))} | "
                       f"{fmt(100 * r['frac_of_copy'] if 'frac_of_copy' in r else None, '.0f')} |")
    sweep = [r for r in by("gdn_decode") if r.get("BV") is not None]
    if sweep:
        out.append("\n## Decode kernel sweep (BV x num_warps; g/beta given)\n")
        out.append("| batch | state | BV | warps | µs / step | % of copy BW |")
        out.append("|---|---|---|---|---|---|")
        for r in sweep:
            out.append(f"| {r['N']} | {r['state']} | {r['BV']} | {r['num_warps']} | {fmt(r.get('us', r.get('error')))}"
                       f" | {fmt(100 * r['frac_of_copy'] if 'frac_of_copy' in r else None, '.0f')} |")
    phases = by("gdn_chunk_phases")
    if phases:
        out.append("\n## Chunk forward, kernel by kernel (ms, L2 flushed before each)\n")
        out.append("The prep makes the cumsum, (I+A)^-1 and W, U (split, fused) or X and the in-chunk attention "
                   "(fused-x-aqk); the fused routes compute the output in the state pass (chunk_state_out.py).\n")
        out.append("| B x T | route | (I+A)^-1 | prep | prep config | state (sequential) | out | state + out (fused) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for r in phases:
            route = r.get("route", "a fused route" if "state_out_ms" in r else "split")  # runs before the column
            out.append(f"| {r['B']}x{r['T']} | {route} | {r.get('inverse', '')} | {fmt(r.get('prep_ms'))} | "
                       f"{r.get('prep_config') or '–'} | {fmt(r.get('state_ms'))} | {fmt(r.get('out_ms'))} | "
                       f"{fmt(r.get('state_out_ms'))} |")
    sweep = by("gdn_chunk_state_sweep")
    if sweep:
        out.append("\n## Chunk forward: state-pass split sweep (BV_state x num_warps)\n")
        out.append("| B x T | BV_state | warps | fwd ms | fwd TFLOP/s |")
        out.append("|---|---|---|---|---|")
        for r in sweep:
            out.append(f"| {r['B']}x{r['T']} | {r['BV_state']} | {r['num_warps_state']} | "
                       f"{fmt(r.get('fwd_ms', r.get('error')))} | {fmt(r.get('fwd_TFLOPs'))} |")
    out.append("\nAnchors (shared/gpu/README.md, fla 0.6.0 on H200): chunk fwd ≈ 90 TFLOP/s at large B·T, 0.40 ms "
               "flat (host-bound) for one sequence ≤ 8K; fwd+bwd ≈ 78 TFLOP/s; decode fp32 state B=512 368 µs "
               "(68 % of copy), B=64 52 µs (60 %); copy 4.27 TB/s.")
    return "\n".join(out)


# --sections names, in the order main() runs them
SECTION_KEYS = ("ceilings", "gdn_decode", "gdn_prefill", "gla_decode", "chunk_phases", "gla_prefill", "sweeps")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="run check_kernels_gpu.py first")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-ref", action="store_true", help="leave the PyTorch reference out of the GLA prefill rows "
                    "(seconds per shape; its numbers are in earlier runs)")
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--budget-s", type=float, default=500.0,
                    help="start no new section after this many seconds (the device machine stops a command at 600 s)")
    ap.add_argument("--sections", default=None,
                    help="only these, comma-separated: " + ", ".join(SECTION_KEYS) + " (default: all)")
    args = ap.parse_args()
    wanted = None
    if args.sections:
        wanted = [x.strip() for x in args.sections.split(",") if x.strip()]
        unknown = sorted(set(wanted) - set(SECTION_KEYS))
        if unknown:
            sys.exit(f"--sections: unknown {', '.join(unknown)} (choose from {', '.join(SECTION_KEYS)})")
    if args.cpu_smoke:
        setup_cpu_smoke()
    import triton

    kernels = chk.load_kernels()
    fla = chk.load_fla(unguarded=True)  # fla's backward is timed despite its triton guard (fla #640)
    fla_version = None
    if fla is not None:
        try:
            from importlib.metadata import version

            fla_version = version("fla-core")
        except Exception:
            fla_version = "?"
    if SMOKE:
        props = type("P", (), dict(name="CPU smoke (interpreter; numbers meaningless)", multi_processor_count=0))
    else:
        props = torch.cuda.get_device_properties(0)
    RESULTS["info"] = dict(gpu=props.name, sms=props.multi_processor_count, torch=torch.__version__,
                           triton=triton.__version__, cuda=torch.version.cuda, fla=fla_version,
                           command="python " + " ".join(sys.argv))
    t0 = time.time()
    DEADLINE[0] = t0 + args.budget_s
    check_md = None
    if args.check:
        rep = chk.run_checks("smoke" if SMOKE else "quick" if args.quick else "full")
        check_md = rep.markdown()
        RESULTS["check"] = rep.rows
        empty_cache()
        print(f"[{time.time() - t0:.0f} s] checks done", flush=True)
    grid = [(1, 4096), (4, 8192)] if args.quick else [(1, 4096), (4, 8192), (1, 32768), (8, 32768)]
    bwd_grid = grid if not args.quick else [(1, 4096)]
    gla_grid = [(1, 4096), (4, 8192)] if args.quick else [(1, 4096), (4, 8192), (1, 32768), (8, 32768)]
    batches, gla_batches, sweep_batches = [1, 16, 64, 256, 512], [1, 64, 512], [64, 512]
    sweep_bv, sweep_nw = (8, 16, 32, 64), (1, 2, 4, 8)
    state_grid = [(1, 32768)] if not args.quick else [(1, 8192)]
    phase_grid = [(1, 4096), (8, 32768), (1, 32768)] if not args.quick else [(1, 4096)]
    if SMOKE:
        grid = bwd_grid = gla_grid = state_grid = phase_grid = [(1, 70)]
        batches, gla_batches, sweep_batches, sweep_bv, sweep_nw = [1, 3], [2], [2], (16,), (4,)
    copy_bw = [1.0]

    def do_ceilings():
        if not SMOKE:
            copy_bw[0] = ceilings()

    def do_sweeps():
        for bv in sweep_bv:
            for nw in sweep_nw:
                decode_gdn(kernels, None, sweep_batches, copy_bw[0], BV=bv, num_warps=nw, only_ours=True,
                           tag=f" BV={bv} w={nw}", dtypes=(torch.float32,))
        chunk_state_sweep(state_grid)

    sections = [
        ("ceilings", do_ceilings),
        ("GDN decode", lambda: decode_gdn(kernels, fla, batches, copy_bw[0])),
        ("GDN prefill", lambda: prefill_gdn(kernels, fla, grid, dict(on=True, grid=bwd_grid))),
        ("GLA decode", lambda: decode_gla(kernels, fla, gla_batches, copy_bw[0])),
        ("GDN chunk forward by kernel", lambda: chunk_phase_breakdown(phase_grid)),
        ("GLA prefill", lambda: prefill_gla(kernels, fla, gla_grid, with_ref=not args.no_ref)),
    ]
    if not args.no_sweep:
        sections.append(("sweeps (decode BV x warps, chunk state BV)", do_sweeps))
    if wanted is not None:
        sections = [(name, fn) for (name, fn), key in zip(sections, SECTION_KEYS) if key in wanted]
    skipped = []
    for name, fn in sections:
        if time.time() - t0 > args.budget_s:
            skipped.append(name)
            print(f"[{time.time() - t0:.0f} s] budget of {args.budget_s} s spent: skipping {name}", flush=True)
            continue
        _try(name, fn)
        print(f"[{time.time() - t0:.0f} s] {name} done", flush=True)
        write_report(args.out, check_md, skipped, final=False)
    md = write_report(args.out, check_md, skipped, final=True)
    print("\n\n" + md)
    print(f"\ntotal {time.time() - t0:.0f} s")
    if check_md and not all(r["ok"] for r in RESULTS.get("check", [])):
        sys.exit(1)


def write_report(out, check_md, skipped, final):
    md = markdown(None)
    if check_md:
        md = md.replace("## Ceilings", "## Correctness at real sizes (check_kernels_gpu.py)\n\n" + check_md +
                        "\n\n## Ceilings", 1)
    if skipped:
        md += "\n\nSkipped for the time budget: " + ", ".join(skipped)
    if not final:
        md += "\n\n(partial report: the run was still going)"
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        Path(out, "kernels_bench.json").write_text(json.dumps(RESULTS, indent=1))
        Path(out, "kernels_bench.md").write_text(md)
    return md


if __name__ == "__main__":
    main()
