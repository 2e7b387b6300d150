"""The chunked GDN forward's state pass with the output fused in (Triton): chunk.py's kernels 2 and 3 in one.

chunk.py's forward is three kernels: the prep (W, U per chunk, parallel), the sequential state pass (V' and the state
before every chunk, both written out) and the output (parallel, reads them back):

    V'_c = U_c - W_c H_c,   H_{c+1} = e^{G_last} H_c + (K_c * e^{G_last - G})^T V'_c
    O_c  = scale (diag(e^G) Q_c H_c + ((Q_c K_c^T) * e^{G_t - G_i} [i <= t]) V'_c)

Here the state pass computes O_c itself while it holds H_c and V'_c, so neither goes through global memory: per
token and head (bf16, K = V = 128) the split route writes V' (256 B) and a 1/64th share of a 32 KB state (512 B), and
the output kernel reads q, k, V' and the state back (1,280 B). The price is parallelism and repeated work: O is
computed sequentially, one program per (sequence, head, V block), and Q_c K_c^T once per V block. So it pays only
where there are enough (sequence, head) pairs to fill the GPU (`state_out_route`).

The arithmetic and its rounding points are chunk.py's: H_c and V'_c enter the output's products in the input dtype
(the split route stores them so), the state update takes V' in float32, accumulation is float32. Only the float32
summation order of Q H and Q K^T over K differs (one product over all of K here, 64-column blocks there); the
"fused-x" routes, which make V' from X instead of W and U, round V' elsewhere (the kernel's docstring). States as
in chunk.py (dense or pool rows through state_idx, negative = padding: neither read nor written). No host
synchronisation: graph-capture safe.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._triton_common import load_initial_state, seq_bounds, state_tile, store_final_state
from .._triton_utils import env_choice

STATE_OUT_ROUTES = ("split", "fused", "fused-aqk", "fused-x", "fused-x-aqk")
# Sequences x heads from which a fused route is the default (at the TUNED_HEAD_DIMS). H200, eighteenth session
# (benchmarks/chunk_configs_gpu.py, each tile checked, then timed alone; docs/benchmarks/kernels.md): at its best
# tile the fused pass took 3.53 ms at 8 x 32K (128 pairs) against 3.75 for the split route's state + output kernels,
# 0.45 ms at 4 x 8K (64 pairs), but 1.51 ms at 1 x 32K (16 pairs), twice the split route's: a sequence's chunks
# run one after another, so few pairs leave the GPU idle. Nineteenth session, every route's forward whole in one job
# with fla (kernels_bwd.py, ms at 8 x 32K / 4 x 8K / 1 x 32K): split 6.55 / 0.817 / 1.07, fused 6.21 / 0.809,
# fused-aqk 5.95 / 0.78 / 1.63, fused-x 6.17 / 0.789 / 2.24, fused-x-aqk 4.51 (BV 64) / 0.737 / 1.67, fla 6.65 /
# 0.998 / 1.45. fused-x-aqk is the default: its prep makes neither W nor U (2.02 ms against 2.66) and its fused pass
# no Q K^T (2.44 ms at BV 64). It also allocates neither V' nor the per-chunk states (2 GB at 8 x 32K, 16 heads).
STATE_OUT_MIN_PAIRS = 64


def state_out_route(N: int, H: int, K: int, V: int) -> str:
    """HYBRIDSERVE_GDN_STATE_OUT (read at every call): "fused" (this file's kernel after the prep), "fused-aqk" (the
    same with the in-chunk attention (Q K^T) * e^{G_t - G_i} [i <= t] made by the prep, which already holds K: once
    per chunk instead of once per V block, and out of the sequential loop's registers), "fused-x" / "fused-x-aqk"
    (V' from X: see the kernel) or "split" (chunk.py's state and output kernels). Default: "fused-x-aqk" from
    STATE_OUT_MIN_PAIRS sequences x heads at the TUNED_HEAD_DIMS, where the GPU checked and timed it; "split"
    elsewhere."""
    tuned = "fused-x-aqk" if N * H >= STATE_OUT_MIN_PAIRS else "split"
    return env_choice("HYBRIDSERVE_GDN_STATE_OUT", STATE_OUT_ROUTES, tuned, "split", K, V)


# (BV, num_warps, num_stages) the static compile check (kernels/_compile_check.py) covers besides the default. Not
# BV 32 x 4 warps x 1 stage: on the H200 (triton 3.6) its check stopped on an illegal memory access (eighteenth
# session, third job), where BV 64 x 8 warps x 1 stage and the default ran right. Under the interpreter, with
# tests/triton_cpu.py's address check on every unmasked load and store, the same tile at K = V = 128 touches nothing
# out of bounds and matches the float64 reference as the split route does, so a miscompile is the likely cause, as
# ptxas has had at other tiles (docs/benchmarks/kernels-sessions-3-7.md, "K = 64"). chunk_gdn_fwd refuses it
# before anything runs (BROKEN_TILES, check_tile).
STATE_OUT_TILES = [(64, 8, 2), (64, 4, 2), (64, 4, 3), (32, 4, 3), (32, 2, 2), (16, 4, 2), (16, 2, 2)]
BROKEN_TILES = {(32, 4, 1)}


def default_state_out_tile(N: int, H: int, K: int, V: int, route: str = "fused") -> tuple[int, int, int]:
    """(BV, num_warps, num_stages) of the fused pass, the next chunks' tiles pipelined through shared memory (2
    stages). H200, eighteenth session, each tile checked, then timed alone:
    - "fused": V blocks of 32 in 4 warps, the fastest at 8 x 32K, 4 x 8K and 1 x 32K (3.53-3.58 ms at 8 x 32K
      against 4.44 for BV 64 x 4 warps, 4.85 for BV 64 x 8 warps, 4.95 for BV 32 at 3 stages; sm_90a: 255
      registers, 36 B spilled);
    - "fused-aqk": V blocks of 64 in 4 warps (2.75 ms at 8 x 32K against 3.59 for 8 warps, 4.43 for BV 32; its
      prep took 3.12 ms against 2.66 without the attention: 5.87 ms the two against 6.19). Timed at 8 x 32K only;
    - "fused-x": "fused"'s tile, the one with the fewest spills in the sm_90a compile report (BV 32 x 4 warps:
      168 B; BV 64 x 4 warps: 784 B); nineteenth session at 4 x 8K: 0.594 ms against 0.756 for BV 64;
    - "fused-x-aqk" (the default at N x H >= 64): BV 64 x 4 warps from 2 x STATE_OUT_MIN_PAIRS pairs (256 programs at
      8 x 32K: 2.44 ms against 3.51 for BV 32, 4.79 for 8 warps, 5.27 for 3 stages; sm_90a 255 registers, 300 B
      spilled), BV 32 below (4 x 8K, 64 pairs: BV 64 leaves 128 programs for 132 SMs, 0.512 ms against 0.424)."""
    wide = route == "fused-aqk" or (route == "fused-x-aqk" and N * H >= 2 * STATE_OUT_MIN_PAIRS)
    BV = max(16, min(64 if wide else 32, triton.next_power_of_2(V)))
    return BV, 4, 2


@triton.jit
def _gdn_chunk_state_out_kernel(
    q, k, w, u, gcum, o, h0, ht, state_idx, has_h0, cu_seqlens, scale,
    T, s_h0, s_ht, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr,
    DOT_PREC: tl.constexpr, aqk=None, LOAD_AQK: tl.constexpr = False, v=None, beta=None, xbuf=None,
    FROM_X: tl.constexpr = False,
):
    """One program per (V block, sequence x head): walks the sequence's chunks, writing O's V block of each.
    LOAD_AQK: the in-chunk attention comes from aqk ([TT, H, BT], the prep's) instead of a Q K^T product here.
    FROM_X (w, u unused): V' = U - W H = X (diag(beta) V - diag(beta e^G) K H), with X = (I + A)^{-1} read from xbuf
    ([TT, H, BT] float32, the prep's, full rows): the prep then makes neither W nor U, and their round trip through
    global memory (1 KB per token and head at K = V = 128, bf16) goes. Rounding: diag(beta e^G) K as chunk.py rounds
    it for W, the difference and X in the input dtype for the product, accumulation float32."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    n_chunks = tl.cdiv(eos - bos, BT)
    dt = q.dtype.element_ty

    o_t = tl.arange(0, BT)
    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(0, i_v, i_h, K, V, BK, BV)
    b_h, slot, ok = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                       HAS_H0_MASK)
    # scalar int64 bases advanced chunk by chunk, int32 tile offsets
    q += (bos * H + i_h) * K
    k += (bos * H + i_h) * K
    w += (bos * H + i_h) * K
    u += (bos * H + i_h) * V
    o += (bos * H + i_h) * V
    gcum += bos * H + i_h
    if LOAD_AQK:
        aqk += (bos * H + i_h) * BT
    if FROM_X:
        v += (bos * H + i_h) * V
        beta += bos * H + i_h
        xbuf += (bos * H + i_h) * BT
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    causal = o_t[:, None] >= o_t[None, :]
    seq_len = eos - bos
    for i_t in range(0, n_chunks):
        m_t = o_t < seq_len - i_t * BT
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_hd = b_h.to(dt)  # the state as the split route stores it for the output kernel
        if FROM_X:
            b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
            b_g = tl.load(gcum + o_t * H, mask=m_t, other=0.0)
            b_beta = tl.load(beta + o_t * H, mask=m_t, other=0.0).to(tl.float32)
            b_ks = (b_k.to(tl.float32) * (b_beta * tl.exp(b_g))[:, None]).to(dt)
            b_r = tl.load(v + p_v, mask=m_tv, other=0.0).to(tl.float32) * b_beta[:, None] - tl.dot(
                b_ks, b_hd, input_precision=DOT_PREC)
            b_X = tl.load(xbuf + o_t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.0)
            b_vn = tl.dot(b_X.to(dt), b_r.to(dt), input_precision=DOT_PREC)
            b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
        else:  # (this order is the one timed on the H200: a reordering changed the registers' spills)
            b_w = tl.load(w + p_k, mask=m_tk, other=0.0)
            b_u = tl.load(u + p_v, mask=m_tv, other=0.0).to(tl.float32)
            b_vn = b_u - tl.dot(b_w, b_hd, input_precision=DOT_PREC)
            b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
            b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
            b_g = tl.load(gcum + o_t * H, mask=m_t, other=0.0)
        # the output: inter-chunk part from the state before this chunk, intra-chunk part from V' (rounded as stored)
        b_o = tl.dot(b_q, b_hd, input_precision=DOT_PREC) * tl.exp(b_g)[:, None]
        if LOAD_AQK:
            b_s = tl.load(aqk + o_t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.0)
        else:
            b_s = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
            lower = causal & m_t[:, None]
            b_s = tl.where(lower, b_s * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0)), 0.0).to(dt)
        b_o = (b_o + tl.dot(b_s, b_vn.to(dt), input_precision=DOT_PREC)) * scale
        tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)
        # the state after this chunk
        last = tl.minimum(BT, seq_len - i_t * BT) - 1
        g_last = tl.load(gcum + last * H)
        b_vs = (b_vn * tl.exp(g_last - b_g)[:, None]).to(dt)
        b_h = b_h * tl.exp(g_last) + tl.dot(tl.trans(b_k), b_vs, input_precision=DOT_PREC)
        q += BT * H * K
        k += BT * H * K
        o += BT * H * V
        gcum += BT * H
        if LOAD_AQK:
            aqk += BT * H * BT
        if FROM_X:
            v += BT * H * V
            beta += BT * H
            xbuf += BT * H * BT
        else:
            w += BT * H * K
            u += BT * H * V

    store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT)


def check_tile(BV: int, num_warps: int, num_stages: int):
    """One clear error for a tile in BROKEN_TILES: an illegal memory access would poison the process's CUDA
    context."""
    if (BV, num_warps, num_stages) in BROKEN_TILES:
        raise ValueError(f"the fused GDN state + output pass at BV {BV}, {num_warps} warps, {num_stages} stage(s) "
                         "crashed on the H200 (chunk_state_out.STATE_OUT_TILES); pick another num_stages_state")


def launch_state_out(qt, kt, w, u, gcum, o, h0, ht, state_idx, has_h0, cu, scale, T, N, H, K, V, varlen, prec,
                     use_h0, store_ht, indexed, has_h0_mask, s_h0, s_ht, BV, num_warps, num_stages, aqk=None,
                     v=None, beta=None, xbuf=None):
    """The fused pass over N sequences x H heads (one program per V block of each); aqk: the prep's in-chunk
    attention ("-aqk" routes); v, beta, xbuf (X): V' from X ("fused-x" routes; w, u are then unused). The caller
    has checked the tile (check_tile) before anything ran."""
    _gdn_chunk_state_out_kernel[(triton.cdiv(V, BV), N * H)](
        qt, kt, w, u, gcum, o, h0, ht, state_idx, has_h0, cu, scale, T, s_h0, s_ht, H, K, V,
        BT=64, BK=max(16, triton.next_power_of_2(K)), BV=BV, IS_VARLEN=varlen, USE_H0=use_h0, STORE_HT=store_ht,
        INDEXED=indexed, HAS_H0_MASK=has_h0_mask, DOT_PREC=prec, aqk=aqk, LOAD_AQK=aqk is not None,
        v=v, beta=beta, xbuf=xbuf, FROM_X=xbuf is not None, num_warps=num_warps, num_stages=num_stages,
    )
