"""The GDN prefill prologue (kernels/gated_delta_rule/prefill_inputs.py) and the launches it saves.

* The prologue against the PyTorch path it replaces (`ops.gdn_gates`, `ops._l2norm`), on strided q, k, v, a, b views
  of one [TT, C] projection as serve/linear_core.py passes them; float32 and bf16, ragged token tails.
* chunk_gdn_fwd takes the prepared tensors without a copy, and reuses its chunk map for the same cu_seqlens tensor.
* gdn_chunk_pool on the Triton path, prologue on and off (HYBRIDSERVE_GDN_PREFILL_PROLOGUE) and folded into the
  one-launch chunk kernel (HYBRIDSERVE_GDN_FUSED_MAX_TOKENS), against the float64 reference; and the host-side
  launches of these paths, counted. GLA's chunked forward shares the same chunk-map cache.

CPU through Triton's interpreter (tests/triton_cpu.py), tiny sizes.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)
from .triton_fixtures import interpreted_module, triton_ops  # noqa: F401  (pytest fixtures)

import gc

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from hybridserve import kernels
from hybridserve.kernels import ops
from hybridserve.kernels.gated_delta_rule.naive import naive_recurrent_gated_delta_rule

pytest.importorskip("triton")

triton_cpu.import_kernel_modules()  # interpreted (TRITON_INTERPRET set for the imports), then released
from hybridserve.kernels.gated_delta_rule import chunk as gchunk  # noqa: E402
from hybridserve.kernels.gated_delta_rule import prefill_inputs as gp  # noqa: E402

DEV = triton_cpu.DEVICE
H, K, V = 2, 32, 16
# On a GPU tl.exp is ex2.approx(x log2e) (relative error about |x| 2^-24 + 2 ulp; torch's expf: 2 ulp), and the
# projection has a = -60: a few 1e-6. The interpreter computes with numpy's exp.
GATE_RTOL = 1e-5 if triton_cpu.ON_GPU else 2e-6


REAL_CHUNK_INDEX = gchunk.chunk_index


@pytest.fixture
def fresh_chunk_map(monkeypatch):
    """An empty chunk-map cache and a count of chunk_index calls."""
    calls = []
    real = REAL_CHUNK_INDEX

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(gchunk, "chunk_index", counting)
    monkeypatch.setattr(gchunk, "_chunk_map_cache", None)
    return calls


def gen(seed):
    return torch.Generator().manual_seed(seed)


def projection(TT, dtype, seed, lead=()):
    """q, k, v, a, b as serve/linear_core.py gets them: column slices of one [TT, C] projection viewed as heads
    (token stride C, last-dim stride 1), b and a the last 2H columns; plus A_log, dt_bias [H]. Raw a spans the
    softplus regimes: very negative (log1p(exp(a)) = exp(a)), ordinary, around and past the threshold 20."""
    gn = gen(seed)
    C = 2 * H * K + H * V + 2 * H
    proj = torch.randn(TT, C + 3, generator=gn) * 2  # 3 more columns: nothing may assume C is the row stride
    proj[:, C - H:C] = torch.randn(TT, H, generator=gn) * 6
    proj[::7, C - H] = -60.0
    proj[1::7, C - 1] = torch.tensor([19.5, 20.5, 35.0, -20.0, 0.0, 3.0, -9.0]).repeat(TT)[: len(range(1, TT, 7))]
    proj = proj.to(dtype).to(DEV)
    q = proj[:, : H * K].view(TT, H, K)
    k = proj[:, H * K: 2 * H * K].view(TT, H, K)
    v = proj[:, 2 * H * K: 2 * H * K + H * V].view(TT, H, V)
    b, a = proj[:, C - 2 * H: C - H], proj[:, C - H: C]
    A_log = torch.log(torch.rand(H, generator=gn) * 8 + 1).to(DEV)
    dt_bias = (torch.rand(H, generator=gn) - 2).to(DEV)
    if lead:
        q, k, v, a, b = (x.unsqueeze(0) for x in (q, k, v, a, b))
    return q, k, v, a, b, A_log, dt_bias


# ------------------------------------------------------------------------------------------------ the prologue
@pytest.mark.parametrize("TT", [1, 16, 37, 133])  # one token, one whole block, ragged tails (BT = 16 here)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_prologue_matches_pytorch(dtype, TT):
    q, k, v, a, b, A_log, dt_bias = projection(TT, dtype, TT)
    if TT > 1:  # (a single token's view gets canonical strides)
        assert q.stride() == (2 * H * K + H * V + 2 * H + 3, K, 1) and a.stride() == (q.stride(0), 1)
    for l2, silu in ((True, False), (False, False), (True, True), (False, True)):
        qt, kt, vt, g, beta = gp.gdn_prefill_inputs(q, k, v, a, b, A_log, dt_bias, use_qk_l2norm=l2, silu=silu)
        ref_g, ref_beta = ops.gdn_gates(a, b, A_log, dt_bias)
        ref_q, ref_k, ref_v = (F.silu(q), F.silu(k), F.silu(v)) if silu else (q, k, v)
        ref_q, ref_k = (ops._l2norm(ref_q), ops._l2norm(ref_k)) if l2 else (ref_q, ref_k)
        for out, ref in ((qt, ref_q), (kt, ref_k), (vt, ref_v), (g, ref_g), (beta, ref_beta)):
            assert out.shape == ref.shape and out.dtype == ref.dtype and out.is_contiguous()
        # q, k: float32 math as in _l2norm, only the order of the sum differs; bf16: at most one ulp apart
        tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=2**-7, atol=1e-6)
        torch.testing.assert_close(qt, ref_q, **tol)
        torch.testing.assert_close(kt, ref_k, **tol)
        if silu:  # float32 math rounded to the input dtype, as F.silu; the sigmoid may differ in its last bits
            torch.testing.assert_close(vt, ref_v, **tol)
        else:
            assert torch.equal(vt, v)
        if not l2 and not silu:
            assert torch.equal(qt, q) and torch.equal(kt, k)
        # the gates are float32 from exact inputs in either dtype
        torch.testing.assert_close(g, ref_g, rtol=GATE_RTOL, atol=0)
        torch.testing.assert_close(beta, ref_beta, rtol=GATE_RTOL, atol=0)
    assert (g[::7, 0] < 0).all() and (g[::7, 0] > -1e-20).all(), "tiny decays of very negative a must survive"


def test_prologue_leading_batch_dim_and_block_sizes():
    """[1, TT, H, D] inputs keep their shapes; any block size gives the same result."""
    q, k, v, a, b, A_log, dt_bias = projection(45, torch.float32, 3, lead=(1,))
    outs = [gp.gdn_prefill_inputs(q, k, v, a, b, A_log, dt_bias, BT=bt) for bt in (None, 8, 64)]
    for x, out in zip((q, k, v, a, b), outs[0]):
        assert out.shape == x.shape
    for other in outs[1:]:
        for x, y in zip(outs[0], other):
            assert torch.equal(x, y)


class Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def test_chunk_takes_prepared_inputs_without_copies():
    q, k, v, a, b, A_log, dt_bias = projection(37, torch.bfloat16, 5)
    prepared = gp.gdn_prefill_inputs(q, k, v, a, b, A_log, dt_bias)
    with Recorder() as rec:
        out = gchunk.token_major(*prepared)
    assert all(op.is_view for op in rec.ops), rec.ops  # views only: no copy, no conversion, no allocation
    for x, y in zip(prepared, out):
        assert x.data_ptr() == y.data_ptr() and y.is_contiguous()
    assert out[3].dtype == torch.float32 and out[4].dtype == torch.float32
    # the strided views themselves are copied, as before
    copies = gchunk.token_major(q, k, v, *ops.gdn_gates(a, b, A_log, dt_bias))
    assert all(c.is_contiguous() for c in copies) and copies[0].data_ptr() != q.data_ptr()


# ------------------------------------------------------------------------------------------------ the chunk map
def test_chunk_map_cache(fresh_chunk_map):
    calls = fresh_chunk_map

    def misses(cu, TT):
        """chunk_map(cu, TT) computes a new map (and gives chunk_index's answer)."""
        before = len(calls)
        got = gchunk.chunk_map(cu, TT)
        fresh = len(calls) == before + 1
        for x, y in zip(got[:2], REAL_CHUNK_INDEX(cu, TT)):
            assert torch.equal(x, y)
        return fresh

    cu = torch.tensor([0, 5, 70, 71], dtype=torch.int32, device=DEV)
    assert misses(cu, 71)
    first = gchunk.chunk_map(cu, 71)
    assert gchunk.chunk_map(cu, 71) is first and len(calls) == 1  # same tensor, same size: a hit
    assert misses(cu, 80)  # another token count
    assert misses(cu, 71)  # (one entry: the last call's)
    assert misses(cu.clone(), 71)  # a different tensor with the same values
    assert misses(cu, 71) and not misses(cu, 71)
    cu[2] = 64  # in place
    assert misses(cu, 71) and not misses(cu, 71)
    cu[1:][0] = 6  # in place through a view: the version counter is shared
    assert misses(cu, 71) and not misses(cu, 71)
    assert misses(cu[1:], 65)  # a view is another tensor
    # a freed tensor never matches, even when a new one lands on its memory
    assert misses(torch.tensor([0, 3, 9], device=DEV), 9)
    gc.collect()
    assert misses(torch.tensor([0, 3, 9], device=DEV), 9)


def test_chunk_map_cache_inference_tensors(fresh_chunk_map):
    """vLLM runs under inference_mode: no version counter, so only the object itself is the key."""
    calls = fresh_chunk_map
    with torch.inference_mode():
        cu = torch.tensor([0, 5, 70, 71], device=DEV)
        first = gchunk.chunk_map(cu, 71)
        assert gchunk.chunk_map(cu, 71) is first and len(calls) == 1
        gchunk.chunk_map(cu.clone(), 71)
        assert len(calls) == 2


# ------------------------------------------------------------------------------------------- the state-pool op
def _reference(q, k, v, a, b, A_log, dt_bias, cu, slots, has, pool, scale, silu=False):
    """float64: [SiLU,] gates and L2 norm from the same (rounded) inputs, then the recurrence sequence by
    sequence."""
    qd, kd, vd, ad, bd, Ad, dd = (x.double().cpu() for x in (q, k, v, a, b, A_log, dt_bias))
    if silu:
        qd, kd, vd = F.silu(qd), F.silu(kd), F.silu(vd)
    qd = qd * torch.rsqrt(qd.pow(2).sum(-1, keepdim=True) + 1e-6)
    kd = kd * torch.rsqrt(kd.pow(2).sum(-1, keepdim=True) + 1e-6)
    g, beta = -Ad.exp() * F.softplus(ad + dd), torch.sigmoid(bd)
    exp_pool, outs, cu = pool.double().cpu().clone(), [], cu.tolist()
    for n, slot in enumerate(slots):
        s, e = cu[n], cu[n + 1]
        h0 = exp_pool[slot:slot + 1] if slot >= 0 and has[n] else None
        o, ht = naive_recurrent_gated_delta_rule(*(x[None, s:e] for x in (qd, kd, vd, g, beta)), scale, h0, True)
        outs.append(o[0])
        if slot >= 0:
            exp_pool[slot] = ht[0]
    return outs, exp_pool


def rel_rmse(out, ref):
    out, ref = out.double().cpu(), ref.double().cpu()
    assert torch.isfinite(out).all()
    return ((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt().clamp_min(1e-30)).item()


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gdn_chunk_pool_prologue_on_and_off(triton_ops, fresh_chunk_map, monkeypatch, dtype, silu):
    lens, slots, has = [3, 70, 17], [4, -1, 1], [1, 1, 0]  # across a chunk boundary, a padding row, a fresh start
    TT = sum(lens)
    cu = torch.tensor([0, 3, 73, 90], dtype=torch.int32, device=DEV)
    q, k, v, a, b, A_log, dt_bias = projection(TT, dtype, 7)
    pool = torch.randn(6, H, K, V, generator=gen(8)).to(DEV)
    idx = torch.tensor(slots, dtype=torch.int32, device=DEV)
    has_t = torch.tensor(has, dtype=torch.int32, device=DEV)
    ref_o, ref_pool = _reference(q, k, v, a, b, A_log, dt_bias, cu, slots, has, pool, 0.4, silu)
    used = [s for s in slots if s >= 0]
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    spy = {"prologue": 0, "pytorch": 0}

    def counted(name, fn):
        def wrapped(*args, **kwargs):
            spy[name] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(gp, "gdn_prefill_inputs", counted("prologue", gp.gdn_prefill_inputs))
    monkeypatch.setattr(ops, "_gdn_pool_inputs", counted("pytorch", ops._gdn_pool_inputs))
    results = {}
    for switch in ("1", "0", "fused"):  # prologue kernel, PyTorch preparation, one launch (fused_chunk.py, raw inputs)
        monkeypatch.setenv("HYBRIDSERVE_GDN_PREFILL_PROLOGUE", "0" if switch == "0" else "1")
        monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "1000" if switch == "fused" else "0")
        p = pool.clone()
        o = kernels.gdn_prefill_varlen(q, k, v, None, None, cu, p, idx, has_t, 0.4, use_qk_l2norm=True, a=a, b=b,
                                       A_log=A_log, dt_bias=dt_bias, qkv_silu=silu)
        assert o.shape == v.shape and o.dtype == dtype
        for n, (s, e) in enumerate(zip(cu.tolist()[:-1], cu.tolist()[1:])):
            assert rel_rmse(o[s:e], ref_o[n]) <= tol, (switch, n)
        assert rel_rmse(p[used], ref_pool[used]) <= tol, switch
        untouched = [i for i in range(6) if i not in used]
        assert torch.equal(p[untouched], pool[untouched])
        results[switch] = (o, p)
    assert spy == {"prologue": 1, "pytorch": 1}, spy  # the fused kernel prepares its inputs itself
    assert rel_rmse(results["1"][0], results["0"][0]) <= tol / 10
    assert rel_rmse(results["fused"][0], results["1"][0]) <= tol  # chunks of 16 round elsewhere than chunks of 64
    assert len(fresh_chunk_map) == 1, "the second call must reuse the chunk map of the same cu_seqlens"


class LaunchCounter(TorchDispatchMode):
    """Counts what would be kernel launches on a GPU: PyTorch ops other than views and allocations, and Triton
    launches (run with this mode off: the interpreter's own tensor traffic is not ours)."""

    def __init__(self):
        super().__init__()
        self.torch_ops, self.triton = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (func.is_view or name.startswith(("empty", "new_empty"))):
            self.torch_ops.append(name)
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        from triton.runtime import interpreter

        real = interpreter.GridExecutor.__call__

        def launch(executor, *args, **kwargs):
            self.triton += 1
            with _disable_current_modes():
                return real(executor, *args, **kwargs)

        self._restore = (interpreter.GridExecutor, real)
        interpreter.GridExecutor.__call__ = launch
        return super().__enter__()

    def __exit__(self, *exc):
        cls, real = self._restore
        cls.__call__ = real
        return super().__exit__(*exc)


@pytest.mark.skipif(triton_cpu.ON_GPU, reason="counts the interpreter's launches")
def test_launches_per_layer(triton_ops, fresh_chunk_map, monkeypatch):
    """One layer's gdn_chunk_pool: the prologue path is 4 Triton launches and nothing else once the chunk map is
    cached (bf16 projections, int32 cu_seqlens, as in serving); the PyTorch path adds its elementwise ops; a short
    input on the one-launch chunk kernel (HYBRIDSERVE_GDN_FUSED_MAX_TOKENS) is 1, prologue included, no chunk map."""
    q, k, v, a, b, A_log, dt_bias = projection(40, torch.bfloat16, 9)
    cu = torch.tensor([0, 15, 40], dtype=torch.int32, device=DEV)
    pool = torch.zeros(3, H, K, V, device=DEV)
    idx = torch.tensor([0, 2], dtype=torch.int32, device=DEV)

    def layer():  # the op's own function: a dispatch mode does not see inside a custom op
        with LaunchCounter() as c:
            ops.gdn_chunk_pool._init_fn(q, k, v, None, None, a, b, A_log, dt_bias, pool, idx, cu, None, 0.5, True,
                                        True)  # (serving's call: the raw projection, SiLU in the prologue)
        return c

    monkeypatch.setenv("HYBRIDSERVE_GDN_PREFILL_PROLOGUE", "0")
    old_first, old_next = layer(), layer()
    monkeypatch.setenv("HYBRIDSERVE_GDN_PREFILL_PROLOGUE", "1")
    new = layer()
    print(f"PyTorch path: {len(old_first.torch_ops)} + {old_first.triton} launches (first layer), "
          f"{len(old_next.torch_ops)} + {old_next.triton} (next layers); prologue path: {len(new.torch_ops)} + "
          f"{new.triton}; PyTorch ops of the first layer: {old_first.torch_ops}")
    assert new.triton == 4 and new.torch_ops == []
    monkeypatch.setenv("HYBRIDSERVE_GDN_FUSED_MAX_TOKENS", "64")  # 40 tokens: the one-launch chunk kernel
    fused = layer()
    assert fused.triton == 1 and fused.torch_ops == []  # the prologue's work included
    assert old_next.triton == 3 and len(old_next.torch_ops) >= 20  # gates, L2 norm, the copy of v
    assert len(old_first.torch_ops) - len(old_next.torch_ops) >= 9  # the chunk map (cached from then on)


def test_gla_chunk_forward_shares_the_chunk_map(fresh_chunk_map):
    """GLA's chunked forward (gla_chunk_pool's Triton path) takes the step's cached chunk map as GDN's does: the
    second layer of a step with the same cu_seqlens builds none (it rebuilt it, ~10 launches, every call before)."""
    from hybridserve.kernels.gla.chunk import chunk_gla_fwd

    gn = gen(40)
    TT = 90
    q, k = torch.randn(TT, H, K, generator=gn), torch.randn(TT, H, K, generator=gn) * K**-0.5
    v = torch.randn(TT, H, V, generator=gn)
    gk = F.logsigmoid(torch.randn(TT, H, K, generator=gn) * 3 + 2) / 16
    cu = torch.tensor([0, 3, 73, 90], dtype=torch.int32)
    q, k, v, gk, cu = (x.to(DEV) for x in (q, k, v, gk, cu))
    first = chunk_gla_fwd(q, k, v, gk, cu_seqlens=cu)
    second = chunk_gla_fwd(q, k, v, gk, cu_seqlens=cu)
    assert len(fresh_chunk_map) == 1
    assert torch.equal(first, second)
    chunk_gla_fwd(q, k, v, gk, cu_seqlens=cu.clone())  # another tensor: a new map
    assert len(fresh_chunk_map) == 2
