"""Backward timings and the blocked-inverse check on one CUDA GPU; JSON + markdown report.

* GDN chunked forward + backward (H = 16, K = V = 128, bf16) at B x T in {1x4K, 8x32K}: ours (Triton forward, Triton
  backward, through the public differentiable op), fla-core when importable (its Hopper/triton < 3.7.1 guard on the
  backward bypassed, for timing only: fla-org/flash-linear-attention#640) and the chunked PyTorch reference under
  autograd (1x4K only: 8x32K costs ~0.8 s a step). TFLOP/s by shared/gpu/README.md's convention (fwd + bwd =
  3 x 1.83e5 FLOP per token and head), plus our backward alone (chunk_gdn_bwd, which recomputes the forward first).
* GLA the same way (ours: the Triton GLA backward; reference: the chunked PyTorch reference, chunk 16, 1x4K).
* The 16 x 16 blocked (I + A)^-1 of the GDN forward against the row-by-row one (HYBRIDSERVE_GDN_BLOCKED_INVERSE=0)
  and the float32 reference: output / final-state errors and the prep kernel's time, on random keys and on strongly
  correlated keys (what a freshly transferred model produces), bf16 and float32 inputs.

    python benchmarks/kernels_bwd.py --out $OUT [--quick]
    python benchmarks/kernels_bwd.py --cpu-smoke    # toy sizes through the interpreter (plumbing only)

Each measurement is wrapped: a failure becomes a row with its error, the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402
import kernels as kb  # noqa: E402  (bench, _try, row, RESULTS, FLOP convention, CPU smoke)


def load_fla_unguarded():
    fla = chk.load_fla()
    if fla is not None:
        try:  # fla 0.6.0 refuses its gated backward on Hopper with triton < 3.7.1 (fla #640): time it anyway
            import fla.ops.common.chunk_o as _co

            _co.TRITON_ABOVE_3_7_1 = True
        except Exception:
            pass
    return fla


def fwdbwd(kind, impls, make_inputs, grid, flops_fwd=None, ref_max_tokens=4096):
    """Forward and forward + backward of each impl at each (B, T) (do_bench medians, L2 flushed)."""
    for B, T in grid:
        for name, f in impls.items():
            if name.startswith("torch ref") and B * T > ref_max_tokens:
                continue
            xs = make_inputs(B, T)
            do = torch.randn(*xs[2].shape, device=kb.DEV, dtype=xs[2].dtype)
            r = dict(kind=kind, impl=name, B=B, T=T)
            res = kb._try(f"{kind} {name} fwd {B}x{T}", lambda: kb.bench(lambda: f(*xs), warmup=5, rep=20))
            if isinstance(res, float):
                r.update(fwd_ms=res)

            def fb():
                f(*xs).backward(do)
            res = kb._try(f"{kind} {name} fwd+bwd {B}x{T}", lambda: kb.bench(fb, grad_to_none=xs, warmup=3, rep=10))
            if isinstance(res, float):
                r.update(fwdbwd_ms=res, Mtok_s=B * T / (res * 1e-3) / 1e6)
                if flops_fwd is not None:
                    r.update(fwdbwd_TFLOPs=3 * flops_fwd(B, T) / (res * 1e-3) / 1e12)
                if "fwd_ms" in r:
                    r.update(bwd_ms=res - r["fwd_ms"])
            else:
                r.update(error=res)
            kb.row(**r)
            xs = do = None  # free before the next size's inputs (the closures above are done with them)
            kb.empty_cache()


def gdn_bwd_alone(grid):
    """chunk_gdn_bwd by itself (forward recompute + the four backward kernels)."""
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=3)
        do = torch.randn_like(v)
        res = kb._try(f"gdn bwd alone {B}x{T}", lambda: kb.bench(
            lambda: chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, None, do, None), warmup=3, rep=10))
        r = dict(kind="gdn_bwd_alone", impl="ours (chunk_gdn_bwd)", B=B, T=T)
        if isinstance(res, float):
            r.update(bwd_ms=res, bwd_TFLOPs=2 * kb.gdn_flops_fwd(B, T) / (res * 1e-3) / 1e12)
        else:
            r.update(error=res)
        kb.row(**r)
        q = k = v = g = beta = do = None
        kb.empty_cache()


def inverse_check(cases):
    """Blocked vs row-by-row (I + A)^-1 in the GDN chunk forward, against the float32 reference."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    saved = os.environ.get("HYBRIDSERVE_GDN_BLOCKED_INVERSE")
    try:
        for B, T, dtype, keys in cases:
            q, k, v, g, beta = chk.gdn_inputs(B, T, dtype=dtype, seed=9)
            if keys == "correlated":  # every key close to one shared direction: A has entries near beta
                gen = torch.Generator(device=kb.DEV).manual_seed(10)
                base = torch.randn(1, 1, kb.H, kb.K, device=kb.DEV, generator=gen)
                k = F.normalize(base + 0.15 * torch.randn(B, T, kb.H, kb.K, device=kb.DEV, generator=gen),
                                dim=-1).to(dtype)
            h0 = torch.randn(B, kb.H, kb.K, kb.V, device=kb.DEV) * 0.1
            ro, rs = chk.ref_gdn(q, k, v, g, beta, h0)
            outs = {}
            for blocked in ("1", "0"):
                os.environ["HYBRIDSERVE_GDN_BLOCKED_INVERSE"] = blocked
                r = dict(kind="gdn_inverse", B=B, T=T, dtype=str(dtype)[6:], keys=keys,
                         inverse="16x16 blocks" if blocked == "1" else "row by row")
                try:
                    ht = torch.empty(B, kb.H, kb.K, kb.V, device=kb.DEV)
                    phases = []
                    o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=h0, final_state=ht, _phases=phases)
                    outs[blocked] = o
                    r.update(o_rel=chk.rel_rmse(o, ro), state_rel=chk.rel_rmse(ht, rs),
                             finite=bool(torch.isfinite(o).all()))
                    prep = dict(phases).get("prep")
                    if prep is not None:
                        res = kb._try("prep", lambda: kb.bench(prep, warmup=5, rep=20))
                        if isinstance(res, float):
                            r.update(prep_ms=res)
                except Exception as e:  # a row with the error; the other cases still run
                    r.update(error=f"{type(e).__name__}: {str(e)[:150]}")
                if blocked == "0" and len(outs) == 2:
                    r.update(blocked_vs_rows_rel=chk.rel_rmse(outs["1"], outs["0"]))
                kb.row(**r)
            del q, k, v, g, beta, h0, outs
            kb.empty_cache()
    finally:
        if saved is None:
            os.environ.pop("HYBRIDSERVE_GDN_BLOCKED_INVERSE", None)
        else:
            os.environ["HYBRIDSERVE_GDN_BLOCKED_INVERSE"] = saved


def markdown(rows, info) -> str:
    f = kb.fmt
    out = ["# Backward timings and the blocked inverse\n",
           " | ".join(f"{k} {v}" for k, v in info.items()) + "\n"]
    for kind, title in (("gdn_fwdbwd", "GDN chunked forward + backward (H=16, K=V=128, bf16)"),
                        ("gla_fwdbwd", "GLA chunked forward + backward (H=16, K=V=128, bf16)")):
        rs = [r for r in rows if r["kind"] == kind]
        if rs:
            out += [f"## {title}\n", "| B x T | impl | fwd ms | fwd+bwd ms | bwd ms | fwd+bwd TFLOP/s | Mtok/s |",
                    "|---|---|---|---|---|---|---|"]
            out += [f"| {r['B']}x{r['T']} | {r['impl']} | {f(r.get('fwd_ms'))} | "
                    f"{f(r.get('fwdbwd_ms', r.get('error')))} | {f(r.get('bwd_ms'))} | {f(r.get('fwdbwd_TFLOPs'))} | "
                    f"{f(r.get('Mtok_s'))} |" for r in rs]
            out.append("")
    rs = [r for r in rows if r["kind"] == "gdn_bwd_alone"]
    if rs:
        out += ["## GDN backward alone (forward recompute included; TFLOP/s counted as 2 x fwd)\n",
                "| B x T | ms | TFLOP/s |", "|---|---|---|"]
        out += [f"| {r['B']}x{r['T']} | {f(r.get('bwd_ms', r.get('error')))} | {f(r.get('bwd_TFLOPs'))} |" for r in rs]
        out.append("")
    rs = [r for r in rows if r["kind"] == "gdn_inverse"]
    if rs:
        out += ["## GDN (I + A)^-1: 16 x 16 blocks vs row by row (rel RMSE vs the float32 reference)\n",
                "| B x T | dtype | keys | inverse | o | final state | blocks vs rows | prep ms |",
                "|---|---|---|---|---|---|---|---|"]
        out += [f"| {r['B']}x{r['T']} | {r['dtype']} | {r['keys']} | {r['inverse']} | "
                f"{f(r.get('o_rel', r.get('error')))} | {f(r.get('state_rel'))} | {f(r.get('blocked_vs_rows_rel'))} | "
                f"{f(r.get('prep_ms'))} |" for r in rs]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--quick", action="store_true", help="1x4K only")
    ap.add_argument("--budget-s", type=float, default=200.0, help="start no measurement after this many seconds")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    if args.cpu_smoke:
        kb.setup_cpu_smoke()
    import triton

    kernels = chk.load_kernels()
    fla = load_fla_unguarded()
    kb.DEADLINE[0] = time.time() + args.budget_s
    info = dict(device=torch.cuda.get_device_name() if kb.DEV == "cuda" else "CPU (interpreter; numbers meaningless)",
                torch=torch.__version__, triton=triton.__version__, fla=fla is not None)
    grid = [(1, 4096)] if args.quick else [(1, 4096), (8, 32768)]
    gla_grid = [(1, 4096)] if args.quick else [(1, 4096), (4, 8192), (8, 32768)]
    inv_cases = [(1, 4096, torch.bfloat16, "random"), (1, 4096, torch.bfloat16, "correlated"),
                 (1, 4096, torch.float32, "correlated"), (4, 8192, torch.bfloat16, "random")]
    if kb.SMOKE:
        grid = gla_grid = [(1, 70)]
        inv_cases = [(1, 70, torch.bfloat16, "correlated"), (1, 70, torch.float32, "random")]
    from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule
    from hybridserve.kernels.gla.naive import naive_chunk_gla

    gdn = {"ours (Triton fwd + Triton bwd)": lambda *x: kernels.chunk_gated_delta_rule(*x)[0]}
    gla = {"ours (Triton fwd + Triton bwd)": lambda *x: kernels.chunk_gla(*x)[0]}
    if fla is not None:
        gdn["fla (bwd guard bypassed)"] = lambda *x: fla["chunk_gdn"](*x)[0]
        gla["fla chunk_gla"] = lambda *x: fla["chunk_gla"](*x)[0]
    gdn["torch ref (chunked, autograd)"] = lambda *x: naive_chunk_gated_delta_rule(*x)[0]
    gla["torch ref (chunked, autograd)"] = lambda *x: naive_chunk_gla(*x, chunk_size=16)[0]
    t0 = time.time()
    sections = [
        ("GDN fwd+bwd", lambda: fwdbwd("gdn_fwdbwd", gdn, lambda B, T: chk.gdn_inputs(B, T, seed=2, req=True), grid,
                                       kb.gdn_flops_fwd)),
        ("GDN bwd alone", lambda: gdn_bwd_alone(grid)),
        ("blocked inverse", lambda: inverse_check(inv_cases)),
        ("GLA fwd+bwd", lambda: fwdbwd("gla_fwdbwd", gla, lambda B, T: chk.gla_inputs(B, T, seed=4, req=True),
                                       gla_grid)),
    ]
    for name, fn in sections:
        kb._try(name, fn)
        print(f"[{time.time() - t0:.0f} s] {name} done", flush=True)
        md = markdown(kb.RESULTS["rows"], info)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, "kernels_bwd.json").write_text(json.dumps(dict(info=info, rows=kb.RESULTS["rows"]),
                                                                     indent=1))
            Path(args.out, "kernels_bwd.md").write_text(md)
    print("\n" + markdown(kb.RESULTS["rows"], info))


if __name__ == "__main__":
    main()
