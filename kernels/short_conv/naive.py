"""The short causal conv over a conv-state pool, plain PyTorch: the references of decode.py and prefill.py.

Decode, one token per sequence n with slot s = state_indices[n]: window = [state_pool[s] (the last W - 1 inputs,
oldest first), x[n]], y[n] = sum over the window of window * weight, then SiLU when `silu` (GDN's activation of q,
k, v); state_pool[s] becomes the window's last W - 1 inputs. A negative slot is padding: its pool row is neither
read (the window starts from zeros) nor written, and its output is finite garbage for the caller to ignore.

Prefill (packed sequences of any lengths): the same window slid over each sequence, continuing from its stored
inputs or from zeros (`naive_short_conv_varlen_`).

Sums run in float32 (float64 for float64 inputs) and y is rounded once to x's dtype, as the Triton kernels do.
Boolean indexing and `.tolist()` make these host-synchronising references; the serving layer's graph-safe PyTorch
path is serve/short_conv.py.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def naive_short_conv_decode_(x: Tensor, weight: Tensor, state_pool: Tensor, state_indices: Tensor,
                             silu: bool = False) -> Tensor:
    """x [N, C]; weight [C, W] or [C, 1, W]; state_pool [slots, C, W - 1] (updated in place); state_indices [N]."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    w = weight.reshape(weight.shape[0], weight.shape[-1]).to(acc)
    slots = state_indices.long()
    real = slots >= 0
    old = torch.zeros(x.shape[0], *state_pool.shape[1:], dtype=acc, device=x.device)
    old[real] = state_pool[slots[real]].to(acc)
    window = torch.cat([old, x.to(acc)[:, :, None]], dim=-1)
    y = (window * w).sum(-1)
    if silu:
        y = F.silu(y)
    state_pool[slots[real]] = window[real, :, 1:].to(state_pool.dtype)
    return y.to(x.dtype)


def naive_short_conv_varlen_(x: Tensor, weight: Tensor, state_pool: Tensor, state_indices: Tensor,
                             cu_seqlens: Tensor, has_initial_state: Optional[Tensor] = None,
                             silu: bool = False) -> Tensor:
    """Packed sequences (prefill, or any mix of lengths): x [T, C] with sequence n at rows cu_seqlens[n] ..
    cu_seqlens[n + 1]; it continues from state_pool[state_indices[n]] when has_initial_state[n] (None: always) and
    its slot is real, else from zeros; its last W - 1 inputs (older stored ones when it is shorter than W - 1) go
    back to the slot. Rows at or after cu_seqlens[N] are padding: y there is zero. Sequence by sequence, F.conv1d."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    w = weight.reshape(weight.shape[0], weight.shape[-1]).to(acc)
    P = w.shape[1] - 1
    y = torch.zeros(x.shape, dtype=acc, device=x.device)
    cu = cu_seqlens.tolist()
    for n, slot in enumerate(state_indices.tolist()):
        xs = x[cu[n]: cu[n + 1]].to(acc).t()  # [C, L]
        start = slot >= 0 and (has_initial_state is None or bool(has_initial_state[n]))
        prev = state_pool[slot].to(acc) if start else xs.new_zeros(xs.shape[0], P)
        full = torch.cat([prev, xs], dim=-1)
        if xs.shape[1]:  # an empty sequence has no output, only its (unchanged or zeroed) state
            y[cu[n]: cu[n + 1]] = F.conv1d(full[None], w[:, None, :], groups=w.shape[0])[0].t()
        if slot >= 0:
            state_pool[slot] = full[:, full.shape[1] - P:].to(state_pool.dtype)
    if silu:
        y = F.silu(y)
    return y.to(x.dtype)


def token_to_sequence(cu_seqlens: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """[T] int32: the sequence of each packed token (padding tokens past the last sequence: the last one). One
    searchsorted on the device; build it once per step and share it between layers."""
    N = cu_seqlens.shape[0] - 1
    t = torch.arange(num_tokens, device=cu_seqlens.device, dtype=cu_seqlens.dtype)
    return torch.searchsorted(cu_seqlens[1:], t, right=True).clamp_(max=max(N - 1, 0)).to(torch.int32)
