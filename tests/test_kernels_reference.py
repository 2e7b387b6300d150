"""The plain-PyTorch GDN / GLA references (`kernels/*/naive.py`) and the public ops in `hybridserve.kernels`.

The recurrent and chunked forms are checked against each other across chunk boundaries, and both against
matrix forms of the recurrences written out here (method.md §3.3, §3.4), so the references are not only
checked against themselves.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hybridserve import kernels
from hybridserve.kernels.gated_delta_rule import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from hybridserve.kernels.gla import naive_chunk_gla, naive_recurrent_gla

B, H, K, V = 2, 3, 16, 24  # K != V on purpose: a transposed state would not fit
LENGTHS = [1, 7, 64, 65, 100]
CHUNKS = [16, 64]
# log-decay ranges: "strong" forgets within a few tokens (and underflows e^G over a chunk), "weak" barely decays
DECAYS = {"strong": (-20.0, -1.0), "weak": (-0.01, 0.0)}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster when other jobs share the 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gdn_inputs(T, decay="weak", dtype=torch.float64, seed=0, b=B, h=H, k=K, v=V):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = DECAYS[decay]
    q = F.normalize(torch.randn(b, T, h, k, generator=gen, dtype=torch.float64), dim=-1)
    kk = F.normalize(torch.randn(b, T, h, k, generator=gen, dtype=torch.float64), dim=-1)
    vv = torch.randn(b, T, h, v, generator=gen, dtype=torch.float64)
    g = lo + (hi - lo) * torch.rand(b, T, h, generator=gen, dtype=torch.float64)
    beta = torch.rand(b, T, h, generator=gen, dtype=torch.float64)
    s0 = torch.randn(b, h, k, v, generator=gen, dtype=torch.float64)
    return q.to(dtype), kk.to(dtype), vv.to(dtype), g, beta, s0


def gla_inputs(T, decay="weak", dtype=torch.float64, seed=0, b=B, h=H, k=K, v=V):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = DECAYS[decay]
    q = torch.randn(b, T, h, k, generator=gen, dtype=torch.float64)
    kk = torch.randn(b, T, h, k, generator=gen, dtype=torch.float64) * 0.5
    vv = torch.randn(b, T, h, v, generator=gen, dtype=torch.float64)
    gk = lo + (hi - lo) * torch.rand(b, T, h, k, generator=gen, dtype=torch.float64)
    s0 = torch.randn(b, h, k, v, generator=gen, dtype=torch.float64)
    return q.to(dtype), kk.to(dtype), vv.to(dtype), gk, s0


def assert_close(a, b, tol):
    assert a.shape == b.shape, (a.shape, b.shape)
    err = (a.double() - b.double()).abs().max().item()
    assert err <= tol, f"max |diff| {err:.3e} > {tol:.1e}"


# ----------------------------------------------------------------------------------------- recurrent vs chunked
@pytest.mark.parametrize("decay", list(DECAYS))
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("T", LENGTHS)
def test_gdn_recurrent_matches_chunked(T, chunk, decay):
    torch.manual_seed(0)
    q, k, v, g, beta, s0 = gdn_inputs(T, decay, seed=T * 100 + chunk)
    o_r, s_r = naive_recurrent_gated_delta_rule(q, k, v, g, beta, 0.3, s0, True)
    o_c, s_c = naive_chunk_gated_delta_rule(q, k, v, g, beta, 0.3, s0, True, chunk_size=chunk)
    assert o_r.dtype == o_c.dtype == torch.float64 and s_r.dtype == s_c.dtype == torch.float64
    assert o_c.shape == (B, T, H, V) and s_c.shape == (B, H, K, V)
    assert torch.isfinite(o_c).all() and torch.isfinite(s_c).all()
    assert_close(o_c, o_r, 1e-8)
    assert_close(s_c, s_r, 1e-8)
    # no initial state = a zero state
    o_r0, s_r0 = naive_recurrent_gated_delta_rule(q, k, v, g, beta, 0.3, None, True)
    o_c0, s_c0 = naive_chunk_gated_delta_rule(q, k, v, g, beta, 0.3, None, True, chunk_size=chunk)
    assert_close(o_c0, o_r0, 1e-8)
    assert_close(s_c0, s_r0, 1e-8)
    o_z, _ = naive_chunk_gated_delta_rule(q, k, v, g, beta, 0.3, torch.zeros_like(s0), False, chunk_size=chunk)
    assert_close(o_z, o_c0, 1e-12)
    if decay == "weak":  # the initial state matters (with strong decay it may be forgotten at once)
        assert (o_c0 - o_c).abs().max() > 1e-3


@pytest.mark.parametrize("decay", list(DECAYS))
@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("T", LENGTHS)
def test_gla_recurrent_matches_chunked(T, chunk, decay):
    torch.manual_seed(0)
    q, k, v, gk, s0 = gla_inputs(T, decay, seed=T * 100 + chunk)
    o_r, s_r = naive_recurrent_gla(q, k, v, gk, 0.3, s0, True)
    o_c, s_c = naive_chunk_gla(q, k, v, gk, 0.3, s0, True, chunk_size=chunk)
    assert o_c.shape == (B, T, H, V) and s_c.shape == (B, H, K, V)
    assert torch.isfinite(o_c).all() and torch.isfinite(s_c).all()
    assert_close(o_c, o_r, 1e-8)
    assert_close(s_c, s_r, 1e-8)
    o_r0, s_r0 = naive_recurrent_gla(q, k, v, gk, 0.3, None, True)
    o_c0, s_c0 = naive_chunk_gla(q, k, v, gk, 0.3, None, True, chunk_size=chunk)
    assert_close(o_c0, o_r0, 1e-8)
    assert_close(s_c0, s_r0, 1e-8)
    if decay == "weak":
        assert (o_c0 - o_c).abs().max() > 1e-3


@pytest.mark.parametrize(
    "fn",
    [naive_recurrent_gated_delta_rule, naive_chunk_gated_delta_rule, kernels.chunk_gated_delta_rule,
     kernels.fused_recurrent_gated_delta_rule],
)
def test_gdn_no_final_state_returns_none(fn):
    q, k, v, g, beta, s0 = gdn_inputs(9)
    o, s = fn(q, k, v, g, beta, None, s0, False)
    assert s is None and o.shape == (B, 9, H, V)
    o, s = fn(q, k, v, g, beta)
    assert s is None


@pytest.mark.parametrize(
    "fn", [naive_recurrent_gla, naive_chunk_gla, kernels.chunk_gla, kernels.fused_recurrent_gla]
)
def test_gla_no_final_state_returns_none(fn):
    q, k, v, gk, s0 = gla_inputs(9)
    o, s = fn(q, k, v, gk, None, s0, False)
    assert s is None and o.shape == (B, 9, H, V)
    o, s = fn(q, k, v, gk)
    assert s is None


def test_default_scale_is_inverse_sqrt_key_dim():
    q, k, v, g, beta, s0 = gdn_inputs(5)
    assert_close(naive_chunk_gated_delta_rule(q, k, v, g, beta, None, s0)[0],
                 naive_chunk_gated_delta_rule(q, k, v, g, beta, K**-0.5, s0)[0], 1e-12)
    q, k, v, gk, s0 = gla_inputs(5)
    assert_close(naive_chunk_gla(q, k, v, gk, None, s0)[0], naive_chunk_gla(q, k, v, gk, K**-0.5, s0)[0], 1e-12)


def test_initial_state_is_not_modified():
    q, k, v, g, beta, s0 = gdn_inputs(20)
    before = s0.clone()
    for fn in (naive_recurrent_gated_delta_rule, naive_chunk_gated_delta_rule):
        fn(q, k, v, g, beta, None, s0, True)
    q, k, v, gk, _ = gla_inputs(20)
    for fn in (naive_recurrent_gla, naive_chunk_gla):
        fn(q, k, v, gk, None, s0, True)
    assert torch.equal(s0, before)


def test_splitting_a_sequence_carries_the_state():
    """Running [0, t) then [t, T) from the returned state equals one pass (what prefill + decode relies on)."""
    q, k, v, g, beta, s0 = gdn_inputs(50, seed=3)
    head = [x[:, :37] for x in (q, k, v, g, beta)]
    tail = [x[:, 37:] for x in (q, k, v, g, beta)]
    o_full, s_full = naive_chunk_gated_delta_rule(q, k, v, g, beta, None, s0, True, chunk_size=16)
    o1, s1 = naive_chunk_gated_delta_rule(*head, None, s0, True, chunk_size=16)
    o2, s2 = naive_recurrent_gated_delta_rule(*tail, None, s1, True)
    assert_close(torch.cat([o1, o2], 1), o_full, 1e-10)
    assert_close(s2, s_full, 1e-10)
    q, k, v, gk, s0 = gla_inputs(50, seed=3)
    o_full, s_full = naive_chunk_gla(q, k, v, gk, None, s0, True, chunk_size=16)
    o1, s1 = naive_chunk_gla(q[:, :37], k[:, :37], v[:, :37], gk[:, :37], None, s0, True, chunk_size=16)
    o2, s2 = naive_recurrent_gla(q[:, 37:], k[:, 37:], v[:, 37:], gk[:, 37:], None, s1, True)
    assert_close(torch.cat([o1, o2], 1), o_full, 1e-10)
    assert_close(s2, s_full, 1e-10)


# ------------------------------------------------------------------------- independent matrix forms (float64)
def gdn_matrix_form(q, k, v, g, beta, scale, s0):
    """method.md §3.3 in the V×K orientation, one head at a time:
    M_t = α_t M_{t-1} (I - β_t k_t k_tᵀ) + β_t v_t k_tᵀ,  o_t = M_t (scale q_t);  the state [K, V] is M_Tᵀ."""
    b_, T, h_, k_ = q.shape
    out = torch.zeros(b_, T, h_, v.shape[-1], dtype=torch.float64)
    final = torch.zeros(b_, h_, k_, v.shape[-1], dtype=torch.float64)
    eye = torch.eye(k_, dtype=torch.float64)
    for b in range(b_):
        for h in range(h_):
            M = s0[b, h].T.clone()
            for t in range(T):
                kt, vt = k[b, t, h][:, None], v[b, t, h][:, None]
                alpha, bt = torch.exp(g[b, t, h]), beta[b, t, h]
                M = alpha * M @ (eye - bt * kt @ kt.T) + bt * vt @ kt.T
                out[b, t, h] = M @ (scale * q[b, t, h])
            final[b, h] = M.T
    return out, final


def gla_matrix_form(q, k, v, gk, scale, s0):
    """method.md §3.4: S_t = diag(exp gk_t) S_{t-1} + k_t v_tᵀ,  o_t = S_tᵀ (scale q_t)."""
    b_, T, h_, _ = q.shape
    out = torch.zeros(b_, T, h_, v.shape[-1], dtype=torch.float64)
    final = torch.zeros_like(s0)
    for b in range(b_):
        for h in range(h_):
            S = s0[b, h].clone()
            for t in range(T):
                S = torch.diag(torch.exp(gk[b, t, h])) @ S + torch.outer(k[b, t, h], v[b, t, h])
                out[b, t, h] = S.T @ (scale * q[b, t, h])
            final[b, h] = S
    return out, final


@pytest.mark.parametrize("decay", list(DECAYS))
def test_gdn_matches_matrix_form(decay):
    q, k, v, g, beta, s0 = gdn_inputs(11, decay, seed=7, b=2, h=2, k=4, v=3)
    ref_o, ref_s = gdn_matrix_form(q, k, v, g, beta, 0.7, s0)
    for fn, extra in ((naive_recurrent_gated_delta_rule, {}), (naive_chunk_gated_delta_rule, {"chunk_size": 4})):
        o, s = fn(q, k, v, g, beta, 0.7, s0, True, **extra)
        assert_close(o, ref_o, 1e-10)
        assert_close(s, ref_s, 1e-10)


def test_gdn_single_step_by_hand():
    """One token, one head, from a known state: the delta rule replaces the value stored under k."""
    k = torch.tensor([1.0, 0.0], dtype=torch.float64)
    v = torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64)
    S0 = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)  # [K, V]
    g = torch.tensor(-0.5, dtype=torch.float64)
    beta = 1.0
    # beta = 1 and unit k: the row of the decayed state read by k is overwritten with v; the other row only decays
    expected = torch.stack([v, torch.exp(g) * S0[1]])
    shape = lambda x, *d: x.reshape(1, 1, 1, *d)  # noqa: E731
    q = torch.tensor([0.0, 1.0], dtype=torch.float64)
    o, s = naive_recurrent_gated_delta_rule(
        shape(q, 2), shape(k, 2), shape(v, 3), g.reshape(1, 1, 1), torch.ones(1, 1, 1, dtype=torch.float64) * beta,
        1.0, S0[None, None], True,
    )
    assert_close(s[0, 0], expected, 1e-12)
    assert_close(o[0, 0, 0], expected[1], 1e-12)


@pytest.mark.parametrize("decay", list(DECAYS))
def test_gla_matches_matrix_form(decay):
    q, k, v, gk, s0 = gla_inputs(11, decay, seed=7, b=2, h=2, k=4, v=3)
    ref_o, ref_s = gla_matrix_form(q, k, v, gk, 0.7, s0)
    for fn, extra in ((naive_recurrent_gla, {}), (naive_chunk_gla, {"chunk_size": 4})):
        o, s = fn(q, k, v, gk, 0.7, s0, True, **extra)
        assert_close(o, ref_o, 1e-10)
        assert_close(s, ref_s, 1e-10)


# ----------------------------------------------------------------------------------------------- gradients
def test_gdn_chunked_gradcheck():
    torch.manual_seed(0)
    q, k, v, g, beta, s0 = gdn_inputs(5, "weak", seed=11, b=1, h=2, k=3, v=2)
    g = -torch.rand_like(g)  # a visible decay
    inputs = tuple(x.clone().requires_grad_(True) for x in (q, k, v, g, beta, s0))

    def fn(q, k, v, g, beta, s0):
        return naive_chunk_gated_delta_rule(q, k, v, g, beta, 0.8, s0, True, chunk_size=4)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_gla_chunked_gradcheck():
    torch.manual_seed(0)
    q, k, v, gk, s0 = gla_inputs(5, "weak", seed=11, b=1, h=2, k=3, v=2)
    gk = -torch.rand_like(gk)
    inputs = tuple(x.clone().requires_grad_(True) for x in (q, k, v, gk, s0))

    def fn(q, k, v, gk, s0):
        return naive_chunk_gla(q, k, v, gk, 0.8, s0, True, chunk_size=4)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)


def test_chunked_gradients_match_recurrent_gradients():
    """Autograd through the chunk form gives the gradients of the recurrence (float64, across chunks)."""
    q, k, v, g, beta, s0 = gdn_inputs(21, "weak", seed=5)
    w = torch.randn(B, 21, H, V, dtype=torch.float64)
    grads = []
    for fn, extra in ((naive_recurrent_gated_delta_rule, {}), (naive_chunk_gated_delta_rule, {"chunk_size": 8})):
        xs = [x.clone().requires_grad_(True) for x in (q, k, v, g, beta, s0)]
        o, s = fn(*xs[:5], None, xs[5], True, **extra)
        ((o * w).sum() + s.sum()).backward()
        grads.append([x.grad for x in xs])
    for a, b in zip(*grads):
        assert_close(b, a, 1e-8)
    q, k, v, gk, s0 = gla_inputs(21, "weak", seed=5)
    grads = []
    for fn, extra in ((naive_recurrent_gla, {}), (naive_chunk_gla, {"chunk_size": 8})):
        xs = [x.clone().requires_grad_(True) for x in (q, k, v, gk, s0)]
        o, s = fn(*xs[:4], None, xs[4], True, **extra)
        ((o * w).sum() + s.sum()).backward()
        grads.append([x.grad for x in xs])
    for a, b in zip(*grads):
        assert_close(b, a, 1e-8)


# -------------------------------------------------------------------------------------------- dtypes
GDN_FNS = [naive_recurrent_gated_delta_rule, naive_chunk_gated_delta_rule,
           kernels.chunk_gated_delta_rule, kernels.fused_recurrent_gated_delta_rule]
GLA_FNS = [naive_recurrent_gla, naive_chunk_gla, kernels.chunk_gla, kernels.fused_recurrent_gla]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fn", GDN_FNS)
def test_gdn_dtypes(fn, dtype):
    q, k, v, g, beta, s0 = gdn_inputs(70, dtype=dtype, seed=2)
    g, beta, s0 = g.float(), beta.float(), s0.float()  # the model keeps gates and the state in float32
    o, s = fn(q, k, v, g, beta, None, s0, True)
    assert o.dtype == dtype and s.dtype == torch.float32
    ref_o, ref_s = naive_recurrent_gated_delta_rule(q.double(), k.double(), v.double(), g.double(), beta.double(), None,
                                                    s0.double(), True)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    assert_close(o, ref_o, tol * max(1.0, ref_o.abs().max().item()))
    assert_close(s, ref_s, tol * max(1.0, ref_s.abs().max().item()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fn", GLA_FNS)
def test_gla_dtypes(fn, dtype):
    q, k, v, gk, s0 = gla_inputs(70, dtype=dtype, seed=2)
    gk, s0 = gk.float(), s0.float()
    o, s = fn(q, k, v, gk, None, s0, True)
    assert o.dtype == dtype and s.dtype == torch.float32
    ref_o, ref_s = naive_recurrent_gla(q.double(), k.double(), v.double(), gk.double(), None, s0.double(), True)
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    assert_close(o, ref_o, tol * max(1.0, ref_o.abs().max().item()))
    assert_close(s, ref_s, tol * max(1.0, ref_s.abs().max().item()))


def test_bfloat16_state_is_accepted():
    """A bf16 state from the cache (linear_state_dtype='bfloat16') is read back in float32 arithmetic."""
    q, k, v, g, beta, s0 = gdn_inputs(9, dtype=torch.float32)
    o, s = kernels.fused_recurrent_gated_delta_rule(q, k, v, g.float(), beta.float(), None, s0.bfloat16(), True)
    assert o.dtype == torch.float32 and s.dtype == torch.float32
    q, k, v, gk, s0 = gla_inputs(9, dtype=torch.float32)
    o, s = kernels.chunk_gla(q, k, v, gk.float(), None, s0.bfloat16(), True)
    assert o.dtype == torch.float32 and s.dtype == torch.float32


# ---------------------------------------------------------------------------------------- public ops
@pytest.mark.parametrize("T", [3, 64, 65, 130])
def test_public_gdn_ops_match_naive(T):
    q, k, v, g, beta, s0 = gdn_inputs(T, seed=T)
    q, k, v, g, beta, s0 = (x.float() for x in (q, k, v, g, beta, s0))
    ref_o, ref_s = naive_recurrent_gated_delta_rule(q, k, v, g, beta, 0.5, s0, True)
    for op in (kernels.chunk_gated_delta_rule, kernels.fused_recurrent_gated_delta_rule):
        o, s = op(q, k, v, g, beta, 0.5, s0, True)
        assert_close(o, ref_o, 1e-4)
        assert_close(s, ref_s, 1e-4)
    o, s = kernels.fused_recurrent_gated_delta_rule(q, k, v, g, beta, 0.5, s0, True)
    assert torch.equal(o, ref_o) and torch.equal(s, ref_s)
    o, s = kernels.chunk_gated_delta_rule(q, k, v, g, beta, 0.5, s0, True)
    ref_o, ref_s = naive_chunk_gated_delta_rule(q, k, v, g, beta, 0.5, s0, True)
    assert torch.equal(o, ref_o) and torch.equal(s, ref_s)


@pytest.mark.parametrize("T", [3, 64, 65, 130])
def test_public_gla_ops_match_naive(T):
    q, k, v, gk, s0 = gla_inputs(T, seed=T)
    q, k, v, gk, s0 = (x.float() for x in (q, k, v, gk, s0))
    ref_o, ref_s = naive_recurrent_gla(q, k, v, gk, 0.5, s0, True)
    for op in (kernels.chunk_gla, kernels.fused_recurrent_gla):
        o, s = op(q, k, v, gk, 0.5, s0, True)
        assert_close(o, ref_o, 1e-4 * max(1.0, ref_o.abs().max().item()))
        assert_close(s, ref_s, 1e-4 * max(1.0, ref_s.abs().max().item()))
    o, s = kernels.fused_recurrent_gla(q, k, v, gk, 0.5, s0, True)
    assert torch.equal(o, ref_o) and torch.equal(s, ref_s)
    o, s = kernels.chunk_gla(q, k, v, gk, 0.5, s0, True)
    ref_o, ref_s = naive_chunk_gla(q, k, v, gk, 0.5, s0, True)
    assert torch.equal(o, ref_o) and torch.equal(s, ref_s)


def test_public_api():
    assert set(kernels.__all__) == {"chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "chunk_gla",
                                    "fused_recurrent_gla"}


def test_gdn_chunk_stays_accurate_with_correlated_keys_in_float32():
    """Real keys are strongly correlated (transferred from one teacher head): the intra-chunk system is then
    far from the identity. A closed-form inverse cancels huge terms there; forward substitution must not."""
    torch.manual_seed(0)
    B, T, H, K = 1, 256, 2, 64
    base = torch.randn(1, 1, H, K)
    k = torch.nn.functional.normalize(base + 0.05 * torch.randn(B, T, H, K), dim=-1)
    q = torch.nn.functional.normalize(torch.randn(B, T, H, K), dim=-1)
    v = torch.randn(B, T, H, K)
    g, beta = torch.full((B, T, H), -1e-3), torch.full((B, T, H), 0.5)
    o_ref, s_ref = naive_recurrent_gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    o, s = naive_chunk_gated_delta_rule(q, k, v, g, beta, output_final_state=True)
    assert (o - o_ref).abs().max() <= 1e-5 * o_ref.abs().max()
    assert (s - s_ref).abs().max() <= 1e-5 * s_ref.abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an outer autocast must not lower the reference
        o_amp, _ = naive_chunk_gated_delta_rule(q, k, v, g, beta)
    assert o_amp.dtype == torch.float32 and torch.equal(o_amp, o)
