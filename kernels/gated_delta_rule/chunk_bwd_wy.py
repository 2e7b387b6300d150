"""A leaner WY kernel for the split GDN backward (HYBRIDSERVE_GDN_WY=scratch | scratch-input, the latter the default
at K = V = 128: `wy_variant`; see chunk_bwd_split.py).

The split layout's wy kernel (`_gdn_bwd_wy_split_kernel`) needs dA^T as an MMA operand for dK's (B + B^T) K term,
and Triton 3.4-3.7.0 miscompile tl.trans of an MMA result on Hopper (fla #640); so it forms dA^T from its own
products, X dX^T X, with dX^T accumulated beside dX. That doubles pass 1's products and keeps two more [64, 64]
float32 tiles live, and Nsight Compute found it at 255 registers with 8.4 M spill requests, one program of 8 warps
per SM, 8.55 ms at 8 x 32K (fifteenth session) against fla's 3.95.

This kernel keeps one of each:
- pass 1 accumulates dX and K K^T only (X is loaded after it, so it is not live during the loads);
- dA, the decay and K K^T are consumed at once (dbeta's and dG's A terms), so they are dead before pass 2;
- B = dA * beta_t e^{G_t - G_i} goes through this program's [64, 64] float32 scratch tile in global memory and
  comes back transposed by the load's indexing (a loaded tile, not an MMA result), as the fused layout's dqkw kernel
  does for P^T; the program's barrier orders the store before the load. S = B + B^T, and pass 2 is the split
  kernel's with S.
The scratch tile is written and read by the same program a moment apart, so it stays in L2; 16 KB per chunk and
head (1.07 GB at 8 x 32K, H = 16) come out of the dS' buffer, dead by then, when it is large enough. On the H200
(sixteenth session) the kernel took 7.44 ms at 8 x 32K with float32 operands and 6.52 with the input dtype's, against
8.56 for the products kernel; Nsight Compute still finds it latency-bound (12 warps per SM, SM throughput 15 %).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._triton_utils import env_choice, tuned_configs
from .chunk_bwd_split import add_dg_partials, store_dg_dbeta, wy_chunk

WY_VARIANTS = ("products", "scratch", "scratch-input")


def wy_variant(K: int, V: int) -> str:
    """The split backward's WY kernel: "products" (chunk_bwd_split.py's, dA^T from its own products), "scratch"
    (this file's, B^T through a scratch tile, float32 operands: TF32 for 16-bit inputs) or "scratch-input" (the same
    with every operand in the input dtype). "scratch-input" at the head dims where the GPU checked and timed it
    (_triton_utils.TUNED_HEAD_DIMS; H200, sixteenth session: the GDN chunk checks 17 / 17 with each, the kernel at
    8 x 32K 8.56 ms products, 7.44 scratch, 6.54 scratch-input), "products" elsewhere. HYBRIDSERVE_GDN_WY (read at
    every call) overrides."""
    return env_choice("HYBRIDSERVE_GDN_WY", WY_VARIANTS, "scratch-input", "products", K, V)


# (BK = BV, num_warps, num_stages, maxnreg). sm_90a (ptxas of triton 3.7.1) at K = V = 128, bf16: uncapped, 4 warps
# take 201 registers at BK 32 and 1 stage, 216-224 at 2-3 stages (28-42 cp.async: the next K / V tiles fetched while
# this one multiplies; no spills), 219 at 4: two programs per SM; a cap of 168 fits three for 28-44 B spilled. The
# products kernel it replaces: 255 registers at 8 warps, one program per SM. BK 64 x 4 warps x 3 stages: 253, no
# spills. On the H200 (seventeenth session, benchmarks/chunk_configs_gpu.py: each config checked, then timed alone at
# 8 x 32K) the pipelining is what pays: BK 32 x 4 warps 6.92 ms at 1 stage, 6.65 at 2, 5.52 at 3, 5.30 at 4; capped
# at 168, 6.54 (1 stage), 6.40 (2), 5.24 (3); BK 64 x 4 warps x 3 stages 4.29 (fla's WY kernel: 3.95 + its adds);
# BK 16 7.6-8.2.
WY_SCRATCH_CONFIGS = [(64, 4, 3, None), (32, 4, 3, 168), (32, 4, 4, None)]


def _wy_scratch_configs():
    return tuned_configs("_gdn_bwd_wy_scratch_kernel", [
        triton.Config({"BK": bk, "BV": bk}, num_warps=w, num_stages=s, **({"maxnreg": r} if r else {}))
        for bk, w, s, r in WY_SCRATCH_CONFIGS])


@triton.jit
def _operand(x, like, INPUT: tl.constexpr):
    """A product's operand: in `like`'s element type (the input dtype) or float32."""
    if INPUT:
        y = x.to(like.dtype.element_ty)
    else:
        y = x.to(tl.float32)
    return y


@triton.autotune(configs=_wy_scratch_configs(), key=["H", "K", "V", "NK", "DOT_PREC", "INPUT_OPERANDS"])
@triton.jit
def _gdn_bwd_wy_scratch_kernel(
    k, v, beta, gcum, Xbuf, dw, dv, dk_part, dg_part, scratch, dk, dvout, dbeta, dg, T, NTs, N, TTH,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NK: tl.constexpr, DOT_PREC: tl.constexpr, INPUT_OPERANDS: tl.constexpr = False,
):
    """Per chunk: the WY part (through X, A, D_w, D_u) and the final dk, dv, dbeta, dg; B^T through scratch.
    INPUT_OPERANDS: every product's operands in the input dtype (fla's choice: bf16 tensor-core products at twice
    TF32's rate, half the operand registers), else float32 (TF32 for 16-bit inputs); float32 accumulation."""
    i_c, i_h, t0, o_t, m_t, b_g, b_beta, b_bg = wy_chunk(k, gcum, beta, T, NTs, N, H, BT)
    r = o_t[:, None]
    c = o_t[None, :]
    base_k = (t0 * H + i_h) * K
    base_v = (t0 * H + i_h) * V
    # pass 1: dX = dW (D_w K)^T + dV' (D_u V)^T, and K K^T (A / (beta_t e^{G_t - G_i}))
    b_dX = tl.zeros([BT, BT], dtype=tl.float32)
    b_kk = tl.zeros([BT, BT], dtype=tl.float32)
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p, mask=m, other=0.0)
        b_dw = _operand(tl.load(dw + p, mask=m, other=0.0), k, INPUT_OPERANDS)
        b_kk += tl.dot(b_k, tl.trans(b_k), input_precision=DOT_PREC)
        b_dX += tl.dot(b_dw, tl.trans(_operand(b_k.to(tl.float32) * b_bg[:, None], k, INPUT_OPERANDS)),
                       input_precision=DOT_PREC)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_vb = _operand(tl.load(v + p, mask=m, other=0.0).to(tl.float32) * b_beta[:, None], k, INPUT_OPERANDS)
        b_du = _operand(tl.load(dv + p, mask=m, other=0.0), k, INPUT_OPERANDS)
        b_dX += tl.dot(b_du, tl.trans(b_vb), input_precision=DOT_PREC)
    b_X = _operand(tl.load(Xbuf + (t0 * H + i_h) * BT + r * (H * BT) + c, mask=m_t[:, None], other=0.0), k,
                   INPUT_OPERANDS)
    b_Xt = tl.trans(b_X)  # a loaded tile, not an MMA result: transposing it is safe
    # dA = -(X^T dX X^T) on i < t, used at once: dbeta's and dG's A terms, then B
    lower = (c < r) & m_t[:, None]
    b_dA = -tl.dot(_operand(tl.dot(b_Xt, _operand(b_dX, k, INPUT_OPERANDS), input_precision=DOT_PREC), k,
                            INPUT_OPERANDS), b_Xt, input_precision=DOT_PREC)
    b_dA = tl.where(lower, b_dA, 0.0) * tl.exp(tl.where(lower, b_g[:, None] - b_g[None, :], 0.0))
    b_E = b_dA * b_kk  # dA * A / beta_t
    b_dbeta = tl.sum(b_E, axis=1)
    b_E = b_E * b_beta[:, None]
    b_dG = tl.sum(b_E, axis=1) - tl.sum(b_E, axis=0)
    b_dG = add_dg_partials(b_dG, dg_part, TTH, t0, o_t, m_t, i_h, H, NK)
    # S = B + B^T with B[t, i] = dA[t, i] beta_t e^{G_t - G_i}: dK's A part is S K. B^T comes back from scratch.
    b_B = b_dA * b_beta[:, None]
    p_s = scratch + (i_c.to(tl.int64) * H + i_h) * (BT * BT)
    tl.store(p_s + r * BT + c, b_B)
    tl.debug_barrier()
    b_S = _operand(b_B + tl.load(p_s + c * BT + r), k, INPUT_OPERANDS)
    # pass 2: dk = dk_part + D_w X^T dW + S K
    for i_k in range(0, tl.cdiv(K, BK)):
        o_k = i_k * BK + tl.arange(0, BK)
        m = m_t[:, None] & (o_k < K)[None, :]
        p = base_k + o_t[:, None] * (H * K) + o_k[None, :]
        b_k = tl.load(k + p, mask=m, other=0.0)
        b_kf = b_k.to(tl.float32)
        b_dkt = tl.dot(b_Xt, _operand(tl.load(dw + p, mask=m, other=0.0), k, INPUT_OPERANDS),
                       input_precision=DOT_PREC)
        b_dk = (tl.load(dk_part + p, mask=m, other=0.0).to(tl.float32) + b_dkt * b_bg[:, None]
                + tl.dot(b_S, _operand(b_k, k, INPUT_OPERANDS), input_precision=DOT_PREC))
        b_s = tl.sum(b_dkt * b_kf, axis=1)
        b_dbeta += tl.exp(b_g) * b_s
        b_dG += b_bg * b_s
        tl.store(dk + p, b_dk.to(dk.dtype.element_ty), mask=m)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m = m_t[:, None] & (o_v < V)[None, :]
        p = base_v + o_t[:, None] * (H * V) + o_v[None, :]
        b_v = tl.load(v + p, mask=m, other=0.0).to(tl.float32)
        b_dvt = tl.dot(b_Xt, _operand(tl.load(dv + p, mask=m, other=0.0), k, INPUT_OPERANDS),
                       input_precision=DOT_PREC)
        tl.store(dvout + p, (b_dvt * b_beta[:, None]).to(dvout.dtype.element_ty), mask=m)
        b_dbeta += tl.sum(b_dvt * b_v, axis=1)
    store_dg_dbeta(dg, dbeta, b_dG, b_dbeta, t0, o_t, m_t, i_h, H)


def wy_scratch(kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, dk, dv, dbeta, dg, T, NTs, N, prec, spare=None,
               input_operands=False):
    """The launch of the scratch wy kernel (outputs dk, dv, dbeta, dg are the caller's). `spare`: a buffer dead by
    the time it runs (the dS' buffer) whose memory holds the scratch tiles when it is large enough;
    `input_operands`: the products' operands in the input dtype (else float32)."""
    TT, H, K = kt.shape
    V = vt.shape[-1]
    NT = N * NTs
    need = NT * H * 64 * 64
    if spare is not None and spare.is_contiguous() and spare.numel() * spare.element_size() >= need * 4:
        scratch = spare.view(-1).view(torch.uint8)[: need * 4].view(torch.float32)
    else:
        scratch = torch.empty(need, dtype=torch.float32, device=kt.device)

    def launch():
        _gdn_bwd_wy_scratch_kernel[(NT, H)](
            kt, vt, bt, gcum, X, dw, dvn, dk_part, dg_part, scratch, dk, dv, dbeta, dg, T, NTs, N, TT * H, H, K, V,
            BT=64, NK=dg_part.shape[0], DOT_PREC=prec, INPUT_OPERANDS=input_operands,
        )
    return launch
