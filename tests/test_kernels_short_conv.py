"""kernels/short_conv: the Triton decode step and packed prefill of the short causal conv against their float64
references (naive.py), on CPU through Triton's interpreter (or on a GPU), and against the serving layer's
graph-safe PyTorch path (serve/short_conv.py) that they replace on the Triton path.

Covered: float32 and bf16 inputs, float32 and bf16 conv-state pools, widths 2 and 4, GDN's fused SiLU on and off, a
channel count that is not a power of two (masked tail block), x as a strided column slice of a wider projection (as
serving passes it), a pool whose slot dimension is strided (vLLM's per-layer view of its page buffer), padding slots
(index -1: nothing read or written) and unused slots left bit-exact; the custom ops' schemas and fake tensors.
Prefill also: sequences shorter than the conv's W - 1 stored inputs (and an empty one), sequences that start from
zeros (has_initial_state 0), padding tokens after the last sequence."""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)
from .triton_fixtures import interpreted_module, triton_ops  # noqa: F401  (pytest fixtures)

import pytest
import torch
import torch.nn.functional as F

from hybridserve import kernels
from hybridserve.kernels.short_conv.naive import naive_short_conv_decode_, naive_short_conv_varlen_
from hybridserve.serve.short_conv import short_conv_decode_ as serving_pytorch_decode_
from hybridserve.serve.short_conv import varlen_short_conv_ as serving_pytorch_varlen_

pytest.importorskip("triton")

triton_cpu.import_kernel_modules()
from hybridserve.kernels.short_conv.decode import short_conv_decode  # noqa: E402
from hybridserve.kernels.short_conv.prefill import short_conv_prefill  # noqa: E402

DEV = "cuda" if triton_cpu.ON_GPU else "cpu"
C, SLOTS = 40, 9
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}


def rel_rmse(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def make(dtype, pool_dtype, width, seed=0):
    """x as columns 8..8+C of a wider projection (row stride > C); the pool as every other slot of a buffer twice
    as large (strided slot dimension)."""
    g = torch.Generator().manual_seed(seed)
    projection = torch.randn(6, C + 24, generator=g, dtype=torch.float64).to(dtype).to(DEV)
    x = projection[:, 8: 8 + C]
    weight = (torch.randn(C, 1, width, generator=g, dtype=torch.float64) / width).to(dtype).to(DEV)
    buffer = torch.randn(2 * SLOTS, C, width - 1, generator=g, dtype=torch.float64).to(pool_dtype).to(DEV)
    pool = buffer[::2]
    slots = torch.tensor([4, -1, 0, 7, -1, 2], dtype=torch.int32, device=DEV)
    return x, weight, buffer, pool, slots


@pytest.mark.parametrize("silu", [True, False])
@pytest.mark.parametrize("width", [4, 2])
@pytest.mark.parametrize("dtype,pool_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                              (torch.float32, torch.bfloat16)])
def test_triton_decode_matches_float64_reference(dtype, pool_dtype, width, silu):
    x, weight, buffer, pool, slots = make(dtype, pool_dtype, width)
    before = buffer.clone()
    ref_pool = pool.clone()  # the reference writes in the pool's dtype too
    y_ref = naive_short_conv_decode_(x.double(), weight.double(), ref_pool, slots, silu=silu)
    y = short_conv_decode(x, weight, pool, slots, silu=silu)
    assert y.dtype == dtype and y.shape == (6, C)
    real = slots >= 0
    assert rel_rmse(y[real], y_ref[real]) <= TOL[dtype]
    assert torch.isfinite(y).all()
    # The new states are data moves (the shift) and x cast to the pool's dtype: exact.
    assert torch.equal(pool, ref_pool)
    # Nothing else in the buffer moved: the padding rows' would-be slot, the unused slots, the interleaved rows.
    touched = torch.zeros(2 * SLOTS, dtype=torch.bool)
    touched[2 * slots[real].long().cpu()] = True
    assert torch.equal(buffer[~touched.to(DEV)], before[~touched.to(DEV)])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_decode_matches_the_serving_pytorch_path(dtype):
    """The kernel replaces serve/short_conv.py's decode + F.silu on the Triton path: same outputs (up to the
    PyTorch path's rounding of the window product in x's dtype) and bit-identical states."""
    x, weight, _, pool, slots = make(dtype, dtype, 4, seed=3)
    pool_pt = pool.clone()
    y_pt = F.silu(serving_pytorch_decode_(x, weight, pool_pt, slots))
    y = short_conv_decode(x, weight, pool, slots, silu=True)
    real = slots >= 0
    assert rel_rmse(y[real], y_pt[real]) <= (1e-5 if dtype == torch.float32 else 1e-2)
    assert torch.equal(pool, pool_pt)


def test_the_op_dispatches_and_has_a_schema(triton_ops):
    """The public op routes CPU tensors to the kernel under the interpreter routing (and to the reference without
    it); opcheck validates schema, mutation and fake implementation on the reference path."""
    x, weight, _, pool, slots = make(torch.float32, torch.float32, 4, seed=5)
    pool_ref = pool.clone()
    y = kernels.short_conv_decode_(x, weight, pool, slots, silu=True)
    y_ref = naive_short_conv_decode_(x, weight, pool_ref, slots, silu=True)
    assert rel_rmse(y[slots >= 0], y_ref[slots >= 0]) <= 1e-5 and torch.equal(pool, pool_ref)


def test_opcheck_and_fake_tensor():
    x, weight, _, pool, slots = make(torch.float32, torch.float32, 4, seed=7)
    if DEV == "cpu":
        torch.library.opcheck(torch.ops.hybridserve.short_conv_decode_pool.default,
                              (x.contiguous(), weight, pool.contiguous(), slots, True))
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        y = torch.ops.hybridserve.short_conv_decode_pool(torch.empty(3, C), torch.empty(C, 4),
                                                         torch.empty(SLOTS, C, 3), torch.empty(3, dtype=torch.int32),
                                                         False)
        assert y.shape == (3, C)


def test_shapes_that_do_not_fit_are_refused():
    x, weight, _, pool, slots = make(torch.float32, torch.float32, 4)
    with pytest.raises(ValueError, match="do not fit"):
        short_conv_decode(x, weight[:, :, :3], pool, slots)


def _serving_step(prefill_lens=(), seed=11):
    """One step of a GDN serving layer with a short conv (serve/linear_core.py): 5 decodes (a padding slot among
    them), then prefills of `prefill_lens` tokens (the first continues its state, the others start from zeros)."""
    from hybridserve.serve.linear_core import LayerShape

    H, K = 2, 32
    shape = LayerShape("gdn", H=H, Hkv=H, K=K, V=K, output_gate=False, gla_normalizer=None)
    g = torch.Generator().manual_seed(seed)
    nd, slots_total = 5, 12
    lens = list(prefill_lens)
    n = nd + sum(lens)
    projected = torch.randn(n, sum(shape.in_sizes), generator=g).to(DEV)
    conv_weight = (torch.randn(sum(shape.qkv_sizes), 1, 4, generator=g) / 2).to(DEV)
    conv_state = torch.randn(slots_total, sum(shape.qkv_sizes), 3, generator=g).to(DEV)
    recurrent = (torch.randn(slots_total, H, K, K, generator=g) / 8).to(DEV)
    slots = torch.tensor([3, 0, -1, 6, 1] + [8, 9, 10][: len(lens)], dtype=torch.int32, device=DEV)
    qsl = torch.tensor([0, 1, 2, 3, 4, 5] + [nd + sum(lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32,
                       device=DEV)
    seq_lens = torch.tensor([9] * nd + [lens[0] + 4] + lens[1:] if lens else [9] * nd, dtype=torch.int32, device=DEV)
    gates = dict(A_log=torch.zeros(H, device=DEV), dt_bias=torch.zeros(H, device=DEV))
    return shape, projected, (nd, len(lens), sum(lens), qsl, seq_lens, slots), recurrent, conv_state, conv_weight, gates


def _run_step(step):
    """The step through linear_attention_core, its plan built under the current routing (as the layer builds it)."""
    from hybridserve.serve.linear_core import linear_attention_core, plan_step

    shape, projected, (nd, n_pre, pre_tokens, qsl, seq_lens, slots), recurrent, conv_state, conv_weight, gates = step
    plan = plan_step(nd, nd, n_pre, pre_tokens, qsl, seq_lens, slots, conv_width=4)
    recurrent, conv_state = recurrent.clone(), conv_state.clone()
    out = torch.zeros(projected.shape[0], shape.H * shape.V, device=DEV)
    linear_attention_core(shape, projected, None, out, plan, recurrent, conv_state, conv_weight, **gates)
    return out, recurrent, conv_state, slots


@pytest.mark.parametrize("prefill_lens,fused,inverse", [((), False, "substitution"), ((7, 2, 70), False, "doubling"),
                                                        ((7, 2, 70), True, "substitution"),
                                                        ((7, 2, 70), True, "doubling")])
def test_serving_step_triton_route_equals_the_reference_route(monkeypatch, prefill_lens, fused, inverse):
    """serve/linear_core.py, a decode step and a mixed step with a short conv: the Triton route (conv kernels, GDN's
    SiLU fused into the decode one, then the recurrent and chunked kernels; or, fused, the one-launch chunk kernel
    with the prologue folded in; (I + A)'s diagonal blocks by either inverse) gives the reference route's outputs and
    states; the padding row's slot stays untouched."""
    step = _serving_step(prefill_lens)
    out_ref, rec_ref, conv_ref, slots = _run_step(step)
    triton_cpu.route_ops_to_triton(monkeypatch)
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "1000" if fused else "0")
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", inverse)
    out, rec, conv, _ = _run_step(step)
    rows = torch.cat([slots[:5] >= 0, torch.ones(out.shape[0] - 5, dtype=torch.bool, device=DEV)])
    assert rel_rmse(out[rows], out_ref[rows]) <= 1e-5
    assert rel_rmse(rec, rec_ref) <= 1e-5 and torch.equal(conv, conv_ref)


# ---------------------------------------------------------------------------------------------------------- prefill
LENS = [5, 1, 0, 37, 2, 9]  # shorter than W - 1, empty, across the 32-token blocks


def make_prefill(dtype, pool_dtype, width, seed=0, pad_tokens=3):
    g = torch.Generator().manual_seed(seed)
    T = sum(LENS) + pad_tokens
    projection = torch.randn(T, C + 24, generator=g, dtype=torch.float64).to(dtype).to(DEV)
    x = projection[:, 8: 8 + C]
    weight = (torch.randn(C, 1, width, generator=g, dtype=torch.float64) / width).to(dtype).to(DEV)
    buffer = torch.randn(2 * SLOTS, C, width - 1, generator=g, dtype=torch.float64).to(pool_dtype).to(DEV)
    slots = torch.tensor([4, 0, 6, -1, 7, 2], dtype=torch.int32, device=DEV)
    cu = torch.tensor([0] + LENS, device=DEV).cumsum(0).to(torch.int32)
    has = torch.tensor([1, 0, 1, 1, 1, 0], dtype=torch.int32, device=DEV)
    return x, weight, buffer, buffer[::2], slots, cu, has


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("width", [4, 2])
@pytest.mark.parametrize("dtype,pool_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                              (torch.float32, torch.bfloat16)])
def test_triton_prefill_matches_float64_reference(dtype, pool_dtype, width, silu):
    x, weight, buffer, pool, slots, cu, has = make_prefill(dtype, pool_dtype, width)
    before = buffer.clone()
    ref_pool = pool.clone()
    y_ref = naive_short_conv_varlen_(x.double(), weight.double(), ref_pool, slots, cu, has, silu=silu)
    y = short_conv_prefill(x, weight, pool, slots, cu, has, silu=silu)
    real = int(cu[-1])
    assert y.dtype == dtype and y.shape == x.shape
    assert rel_rmse(y[:real], y_ref[:real]) <= TOL[dtype]
    assert torch.equal(pool, ref_pool)  # stored inputs move or are cast once: exact
    touched = torch.zeros(2 * SLOTS, dtype=torch.bool)
    touched[2 * slots[slots >= 0].long().cpu()] = True
    assert torch.equal(buffer[~touched.to(DEV)], before[~touched.to(DEV)])


def test_triton_prefill_without_has_initial_continues_every_real_slot():
    x, weight, _, pool, slots, cu, _ = make_prefill(torch.float32, torch.float32, 4, seed=2, pad_tokens=0)
    ref_pool = pool.clone()
    y_ref = naive_short_conv_varlen_(x.double(), weight.double(), ref_pool, slots, cu, None)
    y = short_conv_prefill(x, weight, pool, slots, cu, None)
    assert rel_rmse(y, y_ref) <= 1e-5 and torch.equal(pool, ref_pool)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_prefill_matches_the_serving_pytorch_path(dtype):
    x, weight, _, pool, slots, cu, has = make_prefill(dtype, dtype, 4, seed=4)
    pool_pt = pool.clone()
    y_pt = serving_pytorch_varlen_(x, weight, pool_pt, slots, cu, has)
    y = short_conv_prefill(x, weight, pool, slots, cu, has)
    real = int(cu[-1])
    assert rel_rmse(y[:real], y_pt[:real]) <= (1e-5 if dtype == torch.float32 else 1e-2)
    assert torch.equal(pool, pool_pt)


def test_prefill_op_dispatches_and_has_a_schema(triton_ops):
    x, weight, _, pool, slots, cu, has = make_prefill(torch.float32, torch.float32, 4, seed=6, pad_tokens=0)
    pool_ref = pool.clone()
    y = kernels.short_conv_varlen_(x, weight, pool, slots, cu, has, silu=True)
    y_ref = naive_short_conv_varlen_(x, weight, pool_ref, slots, cu, has, silu=True)
    assert rel_rmse(y, y_ref) <= 1e-5 and torch.equal(pool, pool_ref)
    if DEV == "cpu":
        torch.library.opcheck(torch.ops.hybridserve.short_conv_varlen_pool.default,
                              (x.contiguous(), weight, pool.contiguous(), slots, cu, has, False, None))


@pytest.mark.skipif(triton_cpu.ON_GPU, reason="counts the interpreter's launches")
def test_launches_triton_vs_pytorch_path():
    """What each conv path costs a layer in launches (PyTorch ops other than views and allocations, and Triton
    launches), the per-step maps built beforehand as serving shares them: decode 1 vs the PyTorch path's gathers,
    window product and scatter; prefill 2 vs its buffer scatters, conv and gathers."""
    from hybridserve.kernels.short_conv.naive import token_to_sequence
    from hybridserve.serve.short_conv import conv_plan, slot_writes

    from .test_prefill_inputs import LaunchCounter

    x, weight, _, pool, slots, cu, has = make_prefill(torch.bfloat16, torch.bfloat16, 4, pad_tokens=0)
    token_seq, plan = token_to_sequence(cu, x.shape[0]), conv_plan(cu, slots, x.shape[0], 4)
    with LaunchCounter() as triton_prefill:
        short_conv_prefill(x, weight, pool, slots, cu, has, token_seq=token_seq)
    with LaunchCounter() as pytorch_prefill:
        serving_pytorch_varlen_(x, weight, pool, slots, cu, has, plan)
    xd, wd, _, pd, sd = make(torch.bfloat16, torch.bfloat16, 4)
    writes = slot_writes(sd)
    with LaunchCounter() as triton_decode:
        short_conv_decode(xd, wd, pd, sd, silu=True)
    with LaunchCounter() as pytorch_decode:
        F.silu(serving_pytorch_decode_(xd, wd, pd, sd, writes))
    print(f"prefill: Triton {triton_prefill.triton} + {triton_prefill.torch_ops}, PyTorch {pytorch_prefill.torch_ops};"
          f" decode: Triton {triton_decode.triton} + {triton_decode.torch_ops}, PyTorch {pytorch_decode.torch_ops}")
    assert (triton_prefill.triton, triton_prefill.torch_ops) == (2, [])
    assert (triton_decode.triton, triton_decode.torch_ops) == (1, [])
    assert pytorch_prefill.triton == 0 and len(pytorch_prefill.torch_ops) >= 10
    assert pytorch_decode.triton == 0 and len(pytorch_decode.torch_ops) >= 6
