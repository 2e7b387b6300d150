"""The short causal conv's one-token decode step, plain PyTorch: the reference of decode.py.

Per sequence n with slot s = state_indices[n]: window = [state_pool[s] (the last W - 1 inputs, oldest first), x[n]],
y[n] = sum over the window of window * weight, then SiLU when `silu` (GDN's activation of q, k, v); state_pool[s]
becomes the window's last W - 1 inputs. A negative slot is padding: its pool row is neither read (the window
starts from zeros) nor written, and its output is finite garbage for the caller to ignore.

Sums run in float32 (float64 for float64 inputs) and y is rounded once to x's dtype, as the Triton kernel does.
Boolean indexing makes this a host-synchronising reference; the serving layer's graph-safe PyTorch path is
serve/short_conv.py.
"""

from __future__ import annotations

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
