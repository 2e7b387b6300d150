"""Chunked Gated DeltaNet forward in one launch, for short inputs (Triton).

chunk.py splits the forward into three kernels (prep, the sequential state pass, out) so that the chunks of long
sequences run in parallel, with W, U, V' and the state before every chunk going through global memory in between.
For a short input that split costs more than it saves: the GPU work of a 128-token call is ~0.1 ms, while issuing
three launches (plus the chunk map of packed inputs) takes several times that on the host (docs/benchmarks/
kernels.md: 0.68-0.77 ms eager against 0.094 ms replayed from a CUDA graph). Here one program per (sequence, head,
block of V columns) walks its sequence chunk by chunk and does everything in registers, the same math as chunk.py
(`naive.py::naive_chunk_gated_delta_rule`) per chunk of BT tokens with in-chunk cumulative log decay G:

    A_ti = beta_t e^{G_t - G_i} k_t.k_i (i < t),   X = (I + A)^{-1}  (forward substitution, BT - 1 steps)
    W = X diag(beta e^G) K,   U = X diag(beta) V,   V' = U - W H
    O = scale (diag(e^G) Q H + ((Q K^T) * e^{G_t - G_i} [i <= t]) V'),   H <- e^{G_last} H + (K * e^{G_last - G})^T V'

Chunks are small (BT = 16 by default, or 32: the inverse is 15 dependent steps on a 16 x 16 tile, every product a
tensor-core tile) because nothing runs in parallel across a sequence's chunks: this kernel is for inputs short
enough that the walk is cheap, and chunk.py stays the path for long ones (`fused_chunk_max_tokens`). W and X do
not depend on the V block, so programs of the same head recompute them: cheap at these sizes, and it keeps the
programs independent. Rounding follows chunk.py: W, U, V' and the state enter the products in the input dtype
(chunk.py stores them so), accumulation is float32. States as in fused_recurrent.py (dense or pool rows through
state_indices, negative = padding: neither read nor written; has_initial_state masks the read). No host
synchronisation: graph-capture safe.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._triton_common import load_initial_state, seq_bounds, store_final_state
from .._triton_utils import cdiv, next_pow2, on_tensor_device


@triton.jit
def _gdn_fused_chunk_kernel(
    q, k, v, g, beta, o, h0, ht, state_idx, has_h0, cu_seqlens,
    scale, T, s_h0, s_ht, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr, USE_H0: tl.constexpr,
    STORE_HT: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr, DOT_PREC: tl.constexpr,
):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    dt = q.dtype.element_ty

    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    p_hkv = i_h * K * V + o_k[:, None] * V + o_v[None, :]
    b_h, slot, ok = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                       HAS_H0_MASK)

    # scalar int64 bases, int32 tile offsets (as chunk.py)
    q += (bos * H + i_h) * K
    k += (bos * H + i_h) * K
    v += (bos * H + i_h) * V
    o += (bos * H + i_h) * V
    g += bos * H + i_h
    beta += bos * H + i_h
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    r = o_t[:, None]
    c = o_t[None, :]
    seq_len = eos - bos
    for i_t in range(0, tl.cdiv(seq_len, BT)):
        n_in = seq_len - i_t * BT  # tokens of this chunk inside the sequence (>= 1)
        m_t = o_t < n_in
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        # rows past the sequence load as zeros: beta = 0 and k = 0 leave them out of every sum below
        b_g = tl.cumsum(tl.load(g + o_t * H, mask=m_t, other=0.0).to(tl.float32), axis=0)
        b_beta = tl.load(beta + o_t * H, mask=m_t, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
        b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
        b_v = tl.load(v + p_v, mask=m_tv, other=0.0).to(tl.float32)

        # AT[m, i] = A[i, m] = beta_i e^{G_i - G_m} k_i.k_m for i > m; X = (I + A)^{-1} row by row:
        # X[i, :] = e_i - sum_{m < i} A[i, m] X[m, :]
        b_kk = tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        upper = c > r
        b_AT = tl.where(upper, b_kk * tl.exp(tl.where(upper, b_g[None, :] - b_g[:, None], 0.0)) * b_beta[None, :],
                        0.0)
        b_X = tl.where(r == c, 1.0, 0.0)
        for i in tl.static_range(1, BT):  # unrolled: the chunk loop then holds no inner loop, and Triton pipelines it
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
        tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_tv)

        g_last = tl.sum(tl.where(o_t == tl.minimum(BT, n_in) - 1, b_g, 0.0), axis=0)
        b_vs = (b_vn * tl.exp(g_last - b_g)[:, None]).to(dt)
        b_h = b_h * tl.exp(g_last) + tl.dot(tl.trans(b_k), b_vs, input_precision=DOT_PREC)
        q += BT * H * K
        k += BT * H * K
        v += BT * H * V
        o += BT * H * V
        g += BT * H
        beta += BT * H

    store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT)


def fused_chunk_max_tokens() -> int:
    """Inputs of at most this many tokens in all take the one-launch kernel (chunk_gdn_fwd dispatches on the host's
    token count: no synchronisation). HYBRIDSERVE_GDN_FUSED_MAX_TOKENS; 0 (the default) keeps chunk.py for every
    size until benchmarks/short_prefill_gpu.py has checked and timed this kernel on the GPU."""
    raw = os.environ.get("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "0").strip()
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
def fused_chunk_gdn_fwd(qt, kt, vt, gt, bt, scale, N, T, initial_state=None, state_indices=None,
                        has_initial_state=None, final_state=None, cu_seqlens=None, BT=None, BV=None, num_warps=None,
                        num_stages=None):
    """Launch the kernel on token-major inputs (chunk.py's `token_major`: q, k [TT, H, K], v [TT, H, V] in q's
    dtype, g float32 [TT, H], beta [TT, H]) of N sequences: packed through cu_seqlens, or N rows of T tokens.
    Returns o [TT, H, V] in q's dtype. States as chunk_gdn_fwd (its caller checks their shapes)."""
    TT, H, K = qt.shape
    V = vt.shape[-1]
    cfg = default_fused_config(N, H, V)
    BT, BV = BT or cfg["BT"], max(16, min(BV or cfg["BV"], next_pow2(V)))
    if BT not in (16, 32):  # 64 spills at 255 registers and its unrolled 63-step inverse compiles slowly
        raise ValueError(f"BT must be 16 or 32, got {BT}")
    o = torch.empty(TT, H, V, dtype=qt.dtype, device=qt.device)
    if N == 0:
        return o
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    dummy = gt
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    _gdn_fused_chunk_kernel[(cdiv(V, BV), N * H)](
        qt, kt, vt, gt, bt, o, h0, ht,
        state_indices if state_indices is not None else dummy,
        has_initial_state if has_initial_state is not None else dummy,
        cu_seqlens if cu_seqlens is not None else dummy,
        scale, T, h0.stride(0) if initial_state is not None else 0, ht.stride(0) if final_state is not None else 0,
        H, K, V, BT=BT, BK=max(16, next_pow2(K)), BV=BV, IS_VARLEN=cu_seqlens is not None,
        USE_H0=initial_state is not None, STORE_HT=final_state is not None, INDEXED=state_indices is not None,
        HAS_H0_MASK=has_initial_state is not None and initial_state is not None,
        DOT_PREC="ieee" if qt.dtype == torch.float32 else "tf32",
        num_warps=num_warps or cfg["num_warps"], num_stages=num_stages or cfg["num_stages"],
    )
    return o
