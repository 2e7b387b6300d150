"""Short prefill calls: the one-launch chunk kernel (kernels/gated_delta_rule/fused_chunk.py) against the three-kernel
path (chunk.py), checked and timed on one GPU; decides HYBRIDSERVE_GDN_FUSED_MAX_TOKENS.

Issue #7's target: a short single-sequence prefill call <= 0.15 ms wall. The three-kernel forward is host-bound
below ~4K tokens (0.68-0.77 ms eager for the serving op against 0.094 ms of GPU work at 1 x 128), so the fix is fewer
launches, not faster ones. Steps (H = 16, K = V = 128, bf16):

 1. correctness: the fused kernel at each chunk size (BT 16 / 32) against the float32 reference at 1 x 64,
    1 x 512, 2 x 1000 (rel. RMSE <= 1e-2, as check_kernels_gpu.py) and the packed pool path (a padding slot, a
    has-initial-state mask, one-token sequences) against the three-kernel path;
 2. per size, single sequences of 16 ... 4096 tokens and packed 4 x 128, 16 x 64: `eager` (wall per call when calls
    run back to back: what vLLM's eager prefill pays) and `graph` (GPU time per call), three kernels vs fused (its
    default config), fla's chunk op beside them when importable;
 3. the serving op (`gdn_prefill_varlen`: prologue + forward into a state pool) at 1 x 128 and 1 x 1024, with and
    without the fused kernel (which then folds the prologue in);
 4. config sweep at 1 x 128 and 1 x 1024: BT x BV x warps x stages, GPU time (CUDA-graph replays).

    python benchmarks/short_prefill_gpu.py --out DIR [--quick] [--budget-s 300]
    python benchmarks/short_prefill_gpu.py --cpu-smoke   # interpreter, toy sizes: the plumbing only

Writes DIR/short_prefill.json and DIR/short_prefill.md (GPU, versions, command); a run cut short keeps what finished.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402
import gpu_steps  # noqa: E402
import kernels as kb  # noqa: E402  (benchmarks/kernels.py: timers, CPU smoke set-up)

ROWS: list[dict] = []
INFO: dict = {}
SMOKE = False


def add(**r):
    gpu_steps.add(ROWS, **r)


def eager_ms(fn, calls=50):
    """Wall ms per call of `calls` back-to-back calls (the host never waits on the GPU in between)."""
    fn()
    if SMOKE:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(calls):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / calls


def timings(fn):
    return dict(eager_ms=kb._try("eager", lambda: eager_ms(fn)),
                graph_ms=kb._try("graph", lambda: kb.graph_time_ms([fn], replays=10, repeats=3)))


def forward(q, k, v, g, beta, fused_max, cu=None, **kw):
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    os.environ["HYBRIDSERVE_GDN_FUSED_MAX_TOKENS"] = str(fused_max)
    return chunk_gdn_fwd(q, k, v, g, beta, cu_seqlens=cu, **kw)


def fused_direct(q, k, v, g, beta, B, T, **cfg):
    from hybridserve.kernels.gated_delta_rule.chunk import token_major
    from hybridserve.kernels.gated_delta_rule.fused_chunk import fused_chunk_gdn_fwd

    return fused_chunk_gdn_fwd(*token_major(q, k, v, g, beta), kb.K**-0.5, B, T, **cfg)


def step_check():
    shapes = [(1, 40), (2, 70)] if SMOKE else [(1, 64), (1, 512), (2, 1000)]
    for B, T in shapes:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=B + T)
        h0 = torch.randn(B, kb.H, kb.K, kb.V, device=kb.DEV) * 0.1
        ro, rs = chk.ref_gdn(q, k, v, g, beta, h0)
        for bt in (16, 32):
            ht = torch.empty_like(h0)
            o = fused_direct(q, k, v, g, beta, B, T, initial_state=h0, final_state=ht, BT=bt).view(v.shape)
            eo, es = chk.rel_rmse(o, ro), chk.rel_rmse(ht, rs)
            add(kind="check", what=f"dense {B}x{T}, BT {bt}", o_rel_rmse=eo, state_rel_rmse=es,
                ok=bool(eo <= 1e-2 and es <= 1e-2))
    lens = [5, 1, 30, 3] if SMOKE else [100, 1, 300, 37, 1]
    slots = torch.tensor([3, -1, 0, 2, 1][:len(lens)], dtype=torch.int32, device=kb.DEV)
    has = torch.tensor([1, 1, 0, 1, 0][:len(lens)], dtype=torch.bool, device=kb.DEV)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=kb.DEV)
    q, k, v, g, beta = chk.gdn_inputs(1, sum(lens), seed=9)
    for state_dtype in (torch.float32, torch.bfloat16):
        start = (torch.randn(5, kb.H, kb.K, kb.V, device=kb.DEV) * 0.1).to(state_dtype)
        res = {}
        for fused_max in (0, 10**9):
            pool = start.clone()
            o = forward(q, k, v, g, beta, fused_max, cu, initial_state=pool, final_state=pool, state_indices=slots,
                        has_initial_state=has)
            res[fused_max] = (o, pool)
        (o0, p0), (o1, p1) = res[0], res[10**9]
        used = [0, 1, 2, 3]
        eo, es = chk.rel_rmse(o1, o0), chk.rel_rmse(p1[used].float(), p0[used].float())
        untouched = bool(torch.equal(p1[4], start[4]))
        add(kind="check", what=f"packed pool {str(state_dtype)[6:]} vs three kernels", o_rel_rmse=eo,
            state_rel_rmse=es, padding_slot_untouched=untouched, ok=bool(eo <= 1e-2 and es <= 1e-2 and untouched))


def step_sweep(quick):
    shapes = [(1, 40)] if SMOKE else [(1, 128), (1, 1024)]
    grid = [(bt, bv, w, s) for bt in (16, 32) for bv in (16, 32) for w in (4, 8) for s in (1, 2)]  # BT 64 spills
    if quick or SMOKE:
        grid = [(16, 16, 4, 2), (16, 32, 4, 2), (32, 32, 4, 2)]
    for B, T in shapes:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=3)
        for bt, bv, w, s in grid:
            if bv > kb.V:
                continue
            fn = lambda: fused_direct(q, k, v, g, beta, B, T, BT=bt, BV=bv, num_warps=w, num_stages=s)  # noqa: E731
            add(kind="sweep", B=B, T=T, BT=bt, BV=bv, warps=w, stages=s,
                graph_ms=kb._try(f"fused {B}x{T} {bt}/{bv}/{w}/{s}", lambda: kb.graph_time_ms([fn], 10, 3)))
        del q, k, v, g, beta
        kb.empty_cache()


def step_sizes(fla):
    singles = [16, 40] if SMOKE else [16, 64, 128, 256, 512, 1024, 2048, 4096]
    shapes = [(1, t, None) for t in singles] + ([(2, 20, "packed")] if SMOKE else [(4, 128, "packed"),
                                                                                (16, 64, "packed")])
    for B, T, packed in shapes:
        q, k, v, g, beta = chk.gdn_inputs(1 if packed else B, B * T if packed else T, seed=4)
        cu = (torch.arange(0, B * T + 1, T, dtype=torch.int32, device=kb.DEV) if packed else None)
        label = f"{B}x{T}" + (" packed" if packed else "")
        impls = [("three kernels", lambda: forward(q, k, v, g, beta, 0, cu)),
                 ("fused", lambda: forward(q, k, v, g, beta, 10**9, cu))]
        if fla is not None:
            impls.append(("fla", lambda: fla["chunk_gdn"](q, k, v, g, beta, cu_seqlens=cu)[0]))
        for name, fn in impls:
            add(kind="size", shape=label, tokens=B * T, impl=name, **timings(fn))
        del q, k, v, g, beta
        kb.empty_cache()


def step_serving_op():
    kernels = chk.load_kernels()
    for T in ([40] if SMOKE else [128, 1024]):
        q, k, v, g, beta = chk.gdn_inputs(1, T, seed=6)
        a = torch.randn(1, T, kb.H, device=kb.DEV, dtype=q.dtype)
        b = torch.randn(1, T, kb.H, device=kb.DEV, dtype=q.dtype)
        A_log = torch.rand(kb.H, device=kb.DEV).add(1).log()
        dt_bias = torch.zeros(kb.H, device=kb.DEV)
        pool = torch.zeros(4, kb.H, kb.K, kb.V, device=kb.DEV, dtype=torch.bfloat16)
        cu = torch.tensor([0, T], dtype=torch.int32, device=kb.DEV)
        idx = torch.tensor([1], dtype=torch.int32, device=kb.DEV)
        has = torch.zeros(1, dtype=torch.bool, device=kb.DEV)
        for name, fused_max in (("three kernels", 0), ("fused", 10**9)):
            os.environ["HYBRIDSERVE_GDN_FUSED_MAX_TOKENS"] = str(fused_max)

            def op():
                return kernels.gdn_prefill_varlen(q, k, v, None, None, cu, pool, idx, has, kb.K**-0.5,
                                                  use_qk_l2norm=True, a=a, b=b, A_log=A_log, dt_bias=dt_bias,
                                                  qkv_silu=True)
            add(kind="serving_op", shape=f"1x{T}", impl=name, **timings(op))
        del q, k, v, g, beta, pool
        kb.empty_cache()


def markdown():
    f = kb.fmt
    out = [f"# Short prefill: one launch vs three ({INFO.get('gpu')})", "",
           " | ".join(f"{k} {v}" for k, v in INFO.items() if k != "gpu"), "",
           "eager = wall ms per call, calls back to back (host-bound when the host is slower than the GPU); "
           "graph = GPU ms per call replayed from a CUDA graph.", ""]
    checks = [r for r in ROWS if r["kind"] == "check"]
    if checks:
        out += ["## Correctness", "", "| check | o rel RMSE | state rel RMSE | result |", "|---|---|---|---|"]
        out += [f"| {r['what']} | {f(r['o_rel_rmse'])} | {f(r['state_rel_rmse'])} | "
                f"{'PASS' if r['ok'] else '**FAIL**'} |" for r in checks]
    sweep = [r for r in ROWS if r["kind"] == "sweep"]
    if sweep:
        out += ["", "## Fused kernel configs (graph ms)", "", "| B x T | BT | BV | warps | stages | graph ms |",
                "|---|---|---|---|---|---|"]
        out += [f"| {r['B']}x{r['T']} | {r['BT']} | {r['BV']} | {r['warps']} | {r['stages']} | {f(r['graph_ms'])} |"
                for r in sweep]
    for kind, title in (("size", "Forward per call"), ("serving_op", "The serving op (prologue + forward + pool)")):
        rows = [r for r in ROWS if r["kind"] == kind]
        if rows:
            out += ["", f"## {title}", "", "| shape | impl | eager ms | graph ms |", "|---|---|---|---|"]
            out += [f"| {r['shape']} | {r['impl']} | {f(r['eager_ms'])} | {f(r['graph_ms'])} |" for r in rows]
    return "\n".join(out) + "\n"


def main():
    global SMOKE
    args = gpu_steps.parser(__doc__, "three fused configs in the sweep", 300.0).parse_args()
    if args.cpu_smoke:
        SMOKE = True
        kb.setup_cpu_smoke()
    chk.load_kernels()
    fla = None if SMOKE else chk.load_fla()
    INFO.update(gpu_steps.header(SMOKE))
    # the decision (sizes, serving op) before the config sweep: a budget cut loses the sweep first
    steps = [("check", step_check), ("sizes", lambda: step_sizes(fla)), ("serving op", step_serving_op),
             ("sweep", lambda: step_sweep(args.quick))]
    gpu_steps.run_steps(steps, args.budget_s,
                        lambda: gpu_steps.write(args.out, "short_prefill", INFO, ROWS, markdown()))
    os.environ.pop("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", None)
    print(markdown())
    if not all(r["ok"] for r in ROWS if r["kind"] == "check"):
        sys.exit(1)


if __name__ == "__main__":
    main()
