"""The short causal conv over packed sequences (prefill), Triton: two launches for what serve/short_conv.py's PyTorch
path does in sixteen (buffer scatter, state gather and masking, a channels-first depthwise F.conv1d, tail gather,
state scatter, output gather; counted in tests/test_kernels_short_conv.py) plus its per-step index maps.

Math and layouts: naive.py beside this file (`naive_short_conv_varlen_`, the reference). Token t of sequence n at
position p = t - cu[n] reads, for tap j of W, the input d = W - 1 - j steps back: x[t - d] when p >= d, else input
W - 1 + p - d of the sequence's stored ones (conv_state[slot], when it continues a state; zeros otherwise).

* `_short_conv_prefill_kernel`, grid (token blocks, channel blocks): y for BT tokens x BC channels. Each token finds
  its sequence through `token_seq` (a [T] map built once per step and shared by every layer). Reads the pool only.
* `_short_conv_state_kernel`, grid (sequences, channel blocks): the new stored inputs, the last W - 1 of
  [stored, tokens]. Launched after the first, so no output reads a state this one already overwrote. Writing in
  order i = 0 .. W - 2 while reading stored input L + i >= i keeps the in-place update safe when a sequence is
  shorter than W - 1 tokens.

A negative slot is padding: never read (zeros) or written. Rows at or after cu[N] are padding tokens: y is
unspecified there. Sums in float32. No host synchronisation.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .._triton_utils import cdiv, next_pow2, on_tensor_device
from .decode import conv_operands
from .naive import token_to_sequence


@triton.jit
def _short_conv_prefill_kernel(x, s_xt, w, s_wc, s_ww, pool, s_ps, s_pc, s_pw, idx, cu, has_h0, token_seq, y, s_yt,
                               T, C, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr, HAS_H0_MASK: tl.constexpr,
                               SILU: tl.constexpr):
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    mt, mc = t < T, c < C
    n = tl.load(token_seq + t, mask=mt, other=0)
    pos = t - tl.load(cu + n, mask=mt, other=0)  # position inside the sequence
    slot = tl.load(idx + n, mask=mt, other=-1).to(tl.int64)
    start = slot >= 0
    if HAS_H0_MASK:
        start = start & (tl.load(has_h0 + n, mask=mt, other=0) != 0)
    acc = tl.zeros([BT, BC], dtype=tl.float32)
    for j in tl.static_range(W):
        d = W - 1 - j  # steps back (a compile-time constant: j runs over a static range)
        wj = tl.load(w + c * s_wc + j * s_ww, mask=mc, other=0.0).to(tl.float32)
        in_seq = pos >= d
        xv = tl.load(x + (t - d).to(tl.int64)[:, None] * s_xt + c[None, :],
                     mask=(mt & in_seq)[:, None] & mc[None, :], other=0.0).to(tl.float32)
        if d > 0:  # before the sequence's first token: its stored inputs (W - 1 + pos - d >= 0 there)
            sv = tl.load(pool + tl.maximum(slot, 0)[:, None] * s_ps + c[None, :] * s_pc
                         + tl.maximum(W - 1 + pos - d, 0)[:, None] * s_pw,
                         mask=(mt & (~in_seq) & start)[:, None] & mc[None, :], other=0.0)
            xv = xv + sv.to(tl.float32)  # one of the two is 0
        acc += xv * wj[None, :]
    if SILU:
        acc = acc * tl.sigmoid(acc)
    tl.store(y + t.to(tl.int64)[:, None] * s_yt + c[None, :], acc.to(y.dtype.element_ty),
             mask=mt[:, None] & mc[None, :])


@triton.jit
def _short_conv_state_kernel(x, s_xt, pool, s_ps, s_pc, s_pw, idx, cu, has_h0, C, W: tl.constexpr, BC: tl.constexpr,
                             HAS_H0_MASK: tl.constexpr):
    n = tl.program_id(0)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    slot = tl.load(idx + n).to(tl.int64)
    if slot >= 0:
        mc = c < C
        bos = tl.load(cu + n).to(tl.int64)
        L = tl.load(cu + n + 1).to(tl.int64) - bos
        start = slot >= 0
        if HAS_H0_MASK:
            start = start & (tl.load(has_h0 + n) != 0)
        row = pool + slot * s_ps + c * s_pc
        for i in tl.static_range(W - 1):
            src = L + i - (W - 1)  # position in the sequence of new stored input i (< 0: an older stored one)
            xv = tl.load(x + (bos + src) * s_xt + c, mask=mc & (src >= 0), other=0.0)
            sv = tl.load(row + tl.maximum(L + i, 0) * s_pw, mask=mc & (src < 0) & start, other=0.0)
            v = tl.where(src >= 0, xv.to(tl.float32), sv.to(tl.float32))
            tl.store(row + i * s_pw, v.to(pool.dtype.element_ty), mask=mc)


@on_tensor_device
def short_conv_prefill(x: torch.Tensor, weight: torch.Tensor, state_pool: torch.Tensor, state_indices: torch.Tensor,
                       cu_seqlens: torch.Tensor, has_initial_state: Optional[torch.Tensor] = None, silu: bool = False,
                       token_seq: Optional[torch.Tensor] = None) -> torch.Tensor:
    """x [T, C] (rows may be strided, channels contiguous); weight [C, W] or [C, 1, W]; state_pool [slots, C, W - 1]
    (any strides), updated in place; state_indices [N]; cu_seqlens [N + 1] from 0; has_initial_state [N] or None
    (all continue); token_seq: token_to_sequence(cu_seqlens, T) when the caller shares it. Returns y [T, C]."""
    x, w, W, y = conv_operands("short_conv_prefill", x, weight, state_pool)
    T, C = x.shape
    N = state_indices.shape[0]
    if T == 0 or N == 0:
        return y
    if token_seq is None:
        token_seq = token_to_sequence(cu_seqlens, T)
    has = has_initial_state if has_initial_state is not None else state_indices  # unread without the mask
    # 16 x 128 in 4 warps: 160 registers, no spills at sm_90a (32 x 128 spilled with 255: the 64-bit pointer tiles)
    BT, BC = 16, min(128, next_pow2(C))
    _short_conv_prefill_kernel[(cdiv(T, BT), cdiv(C, BC))](
        x, x.stride(0), w, w.stride(0), w.stride(1), state_pool, *state_pool.stride(), state_indices, cu_seqlens, has,
        token_seq, y, y.stride(0), T, C, W=W, BT=BT, BC=BC, HAS_H0_MASK=has_initial_state is not None, SILU=silu,
        num_warps=4)
    BCs = min(512, next_pow2(C))
    _short_conv_state_kernel[(N, cdiv(C, BCs))](
        x, x.stride(0), state_pool, *state_pool.stride(), state_indices, cu_seqlens, has, C, W=W, BC=BCs,
        HAS_H0_MASK=has_initial_state is not None, num_warps=4)
    return y
