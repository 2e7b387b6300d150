"""The Triton GLA backward (kernels/gla/chunk_bwd.py) against autograd through the float64 recurrence, on CPU
through Triton's interpreter with the bounds check on (or on a GPU when there is one); and the autotune-config
pinning the GPU probes rely on.

Covered: [B, T] tokens with an initial state and a final-state gradient (float32: 1e-5; bf16: fla's chunked
tolerances dq/dk/dv/dh0 8e-3, dgk 2e-2), packed sequences (cu_seqlens) with a length-0 sequence, one-token and
chunk-crossing lengths and decays down to e^-15 per token and channel (exponents that would overflow if formed
naively), and the custom op `hybridserve::gla_chunk_bwd` routed to the kernel. Sizes stay tiny (T <= 104, H = 2):
the interpreter runs every program in Python.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)

import os

import pytest
import torch
import torch.nn.functional as F

from hybridserve.kernels import _triton_utils
from hybridserve.kernels.gla.naive import naive_recurrent_gla

pytest.importorskip("triton")

from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd  # noqa: E402  (interpreted while TRITON_INTERPRET=1)

triton_cpu.release_env()
if not triton_cpu.ON_GPU:
    triton_cpu.enable_bounds_check()

DEV = triton_cpu.DEVICE
H, K, V = 2, 32, 16
GRAD_TOL = {torch.float32: dict(dq=1e-5, dk=1e-5, dv=1e-5, dgk=1e-5, dh0=1e-5),
            torch.bfloat16: dict(dq=8e-3, dk=8e-3, dv=8e-3, dgk=2e-2, dh0=8e-3)}
NAMES = ["dq", "dk", "dv", "dgk", "dh0"]


@pytest.fixture(autouse=True, scope="module")
def _interpreter():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = os.environ.get("TRITON_INTERPRET")
    if not triton_cpu.ON_GPU:
        os.environ["TRITON_INTERPRET"] = "1"
    yield
    torch.set_num_threads(threads)
    if saved is None:
        os.environ.pop("TRITON_INTERPRET", None)
    else:
        os.environ["TRITON_INTERPRET"] = saved


def gen(seed):
    return torch.Generator().manual_seed(seed)


def rel_rmse(out, ref):
    out, ref = out.double().cpu(), ref.double().cpu()
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert torch.isfinite(out).all(), "non-finite gradient"
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def gla_inputs(shape, seed, dtype, decay_div=4.0):
    gn = gen(seed)
    q = torch.randn(*shape, H, K, generator=gn).to(dtype)
    k = (torch.randn(*shape, H, K, generator=gn) * 0.3).to(dtype)
    v = torch.randn(*shape, H, V, generator=gn).to(dtype)
    gk = F.logsigmoid(torch.randn(*shape, H, K, generator=gn) * 3 + 2) / decay_div
    do = torch.randn(*shape, H, V, generator=gn).to(dtype)
    return q, k, v, gk, do


def check_grads(grads, leaves, tol, what):
    for name, got, leaf in zip(NAMES, grads, leaves):
        assert got.shape == leaf.shape, name
        err = rel_rmse(got, leaf.grad)
        assert err <= tol[name], f"{what} {name}: relative RMSE {err:.2e} > {tol[name]:.0e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gla_chunk_backward_dense(dtype):
    """Two sequences of 100 tokens (a full and a partial chunk), initial state and final-state gradient."""
    q, k, v, gk, do = gla_inputs((2, 100), 71, dtype)
    h0 = torch.randn(2, H, K, V, generator=gen(72))
    dht = torch.randn(2, H, K, V, generator=gen(73))
    leaves = [x.double().requires_grad_(True) for x in (q, k, v, gk, h0)]
    o, s = naive_recurrent_gla(*leaves[:4], 0.4, leaves[4], True)
    ((o * do.double()).sum() + (s * dht.double()).sum()).backward()
    dev = [x.to(DEV) for x in (q, k, v, gk, h0, do, dht)]
    grads = chunk_gla_bwd(*dev[:4], 0.4, dev[4], dev[5], dev[6])
    for got, x in zip(grads, (q, k, v, gk, h0)):
        assert got.dtype == x.dtype
    check_grads(grads, leaves, GRAD_TOL[dtype], str(dtype))


def test_gla_chunk_backward_varlen_strong_decay():
    """Packed sequences (lengths 7, 1, 66, 0, 30), per-sequence initial states and final-state gradients, decays
    down to about e^-15 per token and channel."""
    lens = [7, 1, 66, 0, 30]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist())
    N, TT = len(lens), sum(lens)
    q, k, v, gk, do = gla_inputs((TT,), 74, torch.float32, decay_div=1.0)
    h0 = torch.randn(N, H, K, V, generator=gen(75))
    dht = torch.randn(N, H, K, V, generator=gen(76))
    leaves = [x.double().requires_grad_(True) for x in (q, k, v, gk, h0)]
    loss = 0.0
    for n in range(N):
        s, e = cu[n].item(), cu[n + 1].item()
        o, st = naive_recurrent_gla(*(x[None, s:e] for x in leaves[:4]), None, leaves[4][n:n + 1], True)
        loss = loss + (o[0] * do[s:e].double()).sum() + (st * dht[n:n + 1].double()).sum()
    loss.backward()
    dev = [x.to(DEV) for x in (q, k, v, gk, h0, do, dht)]
    grads = chunk_gla_bwd(*dev[:4], None, dev[4], dev[5], dev[6], cu_seqlens=cu.to(DEV))
    check_grads(grads, leaves, GRAD_TOL[torch.float32], "varlen")
    # the zero-length sequence passes its final-state gradient straight through to dh0
    assert torch.equal(grads[4][3].cpu(), dht[3])


def test_gla_bwd_custom_op_uses_the_kernel(monkeypatch):
    """hybridserve::gla_chunk_bwd on the Triton route (no initial state): the kernel's gradients, not the
    reference recompute's (checked by comparing with the kernel called directly, bit for bit)."""
    if not triton_cpu.ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HYBRIDSERVE_TRITON_ON_CPU", "1")
    q, k, v, gk, do = (x.to(DEV) for x in gla_inputs((1, 40), 77, torch.float32))
    dht = torch.randn(1, H, K, V, generator=gen(78)).to(DEV)
    got = torch.ops.hybridserve.gla_chunk_bwd(q, k, v, gk, 0.3, None, do, dht)
    direct = chunk_gla_bwd(q, k, v, gk, 0.3, None, do, dht)
    for a, b in zip(got[:4], direct[:4]):
        assert torch.equal(a, b)
    assert got[4].numel() == 0


# ------------------------------------------------------------------------------------------ config pinning
def test_pinned_autotune_configs(monkeypatch):
    configs = ["a", "b", "c"]
    monkeypatch.delenv("HYBRIDSERVE_TRITON_CONFIG", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert _triton_utils.tuned_configs("_k", configs) == configs
    monkeypatch.setenv("HYBRIDSERVE_TRITON_CONFIG", "_k=2, _other=0")
    assert _triton_utils.pinned_configs() == {"_k": 2, "_other": 0}
    assert _triton_utils.tuned_configs("_k", configs) == ["c"]
    assert _triton_utils.tuned_configs("_unpinned", configs) == configs
    monkeypatch.setenv("HYBRIDSERVE_TRITON_CONFIG", "_k=3")
    with pytest.raises(ValueError, match="3 configs"):
        _triton_utils.tuned_configs("_k", configs)
    monkeypatch.setenv("HYBRIDSERVE_TRITON_CONFIG", "")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _triton_utils.tuned_configs("_k", configs) == ["a"]  # the interpreter never autotunes


def test_cuda_head_dims_opt_in(monkeypatch):
    """Auto-dispatch on CUDA takes the GPU-validated head dims plus the ones named in HYBRIDSERVE_TRITON_HEAD_DIMS."""
    monkeypatch.delenv("HYBRIDSERVE_TRITON_HEAD_DIMS", raising=False)
    assert _triton_utils.cuda_head_dims() == _triton_utils.CUDA_VALIDATED_HEAD_DIMS
    assert (128, 128) in _triton_utils.CUDA_VALIDATED_HEAD_DIMS
    monkeypatch.setenv("HYBRIDSERVE_TRITON_HEAD_DIMS", "64x64, 96X32")
    assert _triton_utils.cuda_head_dims() == _triton_utils.CUDA_VALIDATED_HEAD_DIMS | {(64, 64), (96, 32)}
    monkeypatch.setenv("HYBRIDSERVE_TRITON_HEAD_DIMS", "64")
    with pytest.raises(ValueError, match="not KxV"):
        _triton_utils.cuda_head_dims()
