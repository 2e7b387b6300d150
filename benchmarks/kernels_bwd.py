"""Backward timings and the blocked-inverse check on one CUDA GPU; JSON + markdown report.

* GDN chunked forward + backward (H = 16, K = V = 128, bf16) at B x T in {1x4K, 8x32K}: ours (Triton forward, Triton
  backward, through the public differentiable op), fla-core when importable (its Hopper/triton < 3.7.1 guard on the
  backward bypassed, for timing only: fla-org/flash-linear-attention#640) and the chunked PyTorch reference under
  autograd (1x4K only: 8x32K costs ~0.8 s a step). TFLOP/s by shared/gpu/README.md's convention (fwd + bwd =
  3 x 1.83e5 FLOP per token and head), plus our backward alone (chunk_gdn_bwd, which recomputes the forward first).
  Ours twice: the default backward (`split` at K = V = 128: K-blocked dqkw, tensor-core wy, dS' in bf16;
  kernels/gated_delta_rule/chunk_bwd_split.py) and the other layout, forced (HYBRIDSERVE_GDN_BWD=fused).
* The GDN backward phase by phase (first, so a short budget still gets it): each of its six kernels (prep = the
  recomputed cumsum, (I + A)^-1, W, U; state = the recomputed per-chunk states; dv_local; dh = the reverse pass;
  dqkw; wy) timed alone on the same buffers (chunk_gdn_bwd's `_phases`), for both layouts at each B x T, with the
  bytes each phase must move (every tensor it reads or writes counted once: a floor, re-reads through L2 not
  counted), the FLOPs of its products, GB/s, TFLOP/s and the time either one alone would need at this GPU's copy
  bandwidth / H200 datasheet peaks (bf16 989, tf32 494, fp32 FMA 67 TFLOP/s): the phase that dominates, and
  whether it is memory- or compute-bound or neither (latency, spills). Autotuned kernels are re-tuned per size;
  the config each picked is in the table. Then the split layout's gradients against the fused ones and the float32
  reference at 1x4K and 2x1000 (the check to pass before making it the default), and a sweep of the V block of
  the two sequential passes (state recompute, dh).
* GLA the same way (ours: the Triton GLA backward; reference: the chunked PyTorch reference, chunk 16, 1x4K).
* The 16 x 16 blocked (I + A)^-1 of the GDN forward against the row-by-row one (HYBRIDSERVE_GDN_BLOCKED_INVERSE=0)
  and the float32 reference: output / final-state errors and the prep kernel's time, on random keys and on strongly
  correlated keys (what a freshly transferred model produces), bf16 and float32 inputs.

    python benchmarks/kernels_bwd.py --out $OUT [--quick]
    python benchmarks/kernels_bwd.py --cpu-smoke    # toy sizes through the interpreter (plumbing only)
    python benchmarks/kernels_bwd.py --static       # no GPU: registers, spills and SASS mix of the backward's
                                                    # kernels compiled for sm_90a (this machine's ptxas)

Each measurement is wrapped: a failure becomes a row with its error, the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
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


def fwdbwd(kind, impls, make_inputs, grid, flops_fwd=None, ref_max_tokens=4096):
    """Forward and forward + backward of each impl at each (B, T) (do_bench medians, L2 flushed). An impl may be
    (fn, {environment variable: value}), set while it runs (e.g. HYBRIDSERVE_GDN_BWD=split)."""
    for B, T in grid:
        for name, f in impls.items():
            if name.startswith("torch ref") and B * T > ref_max_tokens:
                continue
            f, f_env = f if isinstance(f, tuple) else (f, {})
            with env(**f_env):
                fwdbwd_one(kind, name, f, make_inputs, B, T, flops_fwd)
            kb.empty_cache()  # its inputs went with it: free them before the next one's


def fwdbwd_one(kind, name, f, make_inputs, B, T, flops_fwd):
    """One impl at one (B, T): forward, forward + backward; a row either way."""
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


BWD_VARIANTS = ("fused", "split")
PEAK_TFLOPS = {"bf16": 989.0, "tf32": 494.0, "fp32 FMA": 67.0}  # H200 SXM datasheet, dense


@contextlib.contextmanager
def env(**kw):
    saved = {k: os.environ.get(k) for k in kw}
    os.environ.update(kw)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bwd_phase_model(B, T, variant, es=2, inter_es=4, wy="products"):
    """{phase: (bytes, FLOPs, product type)} of chunk_gdn_bwd at H, K, V = kb.H, kb.K, kb.V, element size `es`;
    dV', dW and the partial dK of `inter_es` bytes (2 with the split layout's 16-bit intermediates); `wy`: the split
    layout's WY kernel (HYBRIDSERVE_GDN_WY).

    Bytes: every tensor the phase reads or writes, once (what it must move at least; a kernel that re-reads a tile
    per V block hits L2 or pays more). FLOPs: its products as issued (full 64 x 64 tiles, masks included)."""
    H, K, V, C, f = kb.H, kb.K, kb.V, 64, 4
    n = B * T * H  # token-heads
    nc = B * -(-T // C) * H  # chunk-heads
    split = variant == "split"
    nk = -(-K // min(64, max(16, 1 << (K - 1).bit_length()))) if split else 1
    dh_es = es if split else f
    kv = K * V
    m = {
        # reads k, v, g, beta; writes gcum, w, u, X; the blocked inverse's scratch: A out, 10 of its 16 blocks in, X in
        "prep": (n * ((K + V) * es + 4 + es + 4 + (K + V) * es + C * f * (2 + 10 / 16)),
                 n * 2 * C * (2 * K + V), "bf16"),
        # with the forward's X and G kept: reads k, v, beta, G, X; writes w, u
        "wu": (n * ((K + V) * es + es + 4 + C * f + (K + V) * es), n * 2 * C * (K + V), "bf16"),
        "state": (n * ((2 * K + V) * es + 4 + V * es) + nc * kv * es, n * 4 * kv, "bf16"),
        "dv_local": (n * (2 * K * es + V * es + 4 + V * inter_es), n * 2 * C * (K + V), "bf16"),
        # reads q, k, w, do, gcum, dV' (read and written in place); writes dS' per chunk
        "dh": (n * (3 * K * es + V * es + 4 + 2 * V * inter_es) + nc * kv * dh_es, n * 6 * kv, "bf16"),
    }
    # reads q, k, V', do, gcum, dV', h and dS' per chunk; writes dq, dk_part, dw, dG partials
    dq_bytes = n * (2 * K * es + 2 * V * es + V * inter_es + 4 + K * es + 2 * K * inter_es + nk * 4) + \
        nc * kv * (es + dh_es)
    if split:  # dO V'^T and V' dO^T in every K block
        m["dqkw"] = (dq_bytes, n * (6 * kv + nk * 4 * C * V + 6 * C * K), "bf16")
    else:  # + the P^T scratch tile out and in
        m["dqkw"] = (dq_bytes + n * 2 * C * es, n * (6 * kv + 2 * C * V + 6 * C * K), "bf16")
    # reads k, v, beta, gcum, X, dw, dV', dk_part, dG partials; writes dk, dv, dbeta, dg
    wy_bytes = n * ((K + V) * es + es + 4 + C * f + (2 * K + V) * inter_es + nk * 4 + (K + V) * es + es + 4)
    if split and wy != "products":  # no dX^T, dA^T products; B out to its scratch tile and back transposed
        m["wy"] = (wy_bytes + n * 2 * C * f, n * (2 * C * (4 * K + 2 * V) + 4 * C * C),
                   "bf16" if wy == "scratch-input" else "tf32")
    elif split:
        m["wy"] = (wy_bytes, n * (2 * C * (5 * K + 3 * V) + 8 * C * C), "tf32")
    else:  # everything but K K^T as float32 FMA (input_precision="ieee")
        m["wy"] = (wy_bytes, n * (2 * C * (5 * K + 2 * V) + 4 * C * C), "fp32 FMA")
    return m


def _bwd_autotuned(variant):
    """{phase: autotuned kernel} of one layout."""
    from hybridserve.kernels.gated_delta_rule import chunk_bwd, chunk_bwd_split, chunk_bwd_wy

    if variant == "split":
        wy = (chunk_bwd_wy._gdn_bwd_wy_scratch_kernel if chunk_bwd_wy.wy_variant(kb.K, kb.V) != "products"
              else chunk_bwd_split._gdn_bwd_wy_split_kernel)  # HYBRIDSERVE_GDN_WY
        return {"dqkw": chunk_bwd_split._gdn_bwd_dqkw_split_kernel, "wy": wy}
    return {"dqkw": chunk_bwd._gdn_bwd_dqkw_kernel}


def copy_bandwidth():
    """Device-to-device copy bandwidth (read + write bytes per second), the memory floor's yardstick."""
    if kb.DEV != "cuda":
        return 4.27e12  # the H200 anchor (kernels.py's ceilings); CPU smoke numbers mean nothing anyway
    a = torch.empty(1 << 29, device="cuda", dtype=torch.float16)  # 1 GiB
    b = torch.empty_like(a)
    ms = kb.bench(lambda: b.copy_(a))
    return 2 * (1 << 30) / (ms * 1e-3)


def gdn_bwd_phases(grid, bw):
    """Each backward kernel timed alone (both layouts), with the bytes / FLOP model; plus the whole call. The split
    layout's intermediates as HYBRIDSERVE_GDN_BWD_INTERMEDIATES says (the row's `intermediates`)."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd, grad_intermediates
    from hybridserve.kernels.gated_delta_rule.chunk_bwd_wy import wy_variant

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=3)
        do = torch.randn_like(v)
        for label in BWD_VARIANTS + ("split, inverse kept",):
            variant, kept = label.split(",")[0], label.endswith("kept")
            for kern in _bwd_autotuned(variant).values():  # tune at this size (the key has no T or B)
                getattr(kern, "cache", {}).clear()
            phases = []
            inv = {}
            if kept:  # the training op's forward hands X and G over (gdn_chunk_train)
                _, inv["inverse"], inv["gcum"] = chunk_gdn_fwd(q, k, v, g, beta, kb.K**-0.5, keep_inverse=True)
            res = kb._try(f"gdn bwd {label} {B}x{T}", lambda: chunk_gdn_bwd(
                q, k, v, g, beta, kb.K**-0.5, None, do, None, variant=variant, _phases=phases, **inv))
            if isinstance(res, str):
                kb.row(kind="gdn_bwd_phase", B=B, T=T, variant=label, phase="(call)", error=res)
                continue
            del res
            inter_es = q.element_size() if variant == "split" and grad_intermediates(kb.K, kb.V) == "input" else 4
            model = bwd_phase_model(B, T, variant, es=q.element_size(), inter_es=inter_es, wy=wy_variant(kb.K, kb.V))
            tuned = {name: kb.config_str(getattr(kern, "best_config", None))
                     for name, kern in _bwd_autotuned(variant).items()}
            total = 0.0
            for name, launch in phases:
                t = kb._try(f"phase {name} {variant} {B}x{T}", lambda: kb.bench(launch))
                nbytes, flops, kind = model[name]
                r = dict(kind="gdn_bwd_phase", B=B, T=T, variant=label, intermediates=grad_intermediates(kb.K, kb.V),
                         wy=wy_variant(kb.K, kb.V),
                         phase=name, GB=nbytes / 1e9,
                         TFLOP=flops / 1e12, product=kind, config=tuned.get(name))
                t_mem, t_fl = nbytes / bw * 1e3, flops / (PEAK_TFLOPS[kind] * 1e12) * 1e3
                r.update(floor_ms=max(t_mem, t_fl), bound="memory" if t_mem >= t_fl else "compute")
                if isinstance(t, float):
                    total += t
                    r.update(ms=t, GBps=nbytes / (t * 1e-3) / 1e9, TFLOPs=flops / (t * 1e-3) / 1e12,
                             x_floor=t / r["floor_ms"])
                else:
                    r.update(error=t)
                kb.row(**r)
            whole = kb._try(f"gdn bwd alone {label} {B}x{T}", lambda: kb.bench(
                lambda: chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, None, do, None, variant=variant, **inv),
                warmup=3, rep=10))
            r = dict(kind="gdn_bwd_alone", impl=f"ours ({label})", B=B, T=T, phases_sum_ms=total)
            if isinstance(whole, float):
                r.update(bwd_ms=whole, bwd_TFLOPs=2 * kb.gdn_flops_fwd(B, T) / (whole * 1e-3) / 1e12)
            else:
                r.update(error=whole)
            kb.row(**r)
            phases = inv = None
            kb.empty_cache()
        q = k = v = g = beta = do = None
        kb.empty_cache()


def split_check(cases):
    """The split layout's gradients against the fused layout's and the float32 chunked reference (autograd)."""
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd
    from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule

    names = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]
    for B, T in cases:
        q, k, v, g, beta = xs = chk.gdn_inputs(B, T, seed=6)
        h0, do, dht, _, ref = chk.reference_pullback(xs, naive_chunk_gated_delta_rule, seed=7)
        grads = {}
        for variant in BWD_VARIANTS:
            r = dict(kind="gdn_split_check", B=B, T=T, variant=variant)
            try:
                grads[variant] = chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, h0, do, dht, variant=variant)
                for name, got, want in zip(names, grads[variant], ref):
                    r[name] = chk.rel_rmse(got, want) if bool(torch.isfinite(got).all()) else float("nan")
            except Exception as e:
                r.update(error=f"{type(e).__name__}: {str(e)[:150]}")
            kb.row(**r)
        if len(grads) == 2:
            kb.row(kind="gdn_split_check", B=B, T=T, variant="split vs fused",
                   **{n: chk.rel_rmse(a, b) for n, a, b in zip(names, grads["split"], grads["fused"])})
        del q, k, v, g, beta, do, h0, dht, xs, ref, grads
        kb.empty_cache()


def dh_block_sweep(grid):
    """V block of the sequential passes (state recompute, dh): more blocks = more programs, each re-reading K."""
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    for B, T in grid:
        q, k, v, g, beta = chk.gdn_inputs(B, T, seed=8)
        do = torch.randn_like(v)
        for bv in (16, 32, 64):
            phases = []
            res = kb._try(f"dh sweep BV={bv}", lambda: chunk_gdn_bwd(
                q, k, v, g, beta, kb.K**-0.5, None, do, None, variant="split", BV_dh=bv, _phases=phases))
            r = dict(kind="gdn_dh_sweep", B=B, T=T, BV=bv)
            if isinstance(res, str):
                r.update(error=res)
            for name, launch in phases:
                if name in ("state", "dh"):
                    r[f"{name}_ms"] = kb._try(f"{name} BV={bv}", lambda: kb.bench(launch))
            kb.row(**r)
            res = phases = None
        q = k = v = g = beta = do = None
        kb.empty_cache()


def static_report(dims=(16, 128, 128)):
    """The backward's kernels compiled for sm_90a (no GPU): registers, spill bytes, shared memory and the static
    SASS mix (HGMMA = tensor-core products, FFMA = float32 FMAs, LDL/STL = spill traffic)."""
    import re
    import subprocess
    import tempfile
    from collections import Counter

    import triton

    from hybridserve.kernels._compile_check import compile_one
    from hybridserve.kernels.gated_delta_rule import chunk_bwd as gb
    from hybridserve.kernels.gated_delta_rule import chunk_bwd_split as gs

    H, K, V = dims
    bk, bv = min(64, max(16, triton.next_power_of_2(K))), min(64, max(16, triton.next_power_of_2(V)))
    kf = max(16, triton.next_power_of_2(K))
    nvdisasm = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "nvdisasm"
    dt, common = "bf16", dict(T="i32", NTs="i32", N="i32")
    sig3 = dict(q=f"*{dt}", k=f"*{dt}", vnew=f"*{dt}", do=f"*{dt}", gcum="*fp32", hbuf=f"*{dt}", dhbuf="*fp32",
                dv="*fp32", dq=f"*{dt}", dk="*fp32", dw="*fp32", dg="*fp32", ptmp=f"*{dt}", scale="fp32", **common)
    sig4 = dict(k=f"*{dt}", v=f"*{dt}", beta=f"*{dt}", gcum="*fp32", Xbuf="*fp32", dw="*fp32", dv="*fp32",
                dk_part="*fp32", dg_part="*fp32", dk=f"*{dt}", dvout=f"*{dt}", dbeta=f"*{dt}", dg="*fp32", **common)
    sigdh = dict(q=f"*{dt}", k=f"*{dt}", w=f"*{dt}", do=f"*{dt}", gcum="*fp32", dv="*fp32", dht="*fp32",
                 dh0="*fp32", scale="fp32", T="i32", NTs="i32")
    shape = dict(H=H, K=K, V=V, BT=64, DOT_PREC="tf32")
    todo = [(f"fused dqkw {kb.config_str(c)}", gb._gdn_bwd_dqkw_kernel, sig3, dict(shape, BK=kf, **c.kwargs),
             c.num_warps, c.num_stages) for c in gb._dqk_configs()]
    todo.append(("fused wy w8 s1", gb._gdn_bwd_wy_kernel, sig4, dict(shape, BK=bk, BV=bv), 8, 1))
    todo += [(f"split dqkw {kb.config_str(c)}", gs._gdn_bwd_dqkw_split_kernel, dict(sig3, dhbuf=f"*{dt}", TTH="i32"),
              dict(shape, BK=gs.split_block_k(K), **c.kwargs), c.num_warps, c.num_stages) for c in gs._dqkw_configs()]
    todo += [(f"split wy {kb.config_str(c)}", gs._gdn_bwd_wy_split_kernel, dict(sig4, TTH="i32"),
              dict(shape, BK=bk, BV=bv, NK=-(-K // gs.split_block_k(K))), c.num_warps, c.num_stages)
             for c in gs._wy_configs()]
    todo += [(f"dh dS'={d} BV=32", gb._gdn_bwd_dh_kernel, dict(sigdh, dhbuf=f"*{d}"),
              dict(shape, BK=kf, BV=min(32, bv), USE_DHT=False, STORE_DH0=False), 4, 1) for d in ("fp32", dt)]
    for name, kern, sig, ce, nw, ns in todo:
        r = dict(kind="gdn_bwd_static", kernel=name, dims=f"{H},{K},{V}")
        try:
            compiled, regs, spills = compile_one(kern, sig, ce, nw, ns)
            r.update(regs=regs, spill_B=spills, smem_B=compiled.metadata.shared)
            if nvdisasm.exists():
                with tempfile.TemporaryDirectory() as d:
                    p = Path(d, "k.cubin")
                    p.write_bytes(compiled.asm["cubin"])
                    sass = subprocess.run([str(nvdisasm), str(p)], capture_output=True, text=True).stdout
                ops = Counter(m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9]*)",
                                                              sass))
                r.update({op: ops.get(op, 0) for op in ("HGMMA", "HMMA", "FFMA", "LDL", "STL", "LDG", "STG")})
        except Exception as e:
            r.update(error=f"{type(e).__name__}: {str(e)[:150]}")
        kb.row(**r)


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


def phase_tables(rows, f) -> list:
    out = []
    rs = [r for r in rows if r["kind"] == "gdn_bwd_phase"]
    alone = {(r["B"], r["T"], r["impl"]): r for r in rows if r["kind"] == "gdn_bwd_alone"}
    if rs:
        out += ["## GDN backward, kernel by kernel (ms, L2 flushed before each; H=16, K=V=128, bf16)\n",
                "GB: bytes the phase must move (each tensor once); floor: that at the copy bandwidth, or the FLOPs at "
                "the datasheet peak of its product type, whichever is larger (bound); × floor: how far above it the "
                "kernel runs (≫ 1: latency, spills, low occupancy or re-reads, not bandwidth or FLOPs).\n",
                "| B x T | layout | phase | ms | share | GB | GB/s | TFLOP | TFLOP/s | product | floor ms | bound | "
                "× floor | config |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key in dict.fromkeys((r["B"], r["T"], r["variant"]) for r in rs):
            group = [r for r in rs if (r["B"], r["T"], r["variant"]) == key]
            tot = sum(r.get("ms", 0.0) for r in group)
            for r in group:
                share = 100 * r["ms"] / tot if tot and "ms" in r else None
                out.append(f"| {r['B']}x{r['T']} | {r['variant']} | {r['phase']} | {f(r.get('ms', r.get('error')))} | "
                           f"{f(share, '.0f')}{'%' if share is not None else ''} | {f(r.get('GB'))} | "
                           f"{f(r.get('GBps'), '.0f')} | {f(r.get('TFLOP'))} | {f(r.get('TFLOPs'))} | "
                           f"{r.get('product', '')} | {f(r.get('floor_ms'))} | {r.get('bound', '')} | "
                           f"{f(r.get('x_floor'), '.1f')} | {f(r.get('config'))} |")
            a = alone.get((key[0], key[1], f"ours ({key[2]})"), {})
            out.append(f"| {key[0]}x{key[1]} | {key[2]} | **sum / whole call** | **{f(tot)}** / "
                       f"{f(a.get('bwd_ms', a.get('error')))} | | | | | {f(a.get('bwd_TFLOPs'))} (2×fwd) | | | | | |")
        out.append("")
    rs = [r for r in rows if r["kind"] == "gdn_split_check"]
    if rs:
        names = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]
        out += ["## Split layout: gradients vs the float32 reference (rel RMSE; bf16 inputs, h0 and dht given; "
                "fla's tolerances dq/dk/dv/dh0 8e-3, dg/dbeta 2e-2)\n",
                "| B x T | layout | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        out += [f"| {r['B']}x{r['T']} | {r['variant']} | " + (" | ".join(f(r.get(n)) for n in names) if "error" not in r
                                                               else f(r["error"])) + " |" for r in rs]
        out.append("")
    rs = [r for r in rows if r["kind"] == "gdn_dh_sweep"]
    if rs:
        out += ["## Sequential passes: V block (split layout; programs = B·H·V/BV, each walks all chunks)\n",
                "| B x T | BV | state ms | dh ms |", "|---|---|---|---|"]
        out += [f"| {r['B']}x{r['T']} | {r['BV']} | {f(r.get('state_ms', r.get('error')))} | {f(r.get('dh_ms'))} |"
                for r in rs]
        out.append("")
    rs = [r for r in rows if r["kind"] == "gdn_bwd_static"]
    if rs:
        ops = ["HGMMA", "HMMA", "FFMA", "LDL", "STL", "LDG", "STG"]
        out += ["## Backward kernels compiled for sm_90a (static: registers, spills, SASS instruction counts)\n",
                "| kernel | dims | regs | spill B | smem B | " + " | ".join(ops) + " |", "|---|---|---|---|---|" +
                "---|" * len(ops)]
        out += [f"| {r['kernel']} | {r['dims']} | {f(r.get('regs', r.get('error')))} | {f(r.get('spill_B'))} | "
                f"{f(r.get('smem_B'))} | " + " | ".join(f(r.get(o)) for o in ops) + " |" for r in rs]
        out.append("")
    return out


def markdown(rows, info) -> str:
    f = kb.fmt
    out = ["# Backward timings and the blocked inverse\n",
           " | ".join(f"{k} {v}" for k, v in info.items()) + "\n"]
    out += phase_tables(rows, f)
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
                "| B x T | layout | ms | TFLOP/s | sum of its kernels timed alone, ms |", "|---|---|---|---|---|"]
        out += [f"| {r['B']}x{r['T']} | {r['impl']} | {f(r.get('bwd_ms', r.get('error')))} | {f(r.get('bwd_TFLOPs'))}"
                f" | {f(r.get('phases_sum_ms'))} |" for r in rs]
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


SECTIONS = ("phases", "check", "fwdbwd", "vblock", "inverse", "gla")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--quick", action="store_true", help="1x4K only")
    ap.add_argument("--budget-s", type=float, default=200.0, help="start no measurement after this many seconds")
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--no-ref", action="store_true", help="leave the PyTorch references out of the fwd+bwd rows")
    ap.add_argument("--shapes", default="", help="B x T list for every section instead of its own grid (e.g. "
                    "8x32768,1x4096)")
    ap.add_argument("--impls", default="", help="fwd+bwd rows: only those whose name contains one of these "
                    "comma-separated words (e.g. default,fla: a short job skips the fused layout's ~100 ms row)")
    ap.add_argument("--static", action="store_true", help="only the sm_90a compile report (needs no GPU)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"which measurements, in this order: {','.join(SECTIONS)} (e.g. fwdbwd for the fla comparison "
                         "alone, which a short budget otherwise never reaches at 8x32K)")
    args = ap.parse_args()
    if args.cpu_smoke:
        kb.setup_cpu_smoke()
    import triton

    if args.static:
        static_report()
        md = "\n".join(phase_tables(kb.RESULTS["rows"], kb.fmt))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, "kernels_bwd_static.md").write_text(md)
        print("\n" + md)
        return

    kernels = chk.load_kernels()
    fla = chk.load_fla(unguarded=True)
    kb.DEADLINE[0] = time.time() + args.budget_s
    info = dict(device=torch.cuda.get_device_name() if kb.DEV == "cuda" else "CPU (interpreter; numbers meaningless)",
                torch=torch.__version__, triton=triton.__version__, fla=fla is not None)
    grid = [(1, 4096)] if args.quick else [(1, 4096), (8, 32768)]
    gla_grid = [(1, 4096)] if args.quick else [(1, 4096), (4, 8192), (8, 32768)]
    inv_cases = [(1, 4096, torch.bfloat16, "random"), (1, 4096, torch.bfloat16, "correlated"),
                 (1, 4096, torch.float32, "correlated"), (4, 8192, torch.bfloat16, "random")]
    check_cases = [(1, 4096), (2, 1000)]
    if kb.SMOKE:
        grid = gla_grid = [(1, 70)]
        inv_cases = [(1, 70, torch.bfloat16, "correlated"), (1, 70, torch.float32, "random")]
        check_cases = [(2, 70)]
    if args.shapes:
        try:
            grid = gla_grid = [tuple(int(n) for n in item.lower().split("x")) for item in args.shapes.split(",")]
            assert all(len(s) == 2 and min(s) > 0 for s in grid)
        except (ValueError, AssertionError):
            raise SystemExit(f"--shapes {args.shapes!r}: expected B x T items such as 8x32768,1x4096")
    from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule
    from hybridserve.kernels.gla.naive import naive_chunk_gla

    # (the default backward is `split` at K = V = 128 since session 4, its WY kernel `scratch-input` since session 16:
    # the other rows time the alternatives)
    ours_gdn = lambda *x: kernels.chunk_gated_delta_rule(*x)[0]  # noqa: E731
    gdn = {"ours (Triton fwd + default Triton bwd)": ours_gdn,
           "ours (Triton fwd + fused Triton bwd)": (ours_gdn, {"HYBRIDSERVE_GDN_BWD": "fused"}),
           "ours (wy by products)": (ours_gdn, {"HYBRIDSERVE_GDN_WY": "products"}),
           "ours (wy by scratch, TF32 operands)": (ours_gdn, {"HYBRIDSERVE_GDN_WY": "scratch"})}
    # the forward's state + output routes (chunk_state_out.state_out_route; the default: "fused-x-aqk" at N x H >= 64)
    for route in ("split", "fused-aqk", "fused-x", "fused-x-aqk"):
        gdn[f"ours (state+out route {route})"] = (ours_gdn, {"HYBRIDSERVE_GDN_STATE_OUT": route})
    # (the backward's intra dQ, dK by levels is the default at K = V = 128 since session 16)
    gla = {"ours (Triton fwd + default Triton bwd)": lambda *x: kernels.chunk_gla(*x)[0],
           "ours (bwd intra by columns)": (lambda *x: kernels.chunk_gla(*x)[0],
                                           {"HYBRIDSERVE_GLA_BWD_INTRA": "columns"})}
    if fla is not None:
        gdn["fla (bwd guard bypassed)"] = lambda *x: fla["chunk_gdn"](*x)[0]
        gla["fla chunk_gla"] = lambda *x: fla["chunk_gla"](*x)[0]
    if not args.no_ref:
        gdn["torch ref (chunked, autograd)"] = lambda *x: naive_chunk_gated_delta_rule(*x)[0]
        gla["torch ref (chunked, autograd)"] = lambda *x: naive_chunk_gla(*x, chunk_size=16)[0]
    words = [w.strip() for w in args.impls.split(",") if w.strip()]
    if words:
        gdn = {n: f for n, f in gdn.items() if any(w in n for w in words)}
        gla = {n: f for n, f in gla.items() if any(w in n for w in words)}
    t0 = time.time()
    bw = kb._try("copy bandwidth", copy_bandwidth)
    info.update(copy_TBps=round(bw / 1e12, 2) if isinstance(bw, float) else bw)
    bw = bw if isinstance(bw, float) else 4.27e12
    sections = {
        "phases": ("GDN bwd phases (both layouts)", lambda: gdn_bwd_phases(grid, bw)),
        "check": ("GDN split-layout check", lambda: split_check(check_cases)),
        "fwdbwd": ("GDN fwd+bwd", lambda: fwdbwd("gdn_fwdbwd", gdn, lambda B, T: chk.gdn_inputs(B, T, seed=2, req=True),
                                                 grid, kb.gdn_flops_fwd)),
        "vblock": ("GDN sequential-pass V block", lambda: dh_block_sweep(grid[-1:])),
        "inverse": ("blocked inverse", lambda: inverse_check(inv_cases)),
        "gla": ("GLA fwd+bwd", lambda: fwdbwd("gla_fwdbwd", gla, lambda B, T: chk.gla_inputs(B, T, seed=4, req=True),
                                              gla_grid)),
    }
    chosen = [key.strip() for key in args.sections.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in sections]
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for name, fn in (sections[key] for key in chosen):
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
