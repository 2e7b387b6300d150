"""The sequential chunk passes with their loads pipelined (`HYBRIDSERVE_STATE_STAGES`): checked and timed on one GPU.

Four kernels walk a sequence chunk after chunk: the GDN forward's state pass, the GDN backward's dh pass (and its
state recompute, the same kernel as the forward's), the GLA state pass and the GLA dh pass. Until the twelfth
session they ran with num_stages = 1: every chunk step waited for its tiles (W, U, K: 36 KB at BV 32) to come from
global memory. With 2-3 stages Triton's pipeliner prefetches the next chunks' tiles through shared memory (cp.async,
seen in the sm_90a PTX; `python -m hybridserve.kernels._compile_check`). This script decides whether to switch:

 Steps in this order (a budget cut loses the last ones first):
 1. correctness first: every (BV, warps, stages) of the GDN state pass against the 1-stage kernel of the same BV
    and warps (max |diff|: the arithmetic is the same, so it should be 0) and against the float32 chunked reference
    (rel. RMSE <= 1e-2, as check_kernels_gpu.py); the packed serving path (varlen, state pool with a padding slot
    and a has-initial-state mask) with 2 and 3 stages against 1 stage, bit for bit, padding slot untouched;
 2. the public ops whole (forward; forward + backward through autograd) at the defaults (each pass its measured
    tile and depth, since the thirteenth session) and with HYBRIDSERVE_STATE_STAGES = 1, 2, 3, next to fla-core's
    when importable; and the GLA forward; B x T in {1x4K, 4x8K, 1x32K, 8x32K}, H = 16,
    K = V = 128, bf16;
 3. the GDN forward's state pass alone (`_phases`), the same grid, for BV x warps x stages;
 4. the GDN backward's dh pass alone, the same grid.

    python benchmarks/state_pass_gpu.py --out DIR [--quick] [--budget-s 300]
    python benchmarks/state_pass_gpu.py --cpu-smoke   # interpreter, toy sizes: the plumbing only, no timings

Writes DIR/state_pass.json and DIR/state_pass.md (GPU, versions, command); a run cut short keeps what finished.
Timing: triton.testing.do_bench medians (L2 flushed before every run).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402
import gpu_steps  # noqa: E402
import kernels as kb  # noqa: E402  (benchmarks/kernels.py: bench, FLOP convention, rows)

ROWS: list[dict] = []
INFO: dict = {}
SMOKE = False


def stages_env(stages):
    if stages is None:
        os.environ.pop("HYBRIDSERVE_STATE_STAGES", None)
    else:
        os.environ["HYBRIDSERVE_STATE_STAGES"] = str(stages)


def stages_name(stages):
    """None: every pass at its measured default tile and depth (chunk.default_state_tile, chunk_bwd.default_dh_tile,
    GLA_STATE_STAGES); n: all passes at n stages (HYBRIDSERVE_STATE_STAGES)."""
    return "ours, defaults" if stages is None else f"ours, {stages} stage{'s' if stages > 1 else ''}"


def timed(label, fn, **kw):
    """Median ms (a float), or the error's text; under --cpu-smoke one wall-clock run (kernels.py's stand-in)."""
    return kb._try(label, lambda: kb.bench(fn, **kw))


def add(**r):
    gpu_steps.add(ROWS, **r)


def configs(quick):
    bvs, warps, stages = ((32,), (4,), (1, 2)) if quick else ((16, 32, 64), (4, 8), (1, 2, 3))
    if SMOKE:
        bvs, warps = (16,), (4,)
    return [(bv, w, s) for bv in bvs for w in warps for s in stages]


def check_state_pass(quick):
    """Step 1: every config's output against the 1-stage kernel of the same tile and the float32 reference."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    B, T = (1, 70) if SMOKE else (2, 4096)
    q, k, v, g, beta = chk.gdn_inputs(B, T, seed=11)
    h0 = torch.randn(B, kb.H, kb.K, kb.V, device=kb.DEV) * 0.1
    ro, rs = chk.ref_gdn(q, k, v, g, beta, h0)
    base = {}
    for bv, w, s in configs(quick):
        ht = torch.empty_like(h0)
        o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=h0, final_state=ht, BV_state=bv, num_warps_state=w,
                          num_stages_state=s)
        if s == 1:
            base[bv, w] = (o, ht)
        b_o, b_ht = base[bv, w]
        add(kind="check_state", B=B, T=T, BV=bv, warps=w, stages=s,
            max_diff_vs_1_stage=max(chk.max_abs(o, b_o), chk.max_abs(ht, b_ht)),
            o_rel_rmse_vs_ref=chk.rel_rmse(o, ro), state_rel_rmse_vs_ref=chk.rel_rmse(ht, rs),
            ok=bool(chk.rel_rmse(o, ro) <= 1e-2 and chk.rel_rmse(ht, rs) <= 1e-2))


def check_serving_path():
    """Step 1b: the packed prefill into a state pool (the serving op), 2 and 3 stages vs 1, bit for bit."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    lens = [5, 1, 70, 3] if SMOKE else [1000, 37, 4096, 64, 1]
    slots = torch.tensor([4, -1, 0, 2, 1][:len(lens)], dtype=torch.int32, device=kb.DEV)
    has = torch.tensor([1, 1, 0, 1, 1][:len(lens)], dtype=torch.bool, device=kb.DEV)
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=kb.DEV)
    q, k, v, g, beta = chk.gdn_inputs(1, sum(lens), seed=12)
    for state_dtype in (torch.float32, torch.bfloat16):
        start = (torch.randn(6, kb.H, kb.K, kb.V, device=kb.DEV) * 0.1).to(state_dtype)
        outs = {}
        for s in (1, 2, 3):
            pool = start.clone()
            o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=pool, final_state=pool, state_indices=slots,
                              has_initial_state=has, cu_seqlens=cu, num_stages_state=s)
            outs[s] = (o, pool)
        o1, p1 = outs[1]
        for s in (2, 3):
            o, p = outs[s]
            add(kind="check_serving", state=str(state_dtype)[6:], stages=s, o_equal=bool(torch.equal(o, o1)),
                pool_equal=bool(torch.equal(p, p1)), padding_slot_untouched=bool(torch.equal(p[3], start[3])),
                ok=bool(torch.equal(o, o1) and torch.equal(p, p1) and torch.equal(p[3], start[3])))


def sweep_forward_state(grid, quick):
    """Step 2: the forward's state pass alone."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=5)
        for bv, w, s in configs(quick):
            phases = []
            chunk_gdn_fwd(q, k, v, g, beta, BV_state=bv, num_warps_state=w, num_stages_state=s, _phases=phases)
            launch = dict(phases)["state"]
            res = timed(f"state {B}x{T} BV{bv} w{w} s{s}", launch)
            add(kind="fwd_state", B=B, T=T, BV=bv, warps=w, stages=s, ms=res,
                us_per_chunk_step=res * 1e3 / -(-T // 64) if isinstance(res, float) else None)
            del phases, launch
        del q, k, v, g, beta
        kb.empty_cache()


def sweep_backward_dh(grid, quick):
    """Step 3: the backward's dh pass alone (its re-runs drift dV' in place; the timing does not care)."""
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=6)
        do = torch.randn_like(v)
        for bv, w, s in configs(quick):
            phases = []
            chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, None, do, None, BV_dh=bv, warps_dh=w, stages_dh=s,
                          _phases=phases)
            res = timed(f"dh {B}x{T} BV{bv} w{w} s{s}", dict(phases)["dh"])
            add(kind="bwd_dh", B=B, T=T, BV=bv, warps=w, stages=s, ms=res)
            del phases
        del q, k, v, g, beta, do
        kb.empty_cache()


def whole_ops(grid, fla):
    """Step 4: the public ops at the defaults and with HYBRIDSERVE_STATE_STAGES = 1, 2, 3, fla alongside."""
    kernels = chk.load_kernels()
    impls = [(stages_name(s), s, lambda q, k, v, g, b: kernels.chunk_gated_delta_rule(q, k, v, g, b)[0])
             for s in (None, 1, 2, 3)]
    if fla is not None:
        impls.append(("fla", None, lambda q, k, v, g, b: fla["chunk_gdn"](q, k, v, g, b)[0]))
    for B, T in grid:
        flops = kb.gdn_flops_fwd(B, T)
        for name, s, f in impls:
            stages_env(s)
            xs = chk.gdn_inputs(B, T, seed=2, req=True)
            do = torch.randn_like(xs[2])
            fwd = timed(f"{name} fwd {B}x{T}", lambda: f(*xs))

            def fb():
                f(*xs).backward(do)
            fwdbwd = timed(f"{name} fwd+bwd {B}x{T}", fb, grad_to_none=xs, warmup=5, rep=20)
            r = dict(kind="gdn_op", impl=name, B=B, T=T, fwd_ms=fwd, fwdbwd_ms=fwdbwd)
            if isinstance(fwd, float):
                r["fwd_TFLOPs"] = flops / (fwd * 1e-3) / 1e12
            if isinstance(fwdbwd, float):
                r["fwdbwd_TFLOPs"] = 3 * flops / (fwdbwd * 1e-3) / 1e12
            add(**r)
            del xs, do
            kb.empty_cache()
        for s in (None, 1, 2, 3):
            stages_env(s)
            q, k, v, gk = chk.gla_inputs(B, T, seed=3)
            res = timed(f"gla fwd {B}x{T} s{s}", lambda: kernels.chunk_gla(q, k, v, gk)[0])
            add(kind="gla_op", impl=stages_name(s), B=B, T=T, fwd_ms=res)
            del q, k, v, gk
            kb.empty_cache()
    stages_env(None)


def markdown():
    fmt = kb.fmt
    out = [f"# The sequential chunk passes, pipelined: {INFO.get('gpu')}", "",
           " | ".join(f"{k} {v}" for k, v in INFO.items() if k != "gpu"), ""]
    checks = [r for r in ROWS if r["kind"].startswith("check")]
    if checks:
        out += ["## Correctness", "", "| check | config | result | detail |", "|---|---|---|---|"]
        for r in checks:
            cfg = (f"BV {r['BV']}, {r['warps']} warps, {r['stages']} stages" if r["kind"] == "check_state"
                   else f"{r['state']} pool, {r['stages']} stages")
            detail = (f"max diff vs 1 stage {fmt(r['max_diff_vs_1_stage'])}; rel RMSE vs ref o "
                      f"{fmt(r['o_rel_rmse_vs_ref'])}, state {fmt(r['state_rel_rmse_vs_ref'])}"
                      if r["kind"] == "check_state" else
                      f"o equal {r['o_equal']}, pool equal {r['pool_equal']}, padding slot untouched "
                      f"{r['padding_slot_untouched']}")
            out.append(f"| {r['kind']} | {cfg} | {'PASS' if r['ok'] else '**FAIL**'} | {detail} |")
    for kind, title in (("fwd_state", "GDN forward: the state pass alone (ms)"),
                        ("bwd_dh", "GDN backward: the dh pass alone (ms)")):
        rows = [r for r in ROWS if r["kind"] == kind]
        if not rows:
            continue
        shapes = sorted({(r["B"], r["T"]) for r in rows}, key=lambda x: x[0] * x[1])
        cfgs = sorted({(r["BV"], r["warps"], r["stages"]) for r in rows})
        out += ["", f"## {title}", "", "| BV | warps | stages | " + " | ".join(f"{b}x{t}" for b, t in shapes) + " |",
                "|---|---|---|" + "---|" * len(shapes)]
        cell = {(r["B"], r["T"], r["BV"], r["warps"], r["stages"]): r["ms"] for r in rows}
        for bv, w, s in cfgs:
            out.append(f"| {bv} | {w} | {s} | " + " | ".join(fmt(cell.get((b, t, bv, w, s))) for b, t in shapes)
                       + " |")
    ops = [r for r in ROWS if r["kind"] in ("gdn_op", "gla_op")]
    if ops:
        out += ["", "## The public ops whole (ours at the defaults, or every pass at n stages)", "",
                "| op | impl | B x T | fwd ms | fwd TFLOP/s | fwd+bwd ms | fwd+bwd TFLOP/s |",
                "|---|---|---|---|---|---|---|"]
        for r in ops:
            out.append(f"| {r['kind'][:3]} | {r['impl']} | {r['B']}x{r['T']} | {fmt(r.get('fwd_ms'))} | "
                       f"{fmt(r.get('fwd_TFLOPs'))} | {fmt(r.get('fwdbwd_ms'))} | {fmt(r.get('fwdbwd_TFLOPs'))} |")
    return "\n".join(out) + "\n"


def main():
    global SMOKE
    args = gpu_steps.parser(__doc__, "BV 32, 4 warps, 1-2 stages; two shapes", 420.0).parse_args()
    if args.cpu_smoke:
        SMOKE = True
        kb.setup_cpu_smoke()
    chk.load_kernels()
    fla = None if SMOKE else chk.load_fla(unguarded=True)  # its backward timed despite its triton guard (fla #640)
    INFO.update(gpu_steps.header(SMOKE))
    grid = [(1, 4096), (4, 8192)] if args.quick else [(1, 4096), (4, 8192), (1, 32768), (8, 32768)]
    if SMOKE:
        grid = [(1, 70)]
    # the decision (the ops whole at 1-3 stages) before the sweeps that explain it: a budget cut loses sweeps first
    steps = [("check", lambda: (check_state_pass(args.quick), check_serving_path())),
             ("whole ops", lambda: whole_ops(grid, fla)),
             ("forward state pass", lambda: sweep_forward_state(grid, args.quick)),
             ("backward dh pass", lambda: sweep_backward_dh(grid, args.quick))]
    gpu_steps.run_steps(steps, args.budget_s,
                        lambda: gpu_steps.write(args.out, "state_pass", INFO, ROWS, markdown()))
    print(markdown())
    if not all(r["ok"] for r in ROWS if r["kind"].startswith("check")):
        sys.exit(1)


if __name__ == "__main__":
    main()
