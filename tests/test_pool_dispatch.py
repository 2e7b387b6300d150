"""The state-pool functions called with dispatch=False (the op's body, as the vLLM layer calls it from inside its own
opaque op) do exactly what the registered custom ops do: same outputs, same pool updates, padding slots untouched."""

from __future__ import annotations

import pytest
import torch

from hybridserve import kernels
from hybridserve.kernels import ops

N, H, K, V, SLOTS = 3, 2, 32, 16, 5


def _inputs(seed: int, tokens: int):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return dict(q=r(tokens, H, K), k=r(tokens, H, K), v=r(tokens, H, V), a=r(tokens, H), b=r(tokens, H),
                gk=-torch.rand(tokens, H, K, generator=g), A_log=r(H).abs().log(), dt_bias=r(H), pool=r(SLOTS, H, K, V))


def _run(name: str, dispatch: bool, x: dict, pool: torch.Tensor) -> torch.Tensor:
    slots = torch.tensor([3, -1, 0], dtype=torch.int32)  # -1: a padding row
    cu = torch.tensor([0, 2, 5, 7], dtype=torch.int32)
    has = torch.tensor([1, 0, 1], dtype=torch.int32)
    q, k, v, a, b, gk = (x[n] for n in ("q", "k", "v", "a", "b", "gk"))
    if name == "gdn_decode_":
        return kernels.gdn_decode_(q, k, v, a, b, x["A_log"], x["dt_bias"], pool, slots, use_qk_l2norm=True,
                                   dispatch=dispatch)
    if name == "gdn_prefill_varlen":
        return kernels.gdn_prefill_varlen(q, k, v, None, None, cu, pool, slots, has, use_qk_l2norm=True, a=a, b=b,
                                          A_log=x["A_log"], dt_bias=x["dt_bias"], dispatch=dispatch)
    if name == "gdn_recurrent_varlen_":
        return kernels.gdn_recurrent_varlen_(q, k, v, None, None, cu, pool, slots, has, use_qk_l2norm=True, a=a, b=b,
                                             A_log=x["A_log"], dt_bias=x["dt_bias"], dispatch=dispatch)
    if name == "gla_decode_":
        return kernels.gla_decode_(q, k, v, gk, pool, slots, gate_logit_normalizer=16.0, dispatch=dispatch)
    if name == "gla_prefill_varlen":
        return kernels.gla_prefill_varlen(q, k, v, gk, cu, pool, slots, has, gate_logit_normalizer=16.0,
                                          dispatch=dispatch)
    return kernels.gla_recurrent_varlen_(q, k, v, gk, cu, pool, slots, has, dispatch=dispatch)


@pytest.mark.parametrize("name", ["gdn_decode_", "gdn_prefill_varlen", "gdn_recurrent_varlen_", "gla_decode_",
                                  "gla_prefill_varlen", "gla_recurrent_varlen_"])
def test_direct_call_equals_the_op(name):
    x = _inputs(7, N if name.endswith("decode_") else 7)
    via_op, direct = x["pool"].clone(), x["pool"].clone()
    o_op = _run(name, True, x, via_op)
    o_direct = _run(name, False, x, direct)
    assert torch.equal(o_op, o_direct)
    assert torch.equal(via_op, direct)
    assert not torch.equal(direct, x["pool"])  # the call did update the pool ...
    for untouched in (1, 2, 4):  # ... but only the slots it was given (3 and 0)
        assert torch.equal(direct[untouched], x["pool"][untouched])


def test_short_conv_direct_call_equals_the_op():
    g = torch.Generator().manual_seed(9)
    x, weight, pool = torch.randn(N, 12, generator=g), torch.randn(12, 1, 4, generator=g), torch.randn(SLOTS, 12, 3)
    slots = torch.tensor([3, -1, 0], dtype=torch.int32)
    via_op, direct = pool.clone(), pool.clone()
    y_op = kernels.short_conv_decode_(x, weight, via_op, slots, silu=True)
    y_direct = kernels.short_conv_decode_(x, weight, direct, slots, silu=True, dispatch=False)
    assert torch.equal(y_op, y_direct) and torch.equal(via_op, direct)
    assert not torch.equal(direct[3], pool[3]) and not torch.equal(direct[0], pool[0])
    for untouched in (1, 2, 4):
        assert torch.equal(direct[untouched], pool[untouched])


def test_direct_holds_the_registered_bodies():
    assert sorted(ops.DIRECT) == ["gdn_chunk_pool", "gdn_recurrent_pool", "gla_chunk_pool", "gla_recurrent_pool",
                                  "short_conv_decode_pool", "short_conv_varlen_pool"]
    for name in ops.DIRECT:
        assert hasattr(torch.ops.hybridserve, name)


@pytest.mark.parametrize("name", ["gdn_decode_", "gla_decode_"])
def test_cpu_decode_serves_the_batch_in_one_call_like_one_sequence_at_a_time(name):
    """The CPU decode path runs all requests through the reference at once; each row equals the reference run on
    that sequence alone (float64), a padding row leaves the pool alone, a request without a state starts from
    zero even when its slot holds NaN, and the pool may be a strided view (a packed run's slice)."""
    from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
    from hybridserve.kernels.gla.naive import naive_recurrent_gla

    x = {n: t.double() for n, t in _inputs(3, 4).items()}
    packed = torch.randn(SLOTS, 2, H, K, V, dtype=torch.float64)  # two layers' states per slot; this layer's: [:, 1]
    packed[2, 1] = float("nan")
    pool = packed[:, 1]
    slots = torch.tensor([3, -1, 2, 0])
    has = torch.tensor([1, 1, 0, 1])
    before, other = pool.clone(), packed[:, 0].clone()
    q, k, v, gk = x["q"], x["k"], x["v"], x["gk"]
    if name == "gdn_decode_":
        g, beta = ops.gdn_gates(x["a"], x["b"], x["A_log"], x["dt_bias"])
        qn, kn = ops._l2norm(q), ops._l2norm(k)
        o = ops.gdn_recurrent_pool(q, k, v, None, None, x["a"], x["b"], x["A_log"], x["dt_bias"], pool, slots,
                                   None, has, K**-0.5, True)
        step = lambda n, h0: naive_recurrent_gated_delta_rule(  # noqa: E731
            qn[n:n + 1, None], kn[n:n + 1, None], v[n:n + 1, None], g[n:n + 1, None].double(),
            beta[n:n + 1, None].double(), K**-0.5, h0, True)
    else:
        o = ops.gla_recurrent_pool(q, k, v, gk, pool, slots, None, has, K**-0.5, None)
        step = lambda n, h0: naive_recurrent_gla(  # noqa: E731
            q[n:n + 1, None], k[n:n + 1, None], v[n:n + 1, None], gk[n:n + 1, None], K**-0.5, h0, True)
    for n, slot in enumerate(slots.tolist()):
        h0 = before[slot:slot + 1] if slot >= 0 and has[n] else None
        ref_o, ref_state = step(n, h0)
        assert torch.allclose(o[n], ref_o[0, 0], rtol=1e-12, atol=1e-12), n
        if slot >= 0:
            assert torch.allclose(pool[slot], ref_state[0], rtol=1e-12, atol=1e-12), n
    assert torch.isfinite(o).all() and torch.equal(pool[[1, 4]], before[[1, 4]])
    assert torch.equal(packed[:, 0], other)  # the other layer's states in the same pages are untouched


def test_decode_kernel_switch(monkeypatch):
    """HYBRIDSERVE_GDN_DECODE picks the Triton decode kernel; an unknown value is one clear error."""
    from hybridserve.kernels.ops import decode_kernel

    monkeypatch.delenv("HYBRIDSERVE_GDN_DECODE", raising=False)
    assert decode_kernel() == "tile"
    monkeypatch.setenv("HYBRIDSERVE_GDN_DECODE", "Persistent")
    assert decode_kernel() == "persistent"
    monkeypatch.setenv("HYBRIDSERVE_GDN_DECODE", "fast")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_DECODE='fast': expected tile or persistent"):
        decode_kernel()
