"""Gated DeltaNet decode on a state pool, one token per sequence, on a persistent grid (Triton; an experiment).

The same step as fused_recurrent.py's kernel for T = 1 (the math and the reference are there and in naive.py):

    S <- exp(g) S;   S <- S + k (beta (v - S^T k))^T;   o = S^T (scale q)

Why a second kernel, and why the serving path does not use it by default (HYBRIDSERVE_GDN_DECODE=persistent does:
kernels/ops.py). Decode is a pure state stream (each
[K, BV] tile read once, written once), so its speed is the share of copy bandwidth it reaches. The one-tile-per-
program kernel reaches 91-94 % at 512 sequences with a float32 state, but 76-78 % at 64 and only 59-70 % with a
bfloat16 state (H200, docs/benchmarks/kernels.md). Here a fixed number of programs (a few per SM) walks the tiles
with a stride; three ways to keep more bytes in flight, all switches of this kernel:
- PREFETCH: issue the next tile's loads (into registers) before computing the current one. Measured on the H200
  (session 10): no gain with a float32 state (39.9-40.4 vs 41.3 us at batch 64), a loss with bf16 (the second tile
  doubles the registers per program, so fewer programs fit on an SM).
- fewer, longer-lived programs (per_sm): also no gain; bf16 needs more programs resident, not fewer.
- STAGES >= 2: Triton software-pipelines the loop and stages the next tiles' state through shared memory with
  cp.async (seen in the sm_90a PTX; registers then no longer bound the bytes in flight). Not yet timed.
A register bound is consistent with these numbers: the state is held in float32 registers whatever its dtype,
so an SM holds about half as many bf16 bytes in flight as float32 bytes (the compile report, specialised as a real
launch is: 128 registers for a bf16 [128, 32] tile in 2 warps, 8 programs per SM, 64 KB of state in flight;
float32 [128, 64] in 4 warps: 167 registers, 3 programs, 96 KB).

Tile t (0 <= t < N * H * NV) is sequence n = t // (H * NV), head h = (t // NV) % H, V block t % NV, so
consecutive programs share a sequence's q/k rows and neighbouring state memory. Padding slots (index < 0) are
neither read nor written; their output rows are computed from a zero state, as in fused_recurrent.py. No host
synchronisation: the launch is CUDA-graph safe (the grid depends only on N and the device).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .._triton_utils import cdiv, interpreting, next_pow2, on_tensor_device


@triton.jit
def _load_tile(t, num_tiles, q, k, v, g, beta, pool, state_idx,
               s_qn, s_qh, s_kn, s_kh, s_vn, s_vh, s_gn, s_gh, s_bn, s_bh, s_slot,
               H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NV: tl.constexpr,
               BK: tl.constexpr, BV: tl.constexpr):
    """Everything tile t needs, loaded (masked off when t is past the last tile): the float32 state tile, its
    slot and whether the slot is real, and the token's q, k, v block, raw gate and raw beta."""
    live = t < num_tiles
    i_n = t // (H * NV)
    i_h = (t // NV) % H
    i_v = t % NV
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = (o_k < K) & live
    m_v = (o_v < V) & live
    slot = tl.load(state_idx + i_n, mask=live, other=-1).to(tl.int64)
    ok = slot >= 0
    slot = tl.where(ok, slot, 0)
    p_h = pool + slot * s_slot + i_h * K * V + o_k[:, None] * V + o_v[None, :]
    b_h = tl.load(p_h, mask=m_k[:, None] & m_v[None, :] & ok, other=0.0).to(tl.float32)
    b_q = tl.load(q + i_n * s_qn + i_h * s_qh + o_k, mask=m_k, other=0.0).to(tl.float32)
    b_k = tl.load(k + i_n * s_kn + i_h * s_kh + o_k, mask=m_k, other=0.0).to(tl.float32)
    b_v = tl.load(v + i_n * s_vn + i_h * s_vh + o_v, mask=m_v, other=0.0).to(tl.float32)
    b_g = tl.load(g + i_n * s_gn + i_h * s_gh, mask=live, other=0.0).to(tl.float32)
    b_b = tl.load(beta + i_n * s_bn + i_h * s_bh, mask=live, other=0.0).to(tl.float32)
    return b_h, slot, ok, b_q, b_k, b_v, b_g, b_b


@triton.jit
def _gdn_decode_persistent_kernel(
    q, k, v, g, beta, A_log, dt_bias, o, pool, state_idx,
    scale, num_tiles,
    s_qn, s_qh, s_kn, s_kh, s_vn, s_vh, s_on, s_oh, s_gn, s_gh, s_bn, s_bh, s_slot,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, NV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    FUSED_GATE: tl.constexpr, QK_L2NORM: tl.constexpr, PREFETCH: tl.constexpr, STAGES: tl.constexpr = 1,
):
    pid = tl.program_id(0)
    step = tl.num_programs(0)
    o_k = tl.arange(0, BK)
    if PREFETCH:
        n_h, n_slot, n_ok, n_q, n_k, n_v, n_g, n_b = _load_tile(
            pid, num_tiles, q, k, v, g, beta, pool, state_idx, s_qn, s_qh, s_kn, s_kh, s_vn, s_vh, s_gn, s_gh,
            s_bn, s_bh, s_slot, H, K, V, NV, BK, BV)
    for t in tl.range(pid, num_tiles, step, num_stages=STAGES):
        if PREFETCH:
            b_h, slot, ok, b_q, b_k, b_v, b_g, b_b = n_h, n_slot, n_ok, n_q, n_k, n_v, n_g, n_b
            # the next tile's loads go out before this tile's arithmetic waits on its own
            n_h, n_slot, n_ok, n_q, n_k, n_v, n_g, n_b = _load_tile(
                t + step, num_tiles, q, k, v, g, beta, pool, state_idx, s_qn, s_qh, s_kn, s_kh, s_vn, s_vh, s_gn,
                s_gh, s_bn, s_bh, s_slot, H, K, V, NV, BK, BV)
        else:
            b_h, slot, ok, b_q, b_k, b_v, b_g, b_b = _load_tile(
                t, num_tiles, q, k, v, g, beta, pool, state_idx, s_qn, s_qh, s_kn, s_kh, s_vn, s_vh, s_gn, s_gh,
                s_bn, s_bh, s_slot, H, K, V, NV, BK, BV)
        i_n = t // (H * NV)
        i_h = (t // NV) % H
        o_v = (t % NV) * BV + tl.arange(0, BV)
        m_v = o_v < V
        if FUSED_GATE:
            x = b_g + tl.load(dt_bias + i_h).to(tl.float32)
            # softplus with torch's default threshold 20
            b_g = -tl.exp(tl.load(A_log + i_h).to(tl.float32)) * tl.where(
                x > 20.0, x, tl.log(1.0 + tl.exp(tl.minimum(x, 20.0))))
            b_b = tl.sigmoid(b_b)
        if QK_L2NORM:
            b_q = b_q / tl.sqrt(tl.sum(b_q * b_q, axis=0) + 1e-6)
            b_k = b_k / tl.sqrt(tl.sum(b_k * b_k, axis=0) + 1e-6)
        b_h = b_h * tl.exp(b_g)
        b_v = (b_v - tl.sum(b_h * b_k[:, None], axis=0)) * b_b
        b_h = b_h + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * (b_q * scale)[:, None], axis=0)
        tl.store(o + i_n * s_on + i_h * s_oh + o_v, b_o.to(o.dtype.element_ty), mask=m_v)
        p_h = pool + slot * s_slot + i_h * K * V + o_k[:, None] * V + o_v[None, :]
        tl.store(p_h, b_h.to(pool.dtype.element_ty), mask=(o_k < K)[:, None] & m_v[None, :] & ok)


@functools.lru_cache(maxsize=None)
def _cuda_multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _multiprocessors(device: torch.device) -> int:
    """SM count, cached (a device query per decode call would be host time on every layer)."""
    if device.type != "cuda" or interpreting():
        return 4
    return _cuda_multiprocessors(device.index if device.index is not None else torch.cuda.current_device())


def default_decode_config(K: int, V: int, state_dtype: torch.dtype) -> dict:
    """The best measured config (H200 sweeps, K = V = 128; docs/benchmarks/kernels.md): float32 40.4 / 278.9 us at
    batch 64 / 512 (session 10; the one-tile kernel: 41.3 / 277.4); bf16 at batch 512 167.6 us with the loop
    pipelined through shared memory, 3 stages, 2 warps, 4 programs per SM (session 11; the one-tile kernel 181.3 us;
    at batch 64 no persistent config beat the one-tile kernel's 25.7 us)."""
    if state_dtype in (torch.bfloat16, torch.float16):
        return dict(BV=min(next_pow2(V), 64), num_warps=2, per_sm=4, prefetch=False, stages=3)
    return dict(BV=min(next_pow2(V), 64), num_warps=4, per_sm=2, prefetch=True, stages=1)


@on_tensor_device
def gdn_decode_pool(q, k, v, g=None, beta=None, *, a=None, b=None, A_log=None, dt_bias=None, state_pool,
                    state_indices, scale=None, use_qk_l2norm=False, out=None, BV=None, num_warps=None,
                    per_sm=None, prefetch=None, stages=None):
    """One decode step for N sequences: q, k [N, H, K], v [N, H, V]; either (g, beta) [N, H] or the raw (a, b)
    [N, H] with A_log, dt_bias [H] (g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)). The state of
    sequence n is state_pool[state_indices[n]] ([slots, H, K, V], float32/bf16/fp16), updated in place.
    Returns o [N, H, V] in q's dtype. The tunables default to default_decode_config."""
    N, H, K = q.shape
    V = v.shape[-1]
    fused = a is not None
    if fused == (g is not None):
        raise ValueError("pass either (g, beta) or (a, b, A_log, dt_bias)")
    if fused and (b is None or A_log is None or dt_bias is None):
        raise ValueError("fused gating needs a, b, A_log and dt_bias")
    if state_pool.dim() != 4 or tuple(state_pool.shape[1:]) != (H, K, V) or \
            state_pool.stride()[1:] != (K * V, V, 1):
        raise ValueError(f"state_pool must be [slots, {H}, {K}, {V}] and contiguous inside a slot, "
                         f"got {tuple(state_pool.shape)} strides {state_pool.stride()}")
    if state_indices.shape[0] != N:
        raise ValueError(f"state_indices must have one entry per sequence ({N})")
    gate, wb = (a, b) if fused else (g, beta)
    for x in (q, k, v):
        if x.stride(-1) != 1:
            raise ValueError("q, k, v must be contiguous in their last dimension")
    cfg = default_decode_config(K, V, state_pool.dtype)
    BV = BV or cfg["BV"]
    num_warps = num_warps or cfg["num_warps"]
    per_sm = per_sm or cfg["per_sm"]
    prefetch = cfg["prefetch"] if prefetch is None else bool(prefetch)
    stages = stages or cfg["stages"]
    NV = cdiv(V, BV)
    num_tiles = N * H * NV
    scale = K**-0.5 if scale is None else float(scale)
    o = out if out is not None else torch.empty(N, H, V, dtype=q.dtype, device=q.device)
    if num_tiles == 0:
        return o
    programs = max(1, min(num_tiles, per_sm * _multiprocessors(q.device)))
    dummy = o
    _gdn_decode_persistent_kernel[(programs,)](
        q, k, v, gate, wb, A_log if fused else dummy, dt_bias if fused else dummy, o, state_pool, state_indices,
        scale, num_tiles,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0), o.stride(1),
        gate.stride(0), gate.stride(1), wb.stride(0), wb.stride(1), state_pool.stride(0),
        H=H, K=K, V=V, NV=NV, BK=next_pow2(K), BV=BV,
        FUSED_GATE=fused, QK_L2NORM=bool(use_qk_l2norm), PREFETCH=prefetch, STAGES=stages,
        num_warps=num_warps, num_stages=stages,
    )
    return o
