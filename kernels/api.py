"""The functions `hybridserve.kernels` exports (see its docstring): the model-facing four and the state-pool ones."""

from __future__ import annotations

import os

import torch

from . import ops
from ._triton_utils import use_triton
from .gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from .gla.naive import naive_chunk_gla, naive_recurrent_gla

PAD_SLOT_ID = -1  # vLLM's padding slot: such a row's state is neither read nor written


def _scale(q, scale):
    return float(q.shape[-1] ** -0.5 if scale is None else scale)


def _keep_inverse() -> bool:
    """HYBRIDSERVE_GDN_KEEP_INVERSE=0 trades the backward's speed for memory: the forward's (I + A)^-1 (float32,
    64 values per token and head: 1.07 GB per layer at 8 x 32K, H = 16) is then dropped and recomputed."""
    return os.environ.get("HYBRIDSERVE_GDN_KEEP_INVERSE", "1").strip() != "0"


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Gated delta rule over whole sequences (training, prefill)."""
    if use_triton(q, k, v, g, beta, initial_state):
        if _keep_inverse() and torch.is_grad_enabled() and any(
                x is not None and x.requires_grad for x in (q, k, v, g, beta, initial_state)):
            # training: the op that keeps the forward's (I + A)^-1 for the backward
            o, s, _, _ = torch.ops.hybridserve.gdn_chunk_train(q, k, v, g, beta, _scale(q, scale), initial_state)
        else:
            o, s = torch.ops.hybridserve.gdn_chunk(q, k, v, g, beta, _scale(q, scale), initial_state)
        return o, (s if output_final_state else None)
    return naive_chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state, output_final_state)


def fused_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Gated delta rule one token at a time (decode)."""
    if use_triton(q, k, v, g, beta, initial_state):
        o, s = torch.ops.hybridserve.gdn_recurrent(q, k, v, g, beta, _scale(q, scale), initial_state)
        return o, (s if output_final_state else None)
    return naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale, initial_state, output_final_state)


def chunk_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention over whole sequences (training, prefill)."""
    if use_triton(q, k, v, gk, initial_state):
        o, s = torch.ops.hybridserve.gla_chunk(q, k, v, gk, _scale(q, scale), initial_state)
        return o, (s if output_final_state else None)
    return naive_chunk_gla(q, k, v, gk, scale, initial_state, output_final_state)


def fused_recurrent_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention one token at a time (decode)."""
    if use_triton(q, k, v, gk, initial_state):
        o, s = torch.ops.hybridserve.gla_recurrent(q, k, v, gk, _scale(q, scale), initial_state)
        return o, (s if output_final_state else None)
    return naive_recurrent_gla(q, k, v, gk, scale, initial_state, output_final_state)


# ------------------------------------------------------------------------------------------------ state pools
# dispatch=False calls the op's body directly (ops.DIRECT), skipping torch's dispatcher: for callers that already run
# inside a graph-opaque custom op (the vLLM layer), where the custom-op layers only cost host time.
def _pool(name: str, dispatch: bool):
    return getattr(torch.ops.hybridserve, name) if dispatch else ops.DIRECT[name]


def gdn_decode_(q, k, v, a, b, A_log, dt_bias, state_pool, state_indices, scale=None, use_qk_l2norm=False,
                dispatch=True):
    """One decode step per sequence, gates fused: q, k [N, H, K], v [N, H, V], raw a, b [N, H] (g = -exp(A_log)
    softplus(a + dt_bias), beta = sigmoid(b)), A_log, dt_bias [H]. Reads and writes state_pool[state_indices[n]]
    in place (index < 0: padding, untouched). Returns o [N, H, V]. CUDA-graph safe (no host synchronisation)."""
    return _pool("gdn_recurrent_pool", dispatch)(
        q, k, v, None, None, a, b, A_log, dt_bias, state_pool, state_indices, None, None, _scale(q, scale),
        use_qk_l2norm)


def gdn_recurrent_varlen_(q, k, v, g, beta, cu_seqlens, state_pool, state_indices, has_initial_state=None,
                          scale=None, use_qk_l2norm=False, a=None, b=None, A_log=None, dt_bias=None, dispatch=True):
    """Short packed sequences through the recurrent kernel (tokens [TT, H, *], cu_seqlens [N+1]); pass either
    (g, beta) or (a, b, A_log, dt_bias) with g = beta = None. Sequences with has_initial_state[n] == 0 start from
    zero. Final states are written into the pool. Returns o [TT, H, V]."""
    return _pool("gdn_recurrent_pool", dispatch)(
        q, k, v, g, beta, a, b, A_log, dt_bias, state_pool, state_indices, cu_seqlens, has_initial_state,
        _scale(q, scale), use_qk_l2norm)


def gdn_prefill_varlen(q, k, v, g, beta, cu_seqlens, state_pool, state_indices, has_initial_state=None,
                       scale=None, use_qk_l2norm=False, a=None, b=None, A_log=None, dt_bias=None, dispatch=True,
                       qkv_silu=False):
    """Chunked prefill of packed sequences (tokens [TT, H, *] or [1, TT, H, *], cu_seqlens [N+1] int32/int64):
    initial states from state_pool[state_indices[n]] where has_initial_state[n] (else zero), final states
    written back into the same slots. Returns o shaped like v. qkv_silu: q, k, v are pre-activation (GDN's SiLU
    is applied first, fused into the prologue kernel on the Triton path)."""
    return _pool("gdn_chunk_pool", dispatch)(
        q, k, v, g, beta, a, b, A_log, dt_bias, state_pool, state_indices, cu_seqlens, has_initial_state,
        _scale(q, scale), use_qk_l2norm, qkv_silu)


def gla_decode_(q, k, v, gk, state_pool, state_indices, scale=None, gate_logit_normalizer=None, dispatch=True):
    """One GLA decode step per sequence: q, k, gk [N, H, K], v [N, H, V]. gk is the log decay, or the raw gate
    logits when gate_logit_normalizer is given (decay = logsigmoid(gk) / normalizer, computed in the kernel)."""
    return _pool("gla_recurrent_pool", dispatch)(
        q, k, v, gk, state_pool, state_indices, None, None, _scale(q, scale), gate_logit_normalizer)


def gla_recurrent_varlen_(q, k, v, gk, cu_seqlens, state_pool, state_indices, has_initial_state=None, scale=None,
                          gate_logit_normalizer=None, dispatch=True):
    return _pool("gla_recurrent_pool", dispatch)(
        q, k, v, gk, state_pool, state_indices, cu_seqlens, has_initial_state, _scale(q, scale),
        gate_logit_normalizer)


def gla_prefill_varlen(q, k, v, gk, cu_seqlens, state_pool, state_indices, has_initial_state=None, scale=None,
                       gate_logit_normalizer=None, dispatch=True):
    return _pool("gla_chunk_pool", dispatch)(
        q, k, v, gk, state_pool, state_indices, cu_seqlens, has_initial_state, _scale(q, scale),
        gate_logit_normalizer)


def short_conv_decode_(x, weight, state_pool, state_indices, silu=False, dispatch=True):
    """One decode step of the depthwise causal short conv: x [N, C], weight [C, W] (or [C, 1, W]), conv-state pool
    [slots, C, W - 1] updated in place through state_indices [N] (index < 0: padding, untouched); SiLU applied to
    the output when `silu`. Returns y [N, C]. The Triton path is one launch and CUDA-graph safe."""
    return _pool("short_conv_decode_pool", dispatch)(x, weight, state_pool, state_indices, silu)


def short_conv_varlen_(x, weight, state_pool, state_indices, cu_seqlens, has_initial_state=None, silu=False,
                       token_seq=None, dispatch=True):
    """The depthwise causal short conv over packed sequences (prefill): x [T, C], cu_seqlens [N + 1]; sequence n
    continues from state_pool[state_indices[n]] where has_initial_state[n] (None: all), else from zeros, and its
    last W - 1 inputs are written back there. token_seq: short_conv.naive.token_to_sequence(cu_seqlens, T), when
    the caller builds it once for several layers. Returns y [T, C]. The Triton path is two launches, no host sync."""
    return _pool("short_conv_varlen_pool", dispatch)(x, weight, state_pool, state_indices, cu_seqlens,
                                                      has_initial_state, silu, token_seq)
