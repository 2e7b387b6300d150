"""The per-step math of one linear-attention layer over a state pool, without vLLM.

`serve/linear_layer.py` (the vLLM layer) calls `linear_attention_core` inside its custom op and `gated_rms_norm`
after it; `benchmarks/serve_layer_gpu.py` calls the same two on synthetic batches, so what the benchmark times is
what the server runs. Everything vLLM-specific (metadata lookup, tensor-parallel projections, the op
registration) stays in the layer.

A step's batch is vLLM's LINEAR metadata, decode-first: `num_decodes` requests of one token each, then
`num_prefills` packed prefill sequences; one pool slot per request (negative: padding). `plan_step` turns it into
the tensors every layer needs (prefill offsets, which prefills continue a state, the conv's index maps); the
layer builds it once per step and shares it between its linear layers, so those launches are paid once, not per
layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from hybridserve.kernels import gdn_decode_, gdn_prefill_varlen, gla_decode_, gla_prefill_varlen
from hybridserve.kernels import short_conv_decode_ as fused_conv_decode_
from hybridserve.kernels import short_conv_varlen_ as fused_conv_prefill_
from hybridserve.kernels.short_conv.naive import token_to_sequence
from hybridserve.kernels._triton_utils import use_triton

from .short_conv import ConvPlan, SlotWrites, conv_plan, short_conv_decode_, slot_writes, varlen_short_conv_


@dataclass(frozen=True)
class LayerShape:
    """One linear layer on one rank."""

    mixer: str  # "gdn" | "gla"
    H: int  # query heads (= state heads)
    Hkv: int  # key/value heads (< H: runtime GQA, head h reads kv head h // (H / Hkv))
    K: int
    V: int
    output_gate: bool
    gla_normalizer: Optional[float] = None

    @property
    def qkv_sizes(self) -> tuple[int, int, int]:
        return self.H * self.K, self.Hkv * self.K, self.Hkv * self.V

    @property
    def in_sizes(self) -> tuple[int, ...]:
        """Columns of the merged input projection: query, key, value, [out_gate], then GDN's beta and decay."""
        return self.qkv_sizes + ((self.H * self.V,) if self.output_gate else ()) + (
            (self.H, self.H) if self.mixer == "gdn" else ())

    @property
    def scale(self) -> float:
        return self.K**-0.5


class StepPlan(NamedTuple):
    num_decodes: int
    num_decode_tokens: int
    num_prefills: int
    num_prefill_tokens: int
    decode_slots: Tensor  # [num_decodes]
    prefill_slots: Tensor  # [num_prefills]
    prefill_cu: Tensor  # [num_prefills + 1], from 0 (the prefill tokens' own offsets)
    has_initial: Optional[Tensor]  # [num_prefills] int32: the request already has tokens in its state
    decode_writes: Optional[SlotWrites]  # short conv on its PyTorch path only (the Triton kernel skips padding itself)
    conv: Optional[ConvPlan]  # short conv with prefills, on its PyTorch path only
    conv_token_seq: Optional[Tensor] = None  # short conv with prefills, Triton path: [prefill tokens] -> sequence


def plan_step(num_decodes: int, num_decode_tokens: int, num_prefills: int, num_prefill_tokens: int,
              query_start_loc: Tensor, seq_lens: Tensor, slots: Tensor, conv_width: Optional[int] = None) -> StepPlan:
    """The per-step tensors of a decode-first batch (query_start_loc [reqs + 1], seq_lens [reqs], slots [reqs] on
    the device). conv_width: the short conv's size, or None without one. No host synchronisation."""
    nd, n_dec, n_pre = num_decode_tokens, num_decodes, num_prefills
    decode_slots = slots[:n_dec]
    prefill_slots = slots[n_dec: n_dec + n_pre]
    starts = query_start_loc[n_dec: n_dec + n_pre + 1]
    prefill_cu = starts - nd if nd else starts  # (no subtraction, no launch, in a prefill-only step)
    has_initial = None
    if n_pre:
        # A later chunk of a chunked prefill, or a prefix-cache hit, continues the request's state; the others start
        # from zero, whatever their slot held before.
        has_initial = (seq_lens[n_dec: n_dec + n_pre] > starts[1:] - starts[:-1]).to(torch.int32)
    conv = decode_writes = token_seq = None
    if conv_width is not None:
        triton = use_triton(slots, head_dims=False)  # the conv kernels need no index maps but the token map
        if n_dec and not triton:
            decode_writes = slot_writes(decode_slots)
        if n_pre and triton:
            token_seq = token_to_sequence(prefill_cu, num_prefill_tokens)
        elif n_pre:
            conv = conv_plan(prefill_cu, prefill_slots, num_prefill_tokens, conv_width)
    return StepPlan(n_dec, nd, n_pre, num_prefill_tokens, decode_slots, prefill_slots, prefill_cu, has_initial,
                    decode_writes, conv, token_seq)


def _heads(shape: LayerShape, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """[n, H*K] column slices -> [n, H, K] views (no copy: the decode kernels take any token and head stride, and
    the prefill ops make their own contiguous copies)."""
    n = q.shape[0]
    q, k, v = q.view(n, shape.H, shape.K), k.view(n, shape.Hkv, shape.K), v.view(n, shape.Hkv, shape.V)
    if shape.Hkv != shape.H:  # runtime GQA (RADLADS): query head h reads kv head h // group
        group = shape.H // shape.Hkv
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return q, k, v


def _qkv(shape: LayerShape, qkv: Tensor, conv: Optional[Tensor], activate: bool = True
         ) -> tuple[Tensor, Tensor, Tensor]:
    """Conv output (or the raw projection) -> q, k, v heads. GDN applies SiLU to all three; once on the whole
    [n, q+k+v] block, in place when it is the conv's fresh output. activate=False: no activation here (GDN's
    prefill op applies the SiLU inside its prologue kernel; the Triton conv decode step already applied it)."""
    x = conv if conv is not None else qkv
    if shape.mixer == "gdn" and activate:
        x = F.silu(x, inplace=conv is not None)
    return _heads(shape, *x.split(list(shape.qkv_sizes), dim=-1))


def linear_attention_core(shape: LayerShape, projected: Tensor, gk: Optional[Tensor], core_out: Tensor,
                          plan: StepPlan, recurrent: Tensor, conv_state: Optional[Tensor] = None,
                          conv_weight: Optional[Tensor] = None, A_log: Optional[Tensor] = None,
                          dt_bias: Optional[Tensor] = None) -> None:
    """Everything of one layer that reads or writes the state pools: [short conv], activations, the recurrence.

    projected [T, sum(in_sizes)]: the merged input projection (rows beyond the batch's tokens are padding and
    ignored); gk [T, H*K]: GLA's raw gate logits (None for GDN); core_out [T, H*V] receives the outputs.
    recurrent [slots, H, K, V] and conv_state [slots, C, W-1] are updated in place. Runs inside vLLM's opaque
    custom op, so it calls the state-pool ops' bodies directly (dispatch=False: no dispatcher layers per call)."""
    nd, n_pre = plan.num_decode_tokens, plan.num_prefills
    n = nd + plan.num_prefill_tokens
    qkv = projected[:n, : sum(shape.qkv_sizes)]
    out = core_out[:n].view(n, shape.H, shape.V)
    gdn = shape.mixer == "gdn"
    if gdn:
        b, a = projected[:n, -2 * shape.H: -shape.H], projected[:n, -shape.H:]  # strided views: the ops take them
    else:
        gk = gk[:n].view(n, shape.H, shape.K)
    conv = conv_weight is not None
    if nd:
        x = qkv[:nd]
        y, activate = None, True
        if conv and use_triton(x, conv_state, head_dims=False):  # one launch, GDN's SiLU included
            y = fused_conv_decode_(x, conv_weight, conv_state, plan.decode_slots, silu=gdn, dispatch=False)
            activate = False
        elif conv:
            y = short_conv_decode_(x, conv_weight, conv_state, plan.decode_slots, plan.decode_writes)
        q, k, v = _qkv(shape, x, y, activate=activate)
        if gdn:
            out[:nd] = gdn_decode_(q, k, v, a[:nd], b[:nd], A_log, dt_bias, recurrent, plan.decode_slots, shape.scale,
                                   use_qk_l2norm=True, dispatch=False)
        else:
            out[:nd] = gla_decode_(q, k, v, gk[:nd], recurrent, plan.decode_slots, shape.scale,
                                   gate_logit_normalizer=shape.gla_normalizer, dispatch=False)
    if n_pre:
        x = qkv[nd:]
        y = None
        if conv and use_triton(x, conv_state, head_dims=False):  # two launches, the plan's token map shared
            y = fused_conv_prefill_(x, conv_weight, conv_state, plan.prefill_slots, plan.prefill_cu, plan.has_initial,
                                    token_seq=plan.conv_token_seq, dispatch=False)
        elif conv:
            y = varlen_short_conv_(x, conv_weight, conv_state, plan.prefill_slots, plan.prefill_cu, plan.has_initial,
                                   plan.conv)
        q, k, v = _qkv(shape, x, y, activate=False)  # GDN: the prefill op applies the SiLU (qkv_silu)
        if gdn:
            out[nd:] = gdn_prefill_varlen(q, k, v, None, None, plan.prefill_cu, recurrent, plan.prefill_slots,
                                          plan.has_initial, shape.scale, use_qk_l2norm=True, a=a[nd:], b=b[nd:],
                                          A_log=A_log, dt_bias=dt_bias, dispatch=False, qkv_silu=True)
        else:
            out[nd:] = gla_prefill_varlen(q, k, v, gk[nd:], plan.prefill_cu, recurrent, plan.prefill_slots,
                                          plan.has_initial, shape.scale, gate_logit_normalizer=shape.gla_normalizer,
                                          dispatch=False)


def gated_rms_norm(core: Tensor, gate: Optional[Tensor], weight: Tensor, eps: float, shape: LayerShape,
                   dtype: torch.dtype) -> Tensor:
    """Per-head RMSNorm of the core output (float32), times SiLU(output gate) when there is one; [T, H*V]."""
    o = core.view(-1, shape.H, shape.V).float()
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    if gate is not None:
        o = o * F.silu(gate.reshape(-1, shape.H, shape.V).float())
    return o.to(dtype).reshape(-1, shape.H * shape.V)


# Shapes whose kernels this process has warmed up (see warm_up).
_WARMED: set = set()


def warm_up(shape: LayerShape, projected: Tensor, gk: Optional[Tensor], state_dtype: torch.dtype,
            conv_weight: Optional[Tensor] = None, A_log: Optional[Tensor] = None,
            dt_bias: Optional[Tensor] = None) -> bool:
    """Compile and autotune the prefill path's Triton kernels before the first request needs them; once per process
    and layer shape. Returns whether it ran.

    vLLM captures the decode path in CUDA graphs at start-up (every batch size), but nothing runs the chunked
    prefill before real requests do: the first prefill steps would stop for Triton's JIT (one compile per kernel and
    integer specialisation: a sequence count of 1, a multiple of 16, anything else; a decode prefix shifts the
    pointers) and the autotuner, the autotuner would tune on whatever request came first (16 tokens, say) for all
    the 16K-token steps after it, and it would run after the KV cache has taken the free memory (vLLM warms its own
    GDN layers in the profiling run for that reason). The layer calls this from vLLM's memory-profiling run, whose
    `projected` has the engine's full token budget: three steps over a scratch pool (one long sequence, 16 equal
    ones, a decode plus 3 ragged ones) cover those specialisations, and the tuning sees a full step. Its memory is
    counted in the profile, as a real prefill step's is."""
    n = projected.shape[0]
    key = (shape, projected.dtype, state_dtype, str(projected.device), conv_weight is not None)
    if key in _WARMED or n < 32:
        return False
    dev = projected.device
    conv_width = conv_weight.shape[-1] if conv_weight is not None else None
    slots = 24
    pool = torch.zeros(slots, shape.H, shape.K, shape.V, dtype=state_dtype, device=dev)
    conv_state = (torch.zeros(slots, conv_weight.shape[0], conv_width - 1, dtype=projected.dtype, device=dev)
                  if conv_weight is not None else None)
    out = torch.empty(n, shape.H * shape.V, dtype=projected.dtype, device=dev)
    for decodes, lengths in ((0, [n]), (0, [n // 16] * 16), (1, [n // 2, n // 3, n - 1 - n // 2 - n // 3])):
        reqs = decodes + len(lengths)
        query_start = torch.tensor([0] + [1] * decodes + lengths, device=dev, dtype=torch.int32).cumsum(0)
        query_start = query_start.to(torch.int32)
        seq_lens = (query_start[1:] - query_start[:-1]) + torch.arange(reqs, device=dev, dtype=torch.int32) % 2
        plan = plan_step(decodes, decodes, len(lengths), int(sum(lengths)), query_start, seq_lens,
                         torch.arange(reqs, device=dev, dtype=torch.int32), conv_width)
        linear_attention_core(shape, projected, gk, out, plan, pool, conv_state, conv_weight, A_log, dt_bias)
    _WARMED.add(key)
    return True
