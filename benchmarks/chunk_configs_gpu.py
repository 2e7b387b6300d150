"""The GDN and GLA chunk kernels' tunable configs, one at a time: each checked, then timed alone.

An autotuner keeps the fastest of its configs and says nothing about the others, and the checks only ever run the
winner. Here every candidate config of a kernel is pinned in turn (the autotuner given that one config) and
  * checked at a small size with partial chunks and an initial state against the float32 PyTorch reference
    (relative RMSE): a backward kernel by the whole split backward's gradients (with a final-state gradient too;
    tolerance 2e-2, the GPU checks'), a forward kernel by the forward's output and final state (1e-2); so that a
    config miscompiled by this Triton / ptxas is named before it can win an autotune;
  * timed: that kernel alone at a large size (L2 flushed; the GDN backward with the forward's inverse kept, as the
    training op runs it).
A check that never launched the pinned kernel is an error, not a pass; kernels that are one of several choices (the
WY kernel, GLA's level kernels) run with their switch set, whatever the head dims' default.
Candidates: the backward's WY kernel (chunk_bwd_wy.py: block, warps, pipelining depth, register cap), dqkw kernel
(chunk_bwd_split.py: V block, depth, dK transposed (DK_T), register cap), dV'_intra (V block, warps, depth) and dh
reverse pass (V block, depth, warps: launch arguments, not an autotuner); the forward's prep (warps, depth, register
cap, LOWER_ONLY), out kernel (V block, warps, depth, register cap) and state pass with the output fused in
(chunk_state_out.py: V block, warps, depth; launch arguments); GLA's level kernels (forward and backward), out
kernel, forward state pass (tile, warps, depth: launch arguments) and backward inter kernel. Registers and spills of
each config compiled for sm_90a: `python -m hybridserve.kernels._compile_check` (no GPU needed).

    python benchmarks/chunk_configs_gpu.py --out $OUT [--shape 8x32768] [--kernels wy,dqkw,dv_local,dh,prep,out,...]
    python benchmarks/chunk_configs_gpu.py --cpu-smoke     # the plumbing, through the interpreter

Writes chunk_configs.json and chunk_configs.md under --out. Exit status 0 whatever a config does (a report).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check_kernels_gpu as chk  # noqa: E402
import kernels as kb  # noqa: E402  (bench, _try, row, RESULTS, CPU smoke)
from kernels_bwd import env  # noqa: E402  (an environment variable set for a while)

TOL = {"bwd": 2e-2, "fwd": 1e-2}  # the GPU checks' tolerances against the float32 reference
NAMES = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]

# Candidates (the seventeenth session's jobs 1 and 2 swept wider: kernels.md has their tables). WY kernel: (BK = BV,
# num_warps, num_stages, maxnreg); the winner there BK 64 x 4 warps x 3 stages (4.29 ms at 8 x 32K; BK 32 x 4 warps
# 5.2-6.9). sm_90a (triton 3.7.1's ptxas, bf16 operands, K = V = 128): BK 64 x 4 warps 252-255 registers at 2-4
# stages, no spills; x 8 warps x 3 stages 236 (one program per SM), at 128 it spills 224 B (two); BK 64 x 4 warps
# capped at 168 spills 216 B (three).
WY_CANDIDATES = [(64, 4, 3, None), (64, 4, 2, None), (64, 4, 4, None), (64, 8, 3, None), (64, 8, 3, 128),
                 (32, 4, 3, 168)]
# dqkw kernel: (BV, num_stages, EARLY_QK, DK_T, maxnreg), 8 warps. sm_90a: DK_T 166 registers at BV 64 x 2-3 stages;
# capped at 128 (two 8-warp programs per SM) it spills 8 B; without DK_T the cap spills 180 B.
DQKW_CANDIDATES = [(64, 2, False, True, 128), (64, 3, False, True, 128), (64, 3, False, True, None),
                   (64, 2, False, False, None)]
# dV'_intra: (BV, num_warps, num_stages)
DV_LOCAL_CANDIDATES = [(128, 4, 3), (128, 4, 4), (128, 8, 4)]
# dh reverse pass: (BV, num_stages, num_warps); the default is chunk_bwd.default_dh_tile's (at 8 x 32K BV 64, 1 stage,
# 4 warps since the seventeenth session; BV 32 x 2 stages before: 512 programs at two per SM)
DH_CANDIDATES = [(32, 2, 4), (64, 2, 4), (64, 1, 4), (64, 3, 4)]
# The forward. prep: (num_warps, num_stages, maxnreg, LOWER_ONLY); sm_90a (bf16, K = V = 128, blocked inverse by
# doubling): 4 warps 164 registers at 2-3 stages (three programs per SM), 128 with the cap and no spills (four); 8
# warps 128. The seventeenth session's job 4 timed the capped ones fastest (2.70 ms at 8 x 32K, 3.07 uncapped).
# LOWER_ONLY (no GPU run yet): the scratch round trip of (I + A)^-1 skips the zero blocks above the diagonal, 12 of
# 58 KB of L1 traffic per chunk; the same registers.
PREP_CANDIDATES = [(4, 2, 128, False), (4, 3, 128, False), (4, 2, 128, True), (4, 3, 128, True), (4, 1, 128, True)]
# out: (BV, num_warps, num_stages, maxnreg); sm_90a: BV 64 x 4 warps 146 registers (three per SM), capped at 128 no
# spills (four); BV 128 x 8 warps 180.
OUT_CANDIDATES = [(64, 4, 2, None), (64, 4, 2, 128), (64, 4, 3, 128), (64, 8, 2, None), (128, 8, 2, None)]
# GLA (chunk.py, chunk_bwd.py). Level kernels: (BK, num_warps), 1 stage (the forward's at BK 64 x 16 warps; the
# backward's spills there). out: (BV, num_warps, num_stages, maxnreg); sm_90a 85-102 registers, no cap needed. The
# backward's inter kernel: (num_warps, num_stages, maxnreg); 8 warps 175-180 registers (one program per SM), capped
# at 128 it spills 112 B (two); 4 warps 255 and 192 B.
GLA_INTRA_CANDIDATES = [(32, 8), (16, 8), (32, 16), (64, 16)]
GLA_OUT_CANDIDATES = [(64, 4, 2, None), (32, 4, 2, None), (64, 8, 2, None), (128, 8, 2, None), (64, 4, 3, None)]
GLA_BWD_INTRA_CANDIDATES = [(32, 8), (16, 8), (32, 16)]
GLA_BWD_INTER_CANDIDATES = [(8, 2, None), (8, 1, None), (8, 3, None), (8, 2, 128), (8, 1, 128)]
# GLA's forward state pass: (BK, BV, num_warps, num_stages), launch arguments; chunk.default_state_blocks gives
# BK = BV = 64 at 8 x 32K (512 programs) and BV 16 for one sequence (1 x 32K, where GLA's forward is 0.75x fla's),
# 8 warps at 64 x 64, 3 stages (GLA_STATE_STAGES)
GLA_STATE_CANDIDATES = [(64, 64, 8, 3), (64, 64, 8, 2), (64, 32, 4, 3), (32, 64, 4, 3), (32, 32, 4, 3),
                        (64, 16, 4, 3)]
# GDN's state pass with the output fused in (chunk_state_out.py; HYBRIDSERVE_GDN_STATE_OUT=fused): (BV, num_warps,
# num_stages), launch arguments; sm_90a (bf16, K = V = 128): 255 registers in every tile, BV 64 x 8 warps x 2 stages
# spilling 152 B, BV 32 x 4 warps 36 B, BV 128 1.3 KB. Eighteenth session, 8 x 32K: BV 32 x 4 warps x 2 stages 3.53
# ms, the others 1.3-4x slower (the split route's state + out: 3.75 ms); the default first, then its neighbours. BV
# 32 x 4 warps x 1 stage stopped its check on an illegal memory access (a sticky CUDA error: the candidates after it
# could not run), so it is not in the list (chunk_state_out.STATE_OUT_TILES).
STATE_OUT_CANDIDATES = [(32, 4, 2), (32, 2, 2), (16, 4, 2), (16, 2, 2), (64, 4, 3), (32, 4, 3)]
# The same with the in-chunk attention made by the prep ("fused-aqk"): sm_90a 218 registers at BV 32 x 4 warps, no
# spills; BV 64 x 8 warps 255, none; BV 64 x 4 warps 255, 196 B; BV 16 x 4 warps 153. prep_aqk: the prep's configs
# on that route (at 4 warps capped at 128 registers it spills 4-40 B; 8 warps 127 registers, none). Eighteenth
# session, 8 x 32K: BV 64 x 4 warps 2.75 ms, 8 warps 3.59, BV 32 4.43, BV 16 7.62; the prep 3.12 (2.66 without).
STATE_OUT_AQK_CANDIDATES = [(64, 4, 2), (64, 8, 2), (32, 4, 2), (16, 4, 2), (64, 4, 3)]
# V' from X ("fused-x", "fused-x-aqk"; the prep makes no W, U): sm_90a BV 32 x 4 warps 255 registers, 168 B spilled
# (4-12 B with the prep's attention); BV 64 x 8 warps 408 (64); BV 16 x 4 warps fewer. Nineteenth session:
# fused-x-aqk BV 64 x 4 warps 2.44 ms at 8 x 32K (BV 32 3.51), BV 32 0.424 at 4 x 8K (BV 64 0.512).
STATE_OUT_X_CANDIDATES = [(32, 4, 2), (64, 8, 2), (16, 4, 2), (64, 4, 2), (32, 4, 3)]
# the fused pass's sweeps: {kernel: (HYBRIDSERVE_GDN_STATE_OUT, tiles)}
STATE_OUT_SWEEPS = {"state_out": ("fused", STATE_OUT_CANDIDATES),
                    "state_out_aqk": ("fused-aqk", STATE_OUT_AQK_CANDIDATES),
                    "state_out_x": ("fused-x", STATE_OUT_X_CANDIDATES),
                    "state_out_x_aqk": ("fused-x-aqk", STATE_OUT_X_CANDIDATES)}
KERNELS = ("wy", "dqkw", "dv_local", "dh", "prep", "out", "state_out", "prep_aqk", "state_out_aqk", "prep_x",
           "state_out_x", "prep_x_aqk", "state_out_x_aqk", "gla_intra", "gla_out", "gla_state", "gla_bwd_intra",
           "gla_bwd_inter")
FORWARD = ("prep", "out", "state_out", "prep_aqk", "state_out_aqk", "prep_x", "state_out_x", "prep_x_aqk",
           "state_out_x_aqk", "gla_intra", "gla_out", "gla_state")
# kernels timed on another route: {name: the phase chunk_gdn_fwd reports}
PHASE_OF = {"prep_aqk": "prep", "prep_x": "prep", "prep_x_aqk": "prep", "state_out_aqk": "state_out",
            "state_out_x": "state_out", "state_out_x_aqk": "state_out"}
# {kernel: (switch, value)} of kernels that are one of several choices (the default at K = V = 128)
ROUTES = {"wy": ("HYBRIDSERVE_GDN_WY", "scratch-input"), "prep_aqk": ("HYBRIDSERVE_GDN_STATE_OUT", "fused-aqk"),
          "prep_x": ("HYBRIDSERVE_GDN_STATE_OUT", "fused-x"),
          "prep_x_aqk": ("HYBRIDSERVE_GDN_STATE_OUT", "fused-x-aqk"),
          "gla_intra": ("HYBRIDSERVE_GLA_INTRA", "levels"),
          "gla_bwd_intra": ("HYBRIDSERVE_GLA_BWD_INTRA", "levels")}


def autotuned(name):
    """(kernel, [(label, triton.Config)]) of one autotuned phase."""
    import triton

    from hybridserve.kernels.gated_delta_rule import chunk, chunk_bwd, chunk_bwd_split, chunk_bwd_wy
    from hybridserve.kernels.gla import chunk as gla, chunk_bwd as gla_bwd

    def reg(r):
        return {"maxnreg": r} if r else {}
    if name == "wy":
        return chunk_bwd_wy._gdn_bwd_wy_scratch_kernel, [
            (f"BK={bk} w{w} s{s}" + (f" maxnreg={r}" if r else ""),
             triton.Config({"BK": bk, "BV": bk}, num_warps=w, num_stages=s, **reg(r)))
            for bk, w, s, r in WY_CANDIDATES]
    if name == "dqkw":
        return chunk_bwd_split._gdn_bwd_dqkw_split_kernel, [
            (f"BV={bv} s{s} EARLY_QK={int(e)} DK_T={int(t)}" + (f" maxnreg={r}" if r else ""),
             triton.Config({"BV": bv, "EARLY_QK": e, "DK_T": t}, num_warps=8, num_stages=s, **reg(r)))
            for bv, s, e, t, r in DQKW_CANDIDATES]
    if name in ("gla_intra", "gla_bwd_intra"):
        kern = gla._gla_chunk_intra_levels_kernel if name == "gla_intra" else gla_bwd._gla_bwd_intra_levels_kernel
        table = GLA_INTRA_CANDIDATES if name == "gla_intra" else GLA_BWD_INTRA_CANDIDATES
        return kern, [(f"BK={bk} w{w}", triton.Config({"BK": bk}, num_warps=w, num_stages=1)) for bk, w in table]
    if name == "gla_out":
        return gla._gla_chunk_out_kernel, [
            (f"BV={bv} w{w} s{s}" + (f" maxnreg={r}" if r else ""),
             triton.Config({"BV": bv}, num_warps=w, num_stages=s, **reg(r)))
            for bv, w, s, r in GLA_OUT_CANDIDATES]
    if name == "gla_bwd_inter":
        return gla_bwd._gla_bwd_inter_kernel, [
            (f"w{w} s{s}" + (f" maxnreg={r}" if r else ""), triton.Config({}, num_warps=w, num_stages=s, **reg(r)))
            for w, s, r in GLA_BWD_INTER_CANDIDATES]
    if name.startswith("prep"):
        return chunk._gdn_chunk_prep_kernel, [
            (f"w{w} s{s}" + (f" maxnreg={r}" if r else "") + (" LOWER_ONLY" if lo else ""),
             triton.Config({"LOWER_ONLY": lo}, num_warps=w, num_stages=s, **reg(r)))
            for w, s, r, lo in PREP_CANDIDATES]
    if name == "out":
        return chunk._gdn_chunk_out_kernel, [
            (f"BV={bv} w{w} s{s}" + (f" maxnreg={r}" if r else ""),
             triton.Config({"BV": bv}, num_warps=w, num_stages=s, **reg(r)))
            for bv, w, s, r in OUT_CANDIDATES]
    return chunk_bwd._gdn_bwd_dv_local_kernel, [
        (f"BV={bv} w{w} s{s}", triton.Config({"BV": bv}, num_warps=w, num_stages=s))
        for bv, w, s in DV_LOCAL_CANDIDATES]


def reference(B, T):
    """Inputs (with h0, dht) and the float32 reference's {"fwd": (o, final state), "bwd": gradients}."""
    from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule

    xs = chk.gdn_inputs(B, T, seed=11)
    h0, do, dht, fwd, grads = chk.reference_pullback(xs, naive_chunk_gated_delta_rule, seed=12)
    return (*xs, h0, do, dht), dict(fwd=fwd, bwd=grads)


def reference_gla(B, T):
    """GLA inputs (with h0, dht) and the float32 chunked reference's {"fwd": (o, final state), "bwd": gradients}."""
    from hybridserve.kernels.gla.naive import naive_chunk_gla

    xs = chk.gla_inputs(B, T, seed=13)
    h0, do, dht, fwd, grads = chk.reference_pullback(xs, naive_chunk_gla, seed=14)
    return (*xs, h0, do, dht), dict(fwd=fwd, bwd=grads)


def check_gla(case, ref, forward, **tiles):
    """GLA's forward (output, final state; `tiles`: its state pass's) or backward (dq, dk, dv, dgk, dh0) against the
    reference."""
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd
    from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd

    q, k, v, gk, h0, do, dht = case
    if forward:
        ht = torch.empty_like(h0)
        o = chunk_gla_fwd(q, k, v, gk, kb.K**-0.5, initial_state=h0, final_state=ht, **tiles)
        return _worst((o, ht), ref["fwd"], ["o", "final state"])
    return _worst(chunk_gla_bwd(q, k, v, gk, kb.K**-0.5, h0, do, dht), ref["bwd"], ["dq", "dk", "dv", "dgk", "dh0"])


GLA_PHASES = {"gla_intra": "intra", "gla_out": "out", "gla_state": "state", "gla_bwd_intra": "bwd_intra",
              "gla_bwd_inter": "inter"}


def time_gla(big, name, **tiles):
    """ms of GLA kernel `name` alone at the large size, in the forward or the backward."""
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd
    from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd

    q, k, v, gk, do = big
    phases = []
    if name in FORWARD:
        chunk_gla_fwd(q, k, v, gk, kb.K**-0.5, _phases=phases, **tiles)
    else:
        chunk_gla_bwd(q, k, v, gk, kb.K**-0.5, None, do, None, _phases=phases)
    return kb.bench(dict(phases)[GLA_PHASES[name]])


def _worst(got, want, names):
    errs = {n: (chk.rel_rmse(a, b) if bool(torch.isfinite(a).all()) else float("nan"))
            for n, a, b in zip(names, got, want)}
    return max(errs.values(), key=lambda e: float("inf") if e != e else e), errs


def check(case, ref, **tiles):
    """The worst gradient's relative RMSE (NaN if any is not finite) of the whole split backward."""
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    q, k, v, g, beta, h0, do, dht = case
    return _worst(chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, h0, do, dht, variant="split", **tiles), ref["bwd"],
                  NAMES)


def check_forward(case, ref, **tiles):
    """The worse relative RMSE of the forward's output and final state (three-kernel route, from h0; `tiles`: its
    state pass's)."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    q, k, v, g, beta, h0, _, _ = case
    ht = torch.empty_like(h0)
    o = chunk_gdn_fwd(q, k, v, g, beta, kb.K**-0.5, initial_state=h0, final_state=ht, **tiles)
    return _worst((o, ht), ref["fwd"], ["o", "final state"])


def time_phase(big, name, **tiles):
    """ms of phase `name` alone at the large size: in the forward, or in the backward (the forward's inverse kept)."""
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd
    from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd

    q, k, v, g, beta, do = big
    phases = []
    if name in FORWARD:
        chunk_gdn_fwd(q, k, v, g, beta, kb.K**-0.5, _phases=phases, **tiles)
    else:
        _, X, G = chunk_gdn_fwd(q, k, v, g, beta, kb.K**-0.5, keep_inverse=True)
        chunk_gdn_bwd(q, k, v, g, beta, kb.K**-0.5, None, do, None, variant="split", _phases=phases, inverse=X,
                      gcum=G, **tiles)
    return kb.bench(dict(phases)[PHASE_OF.get(name, name)])


def sweep(kernels, cases, shape):
    """cases: {"gdn" | "gla": (check inputs, reference, large inputs)}."""
    for name in kernels:
        gla = name.startswith("gla")
        case, ref, big = cases["gla" if gla else "gdn"]
        if name == "dh":
            for bv, s, w in DH_CANDIDATES:
                tiles = dict(BV_dh=bv, stages_dh=s, warps_dh=w)
                r = dict(kind="config", kernel="dh", config=f"BV={bv} s{s} w{w}", shape=shape)
                one(r, lambda: check(case, ref, **tiles), lambda: time_phase(big, "dh", **tiles))
            continue
        if name in STATE_OUT_SWEEPS:
            from hybridserve.kernels.gated_delta_rule.chunk_state_out import _gdn_chunk_state_out_kernel

            route, tiles_list = STATE_OUT_SWEEPS[name]
            with counted_launches(_gdn_chunk_state_out_kernel) as launches, env(HYBRIDSERVE_GDN_STATE_OUT=route):
                for bv, w, s in tiles_list:
                    tiles = dict(BV_state=bv, num_warps_state=w, num_stages_state=s)
                    r = dict(kind="config", kernel=name, config=f"BV={bv} w{w} s{s}", shape=shape)
                    launches.clear()
                    one(r, lambda: check_forward(case, ref, **tiles), lambda: time_phase(big, name, **tiles),
                        launches)
            continue
        if name == "gla_state":
            for bk, bv, w, s in GLA_STATE_CANDIDATES:
                tiles = dict(BK_state=bk, BV_state=bv, num_warps_state=w, num_stages_state=s)
                r = dict(kind="config", kernel=name, config=f"BK={bk} BV={bv} w{w} s{s}", shape=shape)
                one(r, lambda: check_gla(case, ref, True, **tiles), lambda: time_gla(big, name, **tiles))
            continue
        kern, configs = autotuned(name)
        saved = kern.configs
        # a kernel that runs only where its switch chooses it: chosen here, whatever the head dims' default
        route = dict([ROUTES[name]]) if name in ROUTES else {}
        try:
            with counted_launches(kern) as launches, env(**route):
                for label, cfg in configs:
                    kern.configs = [cfg]
                    kern.cache.clear()
                    fwd = name in FORWARD
                    r = dict(kind="config", kernel=name, config=label, shape=shape)
                    if gla:
                        checker, timer = (lambda: check_gla(case, ref, fwd)), (lambda: time_gla(big, name))
                    else:
                        checker = (lambda: check_forward(case, ref)) if fwd else (lambda: check(case, ref))
                        timer = lambda: time_phase(big, name)  # noqa: E731
                    launches.clear()
                    one(r, checker, timer, launches)
        finally:
            kern.configs = saved
            kern.cache.clear()


@contextlib.contextmanager
def counted_launches(kern):
    """A list that gets an entry each time `kern` launches, while the block runs: a check that never launched the
    pinned kernel proves nothing (`one`)."""
    launches = []

    def counted(*args, _run=kern.run, **kwargs):
        launches.append(1)
        return _run(*args, **kwargs)
    kern.run = counted
    try:
        yield launches
    finally:
        del kern.run


def one(r, checker, timer, launches=None):
    """Check, then (if right) time one config; `launches` (filled while the check runs): none means the check never
    reached the pinned kernel, which is an error, not a pass."""
    res = kb._try(f"check {r['kernel']} {r['config']}", checker)
    if isinstance(res, str):
        r.update(error=res)
    elif launches is not None and not launches:
        r.update(error="the check never launched this kernel", ok=False)
    else:
        worst, errs = res
        tol = TOL["fwd" if r["kernel"] in FORWARD else "bwd"]
        r.update(worst_rel=worst, errors=errs, tol=tol, ok=bool(worst <= tol))
        if r["ok"]:  # a wrong config is not worth timing
            t = kb._try(f"time {r['kernel']} {r['config']}", timer)
            r.update(ms=t) if isinstance(t, float) else r.update(error=t)
    kb.row(**r)
    kb.empty_cache()


def markdown(rows, info):
    out = ["# GDN and GLA chunk kernels: each config checked and timed alone\n",
           " | ".join(f"{k} {v}" for k, v in info.items()) + "\n",
           f"Check at {info.get('check')} (partial chunks, h0) against the float32 reference: a backward kernel by "
           f"the backward's worst gradient (dht too; relative RMSE, tolerance {TOL['bwd']:g}), a forward kernel by "
           f"the forward's output and final state ({TOL['fwd']:g}). Time: that kernel alone at "
           f"{info.get('shape')}, L2 flushed, median.\n"]
    for name in KERNELS:
        rs = [r for r in rows if r.get("kernel") == name]
        if not rs:
            continue
        best = min((r["ms"] for r in rs if isinstance(r.get("ms"), float)), default=None)
        out += [f"## {name}\n", "| config | worst rel RMSE | check | ms | vs best |", "|---|---|---|---|---|"]
        for r in rs:
            ms = r.get("ms")
            out.append(f"| {r['config']} | {kb.fmt(r.get('worst_rel'))} | "
                       f"{'PASS' if r.get('ok') else ('FAIL' if 'ok' in r else r.get('error', '–'))} | "
                       f"{kb.fmt(ms) if isinstance(ms, float) else '–'} | "
                       f"{f'{ms / best:.2f}x' if isinstance(ms, float) and best else '–'} |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT"))
    ap.add_argument("--shape", default="8x32768", help="B x T of the timings")
    ap.add_argument("--check-shape", default="2x1000", help="B x T of the checks (partial chunks)")
    ap.add_argument("--kernels", default=",".join(KERNELS), help=f"which, in order: {','.join(KERNELS)}")
    ap.add_argument("--budget-s", type=float, default=400.0, help="start no measurement after this many seconds")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    chosen = [k.strip() for k in args.kernels.split(",") if k.strip()]
    bad = [k for k in chosen if k not in KERNELS]
    try:
        shape, cshape = ([int(n) for n in s.lower().split("x")] for s in (args.shape, args.check_shape))
        assert len(shape) == len(cshape) == 2 and min(shape + cshape) > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--shape {args.shape!r} / --check-shape {args.check_shape!r}: expected B x T, e.g. 8x32768")
    if bad:
        raise SystemExit(f"--kernels: unknown {', '.join(bad)}; choose from {', '.join(KERNELS)}")
    if args.cpu_smoke:
        kb.setup_cpu_smoke()
        shape, cshape = [1, 70], [2, 50]
    import triton

    kb.DEADLINE[0] = time.time() + args.budget_s
    info = dict(device=torch.cuda.get_device_name() if kb.DEV == "cuda" else "CPU (interpreter; numbers meaningless)",
                torch=torch.__version__, triton=triton.__version__, H=kb.H, K=kb.K, V=kb.V,
                shape="x".join(map(str, shape)), check="x".join(map(str, cshape)))
    cases = {}
    if any(not k.startswith("gla") for k in chosen):
        q, k, v, g, beta = chk.gdn_inputs(*shape, seed=3)
        cases["gdn"] = (*reference(*cshape), (q, k, v, g, beta, torch.randn_like(v)))
    if any(k.startswith("gla") for k in chosen):
        q, k, v, gk = chk.gla_inputs(*shape, seed=4)
        cases["gla"] = (*reference_gla(*cshape), (q, k, v, gk, torch.randn_like(v)))
    for name in chosen:  # the report rewritten after each kernel: a cut job keeps what finished
        sweep([name], cases, info["shape"])
        md = markdown(kb.RESULTS["rows"], info)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            Path(args.out, "chunk_configs.json").write_text(json.dumps(dict(info=info, rows=kb.RESULTS["rows"]),
                                                                     indent=1))
            Path(args.out, "chunk_configs.md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()
