"""Fused recurrent Gated DeltaNet forward (decode and short prefill), Triton.

One program per (sequence, head, block of V columns) walks the sequence's tokens one at a time with the
state tile S[:, v-block] (all K rows) in registers, float32:

    S <- exp(g_t) S;   S <- S + k_t (beta_t (v_t - S^T k_t))^T;   o_t = S^T (scale q_t)

Tokens come as [B, T, H, *] or packed ([1, TT, H, *] / [TT, H, *] with `cu_seqlens` [N+1]); decode is the
packed case with one token per sequence ([N, H, *], no cu_seqlens). The state is read from `initial_state`
and written to `final_state`, either dense ([N, H, K, V], sequence n at row n) or a state pool
([num_slots, H, K, V], sequence n at row `state_indices[n]`; the pool may be the same tensor for both, which
updates it in place). A negative index (vLLM's PAD_SLOT_ID = -1) is a padding row: its state is neither read
nor written (the output rows of its tokens are still written, computed from a zero state).

Optional fusions: the gates from raw projections (g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)) and
fla's L2 norm of q and k (x / sqrt(sum x^2 + 1e-6)). No host synchronisation: the launch is CUDA-graph safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_common import load_initial_state, seq_bounds, state_tile, store_final_state
from .._triton_utils import cdiv, next_pow2, on_tensor_device


@triton.jit
def _gdn_fused_recurrent_fwd_kernel(
    q, k, v, g, beta, A_log, dt_bias, o,
    h0, ht, state_idx, has_h0, cu_seqlens,
    scale, T, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_ot, s_oh, s_gt, s_gh, s_bt, s_bh, s_h0, s_ht,
    BK: tl.constexpr, BV: tl.constexpr,
    IS_VARLEN: tl.constexpr, USE_H0: tl.constexpr, STORE_HT: tl.constexpr, INDEXED: tl.constexpr,
    HAS_H0_MASK: tl.constexpr, FUSED_GATE: tl.constexpr, QK_L2NORM: tl.constexpr,
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

    if FUSED_GATE:
        b_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
        b_dt = tl.load(dt_bias + i_h).to(tl.float32)

    for t in range(0, seq_len):
        tok = bos + t
        b_q = tl.load(q + tok * s_qt + i_h * s_qh + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(k + tok * s_kt + i_h * s_kh + o_k, mask=m_k, other=0.0).to(tl.float32)
        b_v = tl.load(v + tok * s_vt + i_h * s_vh + o_v, mask=m_v, other=0.0).to(tl.float32)
        b_g = tl.load(g + tok * s_gt + i_h * s_gh).to(tl.float32)
        b_b = tl.load(beta + tok * s_bt + i_h * s_bh).to(tl.float32)
        if FUSED_GATE:
            x = b_g + b_dt
            # softplus with torch's default threshold 20
            b_g = b_A * tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))
            b_b = tl.sigmoid(b_b)
        if QK_L2NORM:
            b_q = b_q / tl.sqrt(tl.sum(b_q * b_q, axis=0) + 1e-6)
            b_k = b_k / tl.sqrt(tl.sum(b_k * b_k, axis=0) + 1e-6)
        b_q = b_q * scale
        b_h = b_h * tl.exp(b_g)
        b_v = (b_v - tl.sum(b_h * b_k[:, None], axis=0)) * b_b
        b_h = b_h + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], axis=0)
        tl.store(o + tok * s_ot + i_h * s_oh + o_v, b_o.to(o.dtype.element_ty), mask=m_v)

    store_final_state(ht, b_h, slot, valid, s_ht, p_hkv, m_h, STORE_HT)


def _tokens(x: torch.Tensor, TT: int) -> torch.Tensor:
    """[B, T, H, D] / [TT, H, D] -> a [TT, H, D] view (copy only if the last dim is strided)."""
    x = x.reshape(TT, *x.shape[-2:])
    return x if x.stride(-1) == 1 else x.contiguous()


def _gates(x: torch.Tensor, TT: int) -> torch.Tensor:
    return x.reshape(TT, x.shape[-1])


def _check_state(s: torch.Tensor, H: int, K: int, V: int, name: str):
    if s.dim() != 4 or tuple(s.shape[1:]) != (H, K, V):
        raise ValueError(f"{name} must be [slots, H={H}, K={K}, V={V}], got {tuple(s.shape)}")
    if s.stride()[1:] != (K * V, V, 1):
        raise ValueError(f"{name} must be contiguous inside a slot (strides {s.stride()})")
    if s.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"{name} dtype {s.dtype} not supported")


def default_block_v(K: int, V: int, state_dtype: torch.dtype | None) -> tuple[int, int]:
    """(BV, num_warps) of the state tile [K, BV] per program. From the decode sweep on an H200 (K = V = 128,
    docs/benchmarks/kernels.md): float32 state BV = 64 with 4 warps (94 % of copy bandwidth at batch 512, 78 % at
    64), bf16 state BV = 32 with 2 warps (74 % / 65 %); i.e. 8K / 4K state elements per program."""
    BK = next_pow2(K)
    if state_dtype in (torch.bfloat16, torch.float16):
        return min(next_pow2(V), max(8, 4096 // BK)), 2
    return min(next_pow2(V), max(8, 8192 // BK)), 4


@on_tensor_device
def fused_recurrent_gdn_fwd(
    q, k, v, g=None, beta=None, *, a=None, b=None, A_log=None, dt_bias=None, scale=None,
    initial_state=None, state_indices=None, has_initial_state=None, final_state=None,
    cu_seqlens=None, use_qk_l2norm=False, out=None, BV=None, num_warps=None,
):
    """Launch the fused recurrent kernel; returns o (q's dtype) shaped like v. See the module docstring.

    Either (g, beta) — log decay and write strength — or the raw (a, b) with A_log, dt_bias [H] (FUSED gating).
    initial_state / final_state: dense [N, H, K, V] when state_indices is None, else pools indexed by it; pass
    the same pool for both to update it in place. has_initial_state [N] (bool/int) zeroes the start state of
    sequences without one (only read when initial_state is given).
    """
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if cu_seqlens is not None:
        TT = q.numel() // (H * K)
        N = cu_seqlens.shape[0] - 1
        T = 0
    elif q.dim() == 4:
        N, T = q.shape[:2]
        TT = N * T
    else:  # [N, H, K]: one token per sequence
        N, T = q.shape[0], 1
        TT = N
    fused = a is not None
    if fused == (g is not None):
        raise ValueError("pass either (g, beta) or (a, b, A_log, dt_bias)")
    if fused and (b is None or A_log is None or dt_bias is None):
        raise ValueError("fused gating needs a, b, A_log and dt_bias")
    gate, wb = (a, b) if fused else (g, beta)
    qt, kt, vt = _tokens(q, TT), _tokens(k, TT), _tokens(v, TT)
    gt, bt = _gates(gate, TT), _gates(wb, TT)
    scale = K**-0.5 if scale is None else float(scale)
    o = out if out is not None else torch.empty(TT, H, V, dtype=q.dtype, device=q.device)
    ot = o.reshape(TT, H, V)
    assert ot.stride(-1) == 1
    indexed = state_indices is not None
    if initial_state is not None:
        _check_state(initial_state, H, K, V, "initial_state")
    if final_state is not None:
        _check_state(final_state, H, K, V, "final_state")
    if not indexed:
        for s in (initial_state, final_state):
            if s is not None and s.shape[0] != N:
                raise ValueError(f"dense states need {N} rows, got {s.shape[0]}")
    elif state_indices.shape[0] != N:
        raise ValueError(f"state_indices must have one entry per sequence ({N})")
    pool = final_state if final_state is not None else initial_state
    dflt_bv, dflt_w = default_block_v(K, V, pool.dtype if pool is not None else None)
    BV = BV or dflt_bv
    num_warps = num_warps or dflt_w
    BK = next_pow2(K)
    dummy = ot
    if has_initial_state is not None and has_initial_state.dtype == torch.bool:
        has_initial_state = has_initial_state.view(torch.uint8)
    h0 = initial_state if initial_state is not None else dummy
    ht = final_state if final_state is not None else dummy
    grid = (cdiv(V, BV), N * H)
    _gdn_fused_recurrent_fwd_kernel[grid](
        qt, kt, vt, gt, bt,
        A_log if fused else dummy, dt_bias if fused else dummy, ot,
        h0, ht,
        state_indices if indexed else dummy,
        has_initial_state if has_initial_state is not None else dummy,
        cu_seqlens if cu_seqlens is not None else dummy,
        scale, T, H, K, V,
        qt.stride(0), qt.stride(1), kt.stride(0), kt.stride(1), vt.stride(0), vt.stride(1), ot.stride(0), ot.stride(1),
        gt.stride(0), gt.stride(1), bt.stride(0), bt.stride(1),
        h0.stride(0) if initial_state is not None else 0, ht.stride(0) if final_state is not None else 0,
        BK=BK, BV=BV,
        IS_VARLEN=cu_seqlens is not None, USE_H0=initial_state is not None, STORE_HT=final_state is not None,
        INDEXED=indexed, HAS_H0_MASK=has_initial_state is not None and initial_state is not None,
        FUSED_GATE=fused, QK_L2NORM=bool(use_qk_l2norm),
        num_warps=num_warps, num_stages=1,
    )
    return o.reshape(*v.shape[:-1], V) if out is None else o
