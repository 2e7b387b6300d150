"""Chunked Gated DeltaNet backward, Triton (chunk 64; K, V <= 128).

Gradients of chunk.py's forward. Per chunk c with S = state before the chunk, S' = state after it, M the causal
decay mask e^{G_t - G_i} [i <= t], D_w = diag(beta e^G), D_u = diag(beta):
    forward:  X = (I + A)^{-1},  W = X D_w K,  U = X D_u V,  V' = U - W S,
              O = scale (diag(e^G) Q S + (M * Q K^T) V'),  S' = e^{G_L} S + (K * e^{G_L - G})^T V'
    backward, sequential over chunks in reverse (kernel 2), dS' given:
        dV' = scale (M * Q K^T)^T dO + (K * e^{G_L - G}) dS'         (the first term: kernel 1, parallel)
        dS  = e^{G_L} dS' + scale (Q * e^G)^T dO - W^T dV'
    then per chunk in parallel (kernel 3):
        dQ = scale (diag(e^G) dO S^T + (M * dO V'^T) K),   dK = scale (M * dO V'^T)^T Q + diag(e^{G_L - G}) V' dS'^T
        dW = -dV' S^T,   dG from the decays of O and S'
    and the WY part (kernel 4):
        dX = dW (D_w K)^T + dV' (D_u V)^T,   dA = -(X^T dX X^T) restricted to i < t,
        dK += D_w X^T dW + (B + B^T) K with B = dA * beta_t e^{G_t - G_i},   dV = D_u X^T dV',
        dbeta, dG from D_w, D_u and A;   dg = reverse cumulative sum of dG within the chunk.
The forward is recomputed first (W, U, X, per-chunk states, V'). Float32 accumulation; dS', dV', dW and the
partial dK are kept in float32, or with the split layout and `grad_intermediates(K, V) == "input"` in the input dtype
(as fla keeps its dv, dw and dk: half the bytes of the four largest intermediates).

Two layouts of kernels 3 and 4, chosen by HYBRIDSERVE_GDN_BWD (or chunk_gdn_bwd's `variant`; unset: `split` at
the head dims where it was validated on the H200, SPLIT_VALIDATED, else `fused`): `fused` (the first one validated
on the H200: one program per chunk and head, full-K float32 accumulators, P^T through a global scratch tile, kernel
4's products in float32 on the CUDA cores) and `split` (chunk_bwd_split.py: programs per K block, no scratch,
tensor-core products, dS' stored in the input dtype). Same math; split is 2.3-3.1x faster on the H200
(benchmarks/kernels_bwd.py times both, kernel by kernel).
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from .._triton_common import locate_chunk, state_tile
from .._triton_utils import (cdiv, env_choice, next_pow2, on_tensor_device, state_pass_stages, tuned_configs,
                             tuned_dims_prune, tuned_head_dims)
from .chunk import CHUNK, _dot_prec, _gdn_chunk_state_kernel, default_state_tile, launch_prep, state_block_v
from .chunk_bwd_split import dqkw_split, store_dg_dbeta, wy_chunk, wy_split
from .chunk_bwd_wy import wy_scratch, wy_variant
from .chunk_prep import launch_wu


# (BV, num_warps, num_stages) of the dV'_intra kernel. Each V block's program forms the chunk's [64, 64] Q K^T again:
# at V = 128 BV 64 does it twice, BV 128 once. sm_90a (bf16, K = V = 128): BV 64 x 4 warps 120 registers, BV 128 x 4
# 148, x 8 80; no spills. H200 at 8 x 32K (seventeenth session, chunk_configs_gpu.py, each checked): BV 128 x 4 warps
# 1.12 ms at 3 stages, 1.20 at 2; x 8 warps 1.19 at 3; BV 64 1.46-1.60 (fla: 1.09).
# The 3-stage ones only at the TUNED_HEAD_DIMS (checked and timed there), the first three everywhere.
DV_LOCAL_CONFIGS = [(64, 4, 2), (128, 4, 2), (128, 8, 2), (128, 4, 3), (128, 8, 3)]
DV_LOCAL_EVERYWHERE = 3


@triton.autotune(configs=tuned_configs("_gdn_bwd_dv_local_kernel", [
    triton.Config({"BV": bv}, num_warps=w, num_stages=s) for bv, w, s in DV_LOCAL_CONFIGS]),
    key=["H", "K", "V", "DOT_PREC"], prune_configs_by={"early_config_prune": tuned_dims_prune(DV_LOCAL_EVERYWHERE)})
@triton.jit
def _gdn_bwd_dv_local_kernel(
    q, k, do, gcum, dv, scale, T, NTs, N, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """dV'_intra = scale (M * Q K^T)^T dO, per (V block, chunk, head)."""
    i_v = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, q, q, q, T, NTs, N, BT, False)
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    o_v = i_v * BV + tl.arange(0, BV)
    m_tv = m_t[:, None] & (o_v < V)[None, :]
    b_A = tl.zeros([BT, BT], dtype=tl.float32)  # [i, t] = k_i . q_t
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = (t0 * H + i_h) * K + o_t[:, None] * (H * K) + o_k[None, :]
        b_q = tl.load(q + p, mask=m, other=0.0)
        b_k = tl.load(k + p, mask=m, other=0.0)
        b_A += tl.dot(b_k, tl.trans(b_q), input_precision=DOT_PREC)
    b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    keep = (o_t[:, None] <= o_t[None, :]) & m_t[None, :]
    b_A = tl.where(keep, b_A * tl.exp(tl.where(keep, b_g[None, :] - b_g[:, None], 0.0)), 0.0) * scale
    p_v = (t0 * H + i_h) * V + o_t[:, None] * (H * V) + o_v[None, :]
    b_do = tl.load(do + p_v, mask=m_tv, other=0.0)
    b_dv = tl.dot(b_A.to(b_do.dtype), b_do, input_precision=DOT_PREC)
    tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)


@triton.jit
def _gdn_bwd_dh_kernel(
    q, k, w, do, gcum, dv, dhbuf, dht, dh0, scale, T, NTs,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    USE_DHT: tl.constexpr, STORE_DH0: tl.constexpr, DOT_PREC: tl.constexpr,
):
    """Reverse pass over the chunks of one (sequence, head, V block): dS' of every chunk, the full dV'."""
    i_v = tl.program_id(0)
    i_nh = tl.program_id(1)
    i_n = i_nh // H
    i_h = i_nh % H
    bos = i_n.to(tl.int64) * T
    c0 = i_n.to(tl.int64) * NTs
    n_chunks = tl.cdiv(T, BT)
    o_t = tl.arange(0, BT)
    o_k, o_v, m_k, m_v, m_h, p_hkv = state_tile(0, i_v, i_h, K, V, BK, BV)
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_DHT:
        b_dh = tl.load(dht + i_n.to(tl.int64) * (H * K * V) + p_hkv, mask=m_h, other=0.0).to(tl.float32)
    p_k = o_t[:, None] * (H * K) + o_k[None, :]
    p_v = o_t[:, None] * (H * V) + o_v[None, :]
    for i in range(0, n_chunks):
        i_t = n_chunks - 1 - i
        tl.store(dhbuf + (c0 + i_t) * (H * K * V) + p_hkv, b_dh, mask=m_h)
        t0 = bos + i_t * BT
        m_t = o_t < T - i_t * BT
        m_tk = m_t[:, None] & m_k[None, :]
        m_tv = m_t[:, None] & m_v[None, :]
        last = tl.minimum(BT, T - i_t * BT) - 1
        base_k = (t0 * H + i_h) * K
        base_v = (t0 * H + i_h) * V
        g_last = tl.load(gcum + (t0 + last) * H + i_h)
        b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
        b_k = tl.load(k + base_k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_kd = (b_k * tl.exp(tl.where(m_t, g_last - b_g, 0.0))[:, None]).to(k.dtype.element_ty)
        b_dv = tl.load(dv + base_v + p_v, mask=m_tv, other=0.0).to(tl.float32)
        b_dv += tl.dot(b_kd, b_dh.to(k.dtype.element_ty), input_precision=DOT_PREC)
        tl.store(dv + base_v + p_v, b_dv.to(dv.dtype.element_ty), mask=m_tv)
        b_q = tl.load(q + base_k + p_k, mask=m_tk, other=0.0).to(tl.float32)
        b_qg = (b_q * (tl.exp(b_g) * scale)[:, None]).to(q.dtype.element_ty)
        b_do = tl.load(do + base_v + p_v, mask=m_tv, other=0.0)
        b_w = tl.load(w + base_k + p_k, mask=m_tk, other=0.0)
        b_dh = (b_dh * tl.exp(g_last) + tl.dot(tl.trans(b_qg), b_do, input_precision=DOT_PREC)
                - tl.dot(tl.trans(b_w), b_dv.to(w.dtype.element_ty), input_precision=DOT_PREC))
    if STORE_DH0:
        tl.store(dh0 + i_n.to(tl.int64) * (H * K * V) + p_hkv, b_dh, mask=m_h)


def _dqk_configs():
    return tuned_configs("_gdn_bwd_dqkw_kernel", [
        triton.Config({"BV": bv}, num_warps=w, num_stages=s)
        for bv, w, s in [(32, 8, 2), (64, 8, 2), (32, 4, 2), (64, 4, 3)]])


@triton.autotune(configs=_dqk_configs(), key=["H", "K", "V", "DOT_PREC"])
@triton.jit
def _gdn_bwd_dqkw_kernel(
    q, k, vnew, do, gcum, hbuf, dhbuf, dv, dq, dk, dw, dg, ptmp, scale, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Per chunk: dQ (final), dK (O and S' parts), dW, and dG's O / S' parts (before the cumulative sum)."""
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, q, q, q, T, NTs, N, BT, False)
    o_t = tl.arange(0, BT)
    o_k = tl.arange(0, BK)
    m_t = o_t < eos - t0
    m_k = o_k < K
    m_tk = m_t[:, None] & m_k[None, :]
    n_valid = tl.minimum(BT, eos - t0)
    last = n_valid - 1
    base_k = (t0 * H + i_h) * K
    base_v = (t0 * H + i_h) * V
    p_k = base_k + o_t[:, None] * (H * K) + o_k[None, :]
    b_g = tl.load(gcum + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    g_last = tl.load(gcum + (t0 + last) * H + i_h)
    hbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    dhbuf += (i_c.to(tl.int64) * H + i_h) * (K * V)
    b_dq = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk = tl.zeros([BT, BK], dtype=tl.float32)
    b_dw = tl.zeros([BT, BK], dtype=tl.float32)
    b_ds = tl.zeros([BT, BT], dtype=tl.float32)
    b_hdh = tl.zeros([BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_tv = m_t[:, None] & m_v[None, :]
        p_v = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        p_h = o_k[:, None] * V + o_v[None, :]
        m_h = m_k[:, None] & m_v[None, :]
        b_h = tl.load(hbuf + p_h, mask=m_h, other=0.0)
        b_dh = tl.load(dhbuf + p_h, mask=m_h, other=0.0)
        b_vn = tl.load(vnew + p_v, mask=m_tv, other=0.0)
        b_dv = tl.load(dv + p_v, mask=m_tv, other=0.0)
        b_do = tl.load(do + p_v, mask=m_tv, other=0.0)
        b_dq += tl.dot(b_do, tl.trans(b_h.to(b_do.dtype)), input_precision=DOT_PREC)
        b_dk += tl.dot(b_vn, tl.trans(b_dh.to(b_vn.dtype)), input_precision=DOT_PREC)
        b_dw += tl.dot(b_dv.to(b_vn.dtype), tl.trans(b_h.to(b_vn.dtype)), input_precision=DOT_PREC)
        b_ds += tl.dot(b_do, tl.trans(b_vn.to(b_do.dtype)), input_precision=DOT_PREC)
        b_hdh += tl.sum(b_h.to(tl.float32) * b_dh, axis=1)
    b_q = tl.load(q + p_k, mask=m_tk, other=0.0)
    b_k = tl.load(k + p_k, mask=m_tk, other=0.0)
    b_qf = b_q.to(tl.float32)
    b_kf = b_k.to(tl.float32)
    # O inter-chunk part
    b_dq = b_dq * (tl.exp(b_g) * scale)[:, None]
    b_dG = tl.sum(b_qf * b_dq, axis=1)
    # S' part
    b_dk = b_dk * tl.exp(tl.where(m_t, g_last - b_g, 0.0))[:, None]
    b_kdk = tl.sum(b_kf * b_dk, axis=1)
    b_dG -= b_kdk
    dG_last = tl.exp(g_last) * tl.sum(b_hdh, axis=0) + tl.sum(b_kdk, axis=0)
    b_dG += tl.where(o_t == last, dG_last, 0.0)
    # O intra-chunk part
    keep = (o_t[:, None] >= o_t[None, :]) & m_t[:, None]
    b_P = tl.where(keep, b_ds * tl.exp(tl.where(keep, b_g[:, None] - b_g[None, :], 0.0)), 0.0) * scale
    b_qk = tl.dot(b_q, tl.trans(b_k), input_precision=DOT_PREC)
    b_E = b_P * b_qk
    b_dG += tl.sum(b_E, axis=1) - tl.sum(b_E, axis=0)
    b_Pd = b_P.to(b_k.dtype)
    b_dq += tl.dot(b_Pd, b_k, input_precision=DOT_PREC)
    # dK needs P^T. tl.trans of a tile that lives in the MMA accumulator layout is miscompiled on Hopper by Triton
    # 3.4 - 3.7.0 at 64-wide tiles (wrong dk: fla-org/flash-linear-attention#640), i.e. exactly at head dim 64.
    # So P goes through this program's [BT, BT] scratch tile and comes back transposed by the load's indexing.
    p_tmp = ptmp + (i_c.to(tl.int64) * H + i_h) * (BT * BT)
    tl.store(p_tmp + o_t[:, None] * BT + o_t[None, :], b_Pd)
    tl.debug_barrier()
    b_PdT = tl.load(p_tmp + o_t[None, :] * BT + o_t[:, None])
    b_dk += tl.dot(b_PdT, b_q, input_precision=DOT_PREC)
    tl.store(dq + p_k, b_dq.to(dq.dtype.element_ty), mask=m_tk)
    tl.store(dk + p_k, b_dk, mask=m_tk)
    tl.store(dw + p_k, -b_dw, mask=m_tk)
    tl.store(dg + (t0 + o_t) * H + i_h, b_dG, mask=m_t)


@triton.jit
def _gdn_bwd_wy_kernel(
    k, v, beta, gcum, Xbuf, dw, dv, dk_part, dg_part, dk, dvout, dbeta, dg, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """Per chunk: the WY part (through X, A, D_w, D_u) and the final dk, dv, dbeta, dg."""
    i_c, i_h, t0, o_t, m_t, b_g, b_beta, b_bg = wy_chunk(k, gcum, beta, T, NTs, N, H, BT)
    r = o_t[:, None]
    c = o_t[None, :]
    base_k = (t0 * H + i_h) * K
    base_v = (t0 * H + i_h) * V
    b_X = tl.load(Xbuf + (t0 * H + i_h) * BT + r * (H * BT) + c, mask=m_t[:, None], other=0.0)
    # pass 1: dX and K K^T
    b_dX = tl.zeros([BT, BT], dtype=tl.float32)
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p, mask=m, other=0.0)
        b_dw = tl.load(dw + p, mask=m, other=0.0)
        b_kk += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        b_kb = b_k.to(tl.float32) * b_bg[:, None]
        b_dX += tl.dot(b_dw, tl.trans(b_kb), input_precision="ieee")
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p, mask=m, other=0.0).to(tl.float32)
        b_du = tl.load(dv + p, mask=m, other=0.0)
        b_dX += tl.dot(b_du, tl.trans(b_v * b_beta[:, None]), input_precision="ieee")
    lower = (c < r) & m_t[:, None]
    b_dA = -tl.dot(tl.dot(tl.trans(b_X), b_dX, input_precision="ieee"), tl.trans(b_X), input_precision="ieee")
    b_decay = tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0))
    b_dA = tl.where(lower, b_dA, 0.0)
    b_E = b_dA * b_kk * b_decay  # dA * A / beta_t
    b_dbeta = tl.sum(b_E, axis=1)
    b_E = b_E * b_beta[:, None]
    b_dG = tl.load(dg_part + (t0 + o_t) * H + i_h, mask=m_t, other=0.0)
    b_dG += tl.sum(b_E, axis=1) - tl.sum(b_E, axis=0)
    b_B = b_dA * b_decay * b_beta[:, None]
    b_Xt = tl.trans(b_X)
    # pass 2: dk
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p, mask=m, other=0.0).to(tl.float32)
        b_dw = tl.load(dw + p, mask=m, other=0.0)
        b_dkt = tl.dot(b_Xt, b_dw, input_precision="ieee")
        b_dk = tl.load(dk_part + p, mask=m, other=0.0) + b_dkt * b_bg[:, None]
        b_dk += tl.dot(b_B, b_k, input_precision="ieee") + tl.dot(tl.trans(b_B), b_k, input_precision="ieee")
        b_s = tl.sum(b_dkt * b_k, axis=1)
        b_dbeta += tl.exp(b_g) * b_s
        b_dG += b_bg * b_s
        tl.store(dk + p, b_dk.to(dk.dtype.element_ty), mask=m)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p, mask=m, other=0.0).to(tl.float32)
        b_du = tl.load(dv + p, mask=m, other=0.0)
        b_dvt = tl.dot(b_Xt, b_du, input_precision="ieee")
        tl.store(dvout + p, (b_dvt * b_beta[:, None]).to(dvout.dtype.element_ty), mask=m)
        b_dbeta += tl.sum(b_dvt * b_v, axis=1)
    store_dg_dbeta(dg, dbeta, b_dG, b_dbeta, t0, o_t, m_t, i_h, H)


def supported(q, v) -> bool:
    return q.shape[-1] <= 128 and v.shape[-1] <= 128 and q.dtype in (torch.bfloat16, torch.float16, torch.float32)


VARIANTS = ("fused", "split")


# Head dims (K, V) at which the split layout was validated on the H200 (benchmarks/kernels_bwd.py, fourth GPU session:
# gradients equal to the fused layout's and to the float32 reference at 1x4K and 2x1000) and is the faster one (3.1x
# at 8x32K, 2.3x at 1x4K, H = 16, bf16). Elsewhere the default stays `fused`, the layout validated at K = V = 64 too.
SPLIT_VALIDATED = {(128, 128)}


def bwd_variant(K: int | None = None, V: int | None = None) -> str:
    """HYBRIDSERVE_GDN_BWD: `fused` or `split` (chunk_bwd_split.py: K-blocked dqkw without the P^T scratch,
    tensor-core wy, dS' kept in the input dtype). Unset: `split` at the head dims in SPLIT_VALIDATED, `fused`
    otherwise. Read at every call."""
    v = os.environ.get("HYBRIDSERVE_GDN_BWD", "").strip().lower()
    if not v:
        return "split" if (K, V) in SPLIT_VALIDATED else "fused"
    if v not in VARIANTS:
        raise ValueError(f"HYBRIDSERVE_GDN_BWD={v!r}: expected one of {', '.join(VARIANTS)}")
    return v


GRAD_INTERMEDIATES = ("float32", "input")


def grad_intermediates(K: int, V: int) -> str:
    """The dtype the split layout stores dV', dW and the partial dK in between kernels: the input dtype ("input", as
    fla does; every product still accumulates in float32) at the head dims where the GPU checked and timed it
    (_triton_utils.TUNED_HEAD_DIMS; H200, fifteenth session: the GDN chunk checks 17 / 17, the backward at 8 x 32K
    31.3 -> 27.5 ms), "float32" elsewhere. At 8 x 32K (H = 16, K = V = 128, bf16) each is 2.15 GB in float32 and
    crosses global memory ~10 times. HYBRIDSERVE_GDN_BWD_INTERMEDIATES (read at every call) overrides. Float32 inputs
    keep float32 either way; the fused layout always does."""
    return env_choice("HYBRIDSERVE_GDN_BWD_INTERMEDIATES", GRAD_INTERMEDIATES, "input", "float32", K, V)


# The dh pass's pipelining depth, measured on the H200 (docs/benchmarks/kernels.md, thirteenth session): fastest at
# 3 stages with BV 16 (one sequence, 1 x 32K: 1.47 ms against 2.06 at 1 stage) and 2 stages with BV 32 (4 x 8K: 0.59
# against 0.63); 3 stages at BV 32 cost 1.5x there (156 KB of shared memory, one program per SM). Checked against the
# reference at real sizes in the fourteenth session (check_kernels_gpu.py with HYBRIDSERVE_STATE_STAGES=2 and 3: 39 /
# 39 each), where forward + backward whole at 2 stages ran 8 x 32K in 40.1 ms against 40.5 at 1 stage.
# Seventeenth session (benchmarks/chunk_configs_gpu.py, each tile checked, then timed alone at 8 x 32K): BV 64 x 1 stage
# 3.25 ms against 4.14 for BV 32 x 2 stages (512 programs at two per SM: two waves; BV 64, 256 programs: one), while
# BV 64 pipelined took 4.2-4.4 (its shared memory leaves one program per SM) and BV 16 6.9-11.
DH_STAGES_CHECKED = True


def default_dh_tile(N: int, H: int, K: int, V: int) -> tuple[int, int]:
    """(BV, num_stages) of the dh reverse pass, which carries more per program than the forward's state pass (the
    dh and dV' tiles: 186-255 registers at K = 128): the widest V block (64 at the TUNED_HEAD_DIMS, else 32) that
    still gives 256 programs, at its measured depth (BV 64: 1 stage, 32: 2, 16: 3)."""
    BV = state_block_v(N, H, V, 64 if tuned_head_dims(K, V) else 32, 256)
    measured = {16: 3, 32: 2}.get(BV, 1) if DH_STAGES_CHECKED else 1
    return BV, state_pass_stages(measured, K, V)


@on_tensor_device
def chunk_gdn_bwd(q, k, v, g, beta, scale, initial_state, do, dht, *, inverse=None, gcum=None, variant=None,
                  BV_dh=None, warps_dh=None, stages_dh=None, _phases=None):
    """Gradients (dq, dk, dv, dg, dbeta, dh0 or None) of chunk_gdn_fwd over [B, T, H, *] (no varlen).

    inverse, gcum: what chunk_gdn_fwd(keep_inverse=True) returned for these inputs (X [B, T, H, 64] and G [B, T, H],
    float32): the recompute then makes only W and U from them (chunk_prep.py's `_gdn_chunk_wu_kernel`, the phase
    "wu") instead of running the whole prep again (K K^T and the inverse; the phase "prep").

    variant: "fused" | "split" (default: bwd_variant(K, V)). BV_dh: V block of the sequential passes (the state
    recompute and the dh reverse pass; default: the forward's default_state_tile and default_dh_tile); warps_dh,
    stages_dh: their warps (4) and pipelining depth (default: those tiles'). `_phases` (a list, for profiling, as
    chunk_gdn_fwd's): receives ("prep" or "wu" | "state" | "dv_local" | "dh" | "dqkw" | "wy", launch) pairs that
    re-run each kernel on the same buffers so a benchmark can time them one by one. Re-running them overwrites the
    returned gradients (the dh pass accumulates into dV' in place, so its values drift; the timing does not)."""
    variant = variant or bwd_variant(q.shape[-1], v.shape[-1])
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    split = variant == "split"
    B, T, H, K = q.shape
    V = v.shape[-1]
    dtype = q.dtype
    dev = q.device
    TT = B * T
    BT = CHUNK
    NTs = cdiv(T, BT)
    NT = B * NTs
    prec = _dot_prec(dtype)
    qt = q.reshape(TT, H, K).contiguous()
    kt = k.reshape(TT, H, K).to(dtype).contiguous()
    vt = v.reshape(TT, H, V).to(dtype).contiguous()
    gt = g.reshape(TT, H).float().contiguous()
    bt = beta.reshape(TT, H).contiguous()
    dot_ = do.reshape(TT, H, V).to(dtype).contiguous()
    f32 = torch.float32
    phases = []
    # recompute the forward intermediates (W, U; X and G too unless the forward kept them)
    w = torch.empty(TT, H, K, dtype=dtype, device=dev)
    u = torch.empty(TT, H, V, dtype=dtype, device=dev)
    BKc = min(64, max(16, next_pow2(K)))
    BVc = min(64, max(16, next_pow2(V)))
    if inverse is not None:
        if gcum is None or inverse.shape != (*g.shape, BT) or gcum.shape != g.shape:
            raise ValueError(f"inverse {tuple(inverse.shape)} and gcum {None if gcum is None else tuple(gcum.shape)}: "
                             f"expected {(*g.shape, BT)} and {tuple(g.shape)}, as chunk_gdn_fwd(keep_inverse=True) "
                             "returns them")
        X = inverse.reshape(TT, H, BT).float().contiguous()
        gcum = gcum.reshape(TT, H).float().contiguous()
        phases.append(("wu", lambda: launch_wu(kt, vt, bt, gcum, w, u, X, gcum, gcum, gcum, T, NTs, B, NT, False,
                                               prec)))
    else:
        gcum = torch.empty(TT, H, dtype=f32, device=dev)
        X = torch.empty(TT, H, BT, dtype=f32, device=dev)
        phases.append(("prep", lambda: launch_prep(kt, vt, gt, bt, gcum, w, u, X, gcum, gcum, gcum, T, NTs, B, NT,
                                                   False, prec, store_x=True)))
    hbuf = torch.empty(NT, H, K, V, dtype=dtype, device=dev)
    vnew = torch.empty(TT, H, V, dtype=dtype, device=dev)
    h0 = initial_state.contiguous() if initial_state is not None else gcum
    BVs, stages_s = default_state_tile(B, H, K, V)
    BVs = max(16, min(BV_dh or BVs, next_pow2(V)))
    warps_s, stages_s = warps_dh or 4, stages_dh or stages_s
    phases.append(("state", lambda: _gdn_chunk_state_kernel[(cdiv(V, BVs), B * H)](
        kt, w, u, gcum, hbuf, vnew, h0, gcum, gcum, gcum, gcum, gcum, T, NTs,
        K * V * H if initial_state is not None else 0, 0, H, K, V, BT=BT, BK=max(16, next_pow2(K)), BV=BVs,
        IS_VARLEN=False, USE_H0=initial_state is not None, STORE_HT=False, INDEXED=False, HAS_H0_MASK=False,
        DOT_PREC=prec, num_warps=warps_s, num_stages=stages_s,
    )))
    # kernel 1: intra-chunk part of dV'
    gd = dtype if split and grad_intermediates(K, V) == "input" else f32  # dV', dW, the partial dK between kernels
    dvn = torch.empty(TT, H, V, dtype=gd, device=dev)
    phases.append(("dv_local", lambda: _gdn_bwd_dv_local_kernel[lambda meta: (cdiv(V, meta["BV"]), NT, H)](
        qt, kt, dot_, gcum, dvn, scale, T, NTs, B, H, K, V, BT=BT, BK=BKc, DOT_PREC=prec,
    )))
    # kernel 2: reverse pass over chunks. dS' per chunk: float32 (fused), or the input dtype (split: half the bytes
    # of the largest intermediate; the pass itself still carries dS' in float32)
    dhbuf = torch.empty(NT, H, K, V, dtype=dtype if split else f32, device=dev)
    dh0 = torch.empty(B, H, K, V, dtype=f32, device=dev) if initial_state is not None else None
    dht_ = dht.float().contiguous() if dht is not None else gcum
    BVd, stages_d = default_dh_tile(B, H, K, V)
    BVd = max(16, min(BV_dh or BVd, next_pow2(V)))
    stages_d = stages_dh or stages_d
    phases.append(("dh", lambda: _gdn_bwd_dh_kernel[(cdiv(V, BVd), B * H)](
        qt, kt, w, dot_, gcum, dvn, dhbuf, dht_, dh0 if dh0 is not None else gcum, scale, T, NTs,
        H, K, V, BT=BT, BK=max(16, next_pow2(K)), BV=BVd, USE_DHT=dht is not None, STORE_DH0=dh0 is not None,
        DOT_PREC=prec, num_warps=warps_dh or 4, num_stages=stages_d,
    )))
    # kernel 3: dq, dk (O, S' parts), dw, dG (O, S' parts)
    dk = torch.empty(TT, H, K, dtype=dtype, device=dev)
    dv = torch.empty(TT, H, V, dtype=dtype, device=dev)
    dbeta = torch.empty(TT, H, dtype=beta.dtype, device=dev)
    dg = torch.empty(TT, H, dtype=f32, device=dev)
    if split:
        (dq, dk_part, dw, dg_part), dqkw = dqkw_split(qt, kt, vnew, dot_, gcum, hbuf, dhbuf, dvn, scale, T, NTs, B,
                                                      prec, gd)
        phases.append(("dqkw", dqkw))
        # kernel 4: WY part, final dk, dv, dbeta, dg
        wy_args = (kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, dk, dv, dbeta, dg, T, NTs, B, prec)
        wy = wy_variant(K, V)
        if wy != "products":  # dS' is dead once dqkw has run: its memory holds the scratch tiles
            phases.append(("wy", wy_scratch(*wy_args, spare=dhbuf, input_operands=wy == "scratch-input")))
        else:
            phases.append(("wy", wy_split(*wy_args)))
    else:
        dq = torch.empty(TT, H, K, dtype=dtype, device=dev)
        dk_part = torch.empty(TT, H, K, dtype=f32, device=dev)
        dw = torch.empty(TT, H, K, dtype=f32, device=dev)
        dg_part = torch.empty(TT, H, dtype=f32, device=dev)
        ptmp = torch.empty(NT, H, BT, BT, dtype=dtype, device=dev)  # kernel 3's scratch for P^T
        phases.append(("dqkw", lambda: _gdn_bwd_dqkw_kernel[(NT, H)](
            qt, kt, vnew, dot_, gcum, hbuf, dhbuf, dvn, dq, dk_part, dw, dg_part, ptmp, scale, T, NTs, B, H, K, V,
            BT=BT, BK=max(16, next_pow2(K)), DOT_PREC=prec,
        )))
        # kernel 4: WY part, final dk, dv, dbeta, dg
        phases.append(("wy", lambda: _gdn_bwd_wy_kernel[(NT, H)](
            kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, dk, dv, dbeta, dg, T, NTs, B, H, K, V,
            BT=BT, BK=BKc, BV=BVc, DOT_PREC=prec, num_warps=8, num_stages=1,
        )))
    for _, launch in phases:
        launch()
    if _phases is not None:
        _phases.extend(phases)
    return (dq.view_as(q), dk.view(k.shape).to(k.dtype), dv.view(v.shape).to(v.dtype), dg.view(g.shape).to(g.dtype),
            dbeta.view(beta.shape), None if dh0 is None else dh0.to(initial_state.dtype))
