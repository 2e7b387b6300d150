"""The GLA forward kernels (fused recurrent, chunked) against float64 references through Triton's interpreter: the
tests of test_kernels_triton.py's GLA section, with its helpers and tolerances (float32 1e-5, bf16 5e-3): dense
tokens with states, strong decay, the intra-chunk weights A from each way of making them, packed tokens over a
state pool with padding and unused slots left bit-exact. The GLA backward's tests are in test_kernels_triton_bwd.py.
"""

from __future__ import annotations

from . import triton_cpu  # noqa: F401  (sets TRITON_INTERPRET before anything imports triton)

import pytest
import torch
import torch.nn.functional as F

from hybridserve.kernels.gla.naive import naive_recurrent_gla

triton = pytest.importorskip("triton")  # CI installs it; a bare machine skips

from .test_kernels_triton import (  # noqa: E402  (helpers only: importing test functions would run them twice)
    DEV, H, K, TOL, V, _expected_pool, check, f64, gen, gla_inputs, pool_with)
from hybridserve.kernels.gla.chunk import chunk_gla_fwd  # noqa: E402
from hybridserve.kernels.gla.fused_recurrent import fused_recurrent_gla_fwd  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["recurrent", "chunk"])
def test_gla_dense(kind, dtype):
    q, k, v, gk = gla_inputs((2, 45 if kind == "recurrent" else 100), 21, dtype)
    h0 = torch.randn(2, H, K, V, generator=gen(22)).to(DEV)
    ht = torch.empty(2, H, K, V, device=DEV)
    if kind == "recurrent":
        o = fused_recurrent_gla_fwd(q, k, v, gk, scale=0.4, initial_state=h0, final_state=ht)
    else:
        o = chunk_gla_fwd(q, k, v, gk, 0.4, initial_state=h0, final_state=ht)
    ref_o, ref_s = naive_recurrent_gla(*f64(q, k, v, gk), 0.4, *f64(h0), True)
    assert o.dtype == dtype and o.shape == v.shape
    check(o, ref_o, TOL[dtype], "o")
    check(ht, ref_s, TOL[dtype], "final state")


def test_gla_chunk_strong_decay():
    """Per-channel decays down to about e^-15 per token: the intra-chunk weights must stay finite and exact."""
    q, k, v, gk = gla_inputs((1, 80), 23, torch.float32, strong=True)
    ht = torch.empty(1, H, K, V, device=DEV)
    o = chunk_gla_fwd(q, k, v, gk, None, final_state=ht)
    ref_o, ref_s = naive_recurrent_gla(*f64(q, k, v, gk), None, None, True)
    check(o, ref_o, 1e-5, "o")
    check(ht, ref_s, 1e-5, "final state")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("strong", [False, True], ids=["decay", "strong-decay"])
def test_gla_intra_weights_both_kernels(strong, dtype, monkeypatch):
    """A, the intra-chunk weights scale * sum_c q_tc k_sc e^{B_tc - B_sc} (s <= t, one chunk), and B from each way
    (the cumsum and column kernels, or the level kernel alone) against float64, on packed sequences whose chunks end early (30 + 100 + 1 tokens): the column kernel (exact float32
    diagonal blocks) and the level kernel (every pair one product at the input's precision; per-token decays down to
    e^-15 must neither overflow nor lose the pairs far apart), both zero above the diagonal."""
    from hybridserve.kernels.gated_delta_rule.chunk import CHUNK, chunk_map
    from hybridserve.kernels.gla import chunk as gla_chunk

    lens = [30, 100, 1]
    cu = torch.tensor([0, 30, 130, 131], dtype=torch.int32, device=DEV)
    TT = sum(lens)
    q, k, _, gk = gla_inputs((TT,), 31 + strong, dtype, strong=strong)
    gcum = torch.empty(TT, H, K)
    starts = [s for n in range(len(lens)) for s in range(int(cu[n]), int(cu[n + 1]), CHUNK)]
    for s0 in starts:
        e0 = min(s0 + CHUNK, next(int(e) for e in cu[1:] if e > s0))
        gcum[s0:e0] = gk[s0:e0].cpu().cumsum(0)
    ref = torch.zeros(TT, H, CHUNK, dtype=torch.float64)
    qd, kd, gd = (x.double().cpu() for x in (q, k, gcum))
    for s0 in starts:
        e0 = min(s0 + CHUNK, next(int(e) for e in cu[1:] if e > s0))
        for t in range(s0, e0):
            w = torch.exp(gd[t][None] - gd[s0:t + 1]) * qd[t][None] * kd[s0:t + 1]  # [s, H, K]
            ref[t, :, :t + 1 - s0] = 0.7 * w.sum(-1).T
    chunk_seq, chunk_off, NT = chunk_map(cu, TT, CHUNK)
    levels = gla_chunk._gla_chunk_intra_levels_kernel
    # the interpreter registers an autotuned kernel's first config only: the level kernel under each (BK 16: two
    # K blocks of K = 32 accumulate)
    runs = [("columns", None)] + [("levels", triton.Config({"BK": bk}, num_warps=w, num_stages=1))
                                  for bk, w in gla_chunk.INTRA_LEVELS_CONFIGS]
    for method, cfg in runs:
        monkeypatch.setenv("HYBRIDSERVE_GLA_INTRA", method)
        if cfg is not None:
            monkeypatch.setattr(levels, "configs", [cfg])
            levels.cache.clear()
        A = torch.full((TT, H, CHUNK), float("nan"), device=DEV)
        B = torch.full((TT, H, K), float("nan"), device=DEV)
        gla_chunk.launch_intra(q.contiguous(), k.contiguous(), gk.contiguous(), B, A, cu, chunk_seq, chunk_off, 0.7,
                               0, 0, len(lens), NT, True, "ieee" if dtype == torch.float32 else "tf32", V)
        assert torch.isfinite(A).all(), (method, cfg)
        check(A, ref, TOL[dtype], f"A, {method} {cfg}")
        torch.testing.assert_close(B.cpu(), gcum, rtol=1e-6, atol=1e-6)  # B, made on the way, for the later kernels
    levels.cache.clear()
    monkeypatch.setenv("HYBRIDSERVE_GLA_INTRA", "rows")
    with pytest.raises(ValueError, match="HYBRIDSERVE_GLA_INTRA"):
        chunk_gla_fwd(q[None], k[None], q[None], gk[None])


@pytest.mark.parametrize("kind", ["recurrent", "chunk"])
def test_gla_varlen_pool(kind):
    lens = [7, 1, 66, 3] if kind == "chunk" else [7, 1, 12, 3]
    slots = [2, -1, 0, 3]
    has = [1, 1, 0, 1]
    cu = torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=DEV)
    TT = sum(lens)
    q, k, v, logits = gla_inputs((TT,), 24, torch.bfloat16)
    logits = torch.randn(TT, H, K, generator=gen(25)).to(DEV) * 3 + 2  # raw gate logits
    norm = 16.0
    pool, init = pool_with(5, torch.float32, 26)
    for s in slots:
        if s >= 0:
            pool[s] = init[s]
    before = pool.clone()
    idx = torch.tensor(slots, device=DEV)
    hasT = torch.tensor(has, dtype=torch.bool, device=DEV)
    if kind == "recurrent":
        o = fused_recurrent_gla_fwd(q, k, v, logits, scale=None, gate_logit_normalizer=norm, initial_state=pool,
                                    final_state=pool, state_indices=idx, has_initial_state=hasT, cu_seqlens=cu)
    else:
        gk = F.logsigmoid(logits) / norm
        o = chunk_gla_fwd(q, k, v, gk, None, initial_state=pool, final_state=pool, state_indices=idx,
                          has_initial_state=hasT, cu_seqlens=cu)
    qd, kd, vd, ld = f64(q, k, v, logits)
    gd = F.logsigmoid(ld) / norm
    finals, cu_l = [], cu.tolist()
    for n, slot in enumerate(slots):
        s, e = cu_l[n], cu_l[n + 1]
        h0 = before[slot:slot + 1].double().cpu() if slot >= 0 and has[n] else None
        ro, rs = naive_recurrent_gla(*(x[None, s:e] for x in (qd, kd, vd, gd)), None, h0, True)
        check(o[s:e], ro[0], 5e-3, f"o of sequence {n}")
        finals.append(rs[0])
    used = [s for s in slots if s >= 0]
    exp = _expected_pool(before, None, slots, has, finals)
    check(pool[used], exp[used], 5e-3, "pool")
    assert torch.equal(pool[[1, 4]], before[[1, 4]])


def test_gla_phases_rerun_reproduce_the_outputs():
    """`_phases` hands back the GLA forward's three launches and the backward's six (what chunk_configs_gpu.py and the
    benchmarks time one by one); re-run in order they rewrite the same outputs bit for bit (each phase only reads
    what the earlier ones wrote)."""
    from hybridserve.kernels.gla.chunk_bwd import chunk_gla_bwd

    q, k, v, gk = gla_inputs((2, 100), 24, torch.float32)
    h0 = torch.randn(2, H, K, V, generator=gen(25)).to(DEV)
    do = torch.randn(2, 100, H, V, generator=gen(26)).to(DEV)
    phases = []
    ht = torch.empty(2, H, K, V, device=DEV)
    o = chunk_gla_fwd(q, k, v, gk, 0.4, initial_state=h0, final_state=ht, _phases=phases)
    assert [name for name, _ in phases] == ["intra", "state", "out"]
    want = [o.clone(), ht.clone()]
    for x in (o, ht):
        x.fill_(float("nan"))
    for _, launch in phases:
        launch()
    assert torch.equal(o, want[0]) and torch.equal(ht, want[1])
    phases = []
    grads = chunk_gla_bwd(q, k, v, gk, 0.4, h0, do, ht, _phases=phases)
    assert [name for name, _ in phases] == ["intra", "state", "dh", "bwd_intra", "inter", "dv"]
    want = [g.clone() for g in grads]
    for g in grads:
        g.fill_(float("nan"))  # float32 inputs: the returned gradients are the kernels' own buffers
    for _, launch in phases:
        launch()
    assert all(torch.equal(g, w) for g, w in zip(grads, want))
