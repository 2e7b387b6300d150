"""Causal depthwise short convolution over vLLM-style batches, continuing from a per-request conv-state pool.

No vLLM here (the GPU micro-benchmark and the CPU tests import it directly). Layouts:

* `x` [T, C]: the tokens of the batch, packed; `weight` [C, W] (or [C, 1, W], as stored in the checkpoint).
* `conv_state` [slots, C, W - 1]: per request, the last W - 1 inputs, oldest first; the slot dimension may be
  strided (vLLM's per-layer view of its page buffer).
* `slots` [N]: one pool slot per sequence; a negative slot (vLLM's PAD_SLOT_ID) is padding: its row of the pool is
  never written (nor is any other), and its outputs are finite garbage for the caller to ignore.

Numerics are those of the model (`export/linear_attention.py` ShortConv): the conv runs in x's dtype (F.conv1d for
prefill, the window product for one-token decode, as before), and the state is stored in the pool's dtype.

On the Triton path the serving layer runs the kernels of `kernels/short_conv/` instead (decode: one launch, GDN's
SiLU fused; prefill: two launches); the functions here are its graph-safe PyTorch path (CPU, or no Triton).

Nothing here synchronises with the host (no `.item()` / `.tolist()`, no data-dependent shapes), so the decode
update can be captured in a CUDA graph, and the prefill of a whole packed batch costs a fixed dozen launches
whatever the number of sequences. The index tensors that depend only on the batch layout (not on the layer) are
built once per step by `conv_plan` / `slot_writes` and shared by every layer.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridserve.kernels.short_conv.naive import token_to_sequence


class SlotWrites(NamedTuple):
    """How to write one new row per sequence into a pool without touching padding rows and without a host sync.

    A padding row cannot be dropped from an index_copy without a data-dependent shape, and redirecting it to a fixed
    slot would race with a real sequence that owns that slot. So every padding row repeats the write of a real row
    (same slot, same values: duplicates that agree are harmless); only when the batch has no real row at all does
    it write slot 0's own old contents back to slot 0."""

    source: Tensor  # [N] row of the new values to write (a real row for padding rows, when there is one)
    target: Tensor  # [N] pool slot to write (>= 0)
    use_new: Tensor  # [N, 1, 1] bool: False only when no row is real (then the old contents are written back)
    read: Tensor  # [N] slot to read the old contents from (slots clamped to >= 0)


def slot_writes(slots: Tensor) -> SlotWrites:
    slots = slots.long()
    real = slots >= 0
    first_real = real.to(torch.uint8).argmax()  # 0 when there is none (then real[0] is False, handled by use_new)
    rows = torch.arange(slots.shape[0], device=slots.device)
    source = torch.where(real, rows, first_real)
    return SlotWrites(source, slots[source].clamp(min=0), real[source][:, None, None], slots.clamp(min=0))


def write_slots_(pool: Tensor, writes: SlotWrites, new: Tensor, old: Tensor) -> None:
    """pool[slot n] = new[n] for the real rows; `old` [N, ...] is pool[writes.read] as read before."""
    values = torch.where(writes.use_new, new.index_select(0, writes.source).to(pool.dtype), old)
    pool.index_copy_(0, writes.target, values)


class ConvPlan(NamedTuple):
    """Index maps of one packed batch for a width-W conv. Each sequence n is laid out in an extended buffer as its
    W - 1 previous inputs (from its conv state, or zeros) followed by its tokens, so one depthwise F.conv1d over the
    whole buffer gives every token the window of its own sequence only (a window never reaches back past its
    sequence's W - 1 prefix rows)."""

    length: int  # rows of the extended buffer: T + N (W - 1)
    token_pos: Tensor  # [T] where token t sits in the buffer
    out_pos: Tensor  # [T] the conv output column of token t (= token_pos - (W - 1))
    prefix_pos: Tensor  # [N (W - 1)] the buffer rows of each sequence's previous inputs, oldest first
    tail_pos: Tensor  # [N (W - 1)] the buffer rows of each sequence's last W - 1 inputs (its new conv state)
    writes: SlotWrites


def conv_plan(query_start_loc: Tensor, slots: Tensor, num_tokens: int, width: int) -> ConvPlan:
    """query_start_loc [N + 1] (starting at 0) on the device; num_tokens = T (rows of x). Tokens at or after
    query_start_loc[N] (padding) are treated as part of the last sequence: their outputs are unspecified."""
    dev = query_start_loc.device
    cu = query_start_loc.long()
    N, P = cu.shape[0] - 1, width - 1
    t = torch.arange(num_tokens, device=dev)
    seq = token_to_sequence(cu, num_tokens).long()
    token_pos = t + (seq + 1) * P
    n = torch.arange(N, device=dev)
    taps = torch.arange(P, device=dev)
    prefix_pos = ((cu[:-1] + n * P)[:, None] + taps).reshape(-1)
    tail_pos = ((cu[1:] + n * P)[:, None] + taps).reshape(-1)  # the last P rows of [prefix, tokens]
    return ConvPlan(num_tokens + N * P, token_pos, token_pos - P, prefix_pos, tail_pos, slot_writes(slots))


def _weight(weight: Tensor, dtype: torch.dtype) -> Tensor:
    return weight.reshape(weight.shape[0], weight.shape[-1]).to(dtype)


def varlen_short_conv_(x: Tensor, weight: Tensor, conv_state: Tensor, slots: Tensor, query_start_loc: Tensor,
                       has_initial_state: Optional[Tensor] = None, plan: Optional[ConvPlan] = None) -> Tensor:
    """Causal depthwise conv of packed sequences (prefill, or any mix of lengths). Sequence n continues from
    conv_state[slots[n]] when has_initial_state[n] (None: always), else from zeros; its last W - 1 inputs are
    written back to that slot. Returns y [T, C] in x's dtype. `plan`: conv_plan(query_start_loc, slots, T, W),
    when the caller shares it between layers."""
    T, C = x.shape
    w = _weight(weight, x.dtype)
    P = w.shape[1] - 1
    N = slots.shape[0]
    if plan is None:
        plan = conv_plan(query_start_loc, slots, T, P + 1)
    # Channels first, as F.conv1d wants them: the scatter that builds the buffer is also the transpose.
    buf = x.new_empty(C, plan.length)
    buf.index_copy_(1, plan.token_pos, x.t())
    old = conv_state.index_select(0, plan.writes.read)  # [N, C, P], pool dtype
    start = slots >= 0
    if has_initial_state is not None:
        start = start & has_initial_state.bool()
    prev = torch.where(start[:, None, None], old.to(x.dtype), 0)
    buf.index_copy_(1, plan.prefix_pos, prev.permute(1, 0, 2).reshape(C, N * P))
    y = F.conv1d(buf[None], w[:, None, :], groups=C)[0]  # [C, length - P]
    new = buf.index_select(1, plan.tail_pos).view(C, N, P).permute(1, 0, 2)  # [N, C, P]
    write_slots_(conv_state, plan.writes, new, old)
    return y.t().index_select(0, plan.out_pos)


def short_conv_decode_(x: Tensor, weight: Tensor, conv_state: Tensor, slots: Tensor,
                       writes: Optional[SlotWrites] = None) -> Tensor:
    """One token per sequence (x [N, C]): window = [conv_state[slots[n]], x[n]], y = window . weight, the state
    shifts by one. CUDA-graph safe. `writes`: slot_writes(slots), when the caller shares it between layers."""
    if writes is None:
        writes = slot_writes(slots)
    w = _weight(weight, x.dtype)
    old = conv_state.index_select(0, writes.read)  # [N, C, W - 1]
    window = torch.cat([old.to(x.dtype), x[:, :, None]], dim=-1)
    y = (window * w).sum(-1)
    write_slots_(conv_state, writes, window[..., 1:], old)
    return y
