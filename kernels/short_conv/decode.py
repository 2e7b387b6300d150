"""The short causal conv's one-token decode step, Triton: one launch for what serve/short_conv.py's PyTorch path
does in eight (gather the states, concatenate, multiply, sum, pick the write rows, select, scatter, SiLU; counted in
tests/test_kernels_short_conv.py).

Serving runs this once per linear layer and decode step, so its launches are paid in every FULL decode graph
replay (docs/benchmarks/kernels-sessions-10-12.md, eleventh session, times the two). Math and layouts: naive.py beside this file
(its reference). Sums in float32; the state keeps the pool's dtype; a negative slot (padding) is never read
or written, so no other request's state can be touched.

Grid: (sequences, channel blocks). Each program reads its sequence's W - 1 stored inputs for BC channels, writes
them back shifted by one with the new input last (in place: each element is loaded before it is overwritten,
and no other program touches that slot), and stores y. No host synchronisation: CUDA-graph safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_utils import cdiv, next_pow2, on_tensor_device


@triton.jit
def _short_conv_decode_kernel(x, s_xn, w, s_wc, s_ww, pool, s_ps, s_pc, s_pw, idx, y, s_yn, C,
                              W: tl.constexpr, BC: tl.constexpr, SILU: tl.constexpr):
    n = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    m = c < C
    slot = tl.load(idx + n).to(tl.int64)
    ms = m & (slot >= 0)
    xn = tl.load(x + n * s_xn + c, mask=m, other=0.0)
    acc = xn.to(tl.float32) * tl.load(w + c * s_wc + (W - 1) * s_ww, mask=m, other=0.0).to(tl.float32)
    row = pool + tl.maximum(slot, 0) * s_ps + c * s_pc
    for j in tl.static_range(W - 1):
        sj = tl.load(row + j * s_pw, mask=ms, other=0.0)
        acc += sj.to(tl.float32) * tl.load(w + c * s_wc + j * s_ww, mask=m, other=0.0).to(tl.float32)
        if j > 0:  # shift: stored input j becomes input j - 1 (input j - 1 was read one step earlier)
            tl.store(row + (j - 1) * s_pw, sj, mask=ms)
    tl.store(row + (W - 2) * s_pw, xn.to(pool.dtype.element_ty), mask=ms)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(y + n * s_yn + c, acc.to(y.dtype.element_ty), mask=m)


def conv_operands(name: str, x: torch.Tensor, weight: torch.Tensor, state_pool: torch.Tensor):
    """What both conv launchers check and prepare: (x with contiguous channels, weight as [C, W], W, an empty y)."""
    C = x.shape[1]
    w = weight.reshape(weight.shape[0], weight.shape[-1])
    W = w.shape[1]
    if W < 2 or w.shape[0] != C or tuple(state_pool.shape[1:]) != (C, W - 1):
        raise ValueError(f"{name}: x {tuple(x.shape)}, weight {tuple(weight.shape)} and state pool "
                         f"{tuple(state_pool.shape)} do not fit (expected weight [C, W >= 2], pool [slots, C, W - 1])")
    if x.stride(1) != 1:
        x = x.contiguous()
    return x, w, W, torch.empty(x.shape, dtype=x.dtype, device=x.device)


@on_tensor_device
def short_conv_decode(x: torch.Tensor, weight: torch.Tensor, state_pool: torch.Tensor, state_indices: torch.Tensor,
                      silu: bool = False) -> torch.Tensor:
    """x [N, C] (rows may be strided, channels contiguous); weight [C, W] or [C, 1, W]; state_pool [slots, C, W - 1]
    (any strides: vLLM's per-layer view of its page buffer), updated in place; state_indices [N] int32/int64.
    Returns y [N, C] in x's dtype."""
    x, w, W, y = conv_operands("short_conv_decode", x, weight, state_pool)
    N, C = x.shape
    if N == 0:
        return y
    BC = min(512, next_pow2(C))
    _short_conv_decode_kernel[(N, cdiv(C, BC))](
        x, x.stride(0), w, w.stride(0), w.stride(1), state_pool, *state_pool.stride(), state_indices, y, y.stride(0),
        C, W=W, BC=BC, SILU=silu, num_warps=4)
    return y
