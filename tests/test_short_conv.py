"""serve/short_conv.py: the vectorised causal short conv over packed sequences equals a per-sequence F.conv1d
(what the serving layer ran before, and what the HF model runs), updates only the real requests' conv states, and
never reads tensor data on the host (so it needs no synchronisation and can be captured in a CUDA graph).

No vLLM needed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridserve.serve.short_conv import conv_plan, short_conv_decode_, slot_writes, varlen_short_conv_

C, W, SLOTS = 12, 4, 10
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def reference(x, weight, pool, slots, cu, has_initial):
    """Sequence by sequence, as serve/linear_layer.py did before: [previous W-1 inputs or zeros, tokens] through
    F.conv1d in x's dtype; the last W-1 inputs go back to the slot in the pool's dtype."""
    pool = pool.clone()
    width = weight.shape[-1]
    ys = []
    for i, slot in enumerate(slots.tolist()):
        xi = x[cu[i]: cu[i + 1]].t()
        prev = pool[slot].to(x.dtype) if has_initial[i] and slot >= 0 else xi.new_zeros(xi.shape[0], width - 1)
        full = torch.cat([prev, xi], dim=-1)
        ys.append(F.conv1d(full[None], weight.to(x.dtype)[:, None, :], groups=xi.shape[0])[0].t())
        if slot >= 0:
            pool[slot] = full[:, -(width - 1):].to(pool.dtype)
    return torch.cat(ys), pool


def make(dtype, pool_dtype, lens, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lens), C, generator=g, dtype=torch.float64).to(dtype)
    weight = torch.randn(C, W, generator=g, dtype=torch.float64).to(dtype)
    pool = torch.randn(SLOTS, C, W - 1, generator=g, dtype=torch.float64).to(pool_dtype)
    cu = torch.tensor([0] + lens).cumsum(0)
    return x, weight, pool, cu


def close(a, b, dtype):
    # float64: the same products, summed in the conv's own order (which may depend on the length on CUDA)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(a.double(), b.double(), **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype,pool_dtype", [(torch.float64, torch.float64), (torch.bfloat16, torch.bfloat16),
                                              (torch.float32, torch.bfloat16)])
def test_varlen_equals_per_sequence_conv(dtype, pool_dtype, device):
    # Lengths around the window (1, 2 < W - 1; 3 = W - 1; 4 = W) and longer; fresh and continuing requests; padding.
    lens = [1, 2, 3, 4, 9, 17, 5, 2]
    slots = torch.tensor([3, 7, 0, 9, -1, 5, 1, -1])
    has_initial = torch.tensor([1, 0, 1, 0, 1, 1, 0, 0], dtype=torch.int32)
    x, weight, pool, cu = make(dtype, pool_dtype, lens)
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), has_initial.tolist())
    got_pool = pool.to(device)
    y = varlen_short_conv_(x.to(device), weight.to(device), got_pool, slots.to(device), cu.to(device),
                           has_initial.to(device))
    y, got_pool = y.cpu(), got_pool.cpu()
    assert y.dtype == dtype and y.shape == x.shape and got_pool.dtype == pool_dtype
    real = [i for i, s in enumerate(slots.tolist()) if s >= 0]
    rows = torch.cat([torch.arange(cu[i], cu[i + 1]) for i in real])
    close(y[rows], want_y[rows], dtype)  # padding sequences' outputs are unspecified
    if dtype == torch.float64:
        assert torch.equal(got_pool, want_pool)
    else:
        close(got_pool, want_pool, dtype)
    untouched = [s for s in range(SLOTS) if s not in slots.tolist()]
    assert torch.equal(got_pool[untouched], pool[untouched])  # bit for bit, slot 2 4 6 8 included


def test_no_initial_state_argument_means_every_request_continues():
    lens = [3, 6]
    slots = torch.tensor([4, 2])
    x, weight, pool, cu = make(torch.float64, torch.float64, lens, seed=1)
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), [1, 1])
    got_pool = pool.clone()
    y = varlen_short_conv_(x, weight[:, None, :], got_pool, slots, cu)  # the checkpoint's [C, 1, W] weight too
    assert torch.equal(y, want_y) and torch.equal(got_pool, want_pool)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_decode_equals_one_token_sequences(dtype, device):
    slots = torch.tensor([6, -1, 0, 3, -1])
    x, weight, pool, cu = make(dtype, dtype, [1] * 5, seed=2)
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), [1] * 5)
    got_pool = pool.to(device)
    y = short_conv_decode_(x.to(device), weight.to(device), got_pool, slots.to(device)).cpu()
    got_pool = got_pool.cpu()
    keep = slots >= 0
    close(y[keep], want_y[keep], dtype)
    assert torch.equal(got_pool, want_pool)  # the state shift is exact; padding and other slots bit for bit


def test_mixed_step_decodes_then_prefills_share_one_pool():
    """vLLM's decode-first batch: the decode rows through the decode update, then the prefills through the varlen
    conv, on one pool; equal to running every request on its own (decodes as length-1 continuing sequences)."""
    dec_slots, pre_slots = torch.tensor([8, 1, -1]), torch.tensor([5, 0, 9])
    lens = [1, 1, 1, 7, 2, 30]
    x, weight, pool, cu = make(torch.float64, torch.float64, lens, seed=3)
    slots = torch.cat([dec_slots, pre_slots])
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), [1, 1, 1, 0, 1, 1])
    got_pool = pool.clone()
    y_dec = short_conv_decode_(x[:3], weight, got_pool, dec_slots)
    pre_cu = cu[3:] - 3
    plan = conv_plan(pre_cu, pre_slots, int(pre_cu[-1]), W)
    y_pre = varlen_short_conv_(x[3:], weight, got_pool, pre_slots, pre_cu, torch.tensor([0, 1, 1]), plan)
    torch.testing.assert_close(y_dec[:2], want_y[:2], rtol=1e-12, atol=1e-12)  # window product vs conv1d
    assert torch.equal(y_pre, want_y[3:]) and torch.equal(got_pool, want_pool)


def test_padding_rows_never_overwrite_a_real_slot_0():
    """Padding rows repeat a real row's write: a real request in slot 0 gets its new state whatever the padding."""
    x, weight, pool, cu = make(torch.float64, torch.float64, [1] * 4, seed=4)
    slots = torch.tensor([-1, 0, -1, -1])
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), [1] * 4)
    got_pool = pool.clone()
    short_conv_decode_(x, weight, got_pool, slots)
    assert torch.equal(got_pool, want_pool)
    everything_padding = pool.clone()  # no real row at all: the pool stays as it was, slot 0 included
    short_conv_decode_(x, weight, everything_padding, torch.full((4,), -1))
    varlen_short_conv_(x, weight, everything_padding, torch.tensor([-1, -1]), torch.tensor([0, 1, 4]))
    assert torch.equal(everything_padding, pool)


def test_strided_inputs_and_pool():
    """x as a column slice of a wider projection, and a pool whose slot stride is padded (vLLM's per-layer view
    of its page buffer)."""
    lens = [5, 1, 8]
    slots = torch.tensor([2, 0, 3])
    x, weight, pool, cu = make(torch.float64, torch.float64, lens, seed=5)
    wide = torch.randn(x.shape[0], C + 7, dtype=torch.float64)
    wide[:, 3: 3 + C] = x
    pages = torch.randn(SLOTS, C * (W - 1) + 11, dtype=torch.float64)
    strided_pool = pages[:, : C * (W - 1)].view(SLOTS, C, W - 1)
    strided_pool.copy_(pool)
    gaps = pages[:, C * (W - 1):].clone()
    want_y, want_pool = reference(x, weight, pool, slots, cu.tolist(), [1, 0, 1])
    y = varlen_short_conv_(wide[:, 3: 3 + C], weight, strided_pool, slots, cu, torch.tensor([1, 0, 1]))
    assert torch.equal(y, want_y) and torch.equal(strided_pool, want_pool)
    assert torch.equal(pages[:, C * (W - 1):], gaps)  # the padding between slots is not written


def test_nothing_reads_tensor_data_on_the_host():
    """On the meta device any .item() / .tolist() / data-dependent shape raises: both paths run there."""
    meta = dict(device="meta")
    x, weight = torch.empty(40, C, **meta), torch.empty(C, W, **meta)
    pool = torch.empty(SLOTS, C, W - 1, **meta)
    slots, cu = torch.empty(3, dtype=torch.int32, **meta), torch.empty(4, dtype=torch.int32, **meta)
    y = varlen_short_conv_(x, weight, pool, slots, cu, torch.empty(3, dtype=torch.int32, **meta))
    assert y.shape == (40, C)
    plan = conv_plan(cu, slots, 40, W)
    assert plan.length == 40 + 3 * (W - 1) and plan.token_pos.shape == (40,)
    assert short_conv_decode_(x[:5], weight, pool, slots[:2].repeat(3)[:5], slot_writes(slots[:2].repeat(3)[:5])
                              ).shape == (5, C)
