"""The Triton GLA backward (kernels/gla/chunk_bwd.py) and both layouts of the GDN backward (HYBRIDSERVE_GDN_BWD=
fused | split, kernels/gated_delta_rule/chunk_bwd*.py) against autograd through the float64 recurrences, on CPU
through Triton's interpreter with the bounds check on (or on a GPU when there is one); and the autotune-config
pinning the GPU probes rely on.

Covered: [B, T] tokens with an initial state and a final-state gradient (float32: 1e-5; bf16: fla's chunked
tolerances dq/dk/dv/dh0 8e-3, dgk 2e-2), packed sequences (cu_seqlens) with a length-0 sequence, one-token and
chunk-crossing lengths and decays down to e^-15 per token and channel (exponents that would overflow if formed
naively), and the custom op `hybridserve::gla_chunk_bwd` routed to the kernel. Sizes stay tiny (T <= 104, H = 2):
the interpreter runs every program in Python.

GDN: K, V in {32, 64} (K != V included), two sequences of 100 or one of 130 tokens (partial last chunks), with and
without an initial state and a final-state gradient, float32 (1e-5) and bf16 (fla's tolerances). The interpreter
computes TF32 products exactly; these tests round their float32 operands to TF32 (10-bit mantissa, nearest even)
as the tensor cores do, so the split layout's TF32 wy products are checked at their real precision.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)
from .triton_fixtures import interpreted_module  # noqa: F401  (pytest fixture)


import pytest
import torch
import torch.nn.functional as F

from hybridserve.kernels import _triton_utils
from hybridserve.kernels.gla.naive import naive_recurrent_gla

pytest.importorskip("triton")

triton_cpu.import_kernel_modules()  # interpreted (TRITON_INTERPRET set for the imports), then released
from hybridserve.kernels.gated_delta_rule import chunk_bwd as gdn_bwd  # noqa: E402
from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule  # noqa: E402
from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd  # noqa: E402

DEV = triton_cpu.DEVICE
H, K, V = 2, 32, 16
GRAD_TOL = {torch.float32: dict(dq=1e-5, dk=1e-5, dv=1e-5, dgk=1e-5, dh0=1e-5),
            torch.bfloat16: dict(dq=8e-3, dk=8e-3, dv=8e-3, dgk=2e-2, dh0=8e-3)}
NAMES = ["dq", "dk", "dv", "dgk", "dh0"]


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


@pytest.mark.parametrize("method", ["columns"] + [f"levels-{i}" for i in range(3)])
def test_gla_chunk_backward_each_intra_method(method, monkeypatch):
    """Both ways of the intra-chunk parts (HYBRIDSERVE_GLA_INTRA: the forward's A, which the backward recomputes;
    HYBRIDSERVE_GLA_BWD_INTRA: the backward's dQ, dK), the level kernels under each of their GPU configs (the interpreter registers only the first one;
    BK 16 over K = 32 makes two K blocks): the dense bf16 and the packed strong-decay cases above."""
    import triton

    from hybridserve.kernels.gla import chunk as gla_chunk
    from hybridserve.kernels.gla import chunk_bwd as gla_bwd

    monkeypatch.setenv("HYBRIDSERVE_GLA_INTRA", method.split("-")[0])
    monkeypatch.setenv("HYBRIDSERVE_GLA_BWD_INTRA", method.split("-")[0])
    kernels = (gla_chunk._gla_chunk_intra_levels_kernel, gla_bwd._gla_bwd_intra_levels_kernel)
    if method != "columns":
        bk, w = gla_chunk.INTRA_LEVELS_CONFIGS[int(method.split("-")[1])]
        for kern in kernels:
            monkeypatch.setattr(kern, "configs", [triton.Config({"BK": bk}, num_warps=w, num_stages=1)])
            kern.cache.clear()
    test_gla_chunk_backward_dense(torch.bfloat16)
    test_gla_chunk_backward_varlen_strong_decay()
    for kern in kernels:
        kern.cache.clear()


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


# ------------------------------------------------------------------------------------------------ GDN backward
GDN_TOL = {torch.float32: dict(dq=1e-5, dk=1e-5, dv=1e-5, dg=1e-5, dbeta=1e-5, dh0=1e-5),
           torch.bfloat16: dict(dq=8e-3, dk=8e-3, dv=8e-3, dg=2e-2, dbeta=2e-2, dh0=8e-3)}
GDN_NAMES = ["dq", "dk", "dv", "dg", "dbeta", "dh0"]


@pytest.fixture
def tf32_products(monkeypatch):
    """Interpreted tl.dot(..., input_precision="tf32") on float32 operands: round them to TF32 first (the
    interpreter multiplies them exactly; an H200's tensor cores keep 10 mantissa bits)."""
    if triton_cpu.ON_GPU:
        return
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    original = interpreter.InterpreterBuilder.create_dot

    def to_tf32(handle):
        if handle.dtype.scalar != tl.float32:
            return handle
        bits = np.ascontiguousarray(handle.data, dtype=np.float32).view(np.uint32).astype(np.uint64)
        bits = ((bits + 0xFFF + ((bits >> 13) & 1)) >> 13) << 13  # nearest even at mantissa bit 13
        return interpreter.TensorHandle(bits.astype(np.uint32).view(np.float32), tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if "TF32" in str(input_precision).upper() and "X3" not in str(input_precision).upper():
            a, b = to_tf32(a), to_tf32(b)
        return original(self, a, b, d, input_precision, max_num_imprecise_acc)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)


def gdn_case(B, T, K, V, dtype, with_states, seed):
    """Inputs on DEV and the float64 reference gradients (autograd through the recurrence)."""
    gn = gen(seed)
    q = F.normalize(torch.randn(B, T, H, K, generator=gn), dim=-1).to(dtype)
    k = F.normalize(torch.randn(B, T, H, K, generator=gn), dim=-1).to(dtype)
    v = torch.randn(B, T, H, V, generator=gn).to(dtype)
    g = F.logsigmoid(torch.randn(B, T, H, generator=gn) + 2)  # visible decay
    beta = torch.rand(B, T, H, generator=gn)
    do = torch.randn(B, T, H, V, generator=gn).to(dtype)
    h0 = torch.randn(B, H, K, V, generator=gn) if with_states else None
    dht = torch.randn(B, H, K, V, generator=gn) if with_states else None
    leaves = [x.double().requires_grad_(True) for x in (q, k, v, g, beta)]
    leaves.append(h0.double().requires_grad_(True) if with_states else None)
    o, s = naive_recurrent_gated_delta_rule(*leaves[:5], 0.6, leaves[5], with_states)
    loss = (o * do.double()).sum() + ((s * dht.double()).sum() if with_states else 0.0)
    loss.backward()
    ref = [None if x is None else x.grad for x in leaves]
    dev = [None if x is None else x.to(DEV) for x in (q, k, v, g, beta, h0, do, dht)]
    return dev, ref


def check_gdn(grads, dev, ref, dtype, what):
    assert (grads[5] is None) == (ref[5] is None), what
    for name, got, want, x in zip(GDN_NAMES, grads, ref, dev):
        if want is None:
            continue
        assert got.shape == x.shape and got.dtype == x.dtype, f"{what} {name}"
        err = rel_rmse(got, want)
        assert err <= GDN_TOL[dtype][name], f"{what} {name}: relative RMSE {err:.2e} > {GDN_TOL[dtype][name]:.0e}"


GDN_CASES = [  # (B, T, K, V, dtype, initial state + final-state gradient)
    (2, 100, 64, 64, torch.bfloat16, True),
    (2, 100, 32, 64, torch.float32, True),
    (1, 130, 64, 32, torch.float32, False),
    (1, 130, 32, 32, torch.bfloat16, False),
]


@pytest.mark.parametrize("variant", ["split", "fused"])
@pytest.mark.parametrize("case", GDN_CASES, ids=lambda c: f"{c[0]}x{c[1]}-K{c[2]}V{c[3]}-{str(c[4])[6:]}"
                         f"-{'h0' if c[5] else 'nostate'}")
def test_gdn_chunk_backward_variants(case, variant, tf32_products):
    """Both layouts of the GDN backward: every gradient against the float64 recurrence."""
    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=B * T + K_ + V_)
    q, k, v, g, beta, h0, do, dht = dev
    grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant=variant)
    check_gdn(grads, dev, ref, dtype, variant)


@pytest.mark.parametrize("prep", ["registers", "split"])
@pytest.mark.parametrize("case", GDN_CASES[:2], ids=["K64V64-bf16-h0", "K32V64-f32-h0"])
def test_gdn_backward_with_the_other_preps(case, prep, monkeypatch, tf32_products):
    """HYBRIDSERVE_GDN_PREP=registers | split: the backward's recompute writes X (STORE_X) through chunk_prep.py's
    kernel or chunk.py's kernel without W, U, in chunk.py's layout; every gradient against the float64 recurrence.
    A bad value is one clear error."""
    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=7 + K_ + V_)
    q, k, v, g, beta, h0, do, dht = dev
    monkeypatch.setenv("HYBRIDSERVE_GDN_PREP", prep)
    check_gdn(gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht), dev, ref, dtype, f"prep {prep}")
    monkeypatch.setenv("HYBRIDSERVE_GDN_PREP", "shared")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_PREP"):
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht)


@pytest.mark.parametrize("case", [GDN_CASES[0], GDN_CASES[3]], ids=["2x100-K64V64-h0", "1x130-K32V32-nostate"])
def test_gdn_split_backward_16bit_intermediates(case, monkeypatch, tf32_products):
    """HYBRIDSERVE_GDN_BWD_INTERMEDIATES=input: the split layout keeps dV', dW and the partial dK in bf16 between its
    kernels (as fla does); every gradient still within fla's tolerances of the float64 recurrence, the buffers really
    16-bit (seen by the wy kernel), the fused layout unchanged. A bad value is one clear error."""
    from hybridserve.kernels.gated_delta_rule import chunk_bwd_split as gs

    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=29 + T)
    q, k, v, g, beta, h0, do, dht = dev
    seen = {}
    kern = gs._gdn_bwd_wy_split_kernel

    def spy(*args, _run=kern.run, **kwargs):
        seen.update(dw=args[5].dtype, dv=args[6].dtype, dk_part=args[7].dtype)
        return _run(*args, **kwargs)

    monkeypatch.setattr(kern, "run", spy)
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", "input")
    check_gdn(gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split"), dev, ref, dtype,
              "16-bit intermediates")
    assert seen == dict(dw=dtype, dv=dtype, dk_part=dtype)
    check_gdn(gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="fused"), dev, ref, dtype,
              "fused, the setting ignored")
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", "float32")
    gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
    assert seen == dict(dw=torch.float32, dv=torch.float32, dk_part=torch.float32)
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", "fp8")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_BWD_INTERMEDIATES"):
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")


@pytest.mark.parametrize("prep", ["scratch", "registers"])
@pytest.mark.parametrize("case", [GDN_CASES[0], GDN_CASES[1]], ids=["2x100-K64V64-bf16-h0", "2x100-K32V64-f32-h0"])
def test_gdn_tf32_lower_blocks(case, prep, monkeypatch, tf32_products):
    """HYBRIDSERVE_GDN_INVERSE_LOWER=input: the off-diagonal 16 x 16 blocks of X = (I + A)^{-1} on the tensor cores
    (TF32, emulated: operands rounded to 10 mantissa bits) for bf16 inputs, still exact for float32 ones; the forward
    and every gradient of the backward (whose recompute writes X) within the usual tolerances of the float64
    recurrence, with either prep kernel. A bad value is one clear error."""
    from hybridserve.kernels.gated_delta_rule import chunk as gdn_chunk
    from hybridserve.kernels.gated_delta_rule import chunk_prep
    from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd

    B, T, K_, V_, dtype, states = case
    dev, ref = gdn_case(B, T, K_, V_, dtype, states, seed=41 + K_)
    q, k, v, g, beta, h0, do, dht = dev
    seen = []
    kern = chunk_prep._gdn_chunk_prep_registers_kernel if prep == "registers" else gdn_chunk._gdn_chunk_prep_kernel

    def spy(*args, _run=kern.run, **kwargs):
        seen.append(kwargs["LOWER_PREC"])
        return _run(*args, **kwargs)

    monkeypatch.setattr(kern, "run", spy)
    monkeypatch.setenv("HYBRIDSERVE_GDN_PREP", prep)
    monkeypatch.setenv("HYBRIDSERVE_GDN_INVERSE_LOWER", "input")
    check_gdn(gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht), dev, ref, dtype, f"TF32 lower blocks, {prep}")
    ht = torch.empty_like(h0)
    o = chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht)
    ro, rs = naive_recurrent_gated_delta_rule(*(x.double().cpu() for x in (q, k, v, g, beta)), 0.6,
                                              h0.double().cpu(), True)
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    assert rel_rmse(o, ro) <= tol and rel_rmse(ht, rs) <= tol
    assert seen and set(seen) == {"ieee" if dtype == torch.float32 else "tf32"}
    monkeypatch.setenv("HYBRIDSERVE_GDN_INVERSE_LOWER", "bf16")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_INVERSE_LOWER"):
        chunk_gdn_fwd(q, k, v, g, beta, 0.6)


def test_gdn_split_dqkw_every_config(monkeypatch, tf32_products):
    """The interpreter registers only an autotuned kernel's first config: run the split dqkw kernel under each of its
    GPU configs (V blocks of 32 / 64 / 128 over V = 64, Q and K loaded before or after the V loop, dK accumulated
    transposed or not)."""
    import triton

    from hybridserve.kernels.gated_delta_rule import chunk_bwd_split as gs

    dev, ref = gdn_case(1, 130, 64, 64, torch.bfloat16, True, seed=83)
    q, k, v, g, beta, h0, do, dht = dev
    kern = gs._gdn_bwd_dqkw_split_kernel
    assert {c[3] for c in gs.DQKW_CONFIGS} == {False, True}
    for bv, stages, early, dk_t, _ in gs.DQKW_CONFIGS:
        cfg = triton.Config({"BV": bv, "EARLY_QK": early, "DK_T": dk_t}, num_warps=8, num_stages=stages)
        monkeypatch.setattr(kern, "configs", [cfg])
        kern.cache.clear()
        grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
        check_gdn(grads, dev, ref, torch.bfloat16, f"split dqkw BV={bv} EARLY_QK={early} DK_T={dk_t}")
    kern.cache.clear()


def test_gdn_bwd_switch_and_phases(monkeypatch, tf32_products):
    """HYBRIDSERVE_GDN_BWD picks the layout (unset: split at the validated head dims, else fused; anything else is
    refused), and `_phases` hands back the six launches, which re-run in order reproduce the gradients bit for bit
    (each phase only reads what the earlier ones wrote)."""
    dev, ref = gdn_case(1, 70, 32, 64, torch.float32, True, seed=81)
    q, k, v, g, beta, h0, do, dht = dev
    monkeypatch.delenv("HYBRIDSERVE_GDN_BWD", raising=False)
    assert gdn_bwd.bwd_variant(128, 128) == "split"  # validated on the H200 at these head dims
    assert gdn_bwd.bwd_variant(64, 64) == "fused" and gdn_bwd.bwd_variant() == "fused"
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD", "fused")
    assert gdn_bwd.bwd_variant(128, 128) == "fused"
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD", "split")
    phases = []
    grads = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, _phases=phases)
    assert [name for name, _ in phases] == ["prep", "state", "dv_local", "dh", "dqkw", "wy"]
    explicit = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
    for a, b in zip(grads, explicit):
        assert torch.equal(a, b)
    before = [x.clone() for x in grads]
    for _, launch in phases:
        launch()
    for name, a, b in zip(GDN_NAMES, grads, before):
        assert torch.equal(a, b), name
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD", "blocked")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_BWD"):
        gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht)


def test_gdn_bwd_custom_op_follows_the_switch(monkeypatch, tf32_products):
    """hybridserve::gdn_chunk_bwd on the Triton route runs the layout HYBRIDSERVE_GDN_BWD names."""
    if not triton_cpu.ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HYBRIDSERVE_TRITON_ON_CPU", "1")
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD", "split")
    dev, _ = gdn_case(1, 40, 32, 32, torch.float32, True, seed=82)
    q, k, v, g, beta, h0, do, dht = dev
    got = torch.ops.hybridserve.gdn_chunk_bwd(q, k, v, g, beta, 0.6, h0, do, dht)
    direct = gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht, variant="split")
    for a, b in zip(got, direct):
        assert torch.equal(a, b)


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


def test_state_pass_stages_setting(monkeypatch):
    """A pass's measured default at the head dims it was tuned at, 1 stage elsewhere; the setting overrides both."""
    monkeypatch.delenv("HYBRIDSERVE_STATE_STAGES", raising=False)
    assert _triton_utils.state_pass_stages(3, 128, 128) == 3
    assert _triton_utils.state_pass_stages(3, 64, 64) == 1
    monkeypatch.setenv("HYBRIDSERVE_STATE_STAGES", "2")
    assert _triton_utils.state_pass_stages(3, 128, 128) == 2
    assert _triton_utils.state_pass_stages(3, 64, 64) == 2
    for bad in ("0", "5", "two", "-1"):
        monkeypatch.setenv("HYBRIDSERVE_STATE_STAGES", bad)
        with pytest.raises(ValueError, match="HYBRIDSERVE_STATE_STAGES"):
            _triton_utils.state_pass_stages(3, 128, 128)


def test_default_tiles_are_the_measured_ones(monkeypatch):
    """The defaults the H200 measured fastest at K = V = 128, H = 16 and checked at real sizes (docs/benchmarks/
    kernels.md, thirteenth and fourteenth sessions): the forward's state pass BV 16 for one sequence and BV 64 from 4
    sequences, 3 stages; the backward's dh pass BV 16 with 3 stages for one sequence, BV 32 with 2 at 4, BV 64 with 1
    from 8 (seventeenth session: 256 programs in one wave); GLA's
    state pass at 3 stages; the one-launch short prefill up to 512 tokens; the diagonal blocks of (I + A) inverted
    by doubling. Head dims never timed keep what was validated before (BV <= 32, 1 stage, no one-launch route,
    forward substitution)."""
    from hybridserve.kernels.gated_delta_rule.chunk import default_state_tile
    from hybridserve.kernels.gated_delta_rule.chunk_prep import diagonal_inverse_method, lower_blocks_precision
    from hybridserve.kernels.gated_delta_rule.fused_chunk import fused_chunk_max_tokens
    from hybridserve.kernels.gla import chunk as gla_chunk

    for name in ("HYBRIDSERVE_STATE_STAGES", "HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "HYBRIDSERVE_GDN_DIAG_INVERSE",
                 "HYBRIDSERVE_GDN_INVERSE_LOWER", "HYBRIDSERVE_GDN_BWD_INTERMEDIATES", "HYBRIDSERVE_GLA_INTRA",
                 "HYBRIDSERVE_GLA_BWD_INTRA"):
        monkeypatch.delenv(name, raising=False)
    assert [default_state_tile(n, 16, 128, 128) for n in (1, 2, 4, 8)] == [(16, 3), (32, 3), (64, 3), (64, 3)]
    assert [gdn_bwd.default_dh_tile(n, 16, 128, 128) for n in (1, 4, 8)] == [(16, 3), (32, 2), (64, 1)]
    assert _triton_utils.state_pass_stages(gla_chunk.GLA_STATE_STAGES, 128, 128) == 3
    # the GDN forward's output in its state pass (V' from X, the prep's attention) from 64 pairs, at K = V = 128 only
    from hybridserve.kernels.gated_delta_rule.chunk_state_out import default_state_out_tile, state_out_route
    monkeypatch.delenv("HYBRIDSERVE_GDN_STATE_OUT", raising=False)
    assert [state_out_route(n, 16, 128, 128) for n in (1, 3, 4, 8)] == ["split"] * 2 + ["fused-x-aqk"] * 2
    assert state_out_route(8, 16, 64, 64) == "split"
    monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", "fused")
    assert state_out_route(1, 16, 64, 64) == "fused"
    monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", "both")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_STATE_OUT"):
        state_out_route(8, 16, 128, 128)
    monkeypatch.delenv("HYBRIDSERVE_GDN_STATE_OUT")
    assert default_state_out_tile(8, 16, 128, 128) == (32, 4, 2)
    assert default_state_out_tile(8, 16, 128, 128, "fused-aqk") == (64, 4, 2)
    assert default_state_out_tile(8, 16, 64, 16, "fused-aqk") == (16, 4, 2)
    # the default route's V blocks widen to 64 from 128 sequences x heads (two programs a block still fill the SMs)
    assert [default_state_out_tile(n, 16, 128, 128, "fused-x-aqk") for n in (4, 7, 8)] == \
        [(32, 4, 2), (32, 4, 2), (64, 4, 2)]
    assert default_state_out_tile(8, 16, 128, 128, "fused-x") == (32, 4, 2)
    # GLA's state tiles: the backward's narrow BV only; the forward's (square) BK first, at K = V = 128 only
    assert [gla_chunk.default_state_blocks(n, 16, 128, 128) for n in (1, 4, 8)] == [(64, 16), (64, 64), (64, 64)]
    assert [gla_chunk.default_state_blocks(n, 16, 128, 128, square=True) for n in (1, 2, 4, 8)] == \
        [(32, 32), (32, 64), (64, 64), (64, 64)]
    assert gla_chunk.default_state_blocks(1, 16, 64, 64, square=True) == (64, 16)
    assert gla_chunk.default_state_blocks(1, 1, 128, 128, square=True) == (16, 16)  # stops at 16 x 16
    monkeypatch.setattr(gdn_bwd, "DH_STAGES_CHECKED", False)  # the switch the GPU checks turned on
    assert [gdn_bwd.default_dh_tile(n, 16, 128, 128) for n in (1, 4, 8)] == [(16, 1), (32, 1), (64, 1)]
    monkeypatch.setattr(gdn_bwd, "DH_STAGES_CHECKED", True)
    assert [default_state_tile(n, 16, 64, 64) for n in (1, 8)] == [(16, 1), (32, 1)]
    assert [gdn_bwd.default_dh_tile(n, 16, 64, 64) for n in (1, 8)] == [(16, 1), (32, 1)]
    assert _triton_utils.state_pass_stages(gla_chunk.GLA_STATE_STAGES, 64, 64) == 1
    assert (fused_chunk_max_tokens(128, 128), fused_chunk_max_tokens(64, 64)) == (512, 0)
    assert (diagonal_inverse_method(128, 128), diagonal_inverse_method(64, 64)) == ("doubling", "substitution")
    # TF32 lower blocks and 16-bit backward intermediates: on where the H200 checked and timed them (K = V = 128)
    assert (lower_blocks_precision(128, 128), lower_blocks_precision(64, 64)) == ("input", "ieee")
    assert (gdn_bwd.grad_intermediates(128, 128), gdn_bwd.grad_intermediates(64, 64)) == ("input", "float32")
    # GLA: A and the backward's dQ, dK by levels where timed
    assert (gla_chunk.intra_method(128, 128), gla_chunk.intra_method(64, 64)) == ("levels", "columns")
    assert (gla_chunk.bwd_intra_method(128, 128), gla_chunk.bwd_intra_method(64, 64)) == ("levels", "columns")
    assert gla_chunk.bwd_intra_method() == "columns"
    monkeypatch.setenv("HYBRIDSERVE_GLA_INTRA", "columns")
    monkeypatch.setenv("HYBRIDSERVE_GLA_BWD_INTRA", "levels")
    assert (gla_chunk.intra_method(128, 128), gla_chunk.bwd_intra_method()) == ("columns", "levels")
    monkeypatch.setenv("HYBRIDSERVE_GLA_BWD_INTRA", "rows")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GLA_BWD_INTRA"):
        gla_chunk.bwd_intra_method()
    monkeypatch.setenv("HYBRIDSERVE_GDN_INVERSE_LOWER", "ieee")
    monkeypatch.setenv("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", "float32")
    assert (lower_blocks_precision(128, 128), gdn_bwd.grad_intermediates(128, 128)) == ("ieee", "float32")
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "0")
    assert fused_chunk_max_tokens(128, 128) == 0
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", "substitution")
    assert diagonal_inverse_method(128, 128) == "substitution"
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", "cholesky")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_DIAG_INVERSE"):
        diagonal_inverse_method(64, 64)


def test_sequential_passes_launch_with_the_stages(monkeypatch):
    """The four sequential chunk passes (GDN state and dh, GLA state and dh) launch with HYBRIDSERVE_STATE_STAGES,
    an explicit argument wins, and the results do not change (the interpreter ignores num_stages: on the GPU
    benchmarks/state_pass_gpu.py checks the pipelined kernels against the 1-stage ones)."""
    from hybridserve.kernels.gated_delta_rule import chunk as gdn_chunk
    from hybridserve.kernels.gla import chunk as gla_chunk
    from hybridserve.kernels.gla import chunk_bwd as gla_bwd

    seen = []
    for name, kernel in [("gdn state", gdn_chunk._gdn_chunk_state_kernel), ("gdn dh", gdn_bwd._gdn_bwd_dh_kernel),
                         ("gla state", gla_chunk._gla_chunk_state_kernel), ("gla dh", gla_bwd._gla_bwd_dh_kernel)]:
        def spy(*args, _run=kernel.run, _name=name, **kwargs):
            seen.append((_name, kwargs.get("num_stages")))
            return _run(*args, **kwargs)
        monkeypatch.setattr(kernel, "run", spy)

    def run_all():
        (q, k, v, g, beta, h0, do, dht), _ = gdn_case(1, 70, 32, 32, torch.float32, True, seed=3)
        gq, gk_, gv, gk, gdo = gla_inputs((1, 70), 4, torch.float32)
        return [gdn_chunk.chunk_gdn_fwd(q, k, v, g, beta),
                *gdn_bwd.chunk_gdn_bwd(q, k, v, g, beta, 0.6, h0, do, dht),
                gla_chunk.chunk_gla_fwd(gq, gk_, gv, gk), *chunk_gla_bwd(gq, gk_, gv, gk, 0.5, None, gdo, None)]

    monkeypatch.setenv("HYBRIDSERVE_STATE_STAGES", "1")
    one = run_all()
    assert sorted(set(seen)) == [("gdn dh", 1), ("gdn state", 1), ("gla dh", 1), ("gla state", 1)]
    seen.clear()
    monkeypatch.setenv("HYBRIDSERVE_STATE_STAGES", "3")
    three = run_all()
    assert sorted(set(seen)) == [("gdn dh", 3), ("gdn state", 3), ("gla dh", 3), ("gla state", 3)]
    for a, b in zip(one, three):
        assert (a is None and b is None) or torch.equal(a, b)
    seen.clear()
    (q, k, v, g, beta, *_), _ = gdn_case(1, 70, 32, 32, torch.float32, False, seed=3)
    gdn_chunk.chunk_gdn_fwd(q, k, v, g, beta, num_stages_state=2)
    assert seen == [("gdn state", 2)]
    # unset: each pass's default once its head dims count as tuned: the GDN forward's state pass, the dh pass and
    # GLA's state pass at their measured depths (all checked on the GPU); GLA's dh pass, never timed pipelined, at 1.
    # With the switches the GPU checks turned on set back off: 1 stage but for the GDN state pass.
    seen.clear()
    monkeypatch.delenv("HYBRIDSERVE_STATE_STAGES")
    monkeypatch.setattr(_triton_utils, "TUNED_HEAD_DIMS", frozenset({(32, 32), (K, V)}))
    run_all()
    assert sorted(set(seen)) == [("gdn dh", 3), ("gdn state", 3), ("gla dh", 1), ("gla state", 3)]
    seen.clear()
    monkeypatch.setattr(gdn_bwd, "DH_STAGES_CHECKED", False)
    monkeypatch.setattr(gla_chunk, "GLA_STATE_STAGES", 1)
    monkeypatch.setattr(gla_bwd, "GLA_STATE_STAGES", 1)
    run_all()
    assert sorted(set(seen)) == [("gdn dh", 1), ("gdn state", 3), ("gla dh", 1), ("gla state", 1)]


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


def test_bwd_custom_op_hands_out_the_kernels_gradients_without_copies(monkeypatch, tf32_products):
    """The backward op returns the kernel's fresh gradient tensors as they are when they already have the primal's
    dtype and the strides of empty_like(primal) (no copy: ~0.4 GB of traffic per call at 8 x 32K), and a copy in
    the primal's strides when the primal is dense but permuted (the fake implementation promises empty_like)."""
    from hybridserve.kernels import ops

    if not triton_cpu.ON_GPU:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("HYBRIDSERVE_TRITON_ON_CPU", "1")
    dev, _ = gdn_case(1, 40, 32, 32, torch.float32, True, seed=83)
    q, k, v, g, beta, h0, do, dht = dev
    handed_out = []
    real = ops._grads_like
    monkeypatch.setattr(ops, "_grads_like", lambda grads, *a: handed_out.append(list(grads)) or real(grads, *a))
    got = torch.ops.hybridserve.gdn_chunk_bwd(q, k, v, g, beta, 0.6, h0, do, dht)
    assert all(out.data_ptr() == kernel.data_ptr() for out, kernel in zip(got, handed_out[0]))
    permuted = q.transpose(1, 2).contiguous().transpose(1, 2)  # dense, strides permuted: empty_like keeps them
    got_permuted = torch.ops.hybridserve.gdn_chunk_bwd(permuted, k, v, g, beta, 0.6, h0, do, dht)
    assert got_permuted[0].stride() == permuted.stride() != handed_out[1][0].stride()
    assert torch.equal(got_permuted[0], got[0])


def test_configs_added_at_the_tuned_head_dims_are_pruned_elsewhere():
    """The forward's prep / out and dV'_intra configs added once the GPU checked them at K = V = 128 are offered to
    the autotuner only there; at other head dims it sees the earlier, validated ones."""
    import triton

    from hybridserve.kernels._triton_utils import tuned_dims_prune
    from hybridserve.kernels.gated_delta_rule import chunk as gdn_chunk
    from hybridserve.kernels.gla import chunk_bwd as gla_bwd

    configs = [triton.Config({}, num_warps=w) for w in (1, 2, 4, 8)]
    prune = tuned_dims_prune(3)
    assert prune(configs, {"K": 128, "V": 128}) == configs
    assert prune(configs, {"K": 64}, V=64) == configs[:3]  # K, V positional or keyword
    assert prune(configs[:2], {"K": 64, "V": 64}) == configs[:2]
    for kern, table, n in ((gdn_chunk._gdn_chunk_prep_kernel, gdn_chunk.PREP_CONFIGS, gdn_chunk.PREP_EVERYWHERE),
                           (gdn_chunk._gdn_chunk_out_kernel, gdn_chunk.OUT_CONFIGS, gdn_chunk.OUT_EVERYWHERE),
                           (gdn_bwd._gdn_bwd_dv_local_kernel, gdn_bwd.DV_LOCAL_CONFIGS, gdn_bwd.DV_LOCAL_EVERYWHERE),
                           (gla_bwd._gla_bwd_inter_kernel, gla_bwd.INTER_CONFIGS, gla_bwd.INTER_EVERYWHERE)):
        assert 0 < n < len(table)
        full = [object() for _ in table]
        assert kern.early_config_prune(full, {"K": 128, "V": 128}) == full
        assert kern.early_config_prune(full, {"K": 64, "V": 64}) == full[:n]
