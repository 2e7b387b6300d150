"""The scratch WY kernel of the split GDN backward (HYBRIDSERVE_GDN_WY=scratch, kernels/gated_delta_rule/
chunk_bwd_wy.py) against autograd through the float64 recurrence, through Triton's interpreter (or on a GPU when
there is one), with test_kernels_triton_bwd.py's cases, tolerances and TF32 rounding of the products: every case,
every block size its autotune configs use, its scratch tiles in the dead dS' buffer when that is large enough (and
a buffer of their own when not), and the switch's parse.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)

import pytest
import torch

pytest.importorskip("triton")

from .test_kernels_triton_bwd import GDN_CASES, check_gdn, gdn_bwd, gdn_case, tf32_products  # noqa: E402,F401
from hybridserve.kernels.gated_delta_rule import chunk_bwd_split as gs  # noqa: E402
from hybridserve.kernels.gated_delta_rule import chunk_bwd_wy as gw  # noqa: E402


@pytest.mark.parametrize("case", GDN_CASES, ids=lambda c: f"{c[0]}x{c[1]}-K{c[2]}V{c[3]}-{str(c[4])[6:]}"
                         f"-{'h0' if c[5] else 'nostate'}")
def test_gdn_backward_with_the_scratch_wy(case, monkeypatch, tf32_products):
    """Every gradient against the float64 recurrence, with both dtypes of the intermediates in between."""
    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=B * T + K_ + V_)
    q, k, v, g, beta, h0, do, dht = dev
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", "scratch")
    for inter in ("input", "float32"):
        monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", inter)
        grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
        check_gdn(grads, dev, ref, dtype, f"scratch wy, {inter} intermediates")


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
    """HYBRIDSERVE_GDN_WY: unset "products" (until the GPU times both), either name taken, anything else one clear
    error; the backward runs the kernel it names."""
    monkeypatch.delenv("HYBRIDSERVE_GDN_WY", raising=False)
    assert gw.wy_variant(128, 128) == "products" and gw.wy_variant(64, 64) == "products"
    for name in gw.WY_VARIANTS:
        monkeypatch.setenv("HYBRIDSERVE_GDN_WY", name)
        assert gw.wy_variant(128, 128) == name
    monkeypatch.setenv("HYBRIDSERVE_GDN_WY", "shared")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_WY"):
        gw.wy_variant(128, 128)
    dev, _ = gdn_case(1, 70, 32, 32, torch.float32, False, seed=3)
    q, k, v, g, beta, h0, do, dht = dev
    ran = []
    for name, kern in (("products", gs._gdn_bwd_wy_split_kernel), ("scratch", gw._gdn_bwd_wy_scratch_kernel)):
        monkeypatch.setattr(kern, "run", lambda *a, _n=name, _r=kern.run, **kw: (ran.append(_n), _r(*a, **kw))[1])
    for name in gw.WY_VARIANTS:
        monkeypatch.setenv("HYBRIDSERVE_GDN_WY", name)
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
    assert ran == list(gw.WY_VARIANTS)
