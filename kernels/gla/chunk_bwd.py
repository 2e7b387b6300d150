"""Chunked GLA backward, Triton (chunk 64, sub-blocks of 16; K, V <= 128; dense [B, T] or packed with cu_seqlens).

Gradients of chunk.py's forward. Per chunk, with B the in-chunk cumulative per-channel log decay, b = B at the
chunk's last token, S the state before the chunk, S' the state after it and A the intra-chunk weights
(A_ti = scale sum_c q_tc k_ic e^{B_tc - B_ic}, i <= t):
    forward:   O = scale (Q * e^B) S + A V,     S' = diag(e^b) S + (K * e^{b - B})^T V
    backward, sequential over chunks in reverse (kernel 1), dS' given (dht after the last chunk):
        dS = diag(e^b) dS' + scale (Q * e^B)^T dO                       (dS before chunk 0 is dh0)
    then per chunk in parallel:
        dA_ti = scale dO_t . v_i  (i <= t)
        dQ = scale e^B * (dO S^T) + [sum_i dA_ti k_i e^{B_t - B_i}]                  (kernel 2 the bracket,
        dK = e^{b - B} * (V dS'^T) + [sum_t dA_ti q_t e^{B_t - B_i}]                  kernel 3 the rest)
        dV = A^T dO + (K * e^{b - B}) dS'                                             (kernel 4)
        dB = Q * dQ - K * dK, and at the last token + e^b * rowsum(S * dS') + sum_i k_i * (e^{b - B_i} (dS' v_i))
        dgk = reverse cumulative sum of dB within the chunk                            (kernel 3)
The brackets are formed like the forward's A: 16 x 16 blocks below the diagonal as products with a reference
decay per block (the first row of the query block for dQ, the last row of the key block for dK), so that every
exponent is <= 0 whatever the decay; the diagonal blocks one column at a time from the exact differences (or, with
HYBRIDSERVE_GLA_BWD_INTRA=levels, per chunk by the forward level kernel's levels: `_gla_bwd_intra_levels_kernel`). No
kernel transposes a tile that came out of a matrix product (Hopper miscompiles that, fla-org/
flash-linear-attention#640): transposed operands are loaded transposed, or recomputed as V dO^T.
The forward intermediates (B, A, per-chunk states) are recomputed first with the forward's kernels. Float32
accumulation; dS' is kept in float32.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import first_chunk, locate_chunk, seq_bounds, state_tile
from .._triton_utils import cdiv, next_pow2, on_tensor_device, state_pass_stages, tuned_configs, tuned_dims_prune
from ..gated_delta_rule.chunk import CHUNK, _dot_prec, chunk_map
from .chunk import (GLA_DH_STAGES, GLA_STATE_STAGES, INTRA_LEVELS_CONFIGS, SUB,
                    _gla_chunk_state_kernel, bwd_intra_method, default_state_blocks, launch_intra, level_terms)


@triton.jit
def _gla_bwd_dh_kernel(
    q, do, gcum, dhbuf, dht, dh0, cu_seqlens, chunk_off, scale, T, NTs,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Reverse pass over one (sequence, head, K block, V block): dS' of every chunk into dhbuf, then dh0."""
    i_v = tl.program_id(0)
    i_k = tl.program_id(1)
    i_nh = tl.program_id(2)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    c0 = first_chunk(i_n, chunk_off, NTs, IS_VARLEN)
    seq_len = eos - bos
    n_chunks = tl.cdiv(seq_len, BT)
    o_t = tl.arange(0, BT)
    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(i_k, i_v, i_h, K, V, BK, BV)
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dh = tl.load(dht + i_n.to(tl.int64) * (H * K * V) + p_hkv, mask=m_h, other=0.0).to(tl.float32)
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    for i in range(0, n_chunks):
        i_t = n_chunks - 1 - i
        tl.store(dhbuf + (c0 + i_t) * (H * K * V) + p_hkv, b_dh, mask=m_h)
        t0 = bos + i_t * BT
        m_t = o_t < seq_len - i_t * BT
        m_tk = m_t[:, None] & m_k[None, :]
        last = tl.minimum(BT, seq_len - i_t * BT) - 1
        base_k = (t0 * H + i_h) * K
        b_gl = tl.load(gcum + base_k + last * (H * K) + o_k, mask=m_k, other=0.0)
        b_g = tl.load(gcum + base_k + p_k, mask=m_tk, other=0.0)
        b_q = tl.load(q + base_k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_qg = (b_q * (tl.exp(b_g) * scale)).to(q.dtype.element_ty)
        b_do = tl.load(do + (t0 * H + i_h) * V + p_v, mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_dh = b_dh * tl.exp(b_gl)[:, None] + tl.dot(tl.trans(b_qg), b_do, input_precision=DOT_PREC)
    if STORE_DH0:
        tl.store(dh0 + i_n.to(tl.int64) * (H * K * V) + p_hkv, b_dh, mask=m_h)


@triton.jit
def _gla_bwd_intra_kernel(
    q, k, v, gcum, do, dq_intra, dk_intra, cu_seqlens, chunk_seq, chunk_off, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """The intra-chunk parts of dQ (rows of sub-block i) and dK (columns of sub-block i), float32."""
    NC: tl.constexpr = BT // BC
    i_ci = tl.program_id(0)
    i_h = tl.program_id(1)
    i_c = i_ci // NC
    i_i = i_ci % NC
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    n_valid = eos - t0
    if i_i * BC >= n_valid:
        return
    o_r = tl.arange(0, BC)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    rows = i_i * BC + o_r
    m_r = rows < n_valid
    m_rk = m_r[:, None] & m_k[None, :]
    m_rv = m_r[:, None] & m_v[None, :]
    q += (t0 * H + i_h) * K
    k += (t0 * H + i_h) * K
    gcum += (t0 * H + i_h) * K
    v += (t0 * H + i_h) * V
    do += (t0 * H + i_h) * V
    p_rk = rows[:, None] * (H * K) + o_k[None, :]
    p_rv = rows[:, None] * (H * V) + o_v[None, :]
    b_g = tl.load(gcum + p_rk, mask=m_rk, other=0.0)
    b_do = tl.load(do + p_rv, mask=m_rv, other=0.0)
    b_v = tl.load(v + p_rv, mask=m_rv, other=0.0)

    # dQ, earlier key blocks j: reference decay at this block's first row (rows come later: B_row <= B_first <= B_key)
    b_dq = tl.zeros([BC, BK], dtype=tl.float32)
    if i_i > 0:
        b_gf = tl.load(gcum + i_i * BC * (H * K) + o_k, mask=m_k, other=0.0)
        for i_j in range(0, i_i):
            cols = i_j * BC + o_r
            p_ck = cols[:, None] * (H * K) + o_k[None, :]
            b_kj = tl.load(k + p_ck, mask=m_k[None, :], other=0.0).to(tl.float32)
            b_gj = tl.load(gcum + p_ck, mask=m_k[None, :], other=0.0)
            b_vj = tl.load(v + cols[:, None] * (H * V) + o_v[None, :], mask=m_v[None, :], other=0.0)
            b_dA = tl.dot(b_do, tl.trans(b_vj), input_precision=DOT_PREC) * scale  # [row t, key i]
            b_kg = (b_kj * tl.exp(b_gf[None, :] - b_gj)).to(k.dtype.element_ty)
            b_dq += tl.dot(b_dA.to(k.dtype.element_ty), b_kg, input_precision=DOT_PREC)
        b_dq = b_dq * tl.exp(tl.where(m_rk, b_g - b_gf[None, :], 0.0))

    # dK, later query blocks j: reference decay at this block's last row (B_query <= B_last <= B_key)
    b_dk = tl.zeros([BC, BK], dtype=tl.float32)
    if (i_i + 1) * BC < n_valid:
        b_gl = tl.load(gcum + (i_i * BC + BC - 1) * (H * K) + o_k, mask=m_k, other=0.0)
        for i_j in range(i_i + 1, NC):
            rows_j = i_j * BC + o_r
            m_j = rows_j < n_valid
            m_jk = m_j[:, None] & m_k[None, :]
            p_jk = rows_j[:, None] * (H * K) + o_k[None, :]
            b_qj = tl.load(q + p_jk, mask=m_jk, other=0.0).to(tl.float32)
            b_gqj = tl.load(gcum + p_jk, mask=m_jk, other=0.0)
            b_doj = tl.load(do + rows_j[:, None] * (H * V) + o_v[None, :], mask=m_j[:, None] & m_v[None, :],
                            other=0.0)
            b_dAT = tl.dot(b_v, tl.trans(b_doj), input_precision=DOT_PREC) * scale  # [key i, row t] = dA^T
            b_qg = (b_qj * tl.exp(tl.where(m_jk, b_gqj - b_gl[None, :], 0.0))).to(q.dtype.element_ty)
            b_dk += tl.dot(b_dAT.to(q.dtype.element_ty), b_qg, input_precision=DOT_PREC)
        b_dk = b_dk * tl.exp(tl.where(m_rk, b_gl[None, :] - b_g, 0.0))

    # the diagonal block, exact: column s feeds dQ of rows >= s, row s feeds dK of columns <= s
    b_dAd = tl.dot(b_do, tl.trans(b_v), input_precision=DOT_PREC) * scale
    b_dAd = tl.where((o_r[:, None] >= o_r[None, :]) & m_r[:, None] & m_r[None, :], b_dAd, 0.0)
    b_qf = tl.load(q + p_rk, mask=m_rk, other=0.0).to(tl.float32)
    b_kf = tl.load(k + p_rk, mask=m_rk, other=0.0).to(tl.float32)
    for s in range(0, BC):
        sel_r = o_r == s
        b_gs = tl.sum(tl.where(sel_r[:, None], b_g, 0.0), axis=0)  # B at row s of this block
        b_ks = tl.sum(tl.where(sel_r[:, None], b_kf, 0.0), axis=0)
        b_qs = tl.sum(tl.where(sel_r[:, None], b_qf, 0.0), axis=0)
        a_col = tl.sum(tl.where(sel_r[None, :], b_dAd, 0.0), axis=1)  # dA[:, s]
        a_row = tl.sum(tl.where(sel_r[:, None], b_dAd, 0.0), axis=0)  # dA[s, :]
        keep_q = m_rk & (o_r >= s)[:, None]
        b_dq += tl.where(keep_q, a_col[:, None] * b_ks[None, :] * tl.exp(tl.where(keep_q, b_g - b_gs[None, :], 0.0)),
                         0.0)
        keep_k = m_rk & (o_r <= s)[:, None] & (i_i * BC + s < n_valid)
        b_dk += tl.where(keep_k, a_row[:, None] * b_qs[None, :] * tl.exp(tl.where(keep_k, b_gs[None, :] - b_g, 0.0)),
                         0.0)
    tl.store(dq_intra + (t0 * H + i_h) * K + p_rk, b_dq, mask=m_rk)
    tl.store(dk_intra + (t0 * H + i_h) * K + p_rk, b_dk, mask=m_rk)


def _intra_levels_configs():
    # sm_90a registers in kernels/_compile_check.py's report ("gla bwd intra levels"); the forward's BK 64 x 16 warps
    # spills here (124 B), so it is left out
    return tuned_configs("_gla_bwd_intra_levels_kernel", [
        triton.Config({"BK": bk}, num_warps=w, num_stages=1) for bk, w in INTRA_LEVELS_CONFIGS if bk < 64])


@triton.autotune(configs=_intra_levels_configs(), key=["H", "K", "V", "DOT_PREC"])
@triton.jit
def _gla_bwd_intra_levels_kernel(
    q, k, v, gcum, do, dq_intra, dk_intra, cu_seqlens, chunk_seq, chunk_off, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BV: tl.constexpr, LEVELS: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr, BK: tl.constexpr,
):
    """The intra-chunk parts of dQ and dK of one whole chunk, by the levels of chunk.py's
    `_gla_chunk_intra_levels_kernel`: with dA = scale dO V^T (t >= s),
        dQ_t = sum_s dA[t, s] k_s e^{B_t - B_s},   dK_s = sum_t dA[t, s] q_t e^{B_t - B_s},
    and a level's pairs (t in a group's later half, s in its earlier half, r the earlier half's last row) give
        dQ_t += e^{B_t - B_r} sum_s dA[t, s] (k_s e^{B_r - B_s}),
        dK_s += e^{B_r - B_s} sum_t dA^T[s, t] (q_t e^{B_t - B_r}).
    One exponential per element and level serves both (a later row's factor is dQ's, an earlier row's dK's). dA^T
    comes from its own product V dO^T, not from transposing dA's (a transposed MMA result is what Triton <= 3.7.0
    miscompiles on Hopper, fla #640)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    n_valid = eos - t0
    o_t = tl.arange(0, BT)
    m_t = o_t < n_valid
    r = o_t[:, None]
    c = o_t[None, :]
    b_dA = tl.zeros([BT, BT], dtype=tl.float32)
    b_dAT = tl.zeros([BT, BT], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = (t0 * H + i_h) * V + o_t[:, None] * (H * V) + o_v[None, :]
        b_do = tl.load(do + p, mask=m, other=0.0)
        b_v = tl.load(v + p, mask=m, other=0.0)
        b_dA += tl.dot(b_do, tl.trans(b_v), input_precision=DOT_PREC)
        b_dAT += tl.dot(b_v, tl.trans(b_do), input_precision=DOT_PREC)
    b_dA = tl.where(c <= r, b_dA * scale, 0.0)
    b_dAT = tl.where(r <= c, b_dAT * scale, 0.0)
    b_diag = tl.sum(tl.where(r == c, b_dA, 0.0), axis=1)  # t = s: e^0
    q += (t0 * H + i_h) * K
    k += (t0 * H + i_h) * K
    gcum += (t0 * H + i_h) * K
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m = m_t[:, None] & m_k[None, :]
        p = o_t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p, mask=m, other=0.0).to(tl.float32)
        b_k = tl.load(k + p, mask=m, other=0.0).to(tl.float32)
        b_g = tl.load(gcum + p, mask=m, other=0.0)
        b_dq = b_diag[:, None] * b_k
        b_dk = b_diag[:, None] * b_q
        for lvl in tl.static_range(LEVELS):
            later, same, b_e, b_qf, b_kf = level_terms(q, k, gcum, b_q, b_k, b_g, o_t, o_k, m_k, n_valid,
                                                       BT >> (lvl + 1), H, K)
            b_pq = tl.dot(tl.where(same, b_dA, 0.0).to(k.dtype.element_ty), b_kf, input_precision=DOT_PREC)
            b_pk = tl.dot(tl.where(same, b_dAT, 0.0).to(q.dtype.element_ty), b_qf, input_precision=DOT_PREC)
            b_dq += tl.where(later, b_e * b_pq, 0.0)
            b_dk += tl.where(later, 0.0, b_e * b_pk)
        tl.store(dq_intra + (t0 * H + i_h) * K + p, b_dq, mask=m)
        tl.store(dk_intra + (t0 * H + i_h) * K + p, b_dk, mask=m)


def launch_bwd_intra(qt, kt, vt, gcum, dot_, dq_intra, dk_intra, cu, cs, co, scale, T, NTs, N, NT, varlen, prec):
    """The intra-chunk parts of dQ and dK for NT chunks, as chunk.py's bwd_intra_method(K, V) says."""
    H, K, V = qt.shape[1], qt.shape[2], vt.shape[2]
    if bwd_intra_method(K, V) == "levels":
        _gla_bwd_intra_levels_kernel[(NT, H)](
            qt, kt, vt, gcum, dot_, dq_intra, dk_intra, cu, cs, co, scale, T, NTs, N, H, K, V,
            BT=CHUNK, BV=min(64, max(16, next_pow2(V))), LEVELS=CHUNK.bit_length() - 1, IS_VARLEN=varlen,
            DOT_PREC=prec,
        )
        return
    _gla_bwd_intra_kernel[(NT * (CHUNK // SUB), H)](
        qt, kt, vt, gcum, dot_, dq_intra, dk_intra, cu, cs, co, scale, T, NTs, N, H, K, V,
        BT=CHUNK, BC=SUB, BK=max(16, next_pow2(K)), BV=max(16, next_pow2(V)), IS_VARLEN=varlen, DOT_PREC=prec,
        num_warps=4,
    )


# (num_warps, num_stages, maxnreg) of the inter kernel. sm_90a (bf16, K = V = 128): 4 warps 255 registers and
# 188-192 B spilled per thread (Nsight Compute, fifteenth session: 44 M spill requests, 9.27 ms at 8 x 32K); 8 warps
# 180, none: one program per SM. The last two, capped at 128 registers (112 B spilled, but two programs per SM), are
# offered only at the TUNED_HEAD_DIMS, where benchmarks/chunk_configs_gpu.py checked and timed them (H200,
# eighteenth session, 8 x 32K: 7.82 ms at 1 stage, 8.12 at 2, against 10.9-11.4 uncapped).
INTER_CONFIGS = [(4, 2, None), (8, 2, None), (8, 1, None), (8, 1, 128), (8, 2, 128)]
INTER_EVERYWHERE = 3


@triton.autotune(configs=tuned_configs("_gla_bwd_inter_kernel", [
    triton.Config({}, num_warps=w, num_stages=s, **({"maxnreg": r} if r else {})) for w, s, r in INTER_CONFIGS]),
                 key=["H", "K", "V", "IS_VARLEN", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": tuned_dims_prune(INTER_EVERYWHERE)})
@triton.jit
def _gla_bwd_inter_kernel(
    q, k, v, gcum, do, hbuf, dhbuf, dq_intra, dk_intra, dq, dk, dgk, cu_seqlens, chunk_seq, chunk_off, scale,
    T, NTs, N, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
    BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Per (K block, chunk, head): the state parts of dQ and dK, their sums with the intra parts, and dgk."""
    i_k = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    o_t = tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_t = o_t < eos - t0
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    last = tl.minimum(BT, eos - t0) - 1
    base_k = (t0 * H + i_h) * K
    base_v = (t0 * H + i_h) * V
    p_k = base_k + o_t[:, None] * (H * K) + o_k[None, :]
    hbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    dhbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_hdh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_v = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        # S^T and dS'^T tiles [BV, BK], loaded transposed (element (v, k) sits at k V + v)
        p_hT = o_k[None, :] * V + o_v[:, None]
        m_hT = m_v[:, None] & m_k[None, :]
        b_hT = tl.load(hbuf + p_hT, mask=m_hT, other=0.0)
        b_dhT = tl.load(dhbuf + p_hT, mask=m_hT, other=0.0)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.0)
        b_v = tl.load(v + p_v, mask=m_tv, other=0.0)
        b_dq += tl.dot(b_do, b_hT.to(b_do.dtype), input_precision=DOT_PREC)
        b_dk += tl.dot(b_v, b_dhT.to(b_v.dtype), input_precision=DOT_PREC)
        b_hdh += tl.sum(b_hT.to(tl.float32) * b_dhT, axis=0)
    b_g = tl.load(gcum + p_k, mask=m_tk, other=0.0)
    b_gl = tl.load(gcum + base_k + last * (H * K) + o_k, mask=m_k, other=0.0)
    b_q = tl.load(q + p_k, mask=m_tk, other=0.0).to(tl.float32)
    b_k = tl.load(k + p_k, mask=m_tk, other=0.0).to(tl.float32)
    b_dq = b_dq * (tl.exp(b_g) * scale)
    b_dk = b_dk * tl.exp(tl.where(m_tk, b_gl[None, :] - b_g, 0.0))
    dB_last = tl.exp(b_gl) * b_hdh + tl.sum(b_k * b_dk, axis=0)
    b_dq += tl.load(dq_intra + p_k, mask=m_tk, other=0.0)
    b_dk += tl.load(dk_intra + p_k, mask=m_tk, other=0.0)
    b_dB = b_q * b_dq - b_k * b_dk + tl.where(o_t[:, None] == last, dB_last[None, :], 0.0)
    b_dB = tl.where(m_tk, b_dB, 0.0)
    b_dgk = tl.sum(b_dB, axis=0)[None, :] - tl.cumsum(b_dB, axis=0) + b_dB  # reverse cumulative sum
    tl.store(dq + p_k, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_k, b_dk.to(dk.dtype.element_ty), mask=m_tk)
    tl.store(dgk + p_k, b_dgk, mask=m_tk)


@triton.jit
def _gla_bwd_dv_kernel(
    k, gcum, do, A, dhbuf, dv, cu_seqlens, chunk_seq, chunk_off, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dV = A^T dO + (K * e^{b - B}) dS' per (V block, chunk, head)."""
    i_v = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_tv = m_t[:, None] & m_v[None, :]
    last = tl.minimum(BT, eos - t0) - 1
    base_k = (t0 * H + i_h) * K
    p_v = (t0 * H + i_h) * V + o_t[:, None] * (H * V) + o_v[None, :]
    # A^T loaded transposed; rows of A past the sequence belong to the next one (or were never written): masked
    b_AT = tl.load(A + (t0 * H + i_h) * BT + o_t[None, :] * (H * BT) + o_t[:, None],
                   mask=m_t[None, :] & m_t[:, None], other=0.0)
    b_do = tl.load(do + p_v, mask=m_tv, other=0.0)
    b_dv = tl.dot(b_AT.to(b_do.dtype), b_do, input_precision=DOT_PREC)
    dhbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m_tk = m_t[:, None] & m_k[None, :]
        p_k = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_g = tl.load(gcum + p_k, mask=m_tk, other=0.0)
        b_gl = tl.load(gcum + base_k + last * (H * K) + o_k, mask=m_k, other=0.0)
        b_kd = (b_k * tl.exp(tl.where(m_tk, b_gl[None, :] - b_g, 0.0))).to(b_do.dtype)
        b_dh = tl.load(dhbuf + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.0)
        b_dv += tl.dot(b_kd, b_dh.to(b_do.dtype), input_precision=DOT_PREC)
    tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)


def supported(q, v) -> bool:
    return q.shape[-1] <= 128 and v.shape[-1] <= 128 and q.dtype in (torch.bfloat16, torch.float16, torch.float32)


@on_tensor_device
def chunk_gla_bwd(q, k, v, gk, scale, initial_state, do, dht, cu_seqlens=None, _phases=None):
    """Gradients (dq, dk, dv, dgk, dh0 or None) of chunk_gla_fwd. Tokens [B, T, H, *], or packed ([1, TT, H, *] /
    [TT, H, *]) with cu_seqlens [N+1]; initial_state / dht dense [N, H, K, V] (or None). _phases: a list that
    receives (name, launch) of each kernel ("intra", "state": the forward's recomputed; "dh", "bwd_intra", "inter",
    "dv"), for timing one alone."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if K > 128 or V > 128:
        raise ValueError("the Triton GLA backward supports head dims up to 128")
    TT = q.numel() // (H * K)
    dtype = q.dtype
    dev = q.device
    BT = CHUNK
    if cu_seqlens is not None:
        N = cu_seqlens.shape[0] - 1
        chunk_seq, chunk_off, NT = chunk_map(cu_seqlens, TT, BT)
        T, NTs = 0, 0
    else:
        N, T = q.shape[:2] if q.dim() == 4 else (1, TT)
        NTs = cdiv(T, BT)
        NT = N * NTs
        chunk_seq = chunk_off = None
    scale = K**-0.5 if scale is None else float(scale)
    prec = _dot_prec(dtype)
    f32 = torch.float32
    qt = q.reshape(TT, H, K).contiguous()
    kt = k.reshape(TT, H, K).to(dtype).contiguous()
    vt = v.reshape(TT, H, V).to(dtype).contiguous()
    gt = gk.reshape(TT, H, K).contiguous()
    dot_ = do.reshape(TT, H, V).to(dtype).contiguous()
    gcum = torch.empty(TT, H, K, dtype=f32, device=dev)
    dummy = gcum
    cu = cu_seqlens if cu_seqlens is not None else dummy
    cs = chunk_seq if chunk_seq is not None else dummy
    co = chunk_off if chunk_off is not None else dummy
    varlen = cu_seqlens is not None
    BKc = min(64, max(16, next_pow2(K)))
    BVc = min(64, max(16, next_pow2(V)))
    dBK, dBV = default_state_blocks(N, H, K, V)
    BKs, BVs = max(16, min(dBK, next_pow2(K))), max(16, min(dBV, next_pow2(V)))
    warps_state = 8 if BKs * BVs >= 4096 else 4
    stages_state, stages_dh = state_pass_stages(GLA_STATE_STAGES, K, V), state_pass_stages(GLA_DH_STAGES, K, V)
    h0 = initial_state.contiguous() if initial_state is not None else None

    # recompute the forward's intermediates: B, the state before every chunk, A
    hbuf = torch.empty(NT, H, K, V, dtype=dtype, device=dev)
    A = torch.empty(TT, H, BT, dtype=f32, device=dev)
    phases = []
    if NT > 0:
        phases.append(("intra", lambda: launch_intra(qt, kt, gt, gcum, A, cu, cs, co, scale, T, NTs, N, NT, varlen,
                                                     prec, V)))  # B and A
        phases.append(("state", lambda: _gla_chunk_state_kernel[(cdiv(V, BVs), cdiv(K, BKs), N * H)](
            kt, vt, gcum, hbuf, h0 if h0 is not None else dummy, dummy, dummy, dummy, cu, co, T, NTs,
            h0.stride(0) if h0 is not None else 0, 0, H, K, V, BT=BT, BK=BKs, BV=BVs, IS_VARLEN=varlen,
            USE_H0=h0 is not None, STORE_HT=False, INDEXED=False, HAS_H0_MASK=False, DOT_PREC=prec,
            num_warps=warps_state, num_stages=stages_state,
        )))
    # kernel 1: dS' of every chunk, dh0
    dhbuf = torch.empty(NT, H, K, V, dtype=f32, device=dev)
    dh0 = torch.empty(N, H, K, V, dtype=f32, device=dev) if initial_state is not None else None
    dht_ = dht.float().contiguous() if dht is not None else None
    if N > 0:
        phases.append(("dh", lambda: _gla_bwd_dh_kernel[(cdiv(V, BVs), cdiv(K, BKs), N * H)](
            qt, dot_, gcum, dhbuf, dht_ if dht_ is not None else dummy, dh0 if dh0 is not None else dummy, cu, co,
            scale, T, NTs, H, K, V, BT=BT, BK=BKs, BV=BVs, IS_VARLEN=varlen, USE_DHT=dht_ is not None,
            STORE_DH0=dh0 is not None, DOT_PREC=prec, num_warps=warps_state, num_stages=stages_dh,
        )))
    dq = torch.empty(TT, H, K, dtype=dtype, device=dev)
    dk = torch.empty(TT, H, K, dtype=dtype, device=dev)
    dv = torch.empty(TT, H, V, dtype=dtype, device=dev)
    dgk = torch.empty(TT, H, K, dtype=f32, device=dev)
    if NT > 0:
        # kernel 2: intra-chunk parts of dq, dk
        dq_intra = torch.empty(TT, H, K, dtype=f32, device=dev)
        dk_intra = torch.empty(TT, H, K, dtype=f32, device=dev)
        phases.append(("bwd_intra", lambda: launch_bwd_intra(qt, kt, vt, gcum, dot_, dq_intra, dk_intra, cu, cs, co,
                                                             scale, T, NTs, N, NT, varlen, prec)))
        # kernel 3: state parts, dq, dk, dgk
        phases.append(("inter", lambda: _gla_bwd_inter_kernel[(cdiv(K, BKc), NT, H)](
            qt, kt, vt, gcum, dot_, hbuf, dhbuf, dq_intra, dk_intra, dq, dk, dgk, cu, cs, co, scale, T, NTs, N,
            H, K, V, BT=BT, BK=BKc, BV=BVc, IS_VARLEN=varlen, DOT_PREC=prec,
        )))
        # kernel 4: dv
        phases.append(("dv", lambda: _gla_bwd_dv_kernel[(cdiv(V, BVc), NT, H)](
            kt, gcum, dot_, A, dhbuf, dv, cu, cs, co, T, NTs, N, H, K, V,
            BT=BT, BK=BKc, BV=BVc, IS_VARLEN=varlen, DOT_PREC=prec, num_warps=4, num_stages=2,
        )))
    for _, launch in phases:
        launch()
    if _phases is not None:
        _phases.extend(phases)
    return (dq.view(q.shape), dk.view(k.shape).to(k.dtype), dv.view(v.shape).to(v.dtype),
            dgk.view(gk.shape).to(gk.dtype), None if dh0 is None else dh0.to(initial_state.dtype))
