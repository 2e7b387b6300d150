"""`@triton.jit` helpers shared by the kernels (imports triton: only the kernel modules import this).

Every kernel that walks whole sequences opens the same way: find the sequence's token range (dense [B, T] or
packed through cu_seqlens), find its state slot (dense row or a state-pool index, negative = padding), read the
initial state (unless the slot is padding or has_initial_state says "start from zero"), and ends by storing the
final state into the same kind of slot. These helpers hold that prologue / epilogue once; Triton inlines them,
so the generated code is the same as when each kernel spelled them out.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def seq_bounds(i_n, cu_seqlens, T, IS_VARLEN: tl.constexpr):
    """Sequence i_n -> (first token, end token) as int64: packed through cu_seqlens, or row i_n of [B, T]."""
    if IS_VARLEN:
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    else:
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    return bos, eos


@triton.jit
def first_chunk(i_n, chunk_off, NTs, IS_VARLEN: tl.constexpr):
    """Index of sequence i_n's first chunk in the per-chunk buffers (int64)."""
    if IS_VARLEN:
        c0 = tl.load(chunk_off + i_n).to(tl.int64)
    else:
        c0 = i_n.to(tl.int64) * NTs
    return c0


@triton.jit
def locate_chunk(i_c, cu_seqlens, chunk_seq, chunk_off, T, NTs, N, BT: tl.constexpr, IS_VARLEN: tl.constexpr):
    """Global chunk index -> (sequence, first token, end token, first token of the chunk, valid). Packed chunks
    come from the device-side map of gated_delta_rule/chunk.py::chunk_index (its grid is an upper bound: chunks
    past the last one are not valid)."""
    if IS_VARLEN:
        i_n = tl.load(chunk_seq + i_c).to(tl.int32)
        valid = i_n < N
        i_n = tl.where(valid, i_n, 0)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
        i_t = i_c - tl.load(chunk_off + i_n)
    else:
        i_n = i_c // NTs
        valid = i_n < N
        i_t = i_c % NTs
        bos = i_n.to(tl.int64) * T
        eos = bos + T
    t0 = bos + i_t.to(tl.int64) * BT
    return i_n, bos, eos, t0, valid


@triton.jit
def state_tile(i_k, i_v, i_h, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """Program (i_k, i_v)'s [BK, BV] tile of head i_h's [K, V] state: (o_k, o_v, m_k, m_v, m_h, p_hkv), its row and
    column indices, their masks, the tile's mask and its offsets inside one slot of a [slots, H, K, V] state."""
    o_k = i_k * BK + tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    return o_k, o_v, m_k, m_v, m_k[:, None] & m_v[None, :], i_h * K * V + o_k[:, None] * V + o_v[None, :]


@triton.jit
def load_initial_state(h0, state_idx, has_h0, i_n, s_h0, p_hkv, m_h, BK: tl.constexpr, BV: tl.constexpr,
                       USE_H0: tl.constexpr, INDEXED: tl.constexpr, HAS_H0_MASK: tl.constexpr):
    """The [BK, BV] float32 state tile sequence i_n starts from, and its slot: (tile, slot int64, slot is real).

    Dense states: slot = i_n. Pools: slot = state_idx[i_n]; a negative slot is padding (read as zero, and the
    caller must not write it back: store_final_state masks it). has_h0[i_n] == 0 also starts from zero."""
    if INDEXED:
        slot = tl.load(state_idx + i_n).to(tl.int64)
    else:
        slot = i_n.to(tl.int64)
    ok = slot >= 0
    slot = tl.where(ok, slot, 0)
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if USE_H0:
        use = ok
        if HAS_H0_MASK:
            use = use & (tl.load(has_h0 + i_n) != 0)
        b_h = tl.load(h0 + slot * s_h0 + p_hkv, mask=m_h & use, other=0.0).to(tl.float32)
    return b_h, slot, ok


@triton.jit
def store_final_state(ht, b_h, slot, ok, s_ht, p_hkv, m_h, STORE_HT: tl.constexpr):
    """Write the final state tile into its slot, rounded to the state dtype; padding slots stay untouched."""
    if STORE_HT:
        tl.store(ht + slot * s_ht + p_hkv, b_h.to(ht.dtype.element_ty), mask=m_h & ok)
