"""Fused recurrent GLA forward (decode and short prefill), Triton.

Same interface as `gated_delta_rule/fused_recurrent.py` (tokens [B, T, H, *] or packed with `cu_seqlens`,
dense states or a state pool through `state_indices`, negative index = padding slot left untouched, no host
synchronisation). One program per (sequence, head, block of V columns), float32 state in registers:

    S <- diag(exp(gk_t)) S + k_t v_t^T,      o_t = S^T (scale q_t)

Optional fused gate: pass the raw gate logits instead of gk and `gate_logit_normalizer`; the kernel then uses
gk = logsigmoid(logits) / normalizer (the gla_v1 layer's decay, method.md §3.4).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import load_initial_state, seq_bounds, state_tile, store_final_state
from .._triton_utils import cdiv, next_pow2, on_tensor_device


@triton.jit
def _gla_fused_recurrent_fwd_kernel(
    q, k, v, gk, o, h0, ht, state_idx, has_h0, cu_seqlens,
    scale, gate_norm, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_ot, s_oh, s_gt, s_gh, s_h0, s_ht,
    BK: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, INDEXED: tl.constexpr,
    HAS_H0_MASK: tl.constexpr, FUSED_GATE: tl.constexpr,
):
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos, eos = seq_bounds(i_n, cu_seqlens, T, IS_VARLEN)
    seq_len = eos - bos

    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(0, i_v, i_h, K, V, BK, BV)

    b_h, slot, valid = load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK, BV, USE_H0, INDEXED,
                                          HAS_H0_MASK)

    q += bos * s_qt + i_h * s_qh
    k += bos * s_kt + i_h * s_kh
    v += bos * s_vt + i_h * s_vh
    o += bos * s_ot + i_h * s_oh
    gk += bos * s_gt + i_h * s_gh
    for t in range(0, seq_len):
        b_q = tl.load(q + t * s_qt + o_k, mask=m_k, other=0.0).to(tl.float32) * scale
        b_k = tl.load(k + t * s_kt + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(v + t * s_vt + o_v, mask=m_v, other=0.0).to(tl.float32)
        b_g = tl.load(gk + t * s_gt + o_k, mask=m_k, other=0.0).to(tl.float32)
        if FUSED_GATE:
            b_g = (tl.minimum(b_g, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(b_g)))) / gate_norm
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], axis=0)
        tl.store(o + t * s_ot + o_v, b_o.to(o.dtype.element_ty), mask=m_v)

    store_final_state(ht, b_h, slot, valid, s_ht, p_hkv, m_h, STORE_HT)


@on_tensor_device
def fused_recurrent_gla_fwd(
    q, k, v, gk, *, scale=None, gate_logit_normalizer=None, initial_state=None, state_indices=None,
    has_initial_state=None, final_state=None, cu_seqlens=None, out=None, BV=None, num_warps=None,
):
    """Launch the GLA fused recurrent kernel; returns o (q's dtype) shaped like v.

    gk: per-key-channel log decay [.., H, K]; with gate_logit_normalizer set, gk holds the raw gate logits instead
    and the decay logsigmoid(gk) / gate_logit_normalizer is computed in the kernel."""
    from ..gated_delta_rule.fused_recurrent import _check_state, _tokens

    H, K = q.shape[-2:]
    V = v.shape[-1]
    if cu_seqlens is not None:
        TT = q.numel() // (H * K)
        N, T = cu_seqlens.shape[0] - 1, 0
    elif q.dim() == 4:
        N, T = q.shape[:2]
        TT = N * T
    else:
        N, T = q.shape[0], 1
        TT = N
    qt, kt, vt, gt = _tokens(q, TT), _tokens(k, TT), _tokens(v, TT), _tokens(gk, TT)
    scale = K**-0.5 if scale is None else float(scale)
    o = out if out is not None else torch.empty(TT, H, V, dtype=q.dtype, device=q.device)
    ot = o.reshape(TT, H, V)
    indexed = state_indices is not None
    for s, name in ((initial_state, "initial_state"), (final_state, "final_state")):
        if s is not None:
            _check_state(s, H, K, V, name)
            if not indexed and s.shape[0] != N:
                raise ValueError(f"dense states need {N} rows, got {s.shape[0]}")
    if indexed and state_indices.shape[0] != N:
        raise ValueError(f"state_indices must have one entry per sequence ({N})")
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    BK = next_pow2(K)
    from ..gated_delta_rule.fused_recurrent import default_block_v

    pool = final_state if final_state is not None else initial_state
    dflt_bv, dflt_w = default_block_v(K, V, pool.dtype if pool is not None else None)
    BV = BV or dflt_bv
    num_warps = num_warps or dflt_w
    dummy = ot
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    _gla_fused_recurrent_fwd_kernel[(cdiv(V, BV), N * H)](
        qt, kt, vt, gt, ot, h0, ht,
        state_indices if indexed else dummy,
        has_initial_state if has_initial_state is not None else dummy,
        cu_seqlens if cu_seqlens is not None else dummy,
        scale, float(gate_logit_normalizer or 1.0), T, H, K, V,
        qt.stride(0), qt.stride(1), kt.stride(0), kt.stride(1), vt.stride(0), vt.stride(1), ot.stride(0), ot.stride(1),
        gt.stride(0), gt.stride(1),
        h0.stride(0) if initial_state is not None else 0, ht.stride(0) if final_state is not None else 0,
        BK=BK, BV=BV, IS_VARLEN=cu_seqlens is not None, USE_H0=initial_state is not None,
        STORE_HT=final_state is not None, INDEXED=indexed,
        HAS_H0_MASK=has_initial_state is not None and initial_state is not None,
        FUSED_GATE=gate_logit_normalizer is not None,
        num_warps=num_warps, num_stages=1,
    )
    return o.reshape(*v.shape[:-1], V) if out is None else o
