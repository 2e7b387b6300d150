"""Chunked Gated DeltaNet forward in one launch, for short inputs (Triton).

chunk.py splits the forward into three kernels (prep, the sequential state pass, out) so that the chunks of long
sequences run in parallel, with W, U, V' and the state before every chunk going through global memory in between.
For a short input that split costs more than it saves: the GPU work of a 128-token call is ~0.1 ms, while issuing
three launches (plus the chunk map of packed inputs) takes several times that on the host (docs/benchmarks/
kernels.md: 0.68-0.77 ms eager against 0.094 ms replayed from a CUDA graph). Here one program per (sequence, head,
block of V columns) walks its sequence chunk by chunk and does everything in registers, the same math as chunk.py
(`naive.py::naive_chunk_gated_delta_rule`) per chunk of BT tokens with in-chunk cumulative log decay G:

    A_ti = beta_t e^{G_t - G_i} k_t.k_i (i < t),   X = (I + A)^{-1}  (forward substitution, BT - 1 steps; or
                                                    chunk_prep.doubling_inverse: HYBRIDSERVE_GDN_DIAG_INVERSE)
    W = X diag(beta e^G) K,   U = X diag(beta) V,   V' = U - W H
    O = scale (diag(e^G) Q H + ((Q K^T) * e^{G_t - G_i} [i <= t]) V'),   H <- e^{G_last} H + (K * e^{G_last - G})^T V'

Chunks are small (BT = 16 by default, or 32: the inverse is 15 dependent steps on a 16 x 16 tile, every product a
tensor-core tile) because nothing runs in parallel across a sequence's chunks: this kernel is for inputs short
enough that the walk is cheap, and chunk.py stays the path for long ones (`fused_chunk_max_tokens`: over 512
tokens). W and X do not depend on the V block, so programs of the same head recompute them: cheap at these sizes,
and it keeps the programs independent. Rounding follows chunk.py: W, U, V' and the state enter the products in
the input dtype (chunk.py stores them so), accumulation is float32. States as in fused_recurrent.py (dense or
pool rows through state_indices, negative = padding: neither read nor written; has_initial_state masks the read).
No host synchronisation: graph-capture safe. For the serving op (`ops.gdn_chunk_pool`) the kernel also does the
prologue's work (RAW: prefill_inputs.py's SiLU, q/k L2 norm and gates, same rounding points) on the raw
projection's columns, read through their strides: the whole GDN part of a short prefill is one launch.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._triton_common import load_initial_state, seq_bounds, state_tile, store_final_state
from .._triton_utils import cdiv, next_pow2, on_tensor_device, tuned_head_dims
from .chunk_prep import diagonal_inverse_method, doubling_inverse
from .prefill_inputs import _activate, _softplus


@triton.jit
def _gdn_fused_chunk_kernel(
    q, k, v, g, beta, A_log, dt_bias, o, h0, ht, state_idx, has_h0, cu_seqlens,
    scale, T, s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_gt, s_gh, s_bt, s_bh, s_h0, s_ht,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr, USE_H0: tl.constexpr,
    STORE_HT: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr, DOT_PREC: tl.constexpr,
    RAW: tl.constexpr, QK_L2NORM: tl.constexpr, SILU: tl.constexpr, DOUBLING: tl.constexpr = False,
):
    """RAW: q, k, v, g, beta are the raw projections (g holds a, beta holds b), prepared here exactly as
    prefill_inputs.py's prologue would (SiLU, L2 norm of q and k, the gates): the serving op's one launch."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    dt = q.dtype.element_ty

    o_t = tl.arange(0, BT)
    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(0, i_v, i_h, K, V, BK, BV)
    b_h, slot, ok = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                       HAS_H0_MASK)
    if RAW:
        neg_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
        b_dt = tl.load(dt_bias + i_h).to(tl.float32)

    # scalar int64 bases, tile offsets through the token strides (token-major inputs: H*K, H*V, H)
    q += bos * s_qt + i_h * s_qh
    k += bos * s_kt + i_h * s_kh
    v += bos * s_vt + i_h * s_vh
    o += (bos * H + i_h) * V
    g += bos * s_gt + i_h * s_gh
    beta += bos * s_bt + i_h * s_bh
    p_q = o_t[:, None] * s_qt + o_k[None, :]
    p_k = o_t[:, None] * s_kt + o_k[None, :]
    p_v = o_t[:, None] * s_vt + o_v[None, :]
    p_o = o_t[:, None] * (H * V) + o_v[None, :]
    r = o_t[:, None]
    c = o_t[None, :]
    seq_len = eos - bos
    for i_t in range(0, tl.cdiv(seq_len, BT)):
        n_in = seq_len - i_t * BT  # tokens of this chunk inside the sequence (>= 1)
        m_t = o_t < n_in
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        # rows past the sequence load as zeros: beta = 0 and k = 0 leave them out of every sum below
        b_gl = tl.load(g + o_t * s_gt, mask=m_t, other=0.0).to(tl.float32)
        b_beta = tl.load(beta + o_t * s_bt, mask=m_t, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
        b_q = tl.load(q + p_q, mask=m_tk, other=0.0)
        b_v = tl.load(v + p_v, mask=m_tv, other=0.0)
        if RAW:  # the prologue's math and rounding points (prefill_inputs.py)
            b_gl = tl.where(m_t, neg_A * _softplus(b_gl + b_dt), 0.0)
            b_beta = tl.where(m_t, tl.sigmoid(b_beta), 0.0)
            b_q = _activate(b_q, QK_L2NORM, SILU).to(dt)  # rounded where the prologue stores them
            b_k = _activate(b_k, QK_L2NORM, SILU).to(dt)
            b_v = _activate(b_v, False, SILU).to(dt)
        b_g = tl.cumsum(b_gl, axis=0)
        b_v = b_v.to(tl.float32)

        b_kk = tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        if DOUBLING:  # A[t, i] = beta_t e^{G_t - G_i} k_t.k_i for i < t; X = (I + A)^{-1} by doubling products
            lower = c < r
            b_X = doubling_inverse(
                tl.where(lower, b_kk * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0)) * b_beta[:, None],
                         0.0), BT)
        else:
            # AT[m, i] = A[i, m] = beta_i e^{G_i - G_m} k_i.k_m for i > m; X = (I + A)^{-1} row by row:
            # X[i, :] = e_i - sum_{m < i} A[i, m] X[m, :]
            upper = c > r
            b_AT = tl.where(upper, b_kk * tl.exp(tl.where(upper, b_g[None, :] - b_g[:, None], 0.0)) * b_beta[None, :],
                            0.0)
            b_X = tl.where(r == c, 1.0, 0.0)
            for i in tl.static_range(1, BT):  # unrolled: the chunk loop then holds no inner loop; Triton pipelines it
                a_i = tl.sum(tl.where(c == i, b_AT, 0.0), axis=1)
                new = tl.sum(a_i[:, None] * b_X, axis=0)
                b_X = b_X - tl.where(r == i, new[None, :], 0.0)
        b_Xd = b_X.to(dt)
        b_w = tl.dot(b_Xd, (b_k.to(tl.float32) * (b_beta * tl.exp(b_g))[:, None]).to(dt), input_precision=DOT_PREC)
        b_u = tl.dot(b_Xd, (b_v * b_beta[:, None]).to(dt), input_precision=DOT_PREC)
        b_hd = b_h.to(dt)
        # V' = U - W H (U rounded as chunk.py stores it)
        b_vn = b_u.to(dt).to(tl.float32) - tl.dot(b_w.to(dt), b_hd, input_precision=DOT_PREC)

        b_o = tl.dot(b_q, b_hd, input_precision=DOT_PREC) * tl.exp(b_g)[:, None]
        lower = (r >= c) & m_t[:, None]
        b_s = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
        b_s = tl.where(lower, b_s * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0)), 0.0)
        b_o = (b_o + tl.dot(b_s.to(dt), b_vn.to(dt), input_precision=DOT_PREC)) * scale
        tl.store(o + p_o, b_o.to(o.dtype.element_ty), mask=m_tv)

        g_last = tl.sum(tl.where(o_t == tl.minimum(BT, n_in) - 1, b_g, 0.0), axis=0)
        b_vs = (b_vn * tl.exp(g_last - b_g)[:, None]).to(dt)
        b_h = b_h * tl.exp(g_last) + tl.dot(tl.trans(b_k), b_vs, input_precision=DOT_PREC)
        q += BT * s_qt
        k += BT * s_kt
        v += BT * s_vt
        o += BT * H * V
        g += BT * s_gt
        beta += BT * s_bt

    store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT)


def sequences(q, TT: int, cu_seqlens) -> tuple[int, int]:
    """(N sequences, T tokens each; 0 when packed): packed through cu_seqlens, [B, T, H, K] rows, or one [TT, H, K]."""
    if cu_seqlens is not None:
        return cu_seqlens.shape[0] - 1, 0
    return (q.shape[0], q.shape[1]) if q.dim() == 4 else (1, TT)


def check_states(initial_state, final_state, indexed: bool, N: int, H: int, K: int, V: int) -> None:
    """The state tensors both chunked forwards accept: [slots, H, K, V], contiguous inside a slot; N rows if dense."""
    for s in (initial_state, final_state):
        if s is None:
            continue
        if not indexed and s.shape[0] != N:
            raise ValueError(f"dense states need {N} rows, got {s.shape[0]}")
        if tuple(s.shape[1:]) != (H, K, V) or s.stride()[1:] != (K * V, V, 1):
            raise ValueError(f"states must be [slots, {H}, {K}, {V}], contiguous inside a slot")


# Measured on the H200 (K = V = 128, bf16; benchmarks/short_prefill_gpu.py, docs/benchmarks/kernels.md thirteenth
# session), one sequence: this kernel takes 0.13-0.15 ms a call back to back up to 512 tokens against 0.36 ms for
# chunk.py's three launches (host-bound), and 0.23 vs 0.19 ms at 1,024. Its GPU time grows with the walk (0.12 ms at
# 512 tokens against 0.04 ms), so past 512 the three kernels win as soon as the GPU is the bottleneck.
FUSED_MAX_TOKENS = 512


def fused_chunk_max_tokens(K: int, V: int) -> int:
    """Inputs of at most this many tokens in all take the one-launch kernel (chunk_gdn_fwd dispatches on the host's
    token count: no synchronisation). HYBRIDSERVE_GDN_FUSED_MAX_TOKENS (0 = never), else FUSED_MAX_TOKENS at the
    head dims it was timed at (_triton_utils.TUNED_HEAD_DIMS) and 0 elsewhere."""
    raw = os.environ.get("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "").strip()
    if not raw:
        return FUSED_MAX_TOKENS if tuned_head_dims(K, V) else 0
    if not raw.isdigit():
        raise ValueError(f"HYBRIDSERVE_GDN_FUSED_MAX_TOKENS={raw!r}: expected a token count (0 = off)")
    return int(raw)


def default_fused_config(N: int, H: int, V: int) -> dict:
    """BT 16; V split so that a few (sequence, head) pairs still give the GPU a few hundred programs."""
    BV = min(64, next_pow2(V))
    while BV > 16 and N * H * cdiv(V, BV) < 256:
        BV //= 2
    return dict(BT=16, BV=BV, num_warps=4, num_stages=2)


@on_tensor_device
def fused_chunk_gdn_fwd(q, k, v, g, beta, scale, N, T, initial_state=None, state_indices=None, has_initial_state=None,
                        final_state=None, cu_seqlens=None, *, A_log=None, dt_bias=None, use_qk_l2norm=False,
                        silu=False, BT=None, BV=None, num_warps=None, num_stages=None):
    """Launch the kernel on N sequences (packed through cu_seqlens, or N rows of T tokens); returns o [TT, H, V]
    in q's dtype. States as chunk_gdn_fwd.

    Prepared inputs (chunk.py's `token_major`): q, k [TT, H, K], v [TT, H, V] in q's dtype, g float32 [TT, H],
    beta [TT, H]. Raw inputs (A_log and dt_bias given: the serving op's one launch): q, k, v the projection's
    columns and g, beta its raw a, b, prepared in the kernel as prefill_inputs.py does (silu, use_qk_l2norm, the
    gates). Either way any token and head strides, last dim contiguous."""
    TT, H, K = q.shape
    V = v.shape[-1]
    raw = A_log is not None
    if raw and dt_bias is None:
        raise ValueError("raw inputs need A_log and dt_bias")
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 3 or x.shape[0] != TT or x.shape[1] != H or x.stride(-1) != 1:
            raise ValueError(f"{name} must be a [TT, H, D] view with a contiguous last dim, got {tuple(x.shape)}")
    for name, x in (("g", g), ("beta", beta)):
        if tuple(x.shape) != (TT, H):
            raise ValueError(f"{name} must be [{TT}, {H}], got {tuple(x.shape)}")
    check_states(initial_state, final_state, state_indices is not None, N, H, K, V)
    cfg = default_fused_config(N, H, V)
    BT, BV = BT or cfg["BT"], max(16, min(BV or cfg["BV"], next_pow2(V)))
    if BT not in (16, 32):  # 64 spills at 255 registers and its unrolled 63-step inverse compiles slowly
        raise ValueError(f"BT must be 16 or 32, got {BT}")
    o = torch.empty(TT, H, V, dtype=q.dtype, device=q.device)
    if N == 0:
        return o
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    dummy = o
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    _gdn_fused_chunk_kernel[(cdiv(V, BV), N * H)](
        q, k, v, g, beta, A_log if raw else dummy, dt_bias if raw else dummy, o, h0, ht,
        state_indices if state_indices is not None else dummy,
        has_initial_state if has_initial_state is not None else dummy,
        cu_seqlens if cu_seqlens is not None else dummy,
        scale, T, q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        g.stride(0), g.stride(1), beta.stride(0), beta.stride(1),
        h0.stride(0) if initial_state is not None else 0, ht.stride(0) if final_state is not None else 0,
        H, K, V, BT=BT, BK=max(16, next_pow2(K)), BV=BV, IS_VARLEN=cu_seqlens is not None,
        USE_H0=initial_state is not None, STORE_HT=final_state is not None, INDEXED=state_indices is not None,
        HAS_H0_MASK=has_initial_state is not None and initial_state is not None,
        DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32", RAW=raw, QK_L2NORM=bool(use_qk_l2norm),
        SILU=bool(silu), DOUBLING=diagonal_inverse_method(K, V) == "doubling", num_warps=num_warps or cfg["num_warps"],
        num_stages=num_stages or cfg["num_stages"],
    )
    return o
