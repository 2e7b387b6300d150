"""The serving ops' Triton paths make no host-synchronising calls: what CUDA-graph capture needs.

vLLM captures decode steps whole (FULL CUDA graphs), and issue #7 asks for a prefill call that can be captured too.
A capture fails (or silently freezes a value) when the code reads a device value on the host: `.item()`,
`.tolist()`, `.cpu()`, `bool(tensor)`, `int(tensor)`, `nonzero()`. On CPU no call synchronises, so this test
makes those calls raise when hybridserve's own code makes them, and runs every state-pool op through its Triton path
(the interpreter) at toy size: prefill with raw gates, SiLU and L2 norm, short recurrent prefill, decode with both
decode kernels, GLA prefill and decode. Triton's interpreter itself may make such calls; only callers in hybridserve
count.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)
from .triton_fixtures import interpreted_module, triton_ops  # noqa: F401  (pytest fixtures)

import sys

import pytest
import torch

from hybridserve import kernels

pytest.importorskip("triton")
triton_cpu.import_kernel_modules()

DEV = triton_cpu.DEVICE
H, K, V = 2, 32, 16
SYNCING = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__", "__float__")


@pytest.fixture
def no_host_sync(monkeypatch):
    """Make the host-synchronising tensor methods raise when hybridserve's code calls them."""
    calls = []
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("hybridserve."):
                calls.append(f"{caller}: Tensor.{_name}")
                raise AssertionError(f"host synchronisation in {caller}: Tensor.{_name}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, guarded)
    return calls


def _inputs(TT, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(TT, H, K, generator=g).bfloat16() for _ in range(2))
    v = torch.randn(TT, H, V, generator=g).bfloat16()
    a, b = (torch.randn(TT, H, generator=g).bfloat16() for _ in range(2))
    A_log = torch.log(torch.rand(H, generator=g) * 8 + 1)
    dt_bias = torch.rand(H, generator=g) - 2
    return [x.to(DEV) for x in (q, k, v, a, b, A_log, dt_bias)]


@pytest.mark.parametrize("decode_kernel", ["tile", "persistent"])
def test_state_pool_ops_make_no_host_sync_calls(triton_ops, no_host_sync, monkeypatch, decode_kernel):
    monkeypatch.setenv("HYBRIDSERVE_GDN_DECODE", decode_kernel)
    pool = torch.randn(6, H, K, V).to(DEV)
    lens = [3, 70, 9]
    cu = torch.tensor([0, 3, 73, 82], dtype=torch.int32, device=DEV)
    slots = torch.tensor([4, -1, 1], dtype=torch.int32, device=DEV)
    has = torch.tensor([1, 0, 1], dtype=torch.bool, device=DEV)
    q, k, v, a, b, A_log, dt_bias = _inputs(sum(lens), 1)
    o = kernels.gdn_prefill_varlen(q, k, v, None, None, cu, pool, slots, has, use_qk_l2norm=True, a=a, b=b,
                                   A_log=A_log, dt_bias=dt_bias, qkv_silu=True)
    assert o.shape == v.shape and torch.isfinite(o.float()).all()
    o = kernels.gdn_recurrent_varlen_(q, k, v, None, None, cu, pool, slots, has, use_qk_l2norm=True, a=a, b=b,
                                      A_log=A_log, dt_bias=dt_bias)
    assert o.shape == v.shape
    q, k, v, a, b, A_log, dt_bias = _inputs(4, 2)
    decode_slots = torch.tensor([0, 2, -1, 5], dtype=torch.int32, device=DEV)
    o = kernels.gdn_decode_(q, k, v, a, b, A_log, dt_bias, pool, decode_slots, use_qk_l2norm=True)
    assert o.shape == v.shape and torch.isfinite(o.float()).all()
    q, k, v, gk, *_ = _inputs(sum(lens), 3)
    gk = torch.randn(sum(lens), H, K).to(DEV)
    o = kernels.gla_prefill_varlen(q, k, v, gk, cu, pool, slots, has, gate_logit_normalizer=16.0)
    assert o.shape == v.shape
    q, k, v, *_ = _inputs(4, 4)
    o = kernels.gla_decode_(q, k, v, torch.randn(4, H, K).to(DEV), pool, decode_slots, gate_logit_normalizer=16.0)
    assert o.shape == v.shape
    assert no_host_sync == []


def test_the_guard_catches_a_sync(no_host_sync):
    """The guard itself: a hybridserve function that calls .item() is caught (so the test above can fail)."""
    from hybridserve.kernels import _triton_utils

    sneaky = type(_triton_utils.cdiv)(compile("def f(x):\n    return x.sum().item()\n", _triton_utils.__file__,
                                              "exec").co_consts[0], _triton_utils.__dict__)
    with pytest.raises(AssertionError, match="host synchronisation in hybridserve.kernels._triton_utils"):
        sneaky(torch.ones(3))
    assert no_host_sync == ["hybridserve.kernels._triton_utils: Tensor.item"]


@pytest.mark.parametrize("mixer,conv", [("gdn", True), ("gla", False)])
def test_serving_layer_core_makes_no_host_sync_calls(triton_ops, no_host_sync, monkeypatch, mixer, conv):
    """serve/linear_core.py as the vLLM layer runs it (step plan, short conv, activations, the state-pool ops) over
    its start-up warm-up's three step kinds: one long prefill, 16 equal ones, a decode beside ragged prefills."""
    from hybridserve.serve import linear_core
    from hybridserve.serve.linear_core import LayerShape, warm_up

    monkeypatch.setattr(linear_core, "_WARMED", set())
    shape = LayerShape(mixer, H=H, Hkv=H, K=K, V=K, output_gate=False, gla_normalizer=16.0 if mixer == "gla" else None)
    g = torch.Generator().manual_seed(5)
    projected = torch.randn(80, sum(shape.in_sizes), generator=g).to(DEV)
    gk = torch.randn(80, H * K, generator=g).to(DEV) if mixer == "gla" else None
    gdn = dict(A_log=torch.zeros(H).to(DEV), dt_bias=torch.zeros(H).to(DEV)) if mixer == "gdn" else {}
    conv_weight = torch.randn(sum(shape.qkv_sizes), 1, 4, generator=g).to(DEV) if conv else None
    import importlib

    launched = []  # the Triton launchers really ran (a reference path would have tripped the guard anyway)
    family = "gated_delta_rule" if mixer == "gdn" else "gla"
    kernels = [(f"{family}.chunk", f"chunk_{mixer}_fwd"), (f"{family}.fused_recurrent", f"fused_recurrent_{mixer}_fwd")]
    if conv:
        kernels += [("short_conv.decode", "short_conv_decode"), ("short_conv.prefill", "short_conv_prefill")]
    for module, fn in kernels:
        mod = importlib.import_module(f"hybridserve.kernels.{module}")
        monkeypatch.setattr(mod, fn, lambda *a, _real=getattr(mod, fn), _fn=fn, **kw: launched.append(_fn) or
                            _real(*a, **kw))
    assert warm_up(shape, projected, gk, torch.float32, conv_weight=conv_weight, **gdn)
    assert no_host_sync == []
    assert {fn for _, fn in kernels} <= set(launched)
