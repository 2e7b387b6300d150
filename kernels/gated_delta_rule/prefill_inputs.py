"""The prefill prologue of Gated DeltaNet's state-pool op, Triton: one launch instead of ~23 small ones.

`ops.gdn_chunk_pool` (vLLM's prefill path) needs, from the raw projections,

    g    = -exp(A_log) softplus(a + dt_bias)    float32 [TT, H]
    beta = sigmoid(b)                           float32 [TT, H]
    q, k, v <- silu(x)                          (silu: GDN's activation, when the caller passes the raw
                                                 projection; float32 math, rounded to the input dtype, as F.silu)
    q, k <- x * rsqrt(sum(x^2) + 1e-6)          (use_qk_l2norm; float32 math, rounded to the input dtype)

and `chunk_gdn_fwd` wants q, k, v as contiguous [TT, H, *] tensors. In eager PyTorch that is `ops.gdn_gates` and
`ops._l2norm` (about 22 elementwise launches at bf16) plus the copy of v inside `chunk_gdn_fwd`; each launch
costs host time, paid by every linear layer of every prefill step. This kernel reads q, k, v and a, b through
their strides (serving passes column slices of one [TT, C] projection viewed as [TT, H, D], last-dim stride 1)
and writes all five prepared tensors at once; `chunk_gdn_fwd` then takes them without another copy.

Same math as the PyTorch path (`F.silu`, `ops.gdn_gates`, `ops._l2norm`: the references of the tests); only the
order of the float32 sums differs. Taking the activation here saves serving one more launch per layer call and one
pass over the q/k/v columns of the projection. Only the raw-gate case (a, b given) has a kernel: with g, beta given
the op keeps the PyTorch path (no serving caller passes them).

Grid: (token blocks, heads); each program handles BT tokens of one head.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_utils import cdiv, next_pow2, on_tensor_device


@triton.jit
def _softplus(x):
    """torch's softplus (threshold 20): x > 20 ? x : log1p(exp(x)). log1p by Goldberg's trick (log(u) y / (u - 1)
    with u = 1 + y, a few ulps): plain log(1 + y) loses y below 2^-24, i.e. g = 0 instead of a tiny decay for very
    negative a, where torch's log1p keeps it; and libdevice's log1p does not run in the interpreter."""
    y = tl.exp(tl.minimum(x, 20.0))
    u = 1.0 + y
    d = u - 1.0
    lp = tl.where(d == 0.0, y, tl.log(u) * (y / tl.where(d == 0.0, 1.0, d)))
    return tl.where(x > 20.0, x, lp)


@triton.jit
def _activate(x, NORM: tl.constexpr, SILU: tl.constexpr):
    """A loaded tile of rows through SiLU if SILU (rounded to the input dtype, as F.silu returns it), then
    L2-normalised along each row if NORM (float32, left for the caller to round). Also fused_chunk.py's."""
    if SILU:
        xf = x.to(tl.float32)
        x = (xf * tl.sigmoid(xf)).to(x.dtype)
    if NORM:
        xf = x.to(tl.float32)
        x = xf * tl.math.rsqrt(tl.sum(xf * xf, axis=1) + 1e-6)[:, None]  # masked columns add 0
    return x


@triton.jit
def _rows(src, s_t, dst, D: tl.constexpr, o_t, o_d, m, NORM: tl.constexpr, SILU: tl.constexpr):
    """BT rows of one head: strided source rows -> contiguous [TT, H, D] destination rows, through _activate."""
    x = _activate(tl.load(src + o_t[:, None] * s_t + o_d[None, :], mask=m, other=0.0), NORM, SILU)
    tl.store(dst + o_t[:, None] * D + o_d[None, :], x.to(dst.dtype.element_ty), mask=m)


@triton.jit
def _gdn_prefill_inputs_kernel(
    q, k, v, a, b, A_log, dt_bias, qt, kt, vt, g, beta,
    TT, s_qt, s_qh, s_kt, s_kh, s_vt, s_vh, s_at, s_ah, s_bt, s_bh,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    QK_L2NORM: tl.constexpr, SILU: tl.constexpr,
):
    i_t = tl.program_id(0)
    i_h = tl.program_id(1)
    t0 = i_t.to(tl.int64) * BT  # int64 scalar bases (TT x row stride can pass 2^31), int32 tile offsets
    o_t = tl.arange(0, BT)
    m_t = o_t < TT - t0
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_tk = m_t[:, None] & (o_k < K)[None, :]
    m_tv = m_t[:, None] & (o_v < V)[None, :]
    out_k = (t0 * H + i_h) * K
    _rows(q + t0 * s_qt + i_h * s_qh, s_qt, qt + out_k, H * K, o_t, o_k, m_tk, QK_L2NORM, SILU)
    _rows(k + t0 * s_kt + i_h * s_kh, s_kt, kt + out_k, H * K, o_t, o_k, m_tk, QK_L2NORM, SILU)
    _rows(v + t0 * s_vt + i_h * s_vh, s_vt, vt + (t0 * H + i_h) * V, H * V, o_t, o_v, m_tv, False, SILU)

    b_a = tl.load(a + t0 * s_at + i_h * s_ah + o_t * s_at, mask=m_t, other=0.0).to(tl.float32)
    b_b = tl.load(b + t0 * s_bt + i_h * s_bh + o_t * s_bt, mask=m_t, other=0.0).to(tl.float32)
    neg_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
    b_dt = tl.load(dt_bias + i_h).to(tl.float32)
    p_g = t0 * H + i_h + o_t * H
    tl.store(g + p_g, neg_A * _softplus(b_a + b_dt), mask=m_t)
    tl.store(beta + p_g, tl.sigmoid(b_b), mask=m_t)


def _rows_view(x: torch.Tensor, TT: int) -> torch.Tensor:
    """[.., H, D] -> a [TT, H, D] view with any token / head stride (a copy only if the last dim is strided)."""
    x = x.reshape(TT, *x.shape[-2:])
    return x if x.stride(-1) == 1 else x.contiguous()


def default_block_t(BK: int, BV: int) -> int:
    """Tokens per program: 16 up to head dim 128, 8 beyond. A memory-bound copy needs no bigger tiles, and bigger
    ones cost registers (sm_90a, 4 warps, bf16, L2 norm: BT 16 uses 40-48 registers, BT 32 127-142)."""
    return max(8, min(16, 2048 // max(BK, BV)))


@on_tensor_device
def gdn_prefill_inputs(q, k, v, a, b, A_log, dt_bias, use_qk_l2norm=True, silu=False, BT=None, num_warps=4):
    """-> (q, k, v, g, beta) ready for chunk_gdn_fwd, in one launch.

    q, k [.., H, K], v [.., H, V] (token-major, e.g. [TT, H, D] or [1, TT, H, D], any token and head strides),
    raw a, b [.., H] (any strides), A_log, dt_bias [H]. Returns new contiguous tensors shaped like the inputs:
    q, k, v (through SiLU first when silu; q, k then L2-normalised when use_qk_l2norm) in q's dtype (the dtype
    chunk_gdn_fwd computes in), g and beta float32 shaped like a (as `ops.gdn_gates` returns them)."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if tuple(k.shape) != tuple(q.shape) or tuple(v.shape[:-1]) != tuple(q.shape[:-1]):
        raise ValueError(f"q, k, v shapes disagree: {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if K > 256 or V > 256:
        raise ValueError("head dims up to 256")
    TT = q.numel() // (H * K)
    if a.numel() != TT * H or b.numel() != TT * H or A_log.numel() != H or dt_bias.numel() != H:
        raise ValueError(f"a, b must be [{TT}, {H}] and A_log, dt_bias [{H}]")
    dev, dtype = q.device, q.dtype
    qt = torch.empty(TT, H, K, dtype=dtype, device=dev)
    kt = torch.empty(TT, H, K, dtype=dtype, device=dev)
    vt = torch.empty(TT, H, V, dtype=dtype, device=dev)
    g = torch.empty(TT, H, dtype=torch.float32, device=dev)
    beta = torch.empty(TT, H, dtype=torch.float32, device=dev)
    if TT > 0:
        qs, ks, vs = (_rows_view(x, TT) for x in (q, k, v))
        at, bt = a.reshape(TT, H), b.reshape(TT, H)
        BK, BV = max(16, next_pow2(K)), max(16, next_pow2(V))
        BT = BT or default_block_t(BK, BV)
        _gdn_prefill_inputs_kernel[(cdiv(TT, BT), H)](
            qs, ks, vs, at, bt, A_log.reshape(H).contiguous(), dt_bias.reshape(H).contiguous(), qt, kt, vt, g, beta,
            TT, qs.stride(0), qs.stride(1), ks.stride(0), ks.stride(1), vs.stride(0), vs.stride(1),
            at.stride(0), at.stride(1), bt.stride(0), bt.stride(1),
            H=H, K=K, V=V, BT=BT, BK=BK, BV=BV, QK_L2NORM=bool(use_qk_l2norm), SILU=bool(silu),
            num_warps=num_warps, num_stages=1,
        )
    return qt.view(q.shape), kt.view(k.shape), vt.view(v.shape), g.view(a.shape), beta.view(a.shape)
