"""The linear-attention kernels as `torch.library` custom ops (namespace `hybridserve`).

Every op has a fake (meta) implementation, so torch.compile can trace through it and vLLM can split its graphs
around it (add the `hybridserve::*_pool` names to vLLM's splitting ops). Dispatch inside each op: CUDA tensors run
the Triton kernels when triton is importable, else the PyTorch references; CPU tensors (and float64 anywhere) run
the references (`gated_delta_rule/naive.py`, `gla/naive.py`). Triton is imported lazily, inside the CUDA branch.

Whole-sequence ops (the model's four public functions route CUDA tensors here; layouts q, k [B, T, H, K],
v [B, T, H, V], g/beta [B, T, H], gk [B, T, H, K], states [B, H, K, V]):
    gdn_chunk, gdn_recurrent(q, k, v, g, beta, scale, initial_state?) -> (o, final_state float32)
    gdn_chunk_train(same) -> (o, final_state, X, G): gdn_chunk under autograd, handing its forward's (I + A)^-1 and
      cumulative gates to the backward (the model-facing function takes it when a gradient is wanted)
    gla_chunk, gla_recurrent(q, k, v, gk, scale, initial_state?)      -> (o, final_state float32)
  differentiable; their backward is the op gdn_chunk_bwd / gla_chunk_bwd: the Triton backward
  (gated_delta_rule/chunk_bwd.py, gla/chunk_bwd.py; K, V <= 128), else a recompute through the chunked PyTorch
  reference in float32 (torch.func.vjp).

State-pool ops for serving (mutate `state_pool` [num_slots, H, K, V] float32 or bf16 in place; see README.md; their
plain bodies are in DIRECT, for callers already inside an opaque op):
    gdn_recurrent_pool / gdn_chunk_pool(q, k, v, g?, beta?, a?, b?, A_log?, dt_bias?, state_pool, state_indices,
                                        cu_seqlens?, has_initial_state?, scale, use_qk_l2norm) -> o
      gdn_chunk_pool takes one more flag, qkv_silu: q, k, v are the raw projection and get GDN's SiLU first (in the
      prologue kernel on the Triton path: serving's prefill then needs no activation launch of its own).
    gla_recurrent_pool / gla_chunk_pool(q, k, v, gk, state_pool, state_indices, cu_seqlens?, has_initial_state?,
                                        scale, gate_logit_normalizer?) -> o
    short_conv_decode_pool(x, weight, state_pool, state_indices, silu) -> y
    short_conv_varlen_pool(x, weight, state_pool, state_indices, cu_seqlens, has_initial_state?, silu, token_seq?) -> y
      the short causal conv over a conv-state pool [slots, C, W - 1] (short_conv/): one token per sequence, or
      packed sequences (token_seq: the [T] token -> sequence map, when the caller shares it between layers).
"""

from __future__ import annotations

import os
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.library import custom_op

from ._triton_utils import use_triton
from .gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from .gla.naive import naive_chunk_gla, naive_recurrent_gla
from .short_conv.naive import naive_short_conv_decode_, naive_short_conv_varlen_

NS = "hybridserve"


def _state_dtype(q: Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


def _state_like(q: Tensor, v: Tensor, N: int) -> Tensor:
    H, K = q.shape[-2:]
    return q.new_empty(N, H, K, v.shape[-1], dtype=_state_dtype(q))


def _canonical(*xs: Tensor):
    """Fresh row-major strides (fake tensors assume them; the references may return permuted views)."""
    out = []
    for x in xs:
        strides, acc = [], 1
        for n in reversed(x.shape):
            strides.append(acc)
            acc *= max(n, 1)
        if x.stride() != tuple(reversed(strides)):
            x = torch.empty(x.shape, dtype=x.dtype, device=x.device).copy_(x)
        out.append(x)
    return tuple(out)


def _slot_ok(h0: Optional[Tensor], B: int, H: int, K: int, V: int) -> Optional[Tensor]:
    if h0 is None:
        return None
    if h0.stride()[1:] != (K * V, V, 1):
        h0 = h0.contiguous()
    return h0


# ------------------------------------------------------------------------------------------- GDN, whole sequences
@custom_op(f"{NS}::gdn_chunk", mutates_args=())
def gdn_chunk(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float,
              initial_state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    if use_triton(q, k, v, g, beta, initial_state):
        from .gated_delta_rule.chunk import chunk_gdn_fwd

        B, T, H, K = q.shape
        ht = _state_like(q, v, B)
        o = chunk_gdn_fwd(q, k, v, g, beta, scale, initial_state=_slot_ok(initial_state, B, H, K, v.shape[-1]),
                          final_state=ht)
        return o, ht
    return _canonical(*naive_chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state, True))


@custom_op(f"{NS}::gdn_recurrent", mutates_args=())
def gdn_recurrent(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float,
                  initial_state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    if use_triton(q, k, v, g, beta, initial_state):
        from .gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd

        B, T, H, K = q.shape
        ht = _state_like(q, v, B)
        o = fused_recurrent_gdn_fwd(q, k, v, g, beta, scale=scale,
                                    initial_state=_slot_ok(initial_state, B, H, K, v.shape[-1]), final_state=ht)
        return o, ht
    return _canonical(*naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale, initial_state, True))


@gdn_chunk.register_fake
@gdn_recurrent.register_fake
def _gdn_fake(q, k, v, g, beta, scale, initial_state):
    return q.new_empty(v.shape, dtype=q.dtype), _state_like(q, v, q.shape[0])


def _keeps_inverse(q, k, v, g, beta, initial_state) -> bool:
    """Whether gdn_chunk_train hands the forward's X and G to the backward: on the Triton route, where the Triton
    backward takes them (K, V <= 128). The same answer for real and fake tensors, so the fake's shapes are right."""
    if not use_triton(q, k, v, g, beta, initial_state):
        return False
    from .gated_delta_rule import chunk_bwd

    return chunk_bwd.supported(q, v)


@custom_op(f"{NS}::gdn_chunk_train", mutates_args=())
def gdn_chunk_train(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float,
                    initial_state: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """gdn_chunk for autograd: (o, final state, X, G) with X = (I + A)^{-1} of every chunk [B, T, H, 64] and G the
    in-chunk cumulative gates [B, T, H] (float32, not differentiable), which the Triton backward reloads instead of
    recomputing the inverse (8 x 32K, H = 16: X is 1.07 GB, which the forward writes anyway as its prep's scratch).
    Off the Triton route X and G are empty and the backward recomputes as gdn_chunk's does."""
    if _keeps_inverse(q, k, v, g, beta, initial_state):
        from .gated_delta_rule.chunk import chunk_gdn_fwd

        B, T, H, K = q.shape
        ht = _state_like(q, v, B)
        o, X, gcum = chunk_gdn_fwd(q, k, v, g, beta, scale, initial_state=_slot_ok(initial_state, B, H, K, v.shape[-1]),
                                   final_state=ht, keep_inverse=True)
        return o, ht, X, gcum
    o, ht = gdn_chunk(q, k, v, g, beta, scale, initial_state)
    return o, ht, q.new_empty(0, dtype=torch.float32), q.new_empty(0, dtype=torch.float32)


@gdn_chunk_train.register_fake
def _gdn_train_fake(q, k, v, g, beta, scale, initial_state):
    keep = _keeps_inverse(q, k, v, g, beta, initial_state)
    return (q.new_empty(v.shape, dtype=q.dtype), _state_like(q, v, q.shape[0]),
            q.new_empty((*g.shape, 64) if keep else (0,), dtype=torch.float32),
            q.new_empty(g.shape if keep else (0,), dtype=torch.float32))


def _grads_like(grads, primals: list, inputs: tuple) -> list:
    """Each gradient with its primal's dtype, shape and the strides of empty_like(primal), as the fake
    implementations promise. The Triton backward already returns fresh tensors of the primal's dtype, contiguous,
    which is what empty_like gives for contiguous primals and for strided views (not dense: empty_like makes those
    contiguous), so they go out as they are; only a dense permuted primal, a dtype mismatch, or a gradient sharing
    memory with an input (a custom op's output must not alias one) costs a copy. At 8 x 32K the copies had been
    ~0.4 GB of traffic per call."""
    storages = {x.untyped_storage().data_ptr() for x in inputs if isinstance(x, Tensor)}
    out = []
    for gr, p in zip(grads, primals):
        if p is None:
            out.append(grads[0].new_empty(0))
        elif (gr.dtype == p.dtype and gr.shape == p.shape
              and gr.stride() == torch.empty_like(p, device="meta").stride()  # what the fake promises
              and gr.untyped_storage().data_ptr() not in storages):
            out.append(gr)
        else:
            out.append(torch.empty_like(p).copy_(gr))
    return out


def _vjp_reference(fn, primals: list, cotangents: tuple) -> list:
    """Gradients of fn at primals by recomputing through a PyTorch reference (float32, or float64 for float64)."""
    wd = torch.float64 if any(p.dtype == torch.float64 for p in primals) else torch.float32
    xs = [p.to(wd) for p in primals]
    _, pullback = torch.func.vjp(fn, *xs)
    grads = pullback(tuple(c.to(wd) for c in cotangents))
    return [torch.empty_like(p).copy_(gr) for gr, p in zip(grads, primals)]  # the primals' dtypes and strides


@custom_op(f"{NS}::gdn_chunk_bwd", mutates_args=())
def gdn_chunk_bwd(q: Tensor, k: Tensor, v: Tensor, g: Tensor, beta: Tensor, scale: float,
                  initial_state: Optional[Tensor], do: Tensor, dht: Tensor, inverse: Optional[Tensor] = None,
                  gcum: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """inverse, gcum: gdn_chunk_train's X and G (the Triton backward then skips recomputing them)."""
    if use_triton(q, k, v, g, beta, initial_state, do, dht):
        from .gated_delta_rule import chunk_bwd

        if chunk_bwd.supported(q, v):
            kept = inverse is not None and inverse.numel() > 0
            grads = chunk_bwd.chunk_gdn_bwd(q, k, v, g, beta, scale, initial_state, do, dht,
                                            inverse=inverse if kept else None, gcum=gcum if kept else None)
            inputs = (q, k, v, g, beta, initial_state, do, dht)
            return tuple(_grads_like(grads, [q, k, v, g, beta, initial_state], inputs))
    if initial_state is None:
        def fn(q, k, v, g, beta):
            return naive_chunk_gated_delta_rule(q, k, v, g, beta, scale, None, True)
        grads = _vjp_reference(fn, [q, k, v, g, beta], (do, dht))
        return (*grads, q.new_empty(0))
    def fn0(q, k, v, g, beta, h0):  # noqa: E306
        return naive_chunk_gated_delta_rule(q, k, v, g, beta, scale, h0, True)
    return tuple(_vjp_reference(fn0, [q, k, v, g, beta, initial_state], (do, dht)))


@gdn_chunk_bwd.register_fake
def _gdn_bwd_fake(q, k, v, g, beta, scale, initial_state, do, dht, inverse=None, gcum=None):
    dh0 = torch.empty_like(initial_state) if initial_state is not None else q.new_empty(0)
    return (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(g), torch.empty_like(beta),
            dh0)


def _gdn_setup(ctx, inputs, output):
    q, k, v, g, beta, scale, initial_state = inputs
    ctx.scale = scale
    ctx.has_h0 = initial_state is not None
    ctx.save_for_backward(q, k, v, g, beta, initial_state)


def _gdn_backward(ctx, do, dht, *_kept_grads):
    q, k, v, g, beta, h0, *kept = ctx.saved_tensors
    if do is None:
        do = q.new_zeros(v.shape)
    if dht is None:
        dht = q.new_zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[-1], dtype=_state_dtype(q))
    dq, dk, dv, dg, dbeta, dh0 = torch.ops.hybridserve.gdn_chunk_bwd(q, k, v, g, beta, ctx.scale, h0, do, dht, *kept)
    return dq, dk, dv, dg, dbeta, None, (dh0 if ctx.has_h0 else None)


def _gdn_train_setup(ctx, inputs, output):
    q, k, v, g, beta, scale, initial_state = inputs
    ctx.scale = scale
    ctx.has_h0 = initial_state is not None
    ctx.mark_non_differentiable(output[2], output[3])
    ctx.save_for_backward(q, k, v, g, beta, initial_state, output[2], output[3])


gdn_chunk.register_autograd(_gdn_backward, setup_context=_gdn_setup)
gdn_recurrent.register_autograd(_gdn_backward, setup_context=_gdn_setup)
gdn_chunk_train.register_autograd(_gdn_backward, setup_context=_gdn_train_setup)


# ------------------------------------------------------------------------------------------- GLA, whole sequences
@custom_op(f"{NS}::gla_chunk", mutates_args=())
def gla_chunk(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, scale: float,
              initial_state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    if use_triton(q, k, v, gk, initial_state):
        from .gla.chunk import chunk_gla_fwd

        B, T, H, K = q.shape
        ht = _state_like(q, v, B)
        o = chunk_gla_fwd(q, k, v, gk, scale, initial_state=_slot_ok(initial_state, B, H, K, v.shape[-1]),
                          final_state=ht)
        return o, ht
    return _canonical(*naive_chunk_gla(q, k, v, gk, scale, initial_state, True))


@custom_op(f"{NS}::gla_recurrent", mutates_args=())
def gla_recurrent(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, scale: float,
                  initial_state: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    if use_triton(q, k, v, gk, initial_state):
        from .gla.fused_recurrent import fused_recurrent_gla_fwd

        B, T, H, K = q.shape
        ht = _state_like(q, v, B)
        o = fused_recurrent_gla_fwd(q, k, v, gk, scale=scale,
                                    initial_state=_slot_ok(initial_state, B, H, K, v.shape[-1]), final_state=ht)
        return o, ht
    return _canonical(*naive_recurrent_gla(q, k, v, gk, scale, initial_state, True))


@gla_chunk.register_fake
@gla_recurrent.register_fake
def _gla_fake(q, k, v, gk, scale, initial_state):
    return q.new_empty(v.shape, dtype=q.dtype), _state_like(q, v, q.shape[0])


@custom_op(f"{NS}::gla_chunk_bwd", mutates_args=())
def gla_chunk_bwd(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, scale: float, initial_state: Optional[Tensor],
                  do: Tensor, dht: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if use_triton(q, k, v, gk, initial_state, do, dht):
        from .gla import chunk_bwd

        if chunk_bwd.supported(q, v):
            grads = chunk_bwd.chunk_gla_bwd(q, k, v, gk, scale, initial_state, do, dht)
            inputs = (q, k, v, gk, initial_state, do, dht)
            return tuple(_grads_like(grads, [q, k, v, gk, initial_state], inputs))
    if initial_state is None:
        def fn(q, k, v, gk):
            return naive_chunk_gla(q, k, v, gk, scale, None, True)
        grads = _vjp_reference(fn, [q, k, v, gk], (do, dht))
        return (*grads, q.new_empty(0))
    def fn0(q, k, v, gk, h0):  # noqa: E306
        return naive_chunk_gla(q, k, v, gk, scale, h0, True)
    return tuple(_vjp_reference(fn0, [q, k, v, gk, initial_state], (do, dht)))


@gla_chunk_bwd.register_fake
def _gla_bwd_fake(q, k, v, gk, scale, initial_state, do, dht):
    dh0 = torch.empty_like(initial_state) if initial_state is not None else q.new_empty(0)
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v), torch.empty_like(gk), dh0


def _gla_setup(ctx, inputs, output):
    q, k, v, gk, scale, initial_state = inputs
    ctx.scale = scale
    ctx.has_h0 = initial_state is not None
    ctx.save_for_backward(q, k, v, gk, initial_state)


def _gla_backward(ctx, do, dht):
    q, k, v, gk, h0 = ctx.saved_tensors
    if do is None:
        do = q.new_zeros(v.shape)
    if dht is None:
        dht = q.new_zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[-1], dtype=_state_dtype(q))
    dq, dk, dv, dgk, dh0 = torch.ops.hybridserve.gla_chunk_bwd(q, k, v, gk, ctx.scale, h0, do, dht)
    return dq, dk, dv, dgk, None, (dh0 if ctx.has_h0 else None)


gla_chunk.register_autograd(_gla_backward, setup_context=_gla_setup)
gla_recurrent.register_autograd(_gla_backward, setup_context=_gla_setup)


# ------------------------------------------------------------------------------------------------ state pools
def gdn_gates(a: Tensor, b: Tensor, A_log: Tensor, dt_bias: Tensor) -> tuple[Tensor, Tensor]:
    """The gdn_v4 gates from the raw projections: g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b) (float32)."""
    g = -A_log.float().exp() * F.softplus(a.float() + dt_bias.float())
    return g, torch.sigmoid(b.float())


def _l2norm(x: Tensor) -> Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + 1e-6)).to(x.dtype)


def _pool_reference(run, tensors: list, state_pool: Tensor, state_indices: Tensor, cu_seqlens: Optional[Tensor],
                    has_initial_state: Optional[Tensor], v: Tensor, q: Tensor) -> Tensor:
    """The reference for the pool ops: packed sequences (cu_seqlens) one by one, run(tensors of one sequence
    [1, T, ...], h0 [1, H, K, V] or None) -> (o, ht); sequences of one length all at once
    (_pool_reference_batched). `tensors` holds (tensor, number of per-token dims) pairs: q, k, v, gk have two
    ([H, D]), g and beta one ([H]). Padding sequences (negative index) leave the pool alone and get a zero-state
    output."""
    H, K = q.shape[-2:]
    V = v.shape[-1]
    if cu_seqlens is None:  # one token per sequence ([N, H, *]) or [B, T, H, *]: all equally long, one batch
        if q.dim() == 3:
            tensors = [(t.unsqueeze(1), d) for t, d in tensors]
        return _pool_reference_batched(run, [t for t, _ in tensors], state_pool, state_indices, has_initial_state,
                                       v, q)
    N = cu_seqlens.shape[0] - 1
    cu = cu_seqlens.tolist()
    TT = q.numel() // (H * K)
    flat = [t.reshape(1, TT, *t.shape[t.dim() - d:]) for t, d in tensors]
    idx = state_indices.tolist()
    has = has_initial_state.tolist() if has_initial_state is not None else [True] * N
    outs = []
    for n in range(N):
        slot = idx[n]
        h0 = state_pool[slot:slot + 1] if slot >= 0 and has[n] else None
        o, ht = run([t[:, cu[n]:cu[n + 1]] for t in flat], h0)
        if slot >= 0:
            state_pool[slot].copy_(ht[0].to(state_pool.dtype))
        outs.append(o)
    o = torch.cat(outs, 1) if outs else q.new_empty(1, 0, H, V)
    return _canonical(o.reshape(v.shape).to(q.dtype))[0]


def _pool_reference_batched(run, tensors: list, state_pool: Tensor, state_indices: Tensor,
                            has_initial_state: Optional[Tensor], v: Tensor, q: Tensor) -> Tensor:
    """_pool_reference for sequences of one length ([N, T, ...]): the batch rows of the references are independent,
    so one call serves all N (a CPU server's decode step, N requests, pays one call per layer instead of N).
    Distinct requests hold distinct slots, as vLLM guarantees."""
    N = tensors[0].shape[0]
    if N == 0:
        return q.new_empty(v.shape)
    idx = state_indices.to(torch.long)
    live = idx >= 0
    start = live if has_initial_state is None else live & has_initial_state.to(torch.bool)
    # where, not a product: a slot no request has used yet may hold anything, NaN included
    h0 = torch.where(start.view(N, 1, 1, 1), state_pool[idx.clamp(min=0)], 0)
    o, ht = run(tensors, h0)
    if bool(live.any()):
        state_pool[idx[live]] = ht[live].to(state_pool.dtype)
    return _canonical(o.reshape(v.shape).to(q.dtype))[0]


def prefill_prologue() -> bool:
    """HYBRIDSERVE_GDN_PREFILL_PROLOGUE (default "1"; read at every call, so one process can time both): the Triton
    path of gdn_chunk_pool prepares raw-gate inputs with one kernel (gated_delta_rule/prefill_inputs.py); "0" keeps
    the PyTorch preparation below (~22 launches, plus chunk_gdn_fwd's copy of v)."""
    return os.environ.get("HYBRIDSERVE_GDN_PREFILL_PROLOGUE", "1") != "0"


def decode_kernel() -> str:
    """HYBRIDSERVE_GDN_DECODE (read at every call): which Triton kernel runs gdn_recurrent_pool's one-token-per-
    sequence case. "tile" (default): fused_recurrent.py, one state tile per program; "persistent": decode.py's
    persistent grid, an experiment (no faster on the H200 so far; docs/benchmarks/kernels.md), switchable here so
    that a serving run can compare the two without a code change."""
    v = os.environ.get("HYBRIDSERVE_GDN_DECODE", "tile").strip().lower() or "tile"
    if v not in ("tile", "persistent"):
        raise ValueError(f"HYBRIDSERVE_GDN_DECODE={v!r}: expected tile or persistent")
    return v


# The plain bodies of the state-pool ops, by op name. Serving calls them from inside vLLM's own graph-opaque custom op
# (serve/linear_layer.py), where nothing traces them: going through torch's dispatcher there would only add the
# custom-op layers (autograd, ADInplaceOrView with its Python argument filling, backend selection), ~0.2 ms of host
# time per call measured on CPU, paid by every linear layer of every eager (prefill or mixed) step.
DIRECT: dict = {}


def _pool_op(name: str):
    def register(fn):
        DIRECT[name] = fn
        return custom_op(f"{NS}::{name}", fn, mutates_args=("state_pool",))
    return register


def _gdn_pool_inputs(q, k, v, g, beta, a, b, A_log, dt_bias, use_qk_l2norm, qkv_silu=False):
    if qkv_silu:
        q, k, v = F.silu(q), F.silu(k), F.silu(v)
    if g is None:
        g, beta = gdn_gates(a, b, A_log, dt_bias)
    if use_qk_l2norm:
        q, k = _l2norm(q), _l2norm(k)
    return q, k, v, g, beta


@_pool_op("gdn_recurrent_pool")
def gdn_recurrent_pool(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Optional[Tensor],
                       a: Optional[Tensor], b: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                       state_pool: Tensor, state_indices: Tensor, cu_seqlens: Optional[Tensor],
                       has_initial_state: Optional[Tensor], scale: float, use_qk_l2norm: bool) -> Tensor:
    if use_triton(q, k, v, state_pool):
        from .gated_delta_rule.fused_recurrent import fused_recurrent_gdn_fwd

        if cu_seqlens is None and q.dim() == 3 and has_initial_state is None and decode_kernel() == "persistent":
            from .gated_delta_rule.decode import gdn_decode_pool

            return gdn_decode_pool(q, k, v, g, beta, a=a, b=b, A_log=A_log, dt_bias=dt_bias, state_pool=state_pool,
                                   state_indices=state_indices, scale=scale, use_qk_l2norm=use_qk_l2norm)
        return fused_recurrent_gdn_fwd(
            q, k, v, g, beta, a=a, b=b, A_log=A_log, dt_bias=dt_bias, scale=scale, initial_state=state_pool,
            final_state=state_pool, state_indices=state_indices, has_initial_state=has_initial_state,
            cu_seqlens=cu_seqlens, use_qk_l2norm=use_qk_l2norm)
    q, k, v, g, beta = _gdn_pool_inputs(q, k, v, g, beta, a, b, A_log, dt_bias, use_qk_l2norm)

    def run(seq, h0):
        return naive_recurrent_gated_delta_rule(*seq, scale, h0, True)
    tensors = [(q, 2), (k, 2), (v, 2), (g, 1), (beta, 1)]
    return _pool_reference(run, tensors, state_pool, state_indices, cu_seqlens, has_initial_state, v, q)


@_pool_op("gdn_chunk_pool")
def gdn_chunk_pool(q: Tensor, k: Tensor, v: Tensor, g: Optional[Tensor], beta: Optional[Tensor],
                   a: Optional[Tensor], b: Optional[Tensor], A_log: Optional[Tensor], dt_bias: Optional[Tensor],
                   state_pool: Tensor, state_indices: Tensor, cu_seqlens: Optional[Tensor],
                   has_initial_state: Optional[Tensor], scale: float, use_qk_l2norm: bool,
                   qkv_silu: bool = False) -> Tensor:
    if use_triton(q, k, v, state_pool):
        from .gated_delta_rule.chunk import chunk_gdn_fwd
        from .gated_delta_rule.fused_chunk import fused_chunk_gdn_fwd, fused_chunk_max_tokens, sequences

        H, K = q.shape[-2:]
        TT = q.numel() // (H * K)
        if g is None and prefill_prologue() and 0 < TT <= fused_chunk_max_tokens(K, v.shape[-1]):
            # short: prologue and forward in one launch, reading the raw projection in place
            from .gated_delta_rule.prefill_inputs import _rows_view

            N, T = sequences(q, TT, cu_seqlens)
            o = fused_chunk_gdn_fwd(
                _rows_view(q, TT), _rows_view(k, TT), _rows_view(v, TT), a.reshape(TT, H), b.reshape(TT, H), scale, N,
                T, state_pool, state_indices, has_initial_state, state_pool, cu_seqlens, A_log=A_log.reshape(H),
                dt_bias=dt_bias.reshape(H), use_qk_l2norm=use_qk_l2norm, silu=qkv_silu)
            return o.view(v.shape)
        if g is None and prefill_prologue():  # SiLU + gates + L2 norm + contiguous copies in one launch
            from .gated_delta_rule.prefill_inputs import gdn_prefill_inputs

            q, k, v, g, beta = gdn_prefill_inputs(q, k, v, a, b, A_log, dt_bias, use_qk_l2norm, silu=qkv_silu)
        else:
            q, k, v, g, beta = _gdn_pool_inputs(q, k, v, g, beta, a, b, A_log, dt_bias, use_qk_l2norm, qkv_silu)
        return chunk_gdn_fwd(q, k, v, g, beta, scale, initial_state=state_pool, state_indices=state_indices,
                             has_initial_state=has_initial_state, final_state=state_pool, cu_seqlens=cu_seqlens)
    q, k, v, g, beta = _gdn_pool_inputs(q, k, v, g, beta, a, b, A_log, dt_bias, use_qk_l2norm, qkv_silu)

    def run(seq, h0):
        return naive_chunk_gated_delta_rule(*seq, scale, h0, True)
    tensors = [(q, 2), (k, 2), (v, 2), (g, 1), (beta, 1)]
    return _pool_reference(run, tensors, state_pool, state_indices, cu_seqlens, has_initial_state, v, q)


@gdn_recurrent_pool.register_fake
def _gdn_pool_fake(q, k, v, g, beta, a, b, A_log, dt_bias, state_pool, state_indices, cu_seqlens,
                   has_initial_state, scale, use_qk_l2norm):
    return q.new_empty(v.shape, dtype=q.dtype)


@gdn_chunk_pool.register_fake
def _gdn_chunk_pool_fake(q, k, v, g, beta, a, b, A_log, dt_bias, state_pool, state_indices, cu_seqlens,
                         has_initial_state, scale, use_qk_l2norm, qkv_silu=False):
    return q.new_empty(v.shape, dtype=q.dtype)


def _gla_decay(gk: Tensor, gate_logit_normalizer: Optional[float]) -> Tensor:
    return gk if gate_logit_normalizer is None else F.logsigmoid(gk.float()) / gate_logit_normalizer


@_pool_op("gla_recurrent_pool")
def gla_recurrent_pool(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, state_pool: Tensor, state_indices: Tensor,
                       cu_seqlens: Optional[Tensor], has_initial_state: Optional[Tensor], scale: float,
                       gate_logit_normalizer: Optional[float]) -> Tensor:
    if use_triton(q, k, v, gk, state_pool):
        from .gla.fused_recurrent import fused_recurrent_gla_fwd

        return fused_recurrent_gla_fwd(
            q, k, v, gk, scale=scale, gate_logit_normalizer=gate_logit_normalizer, initial_state=state_pool,
            final_state=state_pool, state_indices=state_indices, has_initial_state=has_initial_state,
            cu_seqlens=cu_seqlens)
    gk = _gla_decay(gk, gate_logit_normalizer)

    def run(seq, h0):
        return naive_recurrent_gla(*seq, scale, h0, True)
    tensors = [(q, 2), (k, 2), (v, 2), (gk, 2)]
    return _pool_reference(run, tensors, state_pool, state_indices, cu_seqlens, has_initial_state, v, q)


@_pool_op("gla_chunk_pool")
def gla_chunk_pool(q: Tensor, k: Tensor, v: Tensor, gk: Tensor, state_pool: Tensor, state_indices: Tensor,
                   cu_seqlens: Optional[Tensor], has_initial_state: Optional[Tensor], scale: float,
                   gate_logit_normalizer: Optional[float]) -> Tensor:
    gk = _gla_decay(gk, gate_logit_normalizer)
    if use_triton(q, k, v, gk, state_pool):
        from .gla.chunk import chunk_gla_fwd

        return chunk_gla_fwd(q, k, v, gk, scale, initial_state=state_pool, state_indices=state_indices,
                             has_initial_state=has_initial_state, final_state=state_pool, cu_seqlens=cu_seqlens)

    def run(seq, h0):
        return naive_chunk_gla(*seq, scale, h0, True)
    tensors = [(q, 2), (k, 2), (v, 2), (gk, 2)]
    return _pool_reference(run, tensors, state_pool, state_indices, cu_seqlens, has_initial_state, v, q)


@gla_recurrent_pool.register_fake
@gla_chunk_pool.register_fake
def _gla_pool_fake(q, k, v, gk, state_pool, state_indices, cu_seqlens, has_initial_state, scale,
                   gate_logit_normalizer):
    return q.new_empty(v.shape, dtype=q.dtype)


@_pool_op("short_conv_decode_pool")
def short_conv_decode_pool(x: Tensor, weight: Tensor, state_pool: Tensor, state_indices: Tensor,
                           silu: bool) -> Tensor:
    """The short conv's decode step over a conv-state pool [slots, C, W - 1] (short_conv/naive.py has the math)."""
    if use_triton(x, state_pool, head_dims=False):
        from .short_conv.decode import short_conv_decode

        return short_conv_decode(x, weight, state_pool, state_indices, silu)
    return naive_short_conv_decode_(x, weight, state_pool, state_indices, silu)


@short_conv_decode_pool.register_fake
def _short_conv_decode_fake(x, weight, state_pool, state_indices, silu):
    return x.new_empty(x.shape)


@_pool_op("short_conv_varlen_pool")
def short_conv_varlen_pool(x: Tensor, weight: Tensor, state_pool: Tensor, state_indices: Tensor, cu_seqlens: Tensor,
                           has_initial_state: Optional[Tensor], silu: bool,
                           token_seq: Optional[Tensor] = None) -> Tensor:
    """The short conv over packed sequences (prefill), continuing from and updating the conv-state pool."""
    if use_triton(x, state_pool, head_dims=False):
        from .short_conv.prefill import short_conv_prefill

        return short_conv_prefill(x, weight, state_pool, state_indices, cu_seqlens, has_initial_state, silu,
                                  token_seq)
    return naive_short_conv_varlen_(x, weight, state_pool, state_indices, cu_seqlens, has_initial_state, silu)


@short_conv_varlen_pool.register_fake
def _short_conv_varlen_fake(x, weight, state_pool, state_indices, cu_seqlens, has_initial_state, silu,
                            token_seq=None):
    return x.new_empty(x.shape)
