"""serve/linear_core.py's start-up warm-up of the prefill kernels (vLLM-free; CPU runs the PyTorch references, the
GPU the Triton kernels this exists for)."""

from __future__ import annotations

import pytest
import torch

from hybridserve.serve import linear_core
from hybridserve.serve.linear_core import LayerShape, warm_up


@pytest.mark.parametrize("mixer,conv", [("gdn", False), ("gdn", True), ("gla", False)])
def test_warm_up_runs_the_three_step_kinds_once(monkeypatch, mixer, conv):
    monkeypatch.setattr(linear_core, "_WARMED", set())
    shape = LayerShape(mixer, H=2, Hkv=2, K=16, V=16, output_gate=False,
                       gla_normalizer=16.0 if mixer == "gla" else None)
    n = 80
    g = torch.Generator().manual_seed(0)
    projected = torch.randn(n, sum(shape.in_sizes), generator=g)
    gk = torch.randn(n, shape.H * shape.K, generator=g) if mixer == "gla" else None
    gdn = dict(A_log=torch.zeros(shape.H), dt_bias=torch.zeros(shape.H)) if mixer == "gdn" else {}
    conv_weight = torch.randn(sum(shape.qkv_sizes), 1, 4, generator=g) if conv else None
    before = projected.clone()
    seen = []
    real = linear_core.linear_attention_core

    def spy(shape_, projected_, gk_, out, plan, pool, conv_state, *rest):
        seen.append((plan.num_decodes, plan.num_prefills, plan.num_decode_tokens + plan.num_prefill_tokens,
                     int(plan.has_initial.sum())))
        assert pool.shape == (24, shape.H, shape.K, shape.V) and pool.dtype == torch.float32  # a scratch pool
        assert (conv_state is not None) == conv
        real(shape_, projected_, gk_, out, plan, pool, conv_state, *rest)
        assert torch.isfinite(out).all()

    monkeypatch.setattr(linear_core, "linear_attention_core", spy)
    assert warm_up(shape, projected, gk, torch.float32, conv_weight=conv_weight, **gdn)
    # one long sequence, 16 equal ones, a decode ahead of 3 ragged ones; every other request continues a state
    assert seen == [(0, 1, n, 0), (0, 16, 80, 8), (1, 3, n, 2)]
    assert torch.equal(projected, before)
    assert not warm_up(shape, projected, gk, torch.float32, conv_weight=conv_weight, **gdn)  # once per shape
    assert len(seen) == 3


def test_warm_up_skips_a_tiny_budget(monkeypatch):
    monkeypatch.setattr(linear_core, "_WARMED", set())
    shape = LayerShape("gdn", H=2, Hkv=2, K=16, V=16, output_gate=False)
    projected = torch.randn(16, sum(shape.in_sizes))
    assert not warm_up(shape, projected, None, torch.float32, A_log=torch.zeros(2), dt_bias=torch.zeros(2))
