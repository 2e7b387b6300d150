"""The inverse of (I + A)'s diagonal blocks that every GDN prep kernel shares, and two alternatives to the chunked
forward's first kernel, chunk.py's `_gdn_chunk_prep_kernel` (Triton).

Per chunk of 64 tokens and head the prep kernel computes G = cumsum(g), A_ti = beta_t e^{G_t - G_i} k_t.k_i (i < t),
X = (I + A)^{-1}, W = X diag(beta e^G) K and U = X diag(beta) V (math: naive.py::naive_chunk_gated_delta_rule).
X goes by 16 x 16 blocks: the four diagonal blocks first (`diagonal_inverses`: forward substitution, or products by
doubling, `doubling_inverse`, the default at K = V = 128 since it took the prep at 8 x 32K from 4.23 to 3.36 ms on
the H200; `diagonal_inverse_method`), then the six below them (`lower_blocks_of_inverse`).

The alternatives (HYBRIDSERVE_GDN_PREP, `prep_variant`), both timed slower than chunk.py's kernel on the H200
(docs/benchmarks/kernels.md, fourteenth session: 8 x 32K prep 3.36 ms, split 3.79, registers 4.28) and kept opt-in
as measured records of what did not pay:
- "registers" (below): chunk.py's version forms the 64 x 64 K K^T at once and slices its 16 x 16 blocks out through
  a float32 scratch tile in global memory (registers cannot be sliced): A stored, 10 blocks loaded, X stored and
  loaded again, three barriers. Here the chunk is four row blocks of 16 tokens from the start: A's ten lower blocks
  are ten 16 x 16 products of them, and W, U are summed block by block (row block i: sum over j <= i of X_ij times
  the scaled k_j or v_j). No scratch, but 250-254 registers at 8 warps. Rounding points are chunk.py's: X, the
  scaled k and v enter the W, U products in the input dtype, accumulation is float32; only the order of the float32
  sums differs. With STORE_X (the backward) X is written to Xbuf in chunk.py's layout, zeros above the diagonal
  included.
- "split": chunk.py's kernel up to X followed by `_gdn_chunk_wu_kernel` (at the end of this file).
"""

from __future__ import annotations

import triton
import triton.language as tl

from .._triton_common import locate_chunk
from .._triton_utils import env_choice, tuned_configs


PREP_VARIANTS = ("scratch", "registers", "split")


def prep_variant() -> str:
    """HYBRIDSERVE_GDN_PREP (read at every call): "scratch" (default: chunk.py's one kernel, the fastest on the
    H200), "registers" (this file's one kernel) or "split" (chunk.py's kernel up to X, then `_gdn_chunk_wu_kernel`)."""
    return env_choice("HYBRIDSERVE_GDN_PREP", PREP_VARIANTS, "scratch", "scratch")


DIAGONAL_INVERSES = ("substitution", "doubling")


def diagonal_inverse_method(K: int, V: int) -> str:
    """How the prep kernels invert (I + A)'s four 16 x 16 diagonal blocks, and fused_chunk.py's kernel its BT x BT
    chunk: "doubling" (`doubling_inverse`) at the head dims where it was checked and timed on the GPU
    (_triton_utils.TUNED_HEAD_DIMS; H200, fourteenth session: the prep at 8 x 32K 4.23 -> 3.36 ms, the GDN forward
    7.90 -> 6.99 ms, the one-launch kernel's GPU time at 1 x 512 0.116 -> 0.077 ms), "substitution" elsewhere.
    HYBRIDSERVE_GDN_DIAG_INVERSE (read at every call) overrides."""
    return env_choice("HYBRIDSERVE_GDN_DIAG_INVERSE", DIAGONAL_INVERSES, "doubling", "substitution", K, V)


LOWER_BLOCK_PRECISIONS = ("ieee", "input")


def lower_blocks_precision(K: int, V: int) -> str:
    """How the products of `lower_blocks_of_inverse` run: at the input's dot precision ("input": TF32 on the tensor
    cores for 16-bit inputs, still exact float32 for float32 inputs) at the head dims where the GPU checked and timed
    it (_triton_utils.TUNED_HEAD_DIMS; H200, fifteenth session: the GDN chunk checks 17 / 17, the prep at 8 x 32K
    3.37 -> 2.89 ms, 255 registers with spills -> 164 without, the forward 6.99 -> 6.51 ms), exact float32 ("ieee")
    elsewhere. HYBRIDSERVE_GDN_INVERSE_LOWER (read at every call) overrides."""
    return env_choice("HYBRIDSERVE_GDN_INVERSE_LOWER", LOWER_BLOCK_PRECISIONS, "input", "ieee", K, V)


@triton.jit
def diagonal_inverses(A00, A11, A22, A33, DOUBLING: tl.constexpr = False):
    """(I + A_ii)^{-1} of four strictly lower 16 x 16 blocks, side by side: by forward substitution (15 dependent
    steps, each two cross-thread reductions per block), or with DOUBLING by `doubling_inverse` (4 dependent
    products)."""
    if DOUBLING:
        T00, T11, T22, T33 = doubling_inverse(A00, 16), doubling_inverse(A11, 16), doubling_inverse(A22, 16), \
            doubling_inverse(A33, 16)
    else:
        o_s = tl.arange(0, 16)
        rs = o_s[:, None]
        cs = o_s[None, :]
        eye = tl.where(rs == cs, 1.0, 0.0)
        A00t, A11t, A22t, A33t = tl.trans(A00), tl.trans(A11), tl.trans(A22), tl.trans(A33)
        T00, T11, T22, T33 = eye, eye, eye, eye
        # row i of T_ii: e_i - sum_{m < i} A_ii[i, m] T_ii[m, :]
        for i in range(1, 16):
            sel_c = cs == i
            sel_r = rs == i
            a0 = tl.sum(tl.where(sel_c, A00t, 0.0), axis=1)
            a1 = tl.sum(tl.where(sel_c, A11t, 0.0), axis=1)
            a2 = tl.sum(tl.where(sel_c, A22t, 0.0), axis=1)
            a3 = tl.sum(tl.where(sel_c, A33t, 0.0), axis=1)
            T00 = T00 - tl.where(sel_r, tl.sum(a0[:, None] * T00, axis=0)[None, :], 0.0)
            T11 = T11 - tl.where(sel_r, tl.sum(a1[:, None] * T11, axis=0)[None, :], 0.0)
            T22 = T22 - tl.where(sel_r, tl.sum(a2[:, None] * T22, axis=0)[None, :], 0.0)
            T33 = T33 - tl.where(sel_r, tl.sum(a3[:, None] * T33, axis=0)[None, :], 0.0)
    return T00, T11, T22, T33


@triton.jit
def doubling_inverse(A, N: tl.constexpr):
    """(I + A)^{-1} of a strictly lower N x N tile A (N = 16, 32 or 64) as the finite Neumann series
    sum_{j < N} (-A)^j (A^N = 0), summed by doubling: P = I - A, then P <- P + P A^2, P + P A^4, ... up to A^{N/2}
    (each step doubles the powers P holds). For N = 16: six products, four deep, in exact float32; forward
    substitution takes 15 dependent steps of two cross-thread reductions each, which leave a kernel waiting on
    latency. Both are exact in exact arithmetic and differ in rounding only. The powers are bounded for the gdn_v4
    inputs (k L2-normalised, beta in (0, 1), decays <= 1 give |A_ij| <= 1, so |(A^j)_ik| <= C(14, 7) = 3432 at worst
    for N = 16, far less with any decay); with unnormalised keys they can grow past the inverse itself, and
    substitution is the safer way."""
    o_s = tl.arange(0, N)
    P = tl.where(o_s[:, None] == o_s[None, :], 1.0, 0.0) - A
    A2 = tl.dot(A, A, input_precision="ieee")
    P = P + tl.dot(P, A2, input_precision="ieee")
    A4 = tl.dot(A2, A2, input_precision="ieee")
    P = P + tl.dot(P, A4, input_precision="ieee")
    A8 = tl.dot(A4, A4, input_precision="ieee")
    P = P + tl.dot(P, A8, input_precision="ieee")
    if N > 16:
        A16 = tl.dot(A8, A8, input_precision="ieee")
        P = P + tl.dot(P, A16, input_precision="ieee")
    if N > 32:
        A32 = tl.dot(A16, A16, input_precision="ieee")
        P = P + tl.dot(P, A32, input_precision="ieee")
    return P


@triton.jit
def lower_blocks_of_inverse(T00, T11, T22, T33, A10, A20, A21, A30, A31, A32, PREC: tl.constexpr = "ieee"):
    """X_ij = -T_ii sum_{j <= m < i} A_im X_mj. PREC "ieee" (default): exact float32 products, FMAs on the CUDA
    cores, whose operand tiles take the prep kernel to 237-240 registers at 4 warps (two programs per SM); "tf32":
    the tensor cores (chunk.py passes it for 16-bit inputs with `lower_blocks_precision(K, V) == "input"`), 164
    registers at 4 warps, 128 at 8 (sm_90a compile report): X, which W and U use rounded to the input dtype anyway,
    then carries TF32's 2^-11 rounding of its operands besides bf16's 2^-9. Not for the diagonal blocks: their
    doubling sums powers that cancel (`doubling_inverse`)."""
    X10 = -tl.dot(T11, tl.dot(A10, T00, input_precision=PREC), input_precision=PREC)
    X21 = -tl.dot(T22, tl.dot(A21, T11, input_precision=PREC), input_precision=PREC)
    X32 = -tl.dot(T33, tl.dot(A32, T22, input_precision=PREC), input_precision=PREC)
    X20 = -tl.dot(T22, tl.dot(A20, T00, input_precision=PREC) + tl.dot(A21, X10, input_precision=PREC),
                  input_precision=PREC)
    X31 = -tl.dot(T33, tl.dot(A31, T11, input_precision=PREC) + tl.dot(A32, X21, input_precision=PREC),
                  input_precision=PREC)
    X30 = -tl.dot(T33, tl.dot(A30, T00, input_precision=PREC) + tl.dot(A31, X10, input_precision=PREC)
                  + tl.dot(A32, X20, input_precision=PREC), input_precision=PREC)
    return X10, X20, X21, X30, X31, X32


@triton.jit
def _rows(gcum, beta, r0, n_in, H: tl.constexpr):
    """Rows r0 .. r0 + 15 of the chunk: (row mask, G, beta)."""
    o_s = r0 + tl.arange(0, 16)
    m = o_s < n_in
    return m, tl.load(gcum + o_s * H, mask=m, other=0.0), tl.load(beta + o_s * H, mask=m, other=0.0).to(tl.float32)


@triton.jit
def _tile(x, r0, m, D: tl.constexpr, BD: tl.constexpr, H: tl.constexpr):
    """Rows r0 .. r0 + 15 of a [tokens, H, D] input (this head), zeros past the chunk's end."""
    o_s = r0 + tl.arange(0, 16)
    o_d = tl.arange(0, BD)
    return tl.load(x + o_s[:, None] * (H * D) + o_d[None, :], mask=m[:, None] & (o_d < D)[None, :], other=0.0)


@triton.jit
def _scaled(x, r0, m, scale, D: tl.constexpr, BD: tl.constexpr, H: tl.constexpr):
    """A row block of k or v times its per-row scale (beta e^G, or beta), rounded to the input dtype as chunk.py
    does. Loaded again where it is used rather than kept from A's products: 4 live [16, 128] tiles fewer, which is
    what kept this kernel under 255 registers (the reload hits L1 or L2)."""
    b = _tile(x, r0, m, D, BD, H)
    return (b.to(tl.float32) * scale[:, None]).to(b.dtype)


@triton.jit
def _a_block(b_ki, b_kj, G_i, G_j, beta_i, m_i, DIAG: tl.constexpr, DOT_PREC: tl.constexpr):
    """A's block (i, j): beta_t e^{G_t - G_s} k_t.k_s for rows t of block i, columns s of block j (s < t on the
    diagonal). The exponent is taken only where it is used: a padding row's G (0) minus a real one would overflow."""
    b_kk = tl.dot(b_ki, tl.trans(b_kj), input_precision=DOT_PREC)
    use = m_i[:, None]
    if DIAG:
        o_s = tl.arange(0, 16)
        use = use & (o_s[None, :] < o_s[:, None])
    return tl.where(use, b_kk * tl.exp(tl.where(use, G_i[:, None] - G_j[None, :], 0.0)) * beta_i[:, None], 0.0)


@triton.jit
def _store_rows(p, b, r0, n_in, stride, BC: tl.constexpr, C: tl.constexpr):
    o_s = r0 + tl.arange(0, 16)
    o_c = tl.arange(0, BC)
    tl.store(p + o_s[:, None] * stride + o_c[None, :], b.to(p.dtype.element_ty),
             mask=(o_s < n_in)[:, None] & (o_c < C)[None, :])


@triton.jit
def store_x_row(Xbuf, R0: tl.constexpr, n_in, HBT, B0, B1, B2, B3, LOWER_ONLY: tl.constexpr = False):
    """Rows R0 .. R0 + 15 of a chunk's X (four 16 x 16 blocks, left to right) into the [TT, H, BT] buffer.
    LOWER_ONLY: the blocks right of the diagonal (zeros) are not stored; whoever reads the rows masks them."""
    o_s = tl.arange(0, 16)
    p = Xbuf + (R0 + o_s)[:, None] * HBT + o_s[None, :]
    m = (R0 + o_s < n_in)[:, None]
    tl.store(p, B0, mask=m)
    if not LOWER_ONLY or R0 >= 16:
        tl.store(p + 16, B1, mask=m)
    if not LOWER_ONLY or R0 >= 32:
        tl.store(p + 32, B2, mask=m)
    if not LOWER_ONLY or R0 >= 48:
        tl.store(p + 48, B3, mask=m)


@triton.jit
def _mix1(x0, b0, P: tl.constexpr):
    return tl.dot(x0, b0, input_precision=P)


@triton.jit
def _mix2(x0, x1, b0, b1, P: tl.constexpr):
    return tl.dot(x0, b0, input_precision=P) + tl.dot(x1, b1, input_precision=P)


@triton.jit
def _mix3(x0, x1, x2, b0, b1, b2, P: tl.constexpr):
    return _mix2(x0, x1, b0, b1, P) + tl.dot(x2, b2, input_precision=P)


@triton.jit
def _mix4(x0, x1, x2, x3, b0, b1, b2, b3, P: tl.constexpr):
    """Row block 3 of W or U: sum_j X_3j (scaled k_j or v_j), float32 accumulation."""
    return _mix3(x0, x1, x2, b0, b1, b2, P) + tl.dot(x3, b3, input_precision=P)


def _prep_configs():
    # compiled for sm_90a (bf16, K = V = 128): 8 warps 250-254 registers without spills, 4 warps 255 and 16-124
    # bytes spilled, 2 warps 350-780 bytes (left out). The ten A-block products keep each k tile in two operand
    # layouts; even with W, U and the inverse taken out the A part alone needs 255 at 4 warps.
    return tuned_configs("_gdn_chunk_prep_registers_kernel", [triton.Config({}, num_warps=w, num_stages=s)
                                                              for w, s in [(8, 1), (4, 1), (8, 2)]])


@triton.autotune(configs=_prep_configs(), key=["H", "K", "V", "DOT_PREC"])
@triton.jit
def _gdn_chunk_prep_registers_kernel(
    k, v, g, beta, gcum, w, u, Xbuf, cu_seqlens, chunk_seq, chunk_off,
    T, NTs, N, H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, IS_VARLEN: tl.constexpr, DOT_PREC: tl.constexpr,
    STORE_X: tl.constexpr, DOUBLING: tl.constexpr = False, LOWER_PREC: tl.constexpr = "ieee",
):
    """One program per (chunk, head); chunk.py's _gdn_chunk_prep_kernel's outputs (BT = 64; BK, BV: K, V whole)."""
    tl.static_assert(BT == 64, "four row blocks of 16")
    i_c = tl.program_id(0)
    i_h = tl.program_id(1)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    n_in = eos - t0  # rows of this chunk inside the sequence
    g += t0 * H + i_h
    beta += t0 * H + i_h
    gcum += t0 * H + i_h
    k += (t0 * H + i_h) * K
    w += (t0 * H + i_h) * K
    v += (t0 * H + i_h) * V
    u += (t0 * H + i_h) * V
    o_t = tl.arange(0, BT)
    b_g = tl.cumsum(tl.load(g + o_t * H, mask=o_t < n_in, other=0.0).to(tl.float32), axis=0)
    tl.store(gcum + o_t * H, b_g, mask=o_t < n_in)
    tl.debug_barrier()  # the row blocks read G back in their own layout

    m0, G0, be0 = _rows(gcum, beta, 0, n_in, H)
    m1, G1, be1 = _rows(gcum, beta, 16, n_in, H)
    m2, G2, be2 = _rows(gcum, beta, 32, n_in, H)
    m3, G3, be3 = _rows(gcum, beta, 48, n_in, H)
    k0, k1 = _tile(k, 0, m0, K, BK, H), _tile(k, 16, m1, K, BK, H)
    k2, k3 = _tile(k, 32, m2, K, BK, H), _tile(k, 48, m3, K, BK, H)
    A00 = _a_block(k0, k0, G0, G0, be0, m0, True, DOT_PREC)
    A11 = _a_block(k1, k1, G1, G1, be1, m1, True, DOT_PREC)
    A22 = _a_block(k2, k2, G2, G2, be2, m2, True, DOT_PREC)
    A33 = _a_block(k3, k3, G3, G3, be3, m3, True, DOT_PREC)
    A10 = _a_block(k1, k0, G1, G0, be1, m1, False, DOT_PREC)
    A20 = _a_block(k2, k0, G2, G0, be2, m2, False, DOT_PREC)
    A21 = _a_block(k2, k1, G2, G1, be2, m2, False, DOT_PREC)
    A30 = _a_block(k3, k0, G3, G0, be3, m3, False, DOT_PREC)
    A31 = _a_block(k3, k1, G3, G1, be3, m3, False, DOT_PREC)
    A32 = _a_block(k3, k2, G3, G2, be3, m3, False, DOT_PREC)
    T00, T11, T22, T33 = diagonal_inverses(A00, A11, A22, A33, DOUBLING)
    X10, X20, X21, X30, X31, X32 = lower_blocks_of_inverse(T00, T11, T22, T33, A10, A20, A21, A30, A31, A32,
                                                           LOWER_PREC)
    if STORE_X:  # the backward needs X again, in chunk.py's [TT, H, BT] layout
        zero = tl.zeros([16, 16], dtype=tl.float32)
        p_X = Xbuf + (t0 * H + i_h) * BT
        store_x_row(p_X, 0, n_in, H * BT, T00, zero, zero, zero)
        store_x_row(p_X, 16, n_in, H * BT, X10, T11, zero, zero)
        store_x_row(p_X, 32, n_in, H * BT, X20, X21, T22, zero)
        store_x_row(p_X, 48, n_in, H * BT, X30, X31, X32, T33)

    dt = k.dtype.element_ty
    x00, x11, x22, x33 = T00.to(dt), T11.to(dt), T22.to(dt), T33.to(dt)
    x10, x20, x21, x30, x31, x32 = X10.to(dt), X20.to(dt), X21.to(dt), X30.to(dt), X31.to(dt), X32.to(dt)
    ks0, ks1 = _scaled(k, 0, m0, be0 * tl.exp(G0), K, BK, H), _scaled(k, 16, m1, be1 * tl.exp(G1), K, BK, H)
    ks2, ks3 = _scaled(k, 32, m2, be2 * tl.exp(G2), K, BK, H), _scaled(k, 48, m3, be3 * tl.exp(G3), K, BK, H)
    _store_rows(w, _mix1(x00, ks0, DOT_PREC), 0, n_in, H * K, BK, K)
    _store_rows(w, _mix2(x10, x11, ks0, ks1, DOT_PREC), 16, n_in, H * K, BK, K)
    _store_rows(w, _mix3(x20, x21, x22, ks0, ks1, ks2, DOT_PREC), 32, n_in, H * K, BK, K)
    _store_rows(w, _mix4(x30, x31, x32, x33, ks0, ks1, ks2, ks3, DOT_PREC), 48, n_in, H * K, BK, K)
    vs0, vs1 = _scaled(v, 0, m0, be0, V, BV, H), _scaled(v, 16, m1, be1, V, BV, H)
    vs2, vs3 = _scaled(v, 32, m2, be2, V, BV, H), _scaled(v, 48, m3, be3, V, BV, H)
    _store_rows(u, _mix1(x00, vs0, DOT_PREC), 0, n_in, H * V, BV, V)
    _store_rows(u, _mix2(x10, x11, vs0, vs1, DOT_PREC), 16, n_in, H * V, BV, V)
    _store_rows(u, _mix3(x20, x21, x22, vs0, vs1, vs2, DOT_PREC), 32, n_in, H * V, BV, V)
    _store_rows(u, _mix4(x30, x31, x32, x33, vs0, vs1, vs2, vs3, DOT_PREC), 48, n_in, H * V, BV, V)


# The split prep's second kernel. chunk.py's prep runs two programs of 4 warps per SM (240 registers): 8 warps in
# flight for a kernel that mostly waits on memory. Its W, U half is plain products of X with the chunk's k and v
# columns; done here, one program per (64-column block, chunk, head) with a fraction of the registers, the inverse
# half keeps its kernel and hands X over in Xbuf (which it writes anyway with the blocked inverse). The column block
# is the fastest grid axis, so the programs of one chunk and head run together and re-read X from L2.
@triton.autotune(configs=tuned_configs("_gdn_chunk_wu_kernel", [triton.Config({}, num_warps=w, num_stages=s)
                                                                 for w, s in [(4, 2), (4, 1), (8, 2)]]),
                 key=["H", "K", "V", "DOT_PREC"])
@triton.jit
def _gdn_chunk_wu_kernel(
    k, v, beta, gcum, w, u, Xbuf, cu_seqlens, chunk_seq, chunk_off, T, NTs, N,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr, IS_VARLEN: tl.constexpr,
    DOT_PREC: tl.constexpr,
):
    """W = X diag(beta e^G) K or U = X diag(beta) V for one block of BD columns (K's blocks first, then V's)."""
    i_d = tl.program_id(0)
    i_c = tl.program_id(1)
    i_h = tl.program_id(2)
    i_n, bos, eos, t0, valid = locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT, IS_VARLEN)
    if not valid:
        return
    o_t = tl.arange(0, BT)
    m_t = o_t < eos - t0
    row = t0 * H + i_h
    b_X = tl.load(Xbuf + row * BT + o_t[:, None] * (H * BT) + o_t[None, :], mask=m_t[:, None], other=0.0)
    b_scale = tl.load(beta + row + o_t * H, mask=m_t, other=0.0).to(tl.float32)
    NKB: tl.constexpr = (K + BD - 1) // BD
    if i_d < NKB:
        b_scale *= tl.exp(tl.load(gcum + row + o_t * H, mask=m_t, other=0.0))
        _wu_block(k + row * K, w + row * K, b_X, b_scale, o_t, m_t, i_d * BD + tl.arange(0, BD), K, H, DOT_PREC)
    else:
        _wu_block(v + row * V, u + row * V, b_X, b_scale, o_t, m_t, (i_d - NKB) * BD + tl.arange(0, BD), V, H,
                  DOT_PREC)


@triton.jit
def _wu_block(src, dst, b_X, b_scale, o_t, m_t, o_d, D: tl.constexpr, H: tl.constexpr, DOT_PREC: tl.constexpr):
    """dst[rows, o_d] = X (src[rows, o_d] * scale per row), the scaled tile and X in the input dtype (X converts
    once if the caller passes it converted: chunk.py's prep does, over its column blocks)."""
    m = m_t[:, None] & (o_d < D)[None, :]
    p = o_t[:, None] * (H * D) + o_d[None, :]
    b = tl.load(src + p, mask=m, other=0.0)
    b_o = tl.dot(b_X.to(b.dtype), (b.to(tl.float32) * b_scale[:, None]).to(b.dtype), input_precision=DOT_PREC)
    tl.store(dst + p, b_o.to(dst.dtype.element_ty), mask=m)


def launch_wu(kt, vt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, NT, varlen, prec):
    """The split prep's W, U kernel over NT chunks, X read from Xbuf (float32 [TT, H, 64])."""
    H, K, V = kt.shape[1], kt.shape[2], vt.shape[2]
    BD = min(64, max(16, triton.next_power_of_2(max(K, V))))
    _gdn_chunk_wu_kernel[(triton.cdiv(K, BD) + triton.cdiv(V, BD), NT, H)](
        kt, vt, bt, gcum, w, u, Xbuf, cu, cs, co, T, NTs, N, H, K, V, BT=64, BD=BD, IS_VARLEN=varlen, DOT_PREC=prec)
