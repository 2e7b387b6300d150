"""Chunked GLA forward (training, prefill), Triton. Chunk size 64, sub-blocks of 16.

The math is `naive.py::naive_chunk_gla`, with B the in-chunk cumulative per-channel log decay:
    kernel 1 (per chunk, head):   B = cumsum(gk) within the chunk
    kernel 2 (per sequence, head, K block, V block; sequential over chunks):
        H_c = state before chunk c;  H_{c+1} = diag(e^{B_last}) H_c + (K_c * e^{B_last - B})^T V_c
    kernel 3 (per 16-row sub-block of a chunk, head): intra-chunk weights
        A_ti = scale * sum_c q_tc k_ic e^{B_tc - B_ic}  (i <= t)
      off-diagonal 16x16 blocks as one product (Q_i e^{B - B_r}) (K_j e^{B_r - B})^T with B_r the decay at the end
      of column block j, so every exponent is <= 0 (no overflow whatever the decay); the diagonal blocks one
      column at a time from the exact decay differences.
    kernel 4 (per chunk, head, V block):  O_c = scale (Q_c * e^B) H_c + A V_c
At K = V = 128 one level kernel (per chunk, head) replaces kernels 1 and 3 (`intra_method`): it makes B, then A
with every pair s < t as one tensor-core product at the level where t and s first split; it runs first, since the
state pass reads B.

Same token / state / cu_seqlens / state-pool interface as the GDN kernels (gated_delta_rule/chunk.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import first_chunk, load_initial_state, locate_chunk, seq_bounds, state_tile, store_final_state
from .._triton_utils import (cdiv, env_choice, next_pow2, on_tensor_device, state_pass_stages, tuned_configs,
                             tuned_head_dims)
from ..gated_delta_rule.chunk import CHUNK, _dot_prec, chunk_map

SUB = 16


@triton.jit
def _gla_chunk_cumsum_kernel(
    gk, gcum, cu_seqlens, chunk_seq, chunk_off, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, IS_VARLEN: tl.constexpr,
):
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    base = (t0 * H + i_h) * K
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = o_t[:, None] * (H * K) + o_k[None, :]
        b_g = tl.load(gk + base + p, mask=m, other=0.0).to(tl.float32)
        tl.store(gcum + base + p, tl.cumsum(b_g, axis=0), mask=m)


@triton.jit
def _gla_chunk_state_kernel(
    k, v, gcum, hbuf, h0, ht, state_idx, has_h0, cu_seqlens, chunk_off,
    T, NTs, s_h0, s_ht, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
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
    b_h, slot, ok = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                       HAS_H0_MASK)

    hbuf += c0 * (H * K * V) + p_hkv
    k += (bos * H + i_h) * K
    gcum += (bos * H + i_h) * K
    v += (bos * H + i_h) * V
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    for i_t in range(0, n_chunks):
        tl.store(hbuf, b_h.to(hbuf.dtype.element_ty), mask=m_h)
        m_t = o_t < seq_len - i_t * BT
        m_tk = m_t[:, None] & m_k[None, :]
        last = tl.minimum(BT, seq_len - i_t * BT) - 1
        b_gl = tl.load(gcum + last * (H * K) + o_k, mask=m_k, other=0.0)
        b_g = tl.load(gcum + p_k, mask=m_tk, other=0.0)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_kd = (b_k * tl.exp(tl.where(m_tk, b_gl[None, :] - b_g, 0.0))).to(v.dtype.element_ty)
        b_v = tl.load(v + p_v, mask=m_t[:, None] & m_v[None, :], other=0.0)
        b_h = b_h * tl.exp(b_gl)[:, None] + tl.dot(tl.trans(b_kd), b_v, input_precision=DOT_PREC)
        hbuf += H * K * V
        k += BT * H * K
        gcum += BT * H * K
        v += BT * H * V

    store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT)


@triton.jit
def _gla_chunk_intra_kernel(
    q, k, gcum, A, cu_seqlens, chunk_seq, chunk_off, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
):
    NC: tl.constexpr = BT // BC
    i_ci = tl.program_id(0)
    i_h = tl.program_id(1)
    i_c = i_ci // NC
    i_i = i_ci % NC
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    n_valid = eos - t0  # tokens of this chunk that belong to the sequence (may exceed BT)
    if i_i * BC >= n_valid:
        return
    o_r = tl.arange(0, BC)
    o_k = tl.arange(0, BK)
    o_a = tl.arange(0, BT)
    m_k = o_k < K
    rows = i_i * BC + o_r
    m_r = rows < n_valid
    m_rk = m_r[:, None] & m_k[None, :]
    q += (t0 * H + i_h) * K
    k += (t0 * H + i_h) * K
    gcum += (t0 * H + i_h) * K
    A += (t0 * H + i_h) * BT
    p_r = rows[:, None] * (H * K) + o_k[None, :]
    b_q = tl.load(q + p_r, mask=m_rk, other=0.0).to(tl.float32)
    b_gq = tl.load(gcum + p_r, mask=m_rk, other=0.0)
    p_A = rows[:, None] * (H * BT) + o_r[None, :]
    # off-diagonal blocks: columns of earlier sub-blocks, reference decay at each block's last row
    for i_j in range(0, i_i):
        cols = i_j * BC + o_r
        p_c = cols[:, None] * (H * K) + o_k[None, :]
        b_gr = tl.load(gcum + (i_j * BC + BC - 1) * (H * K) + o_k, mask=m_k, other=0.0)
        b_kj = tl.load(k + p_c, mask=m_k[None, :], other=0.0).to(tl.float32)
        b_gk = tl.load(gcum + p_c, mask=m_k[None, :], other=0.0)
        b_qf = b_q * tl.exp(tl.where(m_rk, b_gq - b_gr[None, :], 0.0))
        b_kf = b_kj * tl.exp(b_gr[None, :] - b_gk)
        b_blk = tl.dot(b_qf.to(q.dtype.element_ty), tl.trans(b_kf.to(k.dtype.element_ty)), input_precision=DOT_PREC)
        tl.store(A + p_A + i_j * BC, b_blk * scale, mask=m_r[:, None])
    # diagonal block: exact, one column at a time
    b_D = tl.zeros([BC, BC], dtype=tl.float32)
    for s in range(0, BC):
        col = i_i * BC + s
        m_s = m_k & (col < n_valid)
        b_ks = tl.load(k + col * (H * K) + o_k, mask=m_s, other=0.0).to(tl.float32)
        b_gs = tl.load(gcum + col * (H * K) + o_k, mask=m_s, other=0.0)
        keep = m_rk & (o_r >= s)[:, None]
        b_col = tl.sum(b_q * b_ks[None, :] * tl.exp(tl.where(keep, b_gq - b_gs[None, :], 0.0)), axis=1)
        b_D += tl.where((o_r[:, None] >= s) & (o_r[None, :] == s), b_col[:, None], 0.0)
    tl.store(A + p_A + i_i * BC, b_D * scale, mask=m_r[:, None])
    # later columns are zero
    m_up = m_r[:, None] & (o_a[None, :] >= (i_i + 1) * BC)
    tl.store(A + rows[:, None] * (H * BT) + o_a[None, :], tl.zeros([BC, BT], dtype=tl.float32), mask=m_up)


@triton.jit
def level_terms(q, k, gcum, b_q, b_k, b_g, o_t, o_k, m_k, n_valid, half: tl.constexpr, H: tl.constexpr,
                K: tl.constexpr):
    """One level of the level kernels (this file's A, chunk_bwd.py's dQ and dK) on the K block o_k of a chunk, whose
    groups are 2 * half rows and whose reference row r is each group's earlier half's last. Returns
      later [BT, 1]   rows in their group's later half,
      same [BT, BT]   pairs within one group,
      e [BT, BK]      e^{B_t - B_r} on later rows, e^{B_r - B_s} on earlier ones: both <= 1 on every pair kept; the
                      clamp only stops rows past the sequence end (r beyond it) from overflowing,
      q e on later rows and k e on earlier ones (zero elsewhere), rounded to q's and k's dtypes for the products."""
    later = ((o_t % (2 * half)) >= half)[:, None]
    ref = (o_t // (2 * half)) * (2 * half) + half - 1
    b_gr = tl.load(gcum + ref[:, None] * (H * K) + o_k[None, :], mask=(ref < n_valid)[:, None] & m_k[None, :],
                   other=0.0)
    b_e = tl.exp(tl.minimum(tl.where(later, b_g - b_gr, b_gr - b_g), 0.0))
    same = (o_t[:, None] // (2 * half)) == (o_t[None, :] // (2 * half))
    b_qf = tl.where(later, b_q * b_e, 0.0).to(q.dtype.element_ty)
    b_kf = tl.where(later, 0.0, b_k * b_e).to(k.dtype.element_ty)
    return later, same, b_e, b_qf, b_kf


# (BK, warps) of the level kernel. sm_90a (bf16, K = 128): BK 32 x 8 warps 211 registers, BK 16 x 8 warps 160,
# BK 32 x 16 warps 120, BK 64 x 16 warps 128, no spills; 4 warps spill at every BK (and float32 inputs spill 17 KB
# there). The H200's autotuner took BK 32 x 16 warps at 8 x 32K (one 512-thread block per SM, 72 block-wide
# barriers per chunk); BK 64 x 16 warps needs 40 (sixteenth session: offered to the autotuner)
INTRA_LEVELS_CONFIGS = [(32, 8), (16, 8), (32, 16), (64, 16)]


def _intra_levels_configs():
    return tuned_configs("_gla_chunk_intra_levels_kernel", [
        triton.Config({"BK": bk}, num_warps=w, num_stages=1) for bk, w in INTRA_LEVELS_CONFIGS])


@triton.autotune(configs=_intra_levels_configs(), key=["H", "K", "DOT_PREC"])
@triton.jit
def _gla_chunk_intra_levels_kernel(
    q, k, gk, gcum, A, cu_seqlens, chunk_seq, chunk_off, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, BT: tl.constexpr, LEVELS: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr, BK: tl.constexpr,
):
    """A of one whole chunk (BT = 2^LEVELS rows) on the tensor cores, every exponent <= 0 as in the kernel above.
    A pair s < t first falls into different halves at the highest bit where t and s differ: at that level, with
    half = 2^bit, both lie in one group of 2 * half rows, t in its later half, s in its earlier one, and r = the
    last row of the earlier half sits between them (s <= r < t). So e^{B_t - B_s} = e^{B_t - B_r} e^{B_r - B_s},
    both factors <= 1, and each level is one product (Q e^{B - B_r}) (K e^{B_r - B})^T kept on its own pairs. One
    exponential per element and level (LEVELS x BT x K per chunk) instead of the column loop's 16 per element of a
    sub-block's rows, and no cross-thread reductions; the products round their operands to the input dtype, as the
    off-diagonal blocks above do. It also makes B from gk (the cumsum kernel's work, one launch and one read of gk
    fewer) and writes it to gcum for the later kernels; the reference rows are read back from there."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    n_valid = eos - t0
    o_t = tl.arange(0, BT)
    m_t = o_t < n_valid
    q += (t0 * H + i_h) * K
    k += (t0 * H + i_h) * K
    gk += (t0 * H + i_h) * K
    gcum += (t0 * H + i_h) * K
    b_A = tl.zeros([BT, BT], dtype=tl.float32)
    b_diag = tl.zeros([BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m = m_t[:, None] & m_k[None, :]
        p = o_t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p, mask=m, other=0.0).to(tl.float32)
        b_k = tl.load(k + p, mask=m, other=0.0).to(tl.float32)
        b_g = tl.cumsum(tl.load(gk + p, mask=m, other=0.0).to(tl.float32), axis=0)
        tl.store(gcum + p, b_g, mask=m)
        tl.debug_barrier()  # the reference rows below are other threads' stores
        b_diag += tl.sum(b_q * b_k, axis=1)  # t = s: e^0
        for lvl in tl.static_range(LEVELS):
            _, same, _, b_qf, b_kf = level_terms(q, k, gcum, b_q, b_k, b_g, o_t, o_k, m_k, n_valid, BT >> (lvl + 1),
                                                 H, K)
            b_p = tl.dot(b_qf, tl.trans(b_kf), input_precision=DOT_PREC)
            b_A += tl.where(same, b_p, 0.0)
    b_A += tl.where(o_t[:, None] == o_t[None, :], b_diag[:, None], 0.0)
    p_A = A + (t0 * H + i_h) * BT + o_t[:, None] * (H * BT) + o_t[None, :]
    tl.store(p_A, b_A * scale, mask=m_t[:, None])


INTRA_METHODS = ("columns", "levels")


def intra_method(K: int, V: int) -> str:
    """How A, the intra-chunk weights, is made (with B on the way): "levels" (`_gla_chunk_intra_levels_kernel`, per
    chunk, every pair on the tensor cores, B made in the same launch) at the head dims where the GPU checked and timed
    it (_triton_utils.TUNED_HEAD_DIMS; H200, fifteenth session: the GLA checks 13 / 13, the forward at 8 x 32K 17.2
    -> 13.1 ms, 1 x 32K 2.87 -> 2.35, 4 x 8K 2.17 -> 1.66), "columns" elsewhere (the cumsum kernel, then
    `_gla_chunk_intra_kernel`: per 16-row sub-block, its diagonal block one column at a time in exact float32).
    HYBRIDSERVE_GLA_INTRA (read at every call) overrides."""
    return env_choice("HYBRIDSERVE_GLA_INTRA", INTRA_METHODS, "levels", "columns", K, V)


def bwd_intra_method(K: int | None = None, V: int | None = None) -> str:
    """How the backward's intra-chunk dQ and dK are made: "levels" (chunk_bwd.py's `_gla_bwd_intra_levels_kernel`)
    at the head dims where the GPU checked and timed it (_triton_utils.TUNED_HEAD_DIMS; H200, fifteenth session: the
    GLA checks through the public op's gradients; sixteenth: forward + backward at 8 x 32K 51.5 ms against 123 with
    the column kernel), "columns" elsewhere (its `_gla_bwd_intra_kernel`). HYBRIDSERVE_GLA_BWD_INTRA (read at every
    call) overrides."""
    return env_choice("HYBRIDSERVE_GLA_BWD_INTRA", INTRA_METHODS, "levels", "columns", K, V)


def launch_intra(qt, kt, gt, gcum, A, cu, cs, co, scale, T, NTs, N, NT, varlen, prec, V):
    """B (gcum, the in-chunk cumulative decay of gt) and A (float32, [tokens, H, BT], scaled) for NT >= 1 chunks, as
    intra_method(K, V) says (V: the value head dim): the level kernel makes both, the column kernel needs the cumsum
    kernel first. The forward and the backward's recompute share it; the state pass, which reads B, runs after it."""
    H, K = qt.shape[1], qt.shape[2]
    if intra_method(K, V) == "levels":
        _gla_chunk_intra_levels_kernel[(NT, H)](
            qt, kt, gt, gcum, A, cu, cs, co, scale, T, NTs, N, H, K,
            BT=CHUNK, LEVELS=CHUNK.bit_length() - 1, IS_VARLEN=varlen, DOT_PREC=prec,
        )
        return
    _gla_chunk_cumsum_kernel[(NT, H)](gt, gcum, cu, cs, co, T, NTs, N, H, K, BT=CHUNK,
                                      BK=min(64, max(16, next_pow2(K))), IS_VARLEN=varlen)
    _gla_chunk_intra_kernel[(NT * (CHUNK // SUB), H)](
        qt, kt, gcum, A, cu, cs, co, scale, T, NTs, N, H, K,
        BT=CHUNK, BC=SUB, BK=max(16, next_pow2(K)), IS_VARLEN=varlen, DOT_PREC=prec, num_warps=4,
    )


def _out_configs():
    return tuned_configs("_gla_chunk_out_kernel", [
        triton.Config({"BV": bv}, num_warps=w, num_stages=s)
        for bv, w, s in [(64, 4, 2), (32, 4, 2), (64, 8, 2), (128, 8, 2), (64, 4, 3)]])


@triton.autotune(configs=_out_configs(), key=["H", "K", "V", "DOT_PREC"])
@triton.jit
def _gla_chunk_out_kernel(
    q, v, gcum, A, hbuf, o, cu_seqlens, chunk_seq, chunk_off, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
):
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
    q += (t0 * H + i_h) * K
    gcum += (t0 * H + i_h) * K
    hbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m = m_t[:, None] & m_k[None, :]
        p_k = o_t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_k, mask=m, other=0.0).to(tl.float32)
        b_g = tl.load(gcum + p_k, mask=m, other=0.0)
        b_qg = (b_q * tl.exp(b_g)).to(q.dtype.element_ty)
        b_h = tl.load(hbuf + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.0)
        b_o += tl.dot(b_qg, b_h.to(b_qg.dtype), input_precision=DOT_PREC)
    b_A = tl.load(A + (t0 * H + i_h) * BT + o_t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.0)
    p_v = (t0 * H + i_h) * V + (o_t[:, None] * (H * V) + o_v[None, :])
    m_tv = m_t[:, None] & m_v[None, :]
    b_v = tl.load(v + p_v, mask=m_tv, other=0.0)
    b_o = b_o * scale + tl.dot(b_A.to(b_v.dtype), b_v, input_precision=DOT_PREC)
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


# Pipelining depth of the state pass: 3 stages measured fastest at its default tile on the H200 for every shape of
# the grid (the forward whole, thirteenth session: 1 x 32K 2.88 ms vs 3.86 with 1 stage, 8 x 32K 17.2 vs 18.1; again
# in the fourteenth: 2.86 vs 3.80, 17.0 vs 17.9, 4 x 8K 2.17 vs 2.28), and checked against the reference at real sizes
# there (check_kernels_gpu.py with HYBRIDSERVE_STATE_STAGES=3: 39 / 39; docs/benchmarks/kernels.md). The backward's
# dh pass has not been timed pipelined.
GLA_STATE_STAGES = 3
GLA_DH_STAGES = 1


def default_state_blocks(N: int, H: int, K: int, V: int, square: bool = False) -> tuple[int, int]:
    """(BK, BV) of a sequential GLA pass: 64 x 64, narrowed until it runs about 256 programs. By default only BV
    narrows (the backward's passes: timed so). square (the forward's state pass, at the TUNED_HEAD_DIMS): the wider of
    the two halves, BK first, so one sequence takes 32 x 32 tiles (H200, eighteenth session, 1 x 32K: 0.561 ms
    against 1.04 for 64 x 16 and 0.669 for 64 x 64; benchmarks/chunk_configs_gpu.py); 8 x 32K keeps 64 x 64."""
    BK = min(64, max(16, next_pow2(K)))
    BV = min(64, max(16, next_pow2(V)))
    square = square and tuned_head_dims(K, V)
    while N * H * cdiv(K, BK) * cdiv(V, BV) < 256:
        if square and BK >= BV and BK > 16:
            BK //= 2
        elif BV > 16:
            BV //= 2
        else:
            break
    return BK, BV


@on_tensor_device
def chunk_gla_fwd(
    q, k, v, gk, scale=None, initial_state=None, state_indices=None, has_initial_state=None, final_state=None,
    cu_seqlens=None, BK_state=None, BV_state=None, num_warps_state=None, num_stages_state=None, _phases=None,
):
    """Chunked GLA forward; returns o shaped like v in q's dtype. gk: per-key-channel log decay [.., H, K].
    The *_state arguments set the sequential state pass's tile, warps and pipelining depth (GLA_STATE_STAGES).
    _phases: a list that receives (name, launch) of each kernel ("intra", "state", "out"), for timing one alone."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if K > 256 or V > 256:
        raise ValueError("head dims up to 256")
    TT = q.numel() // (H * K)
    dtype = q.dtype
    dev = q.device
    qt = q.reshape(TT, H, K).contiguous()
    kt = k.reshape(TT, H, K).to(dtype).contiguous()
    vt = v.reshape(TT, H, V).to(dtype).contiguous()
    gt = gk.reshape(TT, H, K).contiguous()
    BT = CHUNK
    if cu_seqlens is not None:
        N = cu_seqlens.shape[0] - 1
        chunk_seq, chunk_off, NT = chunk_map(cu_seqlens, TT, BT)  # shared by the step's layers, as GDN's
        T, NTs = 0, 0
    else:
        N, T = q.shape[:2] if q.dim() == 4 else (1, TT)
        NTs = cdiv(T, BT)
        NT = N * NTs
        chunk_seq = chunk_off = None
    scale = K**-0.5 if scale is None else float(scale)
    indexed = state_indices is not None
    for s in (initial_state, final_state):
        if s is not None:
            if tuple(s.shape[1:]) != (H, K, V) or s.stride()[1:] != (K * V, V, 1):
                raise ValueError(f"states must be [slots, {H}, {K}, {V}], contiguous inside a slot")
            if not indexed and s.shape[0] != N:
                raise ValueError(f"dense states need {N} rows, got {s.shape[0]}")
    prec = _dot_prec(dtype)
    o = torch.empty(TT, H, V, dtype=dtype, device=dev)
    if N == 0:
        return o.reshape(*v.shape[:-1], V)
    gcum = torch.empty(TT, H, K, dtype=torch.float32, device=dev)
    A = torch.empty(TT, H, BT, dtype=torch.float32, device=dev)
    hbuf = torch.empty(NT, H, K, V, dtype=dtype, device=dev)
    dummy = gcum
    cu = cu_seqlens if cu_seqlens is not None else dummy
    cs = chunk_seq if chunk_seq is not None else dummy
    co = chunk_off if chunk_off is not None else dummy
    varlen = cu_seqlens is not None
    BKc = min(64, max(16, next_pow2(K)))
    phases = []
    if NT > 0:  # (no tokens at all: only the state pass runs, carrying the initial states to the final ones)
        phases.append(("intra", lambda: launch_intra(qt, kt, gt, gcum, A, cu, cs, co, scale, T, NTs, N, NT, varlen,
                                                     prec, V)))  # B and A
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    dBK, dBV = default_state_blocks(N, H, K, V, square=True)
    BKs = max(16, min(BK_state or dBK, next_pow2(K)))
    BVs = max(16, min(BV_state or dBV, next_pow2(V)))
    num_warps_state = num_warps_state or (8 if BKs * BVs >= 4096 else 4)  # 64 x 64 at 4 warps spills
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    phases.append(("state", lambda: _gla_chunk_state_kernel[(cdiv(V, BVs), cdiv(K, BKs), N * H)](
        kt, vt, gcum, hbuf, h0, ht,
        state_indices if indexed else dummy,
        has_initial_state if has_initial_state is not None else dummy,
        cu, co, T, NTs,
        h0.stride(0) if initial_state is not None else 0, ht.stride(0) if final_state is not None else 0,
        H, K, V, BT=BT, BK=BKs, BV=BVs, IS_VARLEN=varlen,
        USE_H0=initial_state is not None, STORE_HT=final_state is not None, INDEXED=indexed,
        HAS_H0_MASK=has_initial_state is not None and initial_state is not None, DOT_PREC=prec,
        num_warps=num_warps_state, num_stages=num_stages_state or state_pass_stages(GLA_STATE_STAGES, K, V),
    )))
    if NT > 0:
        grid = lambda meta: (cdiv(V, meta["BV"]), NT, H)  # noqa: E731
        phases.append(("out", lambda: _gla_chunk_out_kernel[grid](
            qt, vt, gcum, A, hbuf, o, cu, cs, co, scale, T, NTs, N, H, K, V,
            BT=BT, BK=BKc, IS_VARLEN=varlen, DOT_PREC=prec,
        )))
    for _, launch in phases:
        launch()
    if _phases is not None:
        _phases.extend(phases)
    return o.reshape(*v.shape[:-1], V)
