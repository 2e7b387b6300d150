"""The scratch WY kernel of the split GDN backward (HYBRIDSERVE_GDN_WY=scratch, kernels/gated_delta_rule/
chunk_bwd_wy.py) against autograd through the float64 recurrence, through Triton's interpreter (or on a GPU when
there is one), with test_kernels_triton_bwd.py's cases, tolerances and TF32 rounding of the products: every case,
every block size its autotune configs use, its scratch tiles in the dead dS' buffer when that is large enough (and
a buffer of their own when not), and the switch's parse. Also the WY matrix X = (I + A)^-1 that the training op
(hybridserve::gdn_chunk_train) keeps from the forward: against a float64 inverse, reloaded by the backward instead
of the prep, taken by the public function only when a gradient is wanted (HYBRIDSERVE_GDN_KEEP_INVERSE=0: never).
"""

from __future__ import annotations

from . import triton_cpu  # (sets TRITON_INTERPRET before anything imports triton)

import pytest
import torch

pytest.importorskip("triton")

from .test_kernels_triton_bwd import GDN_CASES, H as H_, check_gdn, gdn_bwd, gdn_case, tf32_products  # noqa: E402,F401
from hybridserve.kernels.gated_delta_rule import chunk_bwd_split as gs  # noqa: E402
from hybridserve.kernels.gated_delta_rule import chunk_bwd_wy as gw  # noqa: E402


@pytest.mark.parametrize("wy", ["scratch", "scratch-input"])
@pytest.mark.parametrize("case", GDN_CASES, ids=lambda c: f"{c[0]}x{c[1]}-K{c[2]}V{c[3]}-{str(c[4])[6:]}"
                         f"-{'h0' if c[5] else 'nostate'}")
def test_gdn_backward_with_the_scratch_wy(case, wy, monkeypatch, tf32_products):
    """Every gradient against the float64 recurrence, with both dtypes of the intermediates in between, the
    products' operands in float32 (TF32 for bf16 inputs) or in the input dtype (bf16 products for bf16 inputs)."""
    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=B * T + K_ + V_)
    q, k, v, g, beta, h0, do, dht = dev
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", wy)
    for inter in ("input", "float32"):
        monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", inter)
        grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
        check_gdn(grads, dev, ref, dtype, f"{wy} wy, {inter} intermediates")


def test_scratch_wy_every_block_size(monkeypatch, tf32_products):
    """The interpreter registers only an autotuned kernel's first config: run the kernel at each block size of its
    GPU configs (K = V = 64: two blocks of 32 or one of 64 per pass)."""
    import triton

    dev, ref = gdn_case(1, 130, 64, 64, torch.bfloat16, True, seed=97)
    q, k, v, g, beta, h0, do, dht = dev
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", "scratch")
    kern = gw._gdn_bwd_wy_scratch_kernel
    for bk in sorted({c[0] for c in gw.WY_SCRATCH_CONFIGS}):
        monkeypatch.setattr(kern, "configs", [triton.Config({"BK": bk, "BV": bk}, num_warps=4, num_stages=1)])
        kern.cache.clear()
        grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
        check_gdn(grads, dev, ref, torch.bfloat16, f"scratch wy BK={bk}")
    kern.cache.clear()


@pytest.mark.parametrize("dtype,spare", [(torch.float32, True), (torch.bfloat16, False)])
def test_scratch_tiles_reuse_the_dead_dS_buffer(dtype, spare, monkeypatch, tf32_products):
    """At K = V = 64 the dS' buffer holds 16 KB per chunk and head in float32 (exactly one scratch tile: reused) and
    8 KB in bf16 (too small: a buffer of its own); the gradients are right either way."""
    dev, ref = gdn_case(2, 100, 64, 64, dtype, True, seed=5)
    q, k, v, g, beta, h0, do, dht = dev
    seen = {}

    def spy(kern, key, index):
        def run(*args, _run=kern.run, **kwargs):
            seen[key] = args[index].untyped_storage().data_ptr()
            return _run(*args, **kwargs)
        monkeypatch.setattr(kern, "run", run)

    spy(gs._gdn_bwd_dqkw_split_kernel, "dS'", 6)
    spy(gw._gdn_bwd_wy_scratch_kernel, "scratch", 9)
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", "scratch")
    check_gdn(gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split"), dev, ref, dtype,
              "scratch wy")
    assert (seen["scratch"] == seen["dS'"]) == spare


def test_wy_switch(monkeypatch):
    """HYBRIDSERVE_GDN_WY: unset "scratch-input" where the GPU timed it (K = V = 128), "products" elsewhere; each
    name taken, anything else one clear error; the backward runs the kernel it names."""
    monkeypatch.delenv("HYBRIDSERVE_GDN_WY", raising=False)
    assert gw.wy_variant(128, 128) == "scratch-input" and gw.wy_variant(64, 64) == "products"
    for name in gw.WY_VARIANTS:
        monkeypatch.setenv("HYBRIDSERVE_GDN_WY", name)
        assert gw.wy_variant(128, 128) == name
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", "shared")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_WY"):
        gw.wy_variant(128, 128)
    dev, _ = gdn_case(1, 70, 32, 32, torch.float32, False, seed=3)
    q, k, v, g, beta, h0, do, dht = dev
    ran = []
    monkeypatch.setattr(gs._gdn_bwd_wy_split_kernel, "run",
                        lambda *a, _r=gs._gdn_bwd_wy_split_kernel.run, **kw: (ran.append("products"), _r(*a, **kw))[1])
    monkeypatch.setattr(gw._gdn_bwd_wy_scratch_kernel, "run", lambda *a, _r=gw._gdn_bwd_wy_scratch_kernel.run, **kw: (
        ran.append("scratch-input" if kw["INPUT_OPERANDS"] else "scratch"), _r(*a, **kw))[1])
    for name in gw.WY_VARIANTS:
        monkeypatch.setenv("HYBRIDSERVE_GDN_WY", name)
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
    assert ran == list(gw.WY_VARIANTS)


# ------------------------------------------------------------------------------ the forward's inverse, kept
def _inverse_ref(k, g, beta, C=64):
    """X = (I + A)^{-1} per chunk and the in-chunk cumulative gates, float64, [B, T, H, C] and [B, T, H]."""
    B, T, H, _ = k.shape
    k, g, beta = k.double().cpu(), g.double().cpu(), beta.double().cpu()
    X = torch.zeros(B, T, H, C, dtype=torch.float64)
    G = torch.zeros(B, T, H, dtype=torch.float64)
    for c0 in range(0, T, C):
        n = min(C, T - c0)
        Gc = g[:, c0:c0 + n].cumsum(1)  # [B, n, H]
        G[:, c0:c0 + n] = Gc
        kc = k[:, c0:c0 + n].permute(0, 2, 1, 3)  # [B, H, n, K]
        Gh, bh = Gc.permute(0, 2, 1), beta[:, c0:c0 + n].permute(0, 2, 1)
        lower = torch.tril(torch.ones(n, n, dtype=torch.bool), -1)
        A = torch.where(lower, (kc @ kc.transpose(-1, -2)) * (Gh[..., :, None] - Gh[..., None, :]).exp()
                        * bh[..., :, None], 0.0)
        X[:, c0:c0 + n, :, :n] = torch.linalg.inv(torch.eye(n, dtype=torch.float64) + A).permute(0, 2, 1, 3)
    return X, G


@pytest.mark.parametrize("route", ["split", "fused-x-aqk", "fused-x"])
@pytest.mark.parametrize("case", [GDN_CASES[0], GDN_CASES[2]], ids=["2x100-K64V64-bf16-h0", "1x130-K64V32-f32"])
def test_forward_keeps_its_inverse_and_the_backward_reloads_it(case, route, monkeypatch, tf32_products):
    """chunk_gdn_fwd(keep_inverse=True): the same output, plus X (each chunk's (I + A)^{-1}, float64 reference) and
    G; chunk_gdn_bwd given them launches the W, U kernel instead of the prep and every gradient still matches the
    float64 recurrence. Shapes that do not belong to the inputs are one clear error. On every forward route that
    training may take: the fused-x routes' prep (the default one at K = V = 128 from 64 sequences x heads) makes X
    without W, U, and what it keeps must be the same X."""
    from hybridserve.kernels.gated_delta_rule import chunk as gc
    from hybridserve.kernels.gated_delta_rule import chunk_prep as gq
    from hybridserve.kernels.gated_delta_rule import chunk_state_out as gso

    monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", route)
    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=11 + T)
    q, k, v, g, beta, h0, do, dht = dev
    plain = gc.chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0)
    fused, kern, run = [], gso._gdn_chunk_state_out_kernel, gso._gdn_chunk_state_out_kernel.run
    monkeypatch.setattr(kern, "run", lambda *a, **kw: (fused.append(kw.get("FROM_X")), run(*a, **kw))[1])
    o, X, G = gc.chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, keep_inverse=True)
    monkeypatch.setattr(kern, "run", run)
    assert fused == ([] if route == "split" else [True])  # the route asked for ran
    assert torch.equal(o, plain)
    X_ref, G_ref = _inverse_ref(k, g, beta)
    assert X.shape == (B, T, H_, 64) and G.shape == (B, T, H_) and X.dtype == G.dtype == torch.float32
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16 k enters K K^T as it is; the TF32 lower blocks round
    for t0 in range(0, T, 64):  # rows past a partial chunk's end hold nothing
        n = min(64, T - t0)
        got, want = X[:, t0:t0 + n, :, :n], X_ref[:, t0:t0 + n, :, :n]
        assert ((got.double().cpu() - want).norm() / want.norm()).item() < tol
    assert torch.allclose(G.double().cpu(), G_ref, atol=1e-5)
    launched = []
    for kern in (gc._gdn_chunk_prep_kernel, gq._gdn_chunk_wu_kernel):
        monkeypatch.setattr(kern, "run", lambda *a, _k=kern, _r=kern.run, **kw: (launched.append(_k), _r(*a, **kw))[1])
    grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, inverse=X, gcum=G)
    assert launched == [gq._gdn_chunk_wu_kernel]
    check_gdn(grads, dev, ref, dtype, "inverse kept")
    with pytest.raises(ValueError, match="keep_inverse"):
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, inverse=X[:, :-1], gcum=G[:, :-1])


def test_training_takes_the_op_that_keeps_the_inverse(monkeypatch, tf32_products):
    """chunk_gated_delta_rule with a gradient wanted runs hybridserve::gdn_chunk_train and its backward hands X, G
    to chunk_gdn_bwd (gradients against the float64 recurrence); without one it runs gdn_chunk (the one-launch short
    kernel included) and keeps nothing, nor with HYBRIDSERVE_GDN_KEEP_INVERSE=0; fake tensors get the shapes the
    Triton route gives."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from hybridserve.kernels import chunk_gated_delta_rule

    triton_cpu.route_ops_to_triton(monkeypatch)
    dev, ref = gdn_case(1, 100, 32, 32, torch.float32, True, seed=23)
    q, k, v, g, beta, h0, do, dht = dev
    seen = []
    real = gdn_bwd.chunk_gdn_bwd
    monkeypatch.setattr(gdn_bwd, "chunk_gdn_bwd", lambda *a, **kw: (seen.append(kw), real(*a, **kw))[1])
    leaves = [x.clone().requires_grad_(True) for x in (q, k, v, g, beta, h0)]
    o, s = chunk_gated_delta_rule(*leaves[:5], 0.6, leaves[5], True)
    ((o * do).sum() + (s * dht).sum()).backward()
    assert len(seen) == 1 and seen[0]["inverse"].shape == (1, 100, H_, 64) and seen[0]["gcum"].shape == (1, 100, H_)
    check_gdn([x.grad for x in leaves], dev, ref, torch.float32, "through the training op")
    with torch.no_grad():
        o2, _ = chunk_gated_delta_rule(q, k, v, g, beta, 0.6, h0, True)
    assert torch.allclose(o2, o.detach(), atol=1e-5) and len(seen) == 1
    monkeypatch.setenv("HYBRIDSERVE_GDN_KEEP_INVERSE", "0")  # memory over speed: the backward recomputes
    o3, _ = chunk_gated_delta_rule(*leaves[:5], 0.6, leaves[5], True)
    o3.sum().backward()
    assert len(seen) == 2 and seen[1].get("inverse") is None
    with FakeTensorMode():
        qf, vf, gf = torch.empty(2, 70, H_, 32), torch.empty(2, 70, H_, 32), torch.empty(2, 70, H_)
        outs = torch.ops.hybridserve.gdn_chunk_train(qf, qf, vf, gf, gf, 0.5, None)
        assert [tuple(x.shape) for x in outs] == [(2, 70, H_, 32), (2, H_, 32, 32), (2, 70, H_, 64), (2, 70, H_)]
