"""Chunked Gated DeltaNet forward (training, prefill), Triton. Chunk size 64, WY / UT representation.

The math is `naive.py::naive_chunk_gated_delta_rule`. Per chunk of C = 64 tokens with in-chunk cumulative
log decay G:
    A_ti = beta_t e^{G_t - G_i} k_t.k_i  (i < t),   X = (I + A)^{-1}   (unit lower triangular; by 16 x 16 blocks,
                                                   chunk_prep.py's diagonal ones first, or row by row)
    W = X diag(beta e^G) K,   U = X diag(beta) V                          (kernel 1, one program per chunk/head)
    per sequence, chunk after chunk:  H_c = state before chunk c,
        V'_c = U_c - W_c H_c,   H_{c+1} = e^{G_last} H_c + (K_c * e^{G_last - G})^T V'_c   (kernel 2, sequential)
    O_c = scale (diag(e^G) Q_c H_c + ((Q_c K_c^T) * e^{G_t - G_i} [i <= t]) V'_c)   (kernel 3, parallel)

Tokens: [B, T, H, *] or packed ([1, TT, H, *] / [TT, H, *]) with `cu_seqlens` [N+1]. Chunks never straddle two
sequences. The chunk -> sequence map of the packed case is built on the device (no host synchronisation): the grid
is an upper bound, cdiv(TT, 64) + N chunks, and programs past the last chunk exit at once. The forward reuses
the last map while it is called with the same cu_seqlens tensor (`chunk_map`: the linear layers of a serving step
share one), and takes already prepared inputs (`token_major`; prefill_inputs.py makes them) without a copy.

States as in fused_recurrent.py: initial_state / final_state dense [N, H, K, V] or pools indexed by
state_indices (negative = padding: neither read nor written), has_initial_state [N] masks the read.
Accumulation in float32; W, U, V' and the per-chunk states are kept in the input dtype (as fla does) and the dot
products run on the tensor cores in that dtype (float32 inputs: exact IEEE float32 products, no TF32).
"""

from __future__ import annotations

import os
import weakref

import torch
import triton
import triton.language as tl

from .._triton_common import first_chunk, load_initial_state, locate_chunk, seq_bounds, state_tile, store_final_state
from .._triton_utils import (cdiv, next_pow2, on_tensor_device, state_pass_stages, tuned_configs, tuned_dims_prune,
                             tuned_head_dims)
from .chunk_prep import (_gdn_chunk_prep_registers_kernel, _wu_block, diagonal_inverse_method, diagonal_inverses,
                         launch_wu, lower_blocks_of_inverse, lower_blocks_precision, prep_variant, store_x_row)
from .chunk_state_out import check_tile, default_state_out_tile, launch_state_out, state_out_route
from .fused_chunk import check_states, fused_chunk_gdn_fwd, fused_chunk_max_tokens, sequences

CHUNK = 64


# (num_warps, num_stages, maxnreg, LOWER_ONLY) of the prep kernel: the first four at any head dims, the capped ones
# (sm_90a, bf16, K = V = 128: 164 -> 128 registers at 4 warps with no spills, four programs per SM instead of three)
# only at the TUNED_HEAD_DIMS, where benchmarks/chunk_configs_gpu.py checked and timed them (seventeenth session;
# LOWER_ONLY in the eighteenth: 2.66 ms at 8 x 32K against 2.70 without).
PREP_CONFIGS = [(4, 2, None, False), (8, 2, None, False), (4, 3, None, False), (2, 2, None, False),
                (4, 2, 128, False), (4, 3, 128, False), (4, 3, 128, True)]
PREP_EVERYWHERE = 4


def _prep_configs():
    return tuned_configs("_gdn_chunk_prep_kernel", [
        triton.Config({"LOWER_ONLY": lo} if lo else {}, num_warps=w, num_stages=s, **({"maxnreg": r} if r else {}))
        for w, s, r, lo in PREP_CONFIGS])


@triton.autotune(configs=_prep_configs(), key=["H", "K", "V", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": tuned_dims_prune(PREP_EVERYWHERE)})
@triton.jit
def _gdn_chunk_prep_kernel(
    k, v, g, beta, gcum, w, u, Xbuf, cu_seqlens, chunk_seq, chunk_off,
    T, NTs, N, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
    STORE_X: tl.constexpr, BLOCKED_INV: tl.constexpr, STORE_WU: tl.constexpr, DOUBLING: tl.constexpr = False,
    LOWER_PREC: tl.constexpr = "ieee", LOWER_ONLY: tl.constexpr = False, q=None, aqk=None,
    STORE_AQK: tl.constexpr = False,
):
    """Per chunk: G = cumsum(g), A, X = (I + A)^{-1} (left in Xbuf: always with BLOCKED_INV, which uses Xbuf as
    scratch; else only with STORE_X), and W and U unless STORE_WU is off (chunk_prep.py's split: a second kernel
    makes them from Xbuf).
    LOWER_ONLY (a config's; used only where Xbuf is this kernel's own scratch, not with STORE_X): the scratch
    round trip skips the blocks above the diagonal, zeros in A and in X: 12 of its 58 KB of stores and loads per
    chunk (the prep is L1-bound on the H200: L1/TEX 82 %, fifteenth session).
    STORE_AQK (chunk_state_out.py's "fused-aqk" route): also the output's in-chunk attention, (Q K^T) * e^{G_t - G_i}
    [i <= t] in the input dtype (where the output kernels round it), into aqk [TT, H, BT]."""
    SPARSE: tl.constexpr = LOWER_ONLY and not STORE_X
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    # scalar int64 bases, int32 tile offsets (64-bit offset tiles would cost two registers per element)
    g += t0 * H + i_h
    beta += t0 * H + i_h
    gcum += t0 * H + i_h
    k += (t0 * H + i_h) * K
    w += (t0 * H + i_h) * K
    v += (t0 * H + i_h) * V
    u += (t0 * H + i_h) * V
    b_g = tl.load(g + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    b_g = tl.cumsum(b_g, axis=0)
    tl.store(gcum + o_t * H, b_g, mask=m_t)
    b_beta = tl.load(beta + o_t * H, mask=m_t, other=0.0).to(tl.float32)

    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    b_qk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        b_k = tl.load(k + o_t[:, None] * (H * K) + o_k[None, :], mask=m, other=0.0)
        b_kk += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        if STORE_AQK:  # (q is not advanced like k: it is None without STORE_AQK)
            p_q = q + (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
            b_qk += tl.dot(tl.load(p_q, mask=m, other=0.0), tl.trans(b_k), input_precision=DOT_PREC)

    r = o_t[:, None]
    c = o_t[None, :]
    if STORE_AQK:
        causal = (c <= r) & m_t[:, None]
        b_qk = tl.where(causal, b_qk * tl.exp(tl.where(causal, b_g[:, None] - b_g[None, :], 0.0)), 0.0)
        tl.store(aqk + (t0 * H + i_h) * BT + r * (H * BT) + c, b_qk.to(aqk.dtype.element_ty), mask=m_t[:, None])
    if BLOCKED_INV:
        lower = c < r
        # A[t, i] = beta_t e^{G_t - G_i} k_t.k_i for i < t
        b_A = tl.where(lower, b_kk * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0)) * b_beta[:, None], 0.0)
        # X = (I + A)^{-1} by block forward substitution over 16 x 16 blocks: the four diagonal blocks side by side
        # (by doubling products, or by scalar forward substitution: chunk_prep.diagonal_inverses), then
        # X_ij = -T_ii sum_{j<=m<i} A_im X_mj.
        # The blocks go through Xbuf (this chunk's rows of a [TT, H, BT] float32 scratch): registers cannot be sliced.
        p_X = Xbuf + (t0 * H + i_h) * BT
        if SPARSE:  # the blocks on and below the diagonal: all that the rows of A and X hold
            m_lower = m_t[:, None] & (c // 16 <= r // 16)
        else:
            m_lower = m_t[:, None]
        tl.store(p_X + r * (H * BT) + c, b_A, mask=m_lower)
        tl.debug_barrier()
        o_s = tl.arange(0, 16)
        rs = o_s[:, None]
        cs = o_s[None, :]
        p_blk = p_X + rs * (H * BT) + cs  # block (0, 0); block (i, j) adds (16 i) H BT + 16 j
        n_in = eos - t0  # rows of this chunk inside the sequence
        m0 = (o_s < n_in)[:, None]
        m1 = (o_s + 16 < n_in)[:, None]
        m2 = (o_s + 32 < n_in)[:, None]
        m3 = (o_s + 48 < n_in)[:, None]
        A00 = tl.load(p_blk, mask=m0, other=0.0)
        A11 = tl.load(p_blk + 16 * H * BT + 16, mask=m1, other=0.0)
        A22 = tl.load(p_blk + 32 * H * BT + 32, mask=m2, other=0.0)
        A33 = tl.load(p_blk + 48 * H * BT + 48, mask=m3, other=0.0)
        A10 = tl.load(p_blk + 16 * H * BT, mask=m1, other=0.0)
        A20 = tl.load(p_blk + 32 * H * BT, mask=m2, other=0.0)
        A21 = tl.load(p_blk + 32 * H * BT + 16, mask=m2, other=0.0)
        A30 = tl.load(p_blk + 48 * H * BT, mask=m3, other=0.0)
        A31 = tl.load(p_blk + 48 * H * BT + 16, mask=m3, other=0.0)
        A32 = tl.load(p_blk + 48 * H * BT + 32, mask=m3, other=0.0)
        tl.debug_barrier()
        T00, T11, T22, T33 = diagonal_inverses(A00, A11, A22, A33, DOUBLING)
        X10, X20, X21, X30, X31, X32 = lower_blocks_of_inverse(T00, T11, T22, T33, A10, A20, A21, A30, A31, A32,
                                                               LOWER_PREC)
        zero = tl.zeros([16, 16], dtype=tl.float32)
        store_x_row(p_X, 0, n_in, H * BT, T00, zero, zero, zero, SPARSE)
        store_x_row(p_X, 16, n_in, H * BT, X10, T11, zero, zero, SPARSE)
        store_x_row(p_X, 32, n_in, H * BT, X20, X21, T22, zero, SPARSE)
        store_x_row(p_X, 48, n_in, H * BT, X30, X31, X32, T33, SPARSE)
        tl.debug_barrier()
        b_X = tl.load(p_X + r * (H * BT) + c, mask=m_lower, other=0.0)
    else:
        # one row at a time: X[i, :] = e_i - sum_{m < i} A[i, m] X[m, :] (63 dependent steps)
        upper = c > r
        # AT[m, i] = A[i, m] = beta_i e^{G_i - G_m} k_i.k_m for i > m (k k^T is symmetric)
        b_AT = tl.where(upper, b_kk * tl.exp(tl.where(upper, b_g[None, :] - b_g[:, None], 0.0)) * b_beta[None, :],
                        0.0)
        b_X = tl.where(r == c, 1.0, 0.0)
        for i in range(1, BT):
            a_i = tl.sum(tl.where(c == i, b_AT, 0.0), axis=1)
            new = tl.sum(a_i[:, None] * b_X, axis=0)
            b_X = b_X - tl.where(r == i, new[None, :], 0.0)
        if STORE_X:  # the backward needs X again
            tl.store(Xbuf + (t0 * H + i_h) * BT + r * (H * BT) + c, b_X, mask=m_t[:, None])
    if STORE_WU:  # W = X diag(beta e^G) K, U = X diag(beta) V, column block by column block
        b_Xd = b_X.to(k.dtype.element_ty)
        b_kscale = b_beta * tl.exp(b_g)
        for i_k in range(0, tl.cdiv(K, BK)):
            _wu_block(k, w, b_Xd, b_kscale, o_t, m_t, i_k * BK + tl.arange(0, BK), K, H, DOT_PREC)
        for i_v in range(0, tl.cdiv(V, BV)):
            _wu_block(v, u, b_Xd, b_beta, o_t, m_t, i_v * BV + tl.arange(0, BV), V, H, DOT_PREC)


@triton.jit
def _gdn_chunk_state_kernel(
    k, w, u, gcum, hbuf, vnew, h0, ht, state_idx, has_h0, cu_seqlens, chunk_off,
    T, NTs, s_h0, s_ht, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr,
    USE_H0: tl.constexpr, STORE_HT: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    c0 = first_chunk(i_n, chunk_off, NTs, IS_VARLEN)
    n_chunks = tl.cdiv(eos - bos, BT)

    o_t = tl.arange(0, BT)
    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(0, i_v, i_h, K, V, BK, BV)
    b_h, slot, ok = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                       HAS_H0_MASK)

    hbuf += c0 * (H * K * V) + p_hkv
    k += (bos * H + i_h) * K
    w += (bos * H + i_h) * K
    u += (bos * H + i_h) * V
    vnew += (bos * H + i_h) * V
    gcum += bos * H + i_h
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    seq_len = eos - bos
    for i_t in range(0, n_chunks):
        tl.store(hbuf, b_h.to(hbuf.dtype.element_ty), mask=m_h)
        m_t = o_t < seq_len - i_t * BT
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        b_w = tl.load(w + p_k, mask=m_tk, other=0.0)
        b_u = tl.load(u + p_v, mask=m_tv, other=0.0).to(tl.float32)
        b_vn = b_u - tl.dot(b_w, b_h.to(w.dtype.element_ty), input_precision=DOT_PREC)
        tl.store(vnew + p_v, b_vn.to(vnew.dtype.element_ty), mask=m_tv)
        last = tl.minimum(BT, seq_len - i_t * BT) - 1
        g_last = tl.load(gcum + last * H)
        b_g = tl.load(gcum + o_t * H, mask=m_t, other=0.0)
        b_vs = (b_vn * tl.exp(g_last - b_g)[:, None]).to(k.dtype.element_ty)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
        b_h = b_h * tl.exp(g_last) + tl.dot(tl.trans(b_k), b_vs, input_precision=DOT_PREC)
        hbuf += H * K * V
        k += BT * H * K
        w += BT * H * K
        u += BT * H * V
        vnew += BT * H * V
        gcum += BT * H

    store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT)


OUT_CONFIGS = [(64, 4, 2, None), (64, 8, 2, None), (128, 8, 2, None), (32, 2, 3, None), (64, 4, 3, None),
               (64, 4, 2, 128), (64, 4, 3, 128)]
OUT_EVERYWHERE = 5


def _out_configs():
    # No (BV 32, 4 warps, 2 stages): at K = 64 ptxas 12.8 (triton 3.6's bundled one) miscompiles it on sm_90 -- wrong
    # outputs (rel error 1.1) or an illegal memory access while the autotuner times it; ptxas 13.0 compiles it
    # correctly. Found on an H200 by benchmarks/probe_kernels_gpu.py --bisect
    # (docs/benchmarks/kernels-sessions-3-7.md, "K = 64").
    # The last two (capped at 128 registers: BV 64 x 4 warps 146 -> 128 on sm_90a, no spills, four programs per SM)
    # only at the TUNED_HEAD_DIMS, where benchmarks/chunk_configs_gpu.py checked and timed them.
    return tuned_configs("_gdn_chunk_out_kernel", [
        triton.Config({"BV": bv}, num_warps=w, num_stages=s, **({"maxnreg": r} if r else {}))
        for bv, w, s, r in OUT_CONFIGS])


@triton.autotune(configs=_out_configs(), key=["H", "K", "V", "DOT_PREC"],
                 prune_configs_by={"early_config_prune": tuned_dims_prune(OUT_EVERYWHERE)})
@triton.jit
def _gdn_chunk_out_kernel(
    q, k, vnew, gcum, hbuf, o, cu_seqlens, chunk_seq, chunk_off, scale,
    T, NTs, N, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
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
    k += (t0 * H + i_h) * K
    hbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    b_o = tl.zeros([BT, BV], dtype=tl.float32)
    b_s = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m_k = o_k < K
        m = m_t[:, None] & m_k[None, :]
        p_k = o_t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p_k, mask=m, other=0.0)
        b_k = tl.load(k + p_k, mask=m, other=0.0)
        b_h = tl.load(hbuf + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :], other=0.0)
        b_o += tl.dot(b_q, b_h.to(b_q.dtype), input_precision=DOT_PREC)
        b_s += tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
    b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    b_o = b_o * tl.exp(b_g)[:, None]
    lower = (o_t[:, None] >= o_t[None, :]) & m_t[:, None]
    b_s = tl.where(lower, b_s * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0)), 0.0)
    p_v = (t0 * H + i_h) * V + (o_t[:, None] * (H * V) + o_v[None, :])
    m_tv = m_t[:, None] & m_v[None, :]
    b_vn = tl.load(vnew + p_v, mask=m_tv, other=0.0)
    b_o = (b_o + tl.dot(b_s.to(b_vn.dtype), b_vn, input_precision=DOT_PREC)) * scale
    tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)


def chunk_index(cu_seqlens: torch.Tensor, total_tokens: int, BT: int = CHUNK):
    """Device-side chunk map for packed sequences: (chunk_seq [NT], chunk_off [N+1], NT) where NT is an upper bound
    on the number of chunks, chunk_seq[c] the sequence of chunk c (N for the unused tail) and chunk_off[n] the
    index of sequence n's first chunk. No host synchronisation."""
    N = cu_seqlens.shape[0] - 1
    cu = cu_seqlens.to(torch.int64)
    n_chunks = (cu[1:] - cu[:-1] + BT - 1) // BT
    chunk_off = torch.zeros(N + 1, dtype=torch.int32, device=cu.device)
    chunk_off[1:] = torch.cumsum(n_chunks, 0)
    NT = cdiv(total_tokens, BT) + N
    chunk_seq = torch.searchsorted(chunk_off[1:], torch.arange(NT, device=cu.device, dtype=torch.int32), right=True)
    return chunk_seq.to(torch.int32), chunk_off, NT


# The last chunk map: (weak reference to its cu_seqlens, key, (chunk_seq, chunk_off, NT)). Every linear layer of a
# serving step passes the same cu_seqlens tensor (serve/linear_core.py: `plan_step` builds `prefill_cu` once per
# step, the layer caches the plan on the step's metadata and shares it between its linear layers), so the ~10
# launches of chunk_index are paid once per step instead of once per layer.
_chunk_map_cache = None


def _cache_key(cu_seqlens: torch.Tensor, total_tokens: int, BT: int):
    # Inference tensors (vLLM runs the model under torch.inference_mode) keep no version counter: for them the key is
    # the object itself, see chunk_map.
    version = None if cu_seqlens.is_inference() else cu_seqlens._version
    return version, cu_seqlens.data_ptr(), tuple(cu_seqlens.shape), cu_seqlens.dtype, total_tokens, BT


def chunk_map(cu_seqlens: torch.Tensor, total_tokens: int, BT: int = CHUNK):
    """chunk_index, reusing the previous result when called again with the same cu_seqlens tensor.

    A hit needs the same tensor object (a weak reference: a freed tensor never matches, even if a new one gets its
    id or its memory), the same version counter (any in-place write through the tensor or a view of it bumps it),
    data pointer, shape, dtype, total_tokens and BT. The result is only read by the kernels, so callers may share
    it. Inference tensors have no version counter: for them an in-place write to a tensor that is passed in again
    goes unseen. plan_step never does that: it builds a new prefill_cu object every step (`starts - nd`, or a
    fresh view of vLLM's query_start_loc, whose buffer vLLM rewrites only while preparing the next step), and a
    stale map would need a stale step plan, which the layer never reuses across steps. Not used while a CUDA graph
    is captured (a captured graph must compute the map itself; its memory must not outlive the capture here)."""
    global _chunk_map_cache
    if cu_seqlens.is_cuda and torch.cuda.is_current_stream_capturing():
        return chunk_index(cu_seqlens, total_tokens, BT)
    key = _cache_key(cu_seqlens, total_tokens, BT)
    cached = _chunk_map_cache
    if cached is not None and cached[0]() is cu_seqlens and cached[1] == key:
        return cached[2]
    result = chunk_index(cu_seqlens, total_tokens, BT)
    _chunk_map_cache = (weakref.ref(cu_seqlens), key, result)
    return result


def _dot_prec(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def blocked_inverse() -> bool:
    """(I + A)^{-1} by 16 x 16 block forward substitution (default) or row by row (HYBRIDSERVE_GDN_BLOCKED_INVERSE=0:
    the version validated first on the H200, 63 dependent steps per chunk)."""
    return os.environ.get("HYBRIDSERVE_GDN_BLOCKED_INVERSE", "1") != "0"


# The state pass is sequential over chunks: its parallelism is sequences x heads x V blocks programs. Measured on
# the H200 (H = 16, K = V = 128, bf16; benchmarks/state_pass_gpu.py, docs/benchmarks/kernels.md thirteenth session),
# the fastest tile of the pass alone: one sequence (16 pairs) BV 16 with 3 stages (1 x 32K: 0.48 ms, 1 stage 1.40);
# 4 x 8K and 8 x 32K (64 and 128 pairs) BV 64 with 3 stages (8 x 32K: 1.68 ms; the old BV 32, 1 stage: 3.58). So:
# the widest V block that still gives about one program per SM, 3 stages. (BV 64 at 4 warps compiles to 250
# registers without spills and 137 KB of shared memory at 3 stages: one program per SM, which this pass favours.)
# Head dims not measured keep the tile validated before: BV <= 32 with 1 stage (_triton_utils.tuned_head_dims).
STATE_PASS_PROGRAMS = 128


def state_block_v(N: int, H: int, V: int, widest: int, programs: int) -> int:
    """V block of a sequential pass over N sequences x H heads: the widest, halved (down to 16) while the pass would
    run fewer than `programs` programs."""
    BV = min(widest, next_pow2(V))
    while BV > 16 and N * H * cdiv(V, BV) < programs:
        BV //= 2
    return BV


def default_state_tile(N: int, H: int, K: int, V: int) -> tuple[int, int]:
    """(BV, num_stages) of the forward's state pass, also the backward's recompute of it."""
    widest, programs = (64, STATE_PASS_PROGRAMS) if tuned_head_dims(K, V) else (32, 256)
    return state_block_v(N, H, V, widest, programs), state_pass_stages(3, K, V)


def launch_prep(kt, vt, gt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, NT, varlen, prec, store_x, qt=None,
                aqk=None, x_only=False):
    """The prep (G, X, W, U per chunk) over NT chunks, as HYBRIDSERVE_GDN_PREP says (chunk_prep.prep_variant):
    "scratch" this file's kernel (its inverse as blocked_inverse() says), "registers" chunk_prep.py's, "split" this
    file's kernel up to X (left in Xbuf) and chunk_prep.py's W, U kernel after it. With aqk (and qt): also the
    output's in-chunk attention; x_only: G and X only, full rows in Xbuf, no W, U (both: the "scratch" kernel only,
    for chunk_state_out.py's routes)."""
    H, K, V = kt.shape[1], kt.shape[2], vt.shape[2]
    variant = prep_variant()
    if (aqk is not None or x_only) and variant != "scratch":
        raise ValueError(f"HYBRIDSERVE_GDN_STATE_OUT's fused-x and -aqk routes need the scratch prep, not "
                         f"HYBRIDSERVE_GDN_PREP={variant}")
    doubling = diagonal_inverse_method(K, V) == "doubling"
    lower = prec if lower_blocks_precision(K, V) == "input" else "ieee"
    if variant == "registers":
        _gdn_chunk_prep_registers_kernel[(NT, H)](
            kt, vt, gt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, H, K, V,
            BT=CHUNK, BK=max(16, next_pow2(K)), BV=max(16, next_pow2(V)), IS_VARLEN=varlen, DOT_PREC=prec,
            STORE_X=store_x, DOUBLING=doubling, LOWER_PREC=lower)
        return
    split = variant == "split"
    _gdn_chunk_prep_kernel[(NT, H)](
        kt, vt, gt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, H, K, V,
        BT=CHUNK, BK=min(64, max(16, next_pow2(K))), BV=min(64, max(16, next_pow2(V))), IS_VARLEN=varlen,
        DOT_PREC=prec, STORE_X=store_x or split or x_only, BLOCKED_INV=blocked_inverse(),
        STORE_WU=not (split or x_only),
        DOUBLING=doubling, LOWER_PREC=lower, q=qt, aqk=aqk, STORE_AQK=aqk is not None)
    if split:
        launch_wu(kt, vt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, NT, varlen, prec)


def token_major(q, k, v, g, beta):
    """The inputs as the kernels read them: contiguous [TT, H, *], q, k, v in q's dtype, g float32, beta as given.
    Free (no copy, no launch) for inputs already laid out so, e.g. prefill_inputs.gdn_prefill_inputs's outputs:
    reshape of a contiguous tensor is a view; .contiguous(), .to(its dtype) and .float() of a float32 tensor return
    the tensor itself."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    TT = q.numel() // (H * K)
    dtype = q.dtype
    qt = q.reshape(TT, H, K).contiguous()
    kt = k.reshape(TT, H, K).to(dtype).contiguous()
    vt = v.reshape(TT, H, V).to(dtype).contiguous()
    gt = g.reshape(TT, H).float().contiguous()
    bt = beta.reshape(TT, H).contiguous()
    return qt, kt, vt, gt, bt


@on_tensor_device
def chunk_gdn_fwd(
    q, k, v, g, beta, scale=None, initial_state=None, state_indices=None, has_initial_state=None, final_state=None,
    cu_seqlens=None, BV_state=None, num_warps_state=None, num_stages_state=None, keep_inverse=False, _phases=None,
):
    """Chunked GDN forward; returns o shaped like v in q's dtype. States as in fused_recurrent_gdn_fwd.
    keep_inverse (training): return (o, X, G) instead, X = (I + A)^{-1} of every chunk as the prep left it
    ([.., H, 64] float32, rows of a chunk's lower triangle; with the default blocked inverse the prep writes it
    anyway, as its scratch) and G the in-chunk cumulative gates ([.., H] float32), so that chunk_bwd.py reloads them
    instead of recomputing the inverse (fla keeps its forward's too). Never the one-launch route.

    q, k [B, T, H, K] (or packed with cu_seqlens), v [.., H, V], g, beta [.., H]. BV_state, num_warps_state,
    num_stages_state: the sequential state pass's V block, warps and pipelining depth (default: default_state_tile,
    4; on the fused route chunk_state_out.default_state_out_tile). Inputs of at most fused_chunk_max_tokens(K, V)
    tokens (default: 512 at K = V = 128) run fused_chunk.py's one-launch kernel instead of the three below; where
    chunk_state_out.state_out_route says "fused", the state and output kernels are one. `_phases` (a list, for
    profiling): receives ("prep" | "state" | "out" | "state_out", launch) pairs that re-run each kernel on the same
    buffers, so a benchmark can time them one by one."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if K > 256 or V > 256:
        raise ValueError("head dims up to 256")
    TT = q.numel() // (H * K)
    dtype = q.dtype
    dev = q.device
    qt, kt, vt, gt, bt = token_major(q, k, v, g, beta)
    BT = CHUNK
    N, T = sequences(q, TT, cu_seqlens)
    NTs = cdiv(T, BT)  # (0 when packed)
    scale = K**-0.5 if scale is None else float(scale)
    indexed = state_indices is not None
    check_states(initial_state, final_state, indexed, N, H, K, V)
    if 0 < TT <= fused_chunk_max_tokens(K, V) and _phases is None and not keep_inverse:  # short: one launch
        o = fused_chunk_gdn_fwd(qt, kt, vt, gt, bt, scale, N, T, initial_state, state_indices, has_initial_state,
                                final_state, cu_seqlens)
        return o.reshape(*v.shape[:-1], V)
    if cu_seqlens is not None:
        chunk_seq, chunk_off, NT = chunk_map(cu_seqlens, TT, BT)
    else:
        NT = N * NTs
        chunk_seq = chunk_off = None
    prec = _dot_prec(dtype)
    gcum = torch.empty(TT, H, dtype=torch.float32, device=dev)
    Xbuf = torch.empty(TT, H, BT, dtype=torch.float32, device=dev)  # scratch of the prep kernel: A, then X
    dummy = gcum  # the pointer the kernels get for an input they do not read
    route = state_out_route(N, H, K, V)
    fused = route != "split"  # the output computed in the state pass: no V', no states kept
    # "-aqk": the prep also makes the in-chunk attention (16-bit, as the output kernels round it)
    aqk = torch.empty(TT, H, BT, dtype=dtype, device=dev) if route.endswith("aqk") else None
    from_x = route.startswith("fused-x")  # V' from X in the fused pass: the prep makes no W, U
    w = dummy if from_x else torch.empty(TT, H, K, dtype=dtype, device=dev)
    u = dummy if from_x else torch.empty(TT, H, V, dtype=dtype, device=dev)
    if not fused:
        vnew = torch.empty(TT, H, V, dtype=dtype, device=dev)
        hbuf = torch.empty(NT, H, K, V, dtype=dtype, device=dev)
    o = torch.empty(TT, H, V, dtype=dtype, device=dev)
    cu = cu_seqlens if cu_seqlens is not None else dummy
    cs = chunk_seq if chunk_seq is not None else dummy
    co = chunk_off if chunk_off is not None else dummy
    def result():
        o_ = o.reshape(*v.shape[:-1], V)
        return (o_, Xbuf.view(*v.shape[:-1], BT), gcum.view(v.shape[:-1])) if keep_inverse else o_
    if N == 0:
        return result()
    BKc = min(64, max(16, next_pow2(K)))
    varlen = cu_seqlens is not None
    phases = []

    def prep():
        launch_prep(kt, vt, gt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, NT, varlen, prec,
                    store_x=keep_inverse, qt=qt, aqk=aqk, x_only=from_x)
    if NT > 0:  # (no tokens at all: only the state pass runs, carrying the initial states to the final ones)
        phases.append(("prep", prep))
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    s_h0 = h0.stride(0) if initial_state is not None else 0
    s_ht = ht.stride(0) if final_state is not None else 0
    sidx = state_indices if indexed else dummy
    h0_mask = has_initial_state if has_initial_state is not None else dummy
    use_mask = has_initial_state is not None and initial_state is not None
    if fused:
        BV, warps, stages = default_state_out_tile(N, H, K, V, route)
        BV = max(16, min(BV_state or BV, next_pow2(V)))
        warps, stages = num_warps_state or warps, num_stages_state or stages
        check_tile(BV, warps, stages)  # before the prep runs
        phases.append(("state_out", lambda: launch_state_out(
            qt, kt, w, u, gcum, o, h0, ht, sidx, h0_mask, cu, scale, T, N, H, K, V, varlen, prec,
            initial_state is not None, final_state is not None, indexed, use_mask, s_h0, s_ht, BV, warps, stages,
            aqk=aqk, **(dict(v=vt, beta=bt, xbuf=Xbuf) if from_x else {}))))
    else:
        BV, stages = default_state_tile(N, H, K, V)
        BV = max(16, min(BV_state or BV, next_pow2(V)))
        phases.append(("state", lambda: _gdn_chunk_state_kernel[(cdiv(V, BV), N * H)](
            kt, w, u, gcum, hbuf, vnew, h0, ht, sidx, h0_mask, cu, co, T, NTs, s_h0, s_ht,
            H, K, V, BT=BT, BK=max(16, next_pow2(K)), BV=BV, IS_VARLEN=varlen,
            USE_H0=initial_state is not None, STORE_HT=final_state is not None, INDEXED=indexed,
            HAS_H0_MASK=use_mask, DOT_PREC=prec, num_warps=num_warps_state or 4, num_stages=num_stages_state or stages,
        )))
        if NT > 0:
            grid = lambda meta: (cdiv(V, meta["BV"]), NT, H)  # noqa: E731
            phases.append(("out", lambda: _gdn_chunk_out_kernel[grid](
                qt, kt, vnew, gcum, hbuf, o, cu, cs, co, scale, T, NTs, N, H, K, V,
                BT=BT, BK=BKc, IS_VARLEN=varlen, DOT_PREC=prec,
            )))
    for _, launch in phases:
        launch()
    if _phases is not None:
        _phases.extend(phases)
    return result()
