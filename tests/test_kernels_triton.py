"""hybridserve's Triton kernels against float64 references, on CPU through Triton's interpreter (or on a GPU).

Every kernel (GDN and GLA, fused recurrent and chunked) is compared with the plain-PyTorch references
(`kernels/*/naive.py`) run in float64 on the same (rounded) inputs, by relative RMSE rms(out - ref) / rms(ref):
float32 inputs 1e-5, bf16 inputs 5e-3 (fla's tolerance for o and the final state). Covered: [B, T] and packed
(varlen) tokens with odd lengths across chunk boundaries, dense initial/final states, state pools (float32 and
bf16) read and written in place through slot indices, padding slots (index -1) and unused slots left bit-exact,
has_initial_state, fused gating / L2 norm, the GDN Triton backward (every gradient, fla's tolerances for bf16:
dq/dk/dv/dh0 8e-3, dg/dbeta 2e-2; the GLA forward's tests are in test_kernels_triton_gla.py, the GLA backward's
in test_kernels_triton_bwd.py). The custom ops
and the public functions routed to the kernels are in test_kernels_ops.py; the compile of every kernel for Hopper
is in test_kernels_compile.py.

Sizes stay tiny (T <= 140, H = 2, K, V in {16, 32}): the interpreter runs every program in Python.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)
from .triton_fixtures import interpreted_module, triton_ops  # noqa: F401  (pytest fixtures)

import pytest
import torch
import torch.nn.functional as F

from hybridserve import kernels
from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule
from hybridserve.kernels.gla.naive import naive_recurrent_gla

triton = pytest.importorskip("triton")  # CI installs it (the `test` extra pins triton==3.7.1); a bare machine skips
import triton.language as tl  # noqa: E402

triton_cpu.import_kernel_modules()  # interpreted (TRITON_INTERPRET set for the imports), then released
from hybridserve.kernels.gated_delta_rule.chunk import chunk_gdn_fwd, token_major  # noqa: E402
from hybridserve.kernels.gated_delta_rule.chunk_bwd import chunk_gdn_bwd  # noqa: E402
from hybridserve.kernels.gated_delta_rule.chunk_prep import diagonal_inverses, doubling_inverse  # noqa: E402
from hybridserve.kernels.gated_delta_rule.decode import gdn_decode_pool  # noqa: E402
from hybridserve.kernels.gated_delta_rule.fused_chunk import fused_chunk_gdn_fwd  # noqa: E402
from hybridserve.kernels.gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd  # noqa: E402
from hybridserve.kernels.gla.chunk import chunk_gla_fwd  # noqa: E402
from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd  # noqa: E402
from hybridserve.kernels.gla.fused_recurrent import fused_recurrent_gla_fwd  # noqa: E402


DEV = triton_cpu.DEVICE
H, K, V = 2, 32, 16  # K != V: a transposed state would not fit
TOL = {torch.float32: 1e-5, torch.bfloat16: 5e-3}
SENTINEL = 1234.5  # unused pool slots hold this; it must survive bit-exact


def rel_rmse(out, ref):
    out, ref = out.double().cpu(), ref.double().cpu()
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert torch.isfinite(out).all(), "non-finite output"
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def check(out, ref, tol, what=""):
    err = rel_rmse(out, ref)
    assert err <= tol, f"{what}: relative RMSE {err:.2e} > {tol:.0e}"
    return err


def gen(seed):
    return torch.Generator().manual_seed(seed)


def gdn_inputs(shape, seed, dtype, raw_gates=False):
    """q, k unit-norm, v ~ N(0, 1), g = log decay near 1 (as in kbench), beta in (0, 1)."""
    gn = gen(seed)
    q = F.normalize(torch.randn(*shape, H, K, generator=gn), dim=-1)
    k = F.normalize(torch.randn(*shape, H, K, generator=gn), dim=-1)
    v = torch.randn(*shape, H, V, generator=gn)
    if raw_gates:
        g = torch.randn(*shape, H, generator=gn) * 2  # raw a
        beta = torch.randn(*shape, H, generator=gn)  # raw b
    else:
        g = F.logsigmoid(torch.randn(*shape, H, generator=gn) + 3)
        beta = torch.rand(*shape, H, generator=gn)
    return [x.to(dtype).to(DEV) for x in (q, k, v)] + [g.to(DEV), beta.to(DEV)]


def gla_inputs(shape, seed, dtype, strong=False):
    gn = gen(seed)
    q = torch.randn(*shape, H, K, generator=gn)
    k = torch.randn(*shape, H, K, generator=gn) * 0.3
    v = torch.randn(*shape, H, V, generator=gn)
    logits = torch.randn(*shape, H, K, generator=gn) * 3 + 2
    gk = F.logsigmoid(logits) / (1 if strong else 16)  # strong: down to about -15 per token and channel
    return [x.to(dtype).to(DEV) for x in (q, k, v)] + [gk.to(DEV)]


def f64(*xs):
    return [None if x is None else x.double().cpu() for x in xs]


def pool_with(slots, dtype, seed):
    """A pool of `slots` rows full of SENTINEL; returns (pool, a random initial state per slot)."""
    pool = torch.full((slots, H, K, V), SENTINEL, dtype=dtype, device=DEV)
    init = torch.randn(slots, H, K, V, generator=gen(seed)).to(dtype).to(DEV)
    return pool, init


# ------------------------------------------------------------------------------------------------ GDN recurrent
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdn_fused_recurrent_dense(dtype):
    q, k, v, g, beta = gdn_inputs((2, 37), 1, dtype)
    h0 = torch.randn(2, H, K, V, generator=gen(2)).to(DEV)
    ht = torch.empty(2, H, K, V, device=DEV)
    o = fused_recurrent_gdn_fwd(q, k, v, g, beta, scale=0.7, initial_state=h0, final_state=ht)
    ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), 0.7, *f64(h0), True)
    assert o.dtype == dtype and o.shape == v.shape
    check(o, ref_o, TOL[dtype], "o")
    check(ht, ref_s, TOL[dtype], "final state")


def _gdn_ref_gates(a, b, A_log, dt_bias):
    a, b, A_log, dt_bias = f64(a, b, A_log, dt_bias)
    return -A_log.exp() * F.softplus(a + dt_bias), torch.sigmoid(b)


def _l2(x):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)


def _expected_pool(pool, init_pool, slots, has, finals):
    """What the pool must hold afterwards: the final states at the used slots, everything else unchanged."""
    exp = pool.double().cpu().clone()
    for n, slot in enumerate(slots):
        if slot >= 0:
            exp[slot] = finals[n]
    return exp


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
def test_gdn_fused_recurrent_pool_varlen_fused_gates(state_dtype):
    """Packed sequences, raw gates + L2 norm in the kernel, pool read/written in place, a padding sequence."""
    lens = [3, 1, 9, 4, 2]
    slots = [5, 0, -1, 2, 6]  # the third sequence is padding
    has = [1, 1, 1, 0, 1]  # the fourth starts from zero although its slot holds data
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=DEV)
    TT = sum(lens)
    q, k, v, a, b = gdn_inputs((TT,), 3, torch.bfloat16, raw_gates=True)
    q, k = q * 3, k * 0.5  # not unit norm: the kernel normalises
    A_log = torch.log(torch.rand(H, generator=gen(4)) * 8 + 1).to(DEV)
    dt_bias = (torch.rand(H, generator=gen(5)) - 2).to(DEV)
    pool, init = pool_with(8, state_dtype, 6)
    for s in slots:
        if s >= 0:
            pool[s] = init[s]
    before = pool.clone()
    o = fused_recurrent_gdn_fwd(
        q, k, v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, scale=0.5, initial_state=pool, final_state=pool,
        state_indices=torch.tensor(slots, device=DEV), cu_seqlens=cu, use_qk_l2norm=True,
        has_initial_state=torch.tensor(has, dtype=torch.bool, device=DEV))
    g, beta = _gdn_ref_gates(a, b, A_log, dt_bias)
    qd, kd, vd = f64(q, k, v)
    qd, kd = _l2(qd), _l2(kd)
    finals, cu_l = [], cu.tolist()
    for n, slot in enumerate(slots):
        s, e = cu_l[n], cu_l[n + 1]
        h0 = before[slot:slot + 1].double().cpu() if slot >= 0 and has[n] else None
        ro, rs = naive_recurrent_gated_delta_rule(
            *(x[None, s:e] for x in (qd, kd, vd, g, beta)), 0.5, h0, True)
        check(o[s:e], ro[0], 5e-3, f"o of sequence {n}")
        finals.append(rs[0])
    exp = _expected_pool(before, None, slots, has, finals)
    used = [s for s in slots if s >= 0]
    check(pool[used], exp[used], TOL[state_dtype] if state_dtype == torch.bfloat16 else 1e-5, "pool")
    untouched = [i for i in range(8) if i not in used]
    assert torch.equal(pool[untouched], before[untouched]), "a slot outside state_indices changed"


@pytest.mark.parametrize("kernel", ["tile", "persistent"])
def test_gdn_decode_op_matches_reference_op(triton_ops, monkeypatch, kernel):
    """gdn_decode_ (one token per sequence, fused gates, padding rows) through the custom op: Triton path vs the
    PyTorch reference path of the same op, with either decode kernel (HYBRIDSERVE_GDN_DECODE)."""
    monkeypatch.setenv("HYBRIDSERVE_GDN_DECODE", kernel)
    from hybridserve.kernels.gated_delta_rule import decode as decode_module

    calls, persistent = [], decode_module.gdn_decode_pool
    monkeypatch.setattr(decode_module, "gdn_decode_pool", lambda *a, **kw: calls.append(1) or persistent(*a, **kw))
    N = 6
    q, k, v, a, b = gdn_inputs((N,), 7, torch.float32, raw_gates=True)
    A_log = torch.log(torch.rand(H, generator=gen(8)) * 8 + 1).to(DEV)
    dt_bias = (torch.rand(H, generator=gen(9)) - 2).to(DEV)
    idx = torch.tensor([3, -1, 0, 7, -1, 5], device=DEV)
    pool, init = pool_with(9, torch.float32, 10)
    pool[[3, 0, 7, 5]] = init[[3, 0, 7, 5]]
    ref_pool = pool.cpu().clone()
    o = kernels.gdn_decode_(q, k, v, a, b, A_log, dt_bias, pool, idx, use_qk_l2norm=True)
    monkeypatch.setenv("HYBRIDSERVE_TRITON_ON_CPU", "0")  # CPU tensors -> the reference path of the same op
    cpu = [x.cpu() for x in (q, k, v, a, b, A_log, dt_bias)]
    ref_o = kernels.gdn_decode_(*cpu, ref_pool, idx.cpu(), use_qk_l2norm=True)
    assert o.shape == (N, H, V)
    real = (idx >= 0).cpu()
    check(o.cpu()[real], ref_o[real], 1e-5, "o")
    check(pool, ref_pool, 1e-5, "pool")
    assert torch.equal(pool[[1, 2, 4, 6, 8]].cpu(), torch.full((5, H, K, V), SENTINEL))
    assert len(calls) == (kernel == "persistent")  # the switch picked the kernel it names


@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prefetch,per_sm,BV,stages", [(True, 1, 8, 1), (False, 2, 16, 1), (True, 64, 16, 1),
                                                        (False, 1, 16, 3)])
def test_gdn_decode_persistent(state_dtype, prefetch, per_sm, BV, stages):
    """The persistent decode kernel (decode.py) against the float64 recurrence: fused gates and L2 norm, padding
    rows, slots out of order, unused slots bit-exact. per_sm=1 (4 programs on CPU) walks several tiles per
    program, so the prefetch of the next tile and the masked prefetch past the last one both run; per_sm=64 gives
    every tile its own program; stages=3 is the software-pipelined loop (cp.async staging on the GPU)."""
    slots = [3, -1, 0, 7, -1, 5, 1]
    N = len(slots)
    q, k, v, a, b = gdn_inputs((N,), 11, torch.bfloat16, raw_gates=True)
    q = q * 2
    A_log = torch.log(torch.rand(H, generator=gen(12)) * 8 + 1).to(DEV)
    dt_bias = (torch.rand(H, generator=gen(13)) - 2).to(DEV)
    pool, init = pool_with(9, state_dtype, 14)
    used = [s for s in slots if s >= 0]
    pool[used] = init[used]
    before = pool.clone()
    o = gdn_decode_pool(q, k, v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state_pool=pool,
                        state_indices=torch.tensor(slots, dtype=torch.int32, device=DEV), scale=0.6,
                        use_qk_l2norm=True, BV=BV, num_warps=1, per_sm=per_sm, prefetch=prefetch, stages=stages)
    g, beta = _gdn_ref_gates(a, b, A_log, dt_bias)
    qd, kd, vd = f64(q, k, v)
    qd, kd = _l2(qd), _l2(kd)
    finals = []
    for n, slot in enumerate(slots):
        h0 = before[slot:slot + 1].double().cpu() if slot >= 0 else None
        ro, rs = naive_recurrent_gated_delta_rule(*(x[None, n:n + 1] for x in (qd, kd, vd, g, beta)), 0.6, h0, True)
        check(o[n:n + 1], ro[0], 5e-3, f"o of sequence {n}")
        finals.append(rs[0])
    exp = _expected_pool(before, None, slots, None, finals)
    check(pool[used], exp[used], TOL[state_dtype], "pool")
    untouched = [i for i in range(9) if i not in used]
    assert torch.equal(pool[untouched], before[untouched]), "a slot outside state_indices changed"


# ---------------------------------------------------------------------------------------------------- GDN chunk
def route_short_inputs(monkeypatch, path: str):
    """path "fused": every input takes fused_chunk.py's one-launch kernel (HYBRIDSERVE_GDN_FUSED_MAX_TOKENS); else
    the three kernels, their prep chunk.py's ("chunk"), chunk_prep.py's ("registers") or chunk.py's up to X and
    chunk_prep.py's W, U kernel after it ("split"; HYBRIDSERVE_GDN_PREP); chunk.py's prep, then the state pass with
    the output fused in ("state-out": chunk_state_out.py, HYBRIDSERVE_GDN_STATE_OUT; "-aqk": its in-chunk attention
    made by the prep; "-x": V' from X, no W, U). A "-doubling" suffix: the prep inverts the diagonal blocks of
    (I + A) by doubling products (HYBRIDSERVE_GDN_DIAG_INVERSE)."""
    base = path.removesuffix("-doubling")
    state_out = {"state-out": "fused", "state-out-aqk": "fused-aqk", "state-out-x": "fused-x",
                 "state-out-x-aqk": "fused-x-aqk"}.get(base, "split")
    monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", state_out)
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "1000000" if base == "fused" else "0")
    monkeypatch.setenv("HYBRIDSERVE_GDN_PREP", base if base in ("registers", "split") else "scratch")
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", "doubling" if base != path else "substitution")


CHUNK_PATHS = ["chunk", "chunk-doubling", "registers", "split", "fused", "fused-doubling", "state-out", "state-out-aqk",
               "state-out-x", "state-out-x-aqk"]


@pytest.mark.parametrize("path", ["blocked", "rows", "chunk-doubling", "registers", "registers-doubling", "split",
                                  "split-rows", "fused", "fused-doubling", "state-out", "state-out-aqk",
                                  "state-out-x", "state-out-x-aqk"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdn_chunk_dense(dtype, path, monkeypatch):
    """Every way to X = (I + A)^{-1} of the three-kernel path's prep kernel: by 16 x 16 blocks, their diagonal blocks
    by forward substitution (default) or by doubling products, and row by row; the prep with its tiles in
    registers, or split in two kernels; the one-launch kernel for short inputs; the output fused into the state pass."""
    monkeypatch.setenv("HYBRIDSERVE_GDN_BLOCKED_INVERSE", "0" if path.endswith("rows") else "1")
    route_short_inputs(monkeypatch, {"blocked": "chunk", "rows": "chunk", "split-rows": "split"}.get(path, path))
    q, k, v, g, beta = gdn_inputs((2, 100), 11, dtype)  # one full and one partial chunk
    h0 = torch.randn(2, H, K, V, generator=gen(12)).to(DEV)
    ht = torch.empty(2, H, K, V, device=DEV)
    o = chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht)
    ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), 0.6, *f64(h0), True)
    assert o.dtype == dtype and o.shape == v.shape
    check(o, ref_o, TOL[dtype], "o")
    check(ht, ref_s, TOL[dtype], "final state")


@pytest.mark.parametrize("lower_only", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdn_prep_scratch_lower_blocks_only(dtype, lower_only, monkeypatch):
    """The prep's LOWER_ONLY config (a chunk_configs_gpu.py candidate): its (I + A)^-1 scratch round trip skips the
    blocks above the diagonal. With the scratch filled with NaN first, the forward is still right (nothing reads an
    unwritten block) and those blocks stay NaN (nothing wrote them); without LOWER_ONLY they are zeros. With the
    inverse kept for the backward (STORE_X) X is whole either way: its upper blocks zeros."""
    import triton

    from hybridserve.kernels.gated_delta_rule import chunk as gdn_chunk

    monkeypatch.setenv("HYBRIDSERVE_GDN_BLOCKED_INVERSE", "1")
    route_short_inputs(monkeypatch, "chunk")
    kern = gdn_chunk._gdn_chunk_prep_kernel
    monkeypatch.setattr(kern, "configs", [triton.Config({"LOWER_ONLY": lower_only}, num_warps=4, num_stages=2)])
    kern.cache.clear()
    seen = []

    def run(*args, _run=kern.run, **kwargs):
        args[7].fill_(float("nan"))  # Xbuf, the scratch
        seen.append(args[7])
        return _run(*args, **kwargs)
    monkeypatch.setattr(kern, "run", run)
    q, k, v, g, beta = gdn_inputs((2, 100), 17, dtype)
    h0 = torch.randn(2, H, K, V, generator=gen(18)).to(DEV)
    ht = torch.empty(2, H, K, V, device=DEV)
    o = chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht)
    ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), 0.6, *f64(h0), True)
    check(o, ref_o, TOL[dtype], "o")
    check(ht, ref_s, TOL[dtype], "final state")
    upper = seen[-1].view(2, 100, H, 64)[0, :16, :, 16:]  # rows 0-15 of the first chunk: blocks right of (0, 0)
    assert bool(upper.isnan().all()) if lower_only else bool((upper == 0).all())
    _, X, _ = chunk_gdn_fwd(q, k, v, g, beta, 0.6, keep_inverse=True)
    assert bool((X[0, :16, :, 16:] == 0).all()) and bool(X[0, :100].isfinite().all())
    kern.cache.clear()




with triton_cpu.interpreted_definitions():  # a kernel of the test's own, built like the kernel modules' ones
    @triton.jit
    def _diagonal_inverses_probe(a, t, DOUBLING: tl.constexpr):
        """One program around chunk_prep.diagonal_inverses: four [16, 16] blocks in, their inverses out."""
        o = tl.arange(0, 16)
        p = o[:, None] * 16 + o[None, :]
        T0, T1, T2, T3 = diagonal_inverses(tl.load(a + p), tl.load(a + 256 + p), tl.load(a + 512 + p),
                                           tl.load(a + 768 + p), DOUBLING)
        tl.store(t + p, T0)
        tl.store(t + 256 + p, T1)
        tl.store(t + 512 + p, T2)
        tl.store(t + 768 + p, T3)

    @triton.jit
    def _doubling_inverse_probe(a, t, N: tl.constexpr):
        """One program around chunk_prep.doubling_inverse on one [N, N] tile."""
        o = tl.arange(0, N)
        p = o[:, None] * N + o[None, :]
        tl.store(t + p, doubling_inverse(tl.load(a + p), N))

@pytest.mark.parametrize("method", ["substitution", "doubling"])
def test_gdn_diagonal_inverses(method):
    """Both ways to invert (I + A)'s 16 x 16 diagonal blocks against float64 torch.linalg.inv, on blocks where every
    power of A up to the 15th matters (a near-full subdiagonal: (I + A)^{-1} has (-0.95)^{i-j} below the diagonal,
    so a doubling that stopped at A^7 would be off by 0.95^8 ~ 0.66), random ones, and zero."""
    g = gen(31)
    lower = torch.tril(torch.ones(16, 16), -1)
    sub = torch.diag(torch.ones(15), -1)
    blocks = torch.stack([0.95 * sub + 0.05 * lower * torch.rand(16, 16, generator=g),
                          -0.9 * sub,
                          lower * (2 * torch.rand(16, 16, generator=g) - 1) * 0.5,
                          torch.zeros(16, 16)])
    out = torch.empty_like(blocks)
    _diagonal_inverses_probe[(1,)](blocks.to(DEV), t := out.to(DEV), DOUBLING=method == "doubling")
    eye = torch.eye(16, dtype=torch.float64)
    for i, a in enumerate(blocks.double()):
        check(t[i], torch.linalg.inv(eye + a), 1e-6, f"block {i}")


def test_gdn_doubling_inverse_32():
    """fused_chunk.py's BT = 32 chunk by doubling (powers up to A^31: one doubling more than 16 x 16) against float64
    torch.linalg.inv, on a near-full subdiagonal where (I + A)^{-1}[31, 0] = 0.97^31 ~ 0.39."""
    a = 0.97 * torch.diag(torch.ones(31), -1) + 0.02 * torch.tril(torch.rand(32, 32, generator=gen(32)), -1)
    _doubling_inverse_probe[(1,)](a.to(DEV), t := torch.empty(32, 32, device=DEV), N=32)
    check(t, torch.linalg.inv(torch.eye(32, dtype=torch.float64) + a.double()), 1e-6, "32 x 32")


GRAD_TOL = {torch.float32: dict(dq=1e-5, dk=1e-5, dv=1e-5, dg=1e-5, dbeta=1e-5, dh0=1e-5),
            # fla's test tolerances for the chunked GDN backward
            torch.bfloat16: dict(dq=8e-3, dk=8e-3, dv=8e-3, dg=2e-2, dbeta=2e-2, dh0=8e-3)}


@pytest.mark.parametrize("inverse", ["substitution", "doubling"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdn_chunk_backward(dtype, inverse, monkeypatch):
    """The Triton backward (dq, dk, dv, dg, dbeta, dh0) against autograd through the float64 recurrence; its
    recomputed X with either way to the diagonal blocks' inverses."""
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", inverse)
    q, k, v, g, beta = gdn_inputs((2, 100), 17, dtype)
    g = F.logsigmoid(torch.randn(2, 100, H, generator=gen(18)) + 2).to(DEV)  # visible decay
    h0 = torch.randn(2, H, K, V, generator=gen(19)).to(DEV)
    do = torch.randn(2, 100, H, V, generator=gen(20)).to(dtype).to(DEV)
    dht = torch.randn(2, H, K, V, generator=gen(21)).to(DEV)
    leaves = [x.double().cpu().requires_grad_(True) for x in (q, k, v, g, beta, h0)]
    o, s = naive_recurrent_gated_delta_rule(*leaves[:5], 0.7, leaves[5], True)
    ((o * do.double().cpu()).sum() + (s * dht.double().cpu()).sum()).backward()
    grads = chunk_gdn_bwd(q, k, v, g, beta, 0.7, h0, do, dht)
    for name, got, leaf, x in zip(["dq", "dk", "dv", "dg", "dbeta", "dh0"], grads, leaves, (q, k, v, g, beta, h0)):
        assert got.shape == x.shape and got.dtype == x.dtype, name
        check(got, leaf.grad, GRAD_TOL[dtype][name], name)
    # no initial state, no final-state gradient
    leaves = [x.double().cpu().requires_grad_(True) for x in (q, k, v, g, beta)]
    o, _ = naive_recurrent_gated_delta_rule(*leaves, 0.7, None, False)
    (o * do.double().cpu()).sum().backward()
    grads = chunk_gdn_bwd(q, k, v, g, beta, 0.7, None, do, None)
    assert grads[5] is None
    for name, got, leaf in zip(["dq", "dk", "dv", "dg", "dbeta"], grads, leaves):
        check(got, leaf.grad, GRAD_TOL[dtype][name], name + " (no states)")


@pytest.mark.parametrize("path", CHUNK_PATHS)
def test_gdn_chunk_strong_decay_no_initial_state(path, monkeypatch):
    """Decays down to e^-20 per token: e^G underflows inside a chunk; nothing may overflow (a partial last chunk:
    the prep kernels' padding rows must not produce e^{0 - G})."""
    route_short_inputs(monkeypatch, path)
    q, k, v, _, beta = gdn_inputs((1, 70), 13, torch.float32)
    g = (-20 * torch.rand(1, 70, H, generator=gen(14))).to(DEV)
    ht = torch.empty(1, H, K, V, device=DEV)
    o = chunk_gdn_fwd(q, k, v, g, beta, None, final_state=ht)
    ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), None, None, True)
    check(o, ref_o, 1e-5, "o")
    check(ht, ref_s, 1e-5, "final state")


@pytest.mark.parametrize("path", CHUNK_PATHS)
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.bfloat16])
def test_gdn_chunk_varlen_pool(state_dtype, path, monkeypatch):
    route_short_inputs(monkeypatch, path)
    lens = [1, 64, 70, 5, 9]
    slots = [4, 1, 6, -1, 0]
    has = [1, 0, 1, 1, 1]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int64, device=DEV)
    TT = sum(lens)
    dtype = torch.bfloat16
    q, k, v, g, beta = gdn_inputs((1, TT), 15, dtype)
    pool, init = pool_with(7, state_dtype, 16)
    for s in slots:
        if s >= 0:
            pool[s] = init[s]
    before = pool.clone()
    o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=pool, final_state=pool,
                      state_indices=torch.tensor(slots, dtype=torch.int32, device=DEV),
                      has_initial_state=torch.tensor(has, dtype=torch.int32, device=DEV), cu_seqlens=cu)
    assert o.shape == v.shape
    finals, cu_l = [], cu.tolist()
    qd, kd, vd, gd, bd = f64(q, k, v, g, beta)
    for n, slot in enumerate(slots):
        s, e = cu_l[n], cu_l[n + 1]
        h0 = before[slot:slot + 1].double().cpu() if slot >= 0 and has[n] else None
        ro, rs = naive_recurrent_gated_delta_rule(qd[:, s:e], kd[:, s:e], vd[:, s:e], gd[:, s:e], bd[:, s:e], None,
                                                  h0, True)
        check(o[:, s:e], ro, TOL[dtype], f"o of sequence {n}")
        finals.append(rs[0])
    used = [s for s in slots if s >= 0]
    exp = _expected_pool(before, None, slots, has, finals)
    check(pool[used], exp[used], TOL[dtype], "pool")
    untouched = [i for i in range(7) if i not in used]
    assert torch.equal(pool[untouched], before[untouched]), "a slot outside state_indices changed"


@pytest.mark.parametrize("route", ["state-out", "state-out-aqk", "state-out-x", "state-out-x-aqk"])
@pytest.mark.parametrize("BV,warps,stages", [(16, 4, 1), (32, 8, 2), (64, 4, 2)])
def test_gdn_chunk_state_out_tiles(BV, warps, stages, route, monkeypatch):
    """The output fused into the state pass (chunk_state_out.py) at several V blocks (V = 48: a partial one), warps
    and pipelining depths, its in-chunk attention made here or by the prep, V' from W, U or from X: against the
    float64 reference, and against the split route: with the same rounding points, both differ from the reference
    alike; V' from X rounds elsewhere, so it must be as close to the reference as the split route is. Its launches
    are the prep and the fused pass only."""
    global H, K, V
    saved = H, K, V
    H, K, V = 2, 32, 48
    try:
        route_short_inputs(monkeypatch, route)
        q, k, v, g, beta = gdn_inputs((2, 100), 21, torch.bfloat16)
        h0 = torch.randn(2, H, K, V, generator=gen(22)).to(DEV)
        ht = torch.empty(2, H, K, V, device=DEV)
        phases = []
        o = chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht, BV_state=BV,
                          num_warps_state=warps, num_stages_state=stages, _phases=phases)
        assert [name for name, _ in phases] == ["prep", "state_out"]
        ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), 0.6, *f64(h0), True)
        err_o = check(o, ref_o, TOL[torch.bfloat16], "o")
        err_s = check(ht, ref_s, TOL[torch.bfloat16], "final state")
        monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", "split")
        ht_split = torch.empty_like(ht)
        o_split = chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht_split)
        if "-x" in route:
            assert err_o <= 1.25 * rel_rmse(o_split, ref_o) and err_s <= 1.25 * rel_rmse(ht_split, ref_s)
        else:
            check(o, o_split.double().cpu(), 2e-3, "o against the split route")
            assert torch.allclose(ht, ht_split, rtol=1e-4, atol=1e-4), "the final states of the two routes differ"
        # the tile that crashed on the H200 is refused with one message, before anything runs
        monkeypatch.setenv("HYBRIDSERVE_GDN_STATE_OUT", "fused")
        with pytest.raises(ValueError, match="crashed on the H200"):
            chunk_gdn_fwd(q, k, v, g, beta, 0.6, initial_state=h0, final_state=ht, BV_state=32, num_warps_state=4,
                          num_stages_state=1)
    finally:
        H, K, V = saved


@pytest.mark.parametrize("inverse", ["substitution", "doubling"])
@pytest.mark.parametrize("BT,BV", [(16, 16), (16, 32), (32, 16)])
def test_gdn_fused_chunk_tiles(BT, BV, inverse, monkeypatch):
    """The one-launch kernel at each chunk size it accepts and two V splits, its BT x BT inverse either way, float32
    (1e-5 vs float64): the chunk size and the inverse change only where rounding happens, never the math."""
    monkeypatch.setenv("HYBRIDSERVE_GDN_DIAG_INVERSE", inverse)
    q, k, v, g, beta = gdn_inputs((2, 77), 31, torch.float32)
    h0 = torch.randn(2, H, K, V, generator=gen(32)).to(DEV)
    ht = torch.empty(2, H, K, V, device=DEV)
    o = fused_chunk_gdn_fwd(*token_major(q, k, v, g, beta), 0.6, 2, 77, h0, None, None, ht, None, BT=BT, BV=BV)
    ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), 0.6, *f64(h0), True)
    check(o.view(v.shape), ref_o, 1e-5, "o")
    check(ht, ref_s, 1e-5, "final state")
    prepared = token_major(q, k, v, g, beta)
    with pytest.raises(ValueError, match="BT must be"):
        fused_chunk_gdn_fwd(*prepared, 0.6, 2, 77, BT=64)
    with pytest.raises(ValueError, match="states must be"):
        fused_chunk_gdn_fwd(*prepared, 0.6, 2, 77, h0[:, :, :, :8])
    with pytest.raises(ValueError, match="dense states need 2 rows"):
        fused_chunk_gdn_fwd(*prepared, 0.6, 2, 77, h0[:1])
    with pytest.raises(ValueError, match="A_log and dt_bias"):
        fused_chunk_gdn_fwd(*prepared, 0.6, 2, 77, A_log=torch.zeros(H, device=DEV))


def test_gdn_fused_chunk_dispatch(monkeypatch):
    """chunk_gdn_fwd sends inputs of at most HYBRIDSERVE_GDN_FUSED_MAX_TOKENS tokens (counted on the host) to the
    one-launch kernel, larger ones and `_phases` profiling to the three kernels; 0 sends none; unset, the default
    (512 tokens) applies at the head dims it was timed at only."""
    from hybridserve.kernels import _triton_utils
    from hybridserve.kernels.gated_delta_rule import chunk as chunk_mod

    calls = []
    real = chunk_mod.fused_chunk_gdn_fwd
    monkeypatch.setattr(chunk_mod, "fused_chunk_gdn_fwd",
                        lambda *a, **kw: calls.append(a[0].shape[0]) or real(*a, **kw))
    q, k, v, g, beta = gdn_inputs((1, 40), 33, torch.float32)
    monkeypatch.delenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", raising=False)
    chunk_gdn_fwd(q, k, v, g, beta)  # head dims never timed on the GPU: no one-launch route by default
    assert calls == []
    monkeypatch.setattr(_triton_utils, "TUNED_HEAD_DIMS", frozenset({(q.shape[-1], v.shape[-1])}))
    chunk_gdn_fwd(q, k, v, g, beta)
    assert calls == [40]
    calls.clear()
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "39")
    chunk_gdn_fwd(q, k, v, g, beta)
    assert calls == []
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "40")
    fused = chunk_gdn_fwd(q, k, v, g, beta)
    assert calls == [40]
    chunk_gdn_fwd(q, k, v, g, beta, _phases=[])
    assert calls == [40]
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "0")
    check(fused, chunk_gdn_fwd(q, k, v, g, beta).double(), 1e-5, "fused vs three kernels")
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "lots")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GDN_FUSED_MAX_TOKENS"):
        chunk_gdn_fwd(q, k, v, g, beta)


@pytest.mark.parametrize("dims", [(3, 64, 64), (1, 24, 40)])
def test_other_head_dims_stay_in_bounds(dims):
    """Odd head counts, K = V = 64 (SmolLM2's head dim) and non-power-of-two dims: every kernel, forward and
    backward, against the references (and, under the interpreter, the bounds check on every load and store)."""
    global H, K, V
    saved = H, K, V
    H, K, V = dims
    try:
        q, k, v, g, beta = gdn_inputs((1, 70), 61, torch.bfloat16)
        h0 = torch.randn(1, H, K, V, generator=gen(62)).to(DEV)
        ht = torch.empty(1, H, K, V, device=DEV)
        ref_o, ref_s = naive_recurrent_gated_delta_rule(*f64(q, k, v, g, beta), None, *f64(h0), True)
        o = chunk_gdn_fwd(q, k, v, g, beta, None, initial_state=h0, final_state=ht)
        check(o, ref_o, 5e-3, "gdn chunk o")
        check(ht, ref_s, 5e-3, "gdn chunk state")
        o = fused_recurrent_gdn_fwd(q, k, v, g, beta, initial_state=h0, final_state=ht)
        check(o, ref_o, 5e-3, "gdn recurrent o")
        do = torch.randn(1, 70, H, V, generator=gen(63)).to(torch.bfloat16).to(DEV)
        leaves = [x.double().cpu().requires_grad_(True) for x in (q, k, v, g, beta, h0)]
        ro, _ = naive_recurrent_gated_delta_rule(*leaves[:5], None, leaves[5], True)
        (ro * do.double().cpu()).sum().backward()
        for name, got, leaf in zip(["dq", "dk", "dv", "dg", "dbeta", "dh0"],
                                   chunk_gdn_bwd(q, k, v, g, beta, K**-0.5, h0, do, None), leaves):
            check(got, leaf.grad, GRAD_TOL[torch.bfloat16][name], name)
        gk = F.logsigmoid(torch.randn(1, 70, H, K, generator=gen(64))).to(DEV) / 4
        ref_o, ref_s = naive_recurrent_gla(*f64(q, k, v, gk), None, *f64(h0), True)
        o = chunk_gla_fwd(q, k, v, gk, None, initial_state=h0, final_state=ht)
        check(o, ref_o, 5e-3, "gla chunk o")
        o = fused_recurrent_gla_fwd(q, k, v, gk, initial_state=h0, final_state=ht)
        check(o, ref_o, 5e-3, "gla recurrent o")
        leaves = [x.double().cpu().requires_grad_(True) for x in (q, k, v, gk, h0)]
        ro, _ = naive_recurrent_gla(*leaves[:4], None, leaves[4], True)
        (ro * do.double().cpu()).sum().backward()
        for name, got, leaf in zip(["dq", "dk", "dv", "dgk", "dh0"],
                                   chunk_gla_bwd(q, k, v, gk, None, h0, do, None), leaves):
            check(got, leaf.grad, 2e-2 if name == "dgk" else 8e-3, "gla " + name)
    finally:
        H, K, V = saved
