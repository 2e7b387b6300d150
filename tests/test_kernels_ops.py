"""The custom ops and the public functions of hybridserve.kernels: CPU tensors run the naive references bit for bit;
routed to the Triton kernels (interpreter), outputs and gradients match autograd through the float64 recurrence;
every op passes torch.library.opcheck (schema, fake implementation, autograd registration) on the reference path;
fake tensors give the right shapes. Inputs and tolerances as test_kernels_triton.py's."""

from __future__ import annotations

from .triton_fixtures import triton_ops  # noqa: F401  (pytest fixture)

import pytest
import torch

from hybridserve import kernels
from hybridserve.kernels.gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from hybridserve.kernels.gla.naive import naive_chunk_gla, naive_recurrent_gla

from .test_kernels_triton import DEV, H, K, V, check, gdn_inputs, gen, gla_inputs

GDN_PUBLIC = [kernels.chunk_gated_delta_rule, kernels.fused_recurrent_gated_delta_rule]
GLA_PUBLIC = [kernels.chunk_gla, kernels.fused_recurrent_gla]


def test_cpu_public_ops_are_the_references():
    """Without the test routing, CPU tensors run exactly the naive references (bit for bit)."""
    q, k, v, g, beta = (x.cpu() for x in gdn_inputs((2, 20), 31, torch.float32))
    h0 = torch.randn(2, H, K, V, generator=gen(32))
    for fn, ref in zip(GDN_PUBLIC, [naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule]):
        a, b = fn(q, k, v, g, beta, 0.5, h0, True), ref(q, k, v, g, beta, 0.5, h0, True)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    q, k, v, gk = (x.cpu() for x in gla_inputs((2, 20), 33, torch.float32))
    for fn, ref in zip(GLA_PUBLIC, [naive_chunk_gla, naive_recurrent_gla]):
        a, b = fn(q, k, v, gk, 0.5, h0, True), ref(q, k, v, gk, 0.5, h0, True)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("mixer", ["gdn", "gla"])
def test_public_ops_through_triton_forward_and_backward(triton_ops, mixer):
    """The public functions on the Triton route: outputs and gradients (the Triton backward of each mixer) against
    autograd through the float64 recurrence."""
    T = 70
    if mixer == "gdn":
        xs = gdn_inputs((1, T), 41, torch.float32)
        fns, ref = GDN_PUBLIC, naive_recurrent_gated_delta_rule
    else:
        xs = gla_inputs((1, T), 42, torch.float32)
        fns, ref = GLA_PUBLIC, naive_recurrent_gla
    h0 = torch.randn(1, H, K, V, generator=gen(43)).to(DEV)
    w_o = torch.randn(1, T, H, V, generator=gen(44)).to(DEV)
    w_s = torch.randn(1, H, K, V, generator=gen(45)).to(DEV)
    leaves = [x.double().cpu().requires_grad_(True) for x in (*xs, h0)]
    o, s = ref(*leaves[:-1], 0.5, leaves[-1], True)
    ((o * w_o.double().cpu()).sum() + (s * w_s.double().cpu()).sum()).backward()
    ref_grads = [x.grad for x in leaves]
    for fn in fns:
        ins = [x.clone().requires_grad_(True) for x in (*xs, h0)]
        o_t, s_t = fn(*ins[:-1], 0.5, ins[-1], True)
        check(o_t, o, 1e-5, f"{fn.__name__} o")
        check(s_t, s, 1e-5, f"{fn.__name__} state")
        ((o_t * w_o).sum() + (s_t * w_s).sum()).backward()
        for x, gr in zip(ins, ref_grads):
            check(x.grad, gr, 1e-5, f"{fn.__name__} grad")
        o2, s2 = fn(*xs, 0.5, None, False)
        assert s2 is None and o2.shape == xs[2].shape


def _opcheck_args():
    """CPU tensors: opcheck exercises the reference path (and never the interpreter, which would be slow)."""
    q, k, v, g, beta = (x.cpu() for x in gdn_inputs((1, 9), 51, torch.float32))
    gk = gla_inputs((1, 9), 52, torch.float32)[3].cpu()
    h0 = torch.randn(1, H, K, V, generator=gen(53))
    pool = torch.randn(4, H, K, V, generator=gen(54))
    idx = torch.tensor([2, -1])
    cu = torch.tensor([0, 5, 9], dtype=torch.int32)
    has = torch.tensor([True, False])
    a, b = torch.randn(1, 9, H), torch.randn(1, 9, H)
    A_log, dt_bias = torch.rand(H), torch.rand(H)
    tok = lambda x: x[0]  # noqa: E731  packed [TT, ...]
    ops = torch.ops.hybridserve
    return [
        (ops.gdn_chunk.default, (q, k, v, g, beta, 0.5, h0)),
        (ops.gdn_chunk.default, (q, k, v, g, beta, 0.5, None)),
        (ops.gdn_chunk_train.default, (q, k, v, g, beta, 0.5, h0)),
        (ops.gdn_chunk_train.default, (q, k, v, g, beta, 0.5, None)),
        (ops.gdn_recurrent.default, (q, k, v, g, beta, 0.5, h0)),
        (ops.gla_chunk.default, (q, k, v, gk, 0.5, h0)),
        (ops.gla_recurrent.default, (q, k, v, gk, 0.5, None)),
        (ops.gdn_recurrent_pool.default,
         (tok(q)[:2], tok(k)[:2], tok(v)[:2], None, None, tok(a)[:2], tok(b)[:2], A_log, dt_bias, pool, idx, None,
          None, 0.5, True)),
        (ops.gdn_chunk_pool.default,
         (tok(q), tok(k), tok(v), tok(g), tok(beta), None, None, None, None, pool, idx, cu, has, 0.5, False)),
        (ops.gla_recurrent_pool.default, (tok(q), tok(k), tok(v), tok(gk), pool, idx, cu, has, 0.5, None)),
        (ops.gla_chunk_pool.default, (tok(q), tok(k), tok(v), tok(gk), pool, idx, cu, None, 0.5, 16.0)),
    ]


@pytest.mark.parametrize("case", range(11))
def test_opcheck(case):
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch of every custom op (on the CPU
    reference path: opcheck runs each op several times)."""
    op, args = _opcheck_args()[case]
    args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(op, args)


def test_fake_tensors_give_the_right_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        q = torch.empty(3, 10, H, K)
        v = torch.empty(3, 10, H, V)
        g = torch.empty(3, 10, H)
        o, s = torch.ops.hybridserve.gdn_chunk(q, q, v, g, g, 0.5, None)
        assert o.shape == v.shape and s.shape == (3, H, K, V) and s.dtype == torch.float32
        pool = torch.empty(8, H, K, V, dtype=torch.bfloat16)
        o = torch.ops.hybridserve.gdn_recurrent_pool(q[:, 0], q[:, 0], v[:, 0], None, None, g[:, 0], g[:, 0],
                                                     torch.empty(H), torch.empty(H), pool,
                                                     torch.empty(3, dtype=torch.int32), None, None, 0.5, True)
        assert o.shape == (3, H, V)
