"""The `split` layout of the chunked GDN backward's last two phases (HYBRIDSERVE_GDN_BWD=split; see chunk_bwd.py).

Same math as chunk_bwd.py's kernels 3 (dqkw) and 4 (wy), laid out for throughput at large B x T:

* dqkw, one program per (K block of <= 64, chunk, head) instead of per (chunk, head): the accumulators are
  [64, BK] (dQ, dK, dW) + two [64, 64] (dO V'^T and V' dO^T) instead of three [64, K] + one, so at K = 128 they
  fit the registers (0-70 B spilled per thread at BV <= 64, against 0.6-6 KB for kernel 3 on sm_90a), and there are
  K / 64 times more programs. P^T (for dK's intra-chunk part)
  comes from its own MMA, V' dO^T, not from a transposed accumulator (tl.trans of an MMA-layout tile is what
  Triton <= 3.7.0 miscompiles on Hopper at 64-wide tiles, fla #640) nor from a global scratch tile. The per-token
  dG partial sums (over this K block) go to dg_part[i_k]; the wy kernel adds the K / BK of them.
* wy: every product runs on the tensor cores (TF32 for 16-bit inputs, exact IEEE float32 for float32 inputs, as
  the rest of the backward) where kernel 4 runs float32 IEEE products as FMAs on the CUDA cores (an H200's FP32
  peak is 67 TFLOP/s against TF32's 494; 8.2 K static FFMAs and 2.4 KB spilled per thread). dA^T is formed from its own product X dX^T X, with dX^T
  accumulated beside dX from the loaded tiles, again so that no MMA result is transposed; K K^T moves to pass 2,
  where dA is known, which keeps two [64, 64] accumulators live per pass instead of three.

The dh reverse pass is chunk_bwd.py's, writing dS' in the input dtype (its tl.store rounds), which halves the
largest intermediate ([NT, H, K, V]: 2.1 GB instead of 4.3 GB at 8 x 32K, H = 16, K = V = 128, bf16).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import locate_chunk
from .._triton_utils import tuned_configs


# What the three WY kernels (chunk_bwd.py's fused one, this file's, chunk_bwd_wy.py's) share: the chunk and its rows'
# gates, the dqkw kernel's dG partial sums, and the last step (dG's reverse cumulative sum, the stores).
@triton.jit
def wy_chunk(k, gcum, beta, T, NTs, N, H: tl.constexpr, BT: tl.constexpr):
    """The program's chunk (grid: chunk, head): its head, first token, rows and their mask, and per row G, beta and
    beta e^G in float32."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, k, k, k, T, NTs, N, BT, False)
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    b_beta = tl.load(beta + (t0 + o_t) * H + i_h, mask=m_t, other=0.0).to(tl.float32)
    return i_c, i_h, t0, o_t, m_t, b_g, b_beta, b_beta * tl.exp(b_g)


@triton.jit
def add_dg_partials(b_dG, dg_part, TTH, t0, o_t, m_t, i_h, H: tl.constexpr, NK: tl.constexpr):
    """b_dG plus the dqkw kernel's per-K-block dG partial sums of the chunk's rows, one block after another."""
    for i in range(0, NK):
        b_dG += tl.load(dg_part + i * TTH + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    return b_dG


@triton.jit
def store_dg_dbeta(dg, dbeta, b_dG, b_dbeta, t0, o_t, m_t, i_h, H: tl.constexpr):
    """dg = the reverse cumulative sum of dG within the chunk (float32), and dbeta in its dtype."""
    b_dG = tl.where(m_t, b_dG, 0.0)
    b_dg = tl.sum(b_dG, axis=0) - tl.cumsum(b_dG, axis=0) + b_dG
    tl.store(dg + (t0 + o_t) * H + i_h, b_dg, mask=m_t)
    tl.store(dbeta + (t0 + o_t) * H + i_h, b_dbeta.to(dbeta.dtype.element_ty), mask=m_t)


def split_block_k(K: int) -> int:
    """K block of the split dqkw kernel: 64 (two programs per chunk and head at K = 128), at least 16."""
    return min(64, max(16, triton.next_power_of_2(K)))


# (BV, num_stages, EARLY_QK, DK_T, maxnreg), 8 warps each. EARLY_QK issues the Q, K loads before the V loop so that
# their latency overlaps it. DK_T accumulates dK transposed, which drops the dsT product and its [64, 64] tile
# (sm_90a, ptxas of triton 3.7.1, K = 128, BK = 64: 191 -> 166 registers at BV 64 x 2 stages); capped at 128 registers
# it spills 8 B at BV 64 x 2-3 stages, so two 8-warp programs share an SM instead of one. On the H200 (seventeenth
# session, benchmarks/chunk_configs_gpu.py: each config checked, then timed alone at 8 x 32K): DK_T capped 5.37-5.39 ms
# at BV 64 x 2-3 stages, 6.2-6.7 at 1 stage or BV 32; DK_T uncapped 7.57; the earlier best (no DK_T, BV 64 x 2
# stages) 8.06, kept as the fallback. Without DK_T a 128 cap spills 180 B.
DQKW_CONFIGS = [(64, 2, False, True, 128), (64, 3, False, True, 128), (32, 1, False, True, 128),
                (64, 2, False, False, None)]


def _dqkw_configs():
    return tuned_configs("_gdn_bwd_dqkw_split_kernel", [
        triton.Config({"BV": bv, "EARLY_QK": early, "DK_T": dk_t}, num_warps=8, num_stages=s,
                      **({"maxnreg": r} if r else {}))
        for bv, s, early, dk_t, r in DQKW_CONFIGS])


@triton.autotune(configs=_dqkw_configs(), key=["H", "K", "V", "BK", "DOT_PREC"])
@triton.jit
def _gdn_bwd_dqkw_split_kernel(
    q, k, vnew, do, gcum, hbuf, dhbuf, dv, dq, dk, dw, dg, scale, T, NTs, N, TTH,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    EARLY_QK: tl.constexpr, DOT_PREC: tl.constexpr, DK_T: tl.constexpr = False,
):
    """Per (K block, chunk, head): dQ (final), dK's O and S' parts, dW, and this K block's share of dG.
    DK_T: dK is accumulated transposed, [BK, BT]. Its intra-chunk part P^T Q is then Q^T P, whose operands are a
    loaded tile's transpose and P itself, so no P^T is needed. Without DK_T, P^T comes from a product of its own,
    dsT = V' dO^T, because Triton 3.6 miscompiles a transposed MMA result on Hopper. DK_T saves one product of the
    five per V block and a [64, 64] float32 accumulator; it stores dK through transposed indexing."""
    i_k = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, q, q, q, T, NTs, N, BT, False)
    o_t = tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_t = o_t < eos - t0
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    last = tl.minimum(BT, eos - t0) - 1
    p_k = (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
    base_v = (t0 * H + i_h) * V
    b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    g_last = tl.load(gcum + (t0 + last) * H + i_h)
    hbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    dhbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    if DK_T:
        b_dkT = tl.zeros([BK, BT], dtype=tl.float32)
    else:
        b_dk = tl.zeros([BT, BK], dtype=tl.float32)
        b_dsT = tl.zeros([BT, BT], dtype=tl.float32)  # [i, t], ds's numbers transposed, from their own MMA
    b_dw = tl.zeros([BT, BK], dtype=tl.float32)
    b_ds = tl.zeros([BT, BT], dtype=tl.float32)  # [t, i] = dO_t . V'_i
    b_hdh = tl.zeros([BK], dtype=tl.float32)
    if EARLY_QK:
        b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_v = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        p_h = o_k[:, None] * V + o_v[None, :]
        m_h = m_k[:, None] & m_v[None, :]
        b_h = tl.load(hbuf + p_h, mask=m_h, other=0.0)
        b_dh = tl.load(dhbuf + p_h, mask=m_h, other=0.0)
        b_vn = tl.load(vnew + p_v, mask=m_tv, other=0.0)
        b_dv = tl.load(dv + p_v, mask=m_tv, other=0.0).to(b_vn.dtype)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.0)
        b_dq += tl.dot(b_do, tl.trans(b_h.to(b_do.dtype)), input_precision=DOT_PREC)
        if DK_T:
            b_dkT += tl.dot(b_dh.to(b_vn.dtype), tl.trans(b_vn), input_precision=DOT_PREC)
        else:
            b_dk += tl.dot(b_vn, tl.trans(b_dh.to(b_vn.dtype)), input_precision=DOT_PREC)
            b_dsT += tl.dot(b_vn, tl.trans(b_do), input_precision=DOT_PREC)
        b_dw += tl.dot(b_dv, tl.trans(b_h.to(b_vn.dtype)), input_precision=DOT_PREC)
        b_ds += tl.dot(b_do, tl.trans(b_vn), input_precision=DOT_PREC)
        b_hdh += tl.sum(b_h.to(tl.float32) * b_dh.to(tl.float32), axis=1)
    if not EARLY_QK:
        b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
    # O inter-chunk part (dG: this K block's columns only; the wy kernel sums the blocks)
    b_dq = b_dq * (tl.exp(b_g) * scale)[:, None]
    b_dG = tl.sum(b_q.to(tl.float32) * b_dq, axis=1)
    # S' part
    if DK_T:
        b_dkT = b_dkT * tl.exp(tl.where(m_t, g_last - b_g, 0.0))[None, :]
        b_kdk = tl.sum(tl.trans(b_k).to(tl.float32) * b_dkT, axis=0)  # a loaded tile's transpose: safe
    else:
        b_dk = b_dk * tl.exp(tl.where(m_t, g_last - b_g, 0.0))[:, None]
        b_kdk = tl.sum(b_k.to(tl.float32) * b_dk, axis=1)
    b_dG -= b_kdk
    dG_last = tl.exp(g_last) * tl.sum(b_hdh, axis=0) + tl.sum(b_kdk, axis=0)
    b_dG += tl.where(o_t == last, dG_last, 0.0)
    # O intra-chunk part: P[t, i] = scale e^{G_t - G_i} dO_t . V'_i for i <= t (P^T from dsT unless DK_T)
    r = o_t[:, None]
    c = o_t[None, :]
    keep = (r >= c) & m_t[:, None]
    b_P = tl.where(keep, b_ds * tl.exp(tl.where(keep, b_g[:, None] - b_g[None, :], 0.0)), 0.0) * scale
    b_E = b_P * tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)  # Q K^T over this K block
    b_dG += tl.sum(b_E, axis=1) - tl.sum(b_E, axis=0)
    b_dq += tl.dot(b_P.to(b_k.dtype), b_k, input_precision=DOT_PREC)
    tl.store(dq + p_k, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    if DK_T:
        b_dkT += tl.dot(tl.trans(b_q), b_P.to(b_q.dtype), input_precision=DOT_PREC)
        p_kT = (t0 * H + i_h) * K + o_t[None, :] * (H * K) + o_k[:, None]
        tl.store(dk + p_kT, b_dkT.to(dk.dtype.element_ty), mask=m_k[:, None] & m_t[None, :])
    else:
        keepT = (r <= c) & m_t[None, :]
        b_PT = tl.where(keepT, b_dsT * tl.exp(tl.where(keepT, b_g[None, :] - b_g[:, None], 0.0)), 0.0) * scale
        b_dk += tl.dot(b_PT.to(b_q.dtype), b_q, input_precision=DOT_PREC)
        tl.store(dk + p_k, b_dk.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dw + p_k, (-b_dw).to(dw.dtype.element_ty), mask=m_tk)
    tl.store(dg + i_k.to(tl.int64) * TTH + (t0 + o_t) * H + i_h, b_dG, mask=m_t)


def _wy_configs():
    # spills on sm_90a at K = V = 128: 8 warps 128 B (1 stage) / 960 B (2); 4 warps 1.0 KB / 2.7 KB
    return tuned_configs("_gdn_bwd_wy_split_kernel", [triton.Config({}, num_warps=w, num_stages=s)
                                                      for w, s in [(8, 1), (8, 2), (4, 1)]])


@triton.autotune(configs=_wy_configs(), key=["H", "K", "V", "NK", "DOT_PREC"])
@triton.jit
def _gdn_bwd_wy_split_kernel(
    k, v, beta, gcum, Xbuf, dw, dv, dk_part, dg_part, dk, dvout, dbeta, dg, T, NTs, N, TTH,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NK: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Per chunk: the WY part (through X, A, D_w, D_u) and the final dk, dv, dbeta, dg; tensor-core products."""
    i_c, i_h, t0, o_t, m_t, b_g, b_beta, b_bg = wy_chunk(k, gcum, beta, T, NTs, N, H, BT)
    r = o_t[:, None]
    c = o_t[None, :]
    base_k = (t0 * H + i_h) * K
    base_v = (t0 * H + i_h) * V
    b_X = tl.load(Xbuf + (t0 * H + i_h) * BT + r * (H * BT) + c, mask=m_t[:, None], other=0.0)
    b_Xt = tl.trans(b_X)  # a loaded tile, not an MMA result: transposing it is safe
    # pass 1: dX = dW (D_w K)^T + dV' (D_u V)^T and its transpose, each from the loaded tiles
    b_dX = tl.zeros([BT, BT], dtype=tl.float32)
    b_dXT = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_kb = tl.load(k + p, mask=m, other=0.0).to(tl.float32) * b_bg[:, None]
        b_dw = tl.load(dw + p, mask=m, other=0.0).to(tl.float32)  # (16-bit in between with "input" intermediates)
        b_dX += tl.dot(b_dw, tl.trans(b_kb), input_precision=DOT_PREC)
        b_dXT += tl.dot(b_kb, tl.trans(b_dw), input_precision=DOT_PREC)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_vb = tl.load(v + p, mask=m, other=0.0).to(tl.float32) * b_beta[:, None]
        b_du = tl.load(dv + p, mask=m, other=0.0).to(tl.float32)
        b_dX += tl.dot(b_du, tl.trans(b_vb), input_precision=DOT_PREC)
        b_dXT += tl.dot(b_vb, tl.trans(b_du), input_precision=DOT_PREC)
    # dA = -(X^T dX X^T) on i < t;  dA^T = -(X dX^T X) on the mirrored entries
    lower = (c < r) & m_t[:, None]
    upper = (r < c) & m_t[None, :]
    b_dA = -tl.dot(tl.dot(b_Xt, b_dX, input_precision=DOT_PREC), b_Xt, input_precision=DOT_PREC)
    b_dAT = -tl.dot(tl.dot(b_X, b_dXT, input_precision=DOT_PREC), b_X, input_precision=DOT_PREC)
    b_decay = tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0))
    b_dA = tl.where(lower, b_dA, 0.0)
    b_dAT = tl.where(upper, b_dAT, 0.0)
    # S = B + B^T with B[t, i] = dA[t, i] beta_t e^{G_t - G_i}: dK's A part is S K
    b_S = (b_dA * b_decay * b_beta[:, None]
           + b_dAT * tl.exp(tl.where(upper, b_g[None, :] - b_g[:, None], 0.0)) * b_beta[None, :])
    b_dbeta = tl.zeros([BT], dtype=tl.float32)
    b_dG = add_dg_partials(tl.zeros([BT], dtype=tl.float32), dg_part, TTH, t0, o_t, m_t, i_h, H, NK)
    # pass 2: dk = dk_part + D_w X^T dW + S K, and K K^T for dbeta / dG through A
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p, mask=m, other=0.0)
        b_kf = b_k.to(tl.float32)
        b_dw = tl.load(dw + p, mask=m, other=0.0).to(tl.float32)
        b_kk += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        b_dkt = tl.dot(b_Xt, b_dw, input_precision=DOT_PREC)
        b_dk = (tl.load(dk_part + p, mask=m, other=0.0).to(tl.float32) + b_dkt * b_bg[:, None]
                + tl.dot(b_S, b_kf, input_precision=DOT_PREC))
        b_s = tl.sum(b_dkt * b_kf, axis=1)
        b_dbeta += tl.exp(b_g) * b_s
        b_dG += b_bg * b_s
        tl.store(dk + p, b_dk.to(dk.dtype.element_ty), mask=m)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p, mask=m, other=0.0).to(tl.float32)
        b_dvt = tl.dot(b_Xt, tl.load(dv + p, mask=m, other=0.0).to(tl.float32), input_precision=DOT_PREC)
        tl.store(dvout + p, (b_dvt * b_beta[:, None]).to(dvout.dtype.element_ty), mask=m)
        b_dbeta += tl.sum(b_dvt * b_v, axis=1)
    b_E = b_dA * b_kk * b_decay  # dA * A / beta_t
    b_dbeta += tl.sum(b_E, axis=1)
    b_E = b_E * b_beta[:, None]
    b_dG += tl.sum(b_E, axis=1) - tl.sum(b_E, axis=0)
    store_dg_dbeta(dg, dbeta, b_dG, b_dbeta, t0, o_t, m_t, i_h, H)


def dqkw_split(qt, kt, vnew, dot_, gcum, hbuf, dhbuf, dvn, scale, T, NTs, N, prec, inter_dtype=torch.float32):
    """Buffers (dq, dk_part and dw in inter_dtype, dg_part [NK, TT, H]) and the launch of the split dqkw kernel."""
    TT, H, K = qt.shape
    V = vnew.shape[-1]
    BK = split_block_k(K)
    NK = triton.cdiv(K, BK)
    f32 = torch.float32
    dq = torch.empty_like(qt)
    dk_part = torch.empty(TT, H, K, dtype=inter_dtype, device=qt.device)
    dw = torch.empty(TT, H, K, dtype=inter_dtype, device=qt.device)
    dg_part = torch.empty(NK, TT, H, dtype=f32, device=qt.device)

    def launch():
        _gdn_bwd_dqkw_split_kernel[(NK, N * NTs, H)](
            qt, kt, vnew, dot_, gcum, hbuf, dhbuf, dvn, dq, dk_part, dw, dg_part, scale, T, NTs, N, TT * H,
            H, K, V, BT=64, BK=BK, DOT_PREC=prec,
        )
    return (dq, dk_part, dw, dg_part), launch


def wy_split(kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, dk, dv, dbeta, dg, T, NTs, N, prec):
    """The launch of the tensor-core wy kernel (outputs dk, dv, dbeta, dg are the caller's)."""
    TT, H, K = kt.shape
    V = vt.shape[-1]

    def launch():
        _gdn_bwd_wy_split_kernel[(N * NTs, H)](
            kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, dk, dv, dbeta, dg, T, NTs, N, TT * H, H, K, V,
            BT=64, BK=min(64, max(16, triton.next_power_of_2(K))), BV=min(64, max(16, triton.next_power_of_2(V))),
            NK=dg_part.shape[0], DOT_PREC=prec,
        )
    return launch
