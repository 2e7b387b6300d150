"""The linear-attention mixers (GDN gdn_v4, GLA gla_v1) as vLLM state-holding layers.

Same math and weights as `export/linear_attention.py` (the one model definition used for training and HF
export); here the projections are vLLM tensor-parallel linears (heads split across ranks) and the recurrence
reads and writes vLLM's state pool through per-request slot indices with the `hybridserve.kernels`
state-pool ops (Triton on GPU, the PyTorch references on CPU).

Per request the pool holds the recurrent state [H/tp, K, V] (float32 by default) and, with a short conv,
the last `size - 1` pre-activation q/k/v inputs [conv_channels/tp, size - 1]. Everything that touches the
pool runs inside one custom op (`vllm::hybridserve_linear_attention`), listed among vLLM's splitting ops so
torch.compile and CUDA graphs treat it as an attention op; projections, norm and gating stay outside it and
are compiled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size
from vllm.forward_context import get_forward_context
from vllm.model_executor.layers.linear import (
    ColumnParallelLinear,
    MergedColumnParallelLinear,
    ReplicatedLinear,
    RowParallelLinear,
)
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.model_executor.model_loader.weight_utils import sharded_weight_loader
from vllm.utils.torch_utils import direct_register_custom_op
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum

from hybridserve.kernels import gdn_decode_, gdn_prefill_varlen, gla_decode_, gla_prefill_varlen

from .compat import eager_during_capture

from .plugin import OP_NAME


def _divide(total: int, parts: int, what: str) -> int:
    if total % parts:
        raise ValueError(f"{what} ({total}) is not divisible by the tensor-parallel size {parts}")
    return total // parts


def state_shapes(config, tp_size: int) -> tuple[tuple[int, ...], ...]:
    """Per-request state shapes of one linear layer on one rank: ([conv,] recurrent)."""
    H = _divide(config.linear_num_heads, tp_size, "linear_num_heads")
    shapes = []
    if config.linear_short_conv:
        channels = config.linear_num_heads * config.linear_key_head_dim + config.linear_num_kv_heads * (
            config.linear_key_head_dim + config.linear_value_head_dim)
        shapes.append((_divide(channels, tp_size, "short-conv channels"), config.linear_conv_size - 1))
    shapes.append((H, config.linear_key_head_dim, config.linear_value_head_dim))
    return tuple(shapes)


_STATE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def state_dtypes(config, model_dtype: torch.dtype, cache_config=None) -> tuple[torch.dtype, ...]:
    """The conv state keeps the model dtype (it holds inputs). The recurrent state uses the checkpoint's
    linear_state_dtype (float32 by default: the model was trained that way), unless the server asks for another
    with vLLM's own `--mamba-ssm-cache-dtype` (e.g. bfloat16: half the state bytes per decode step)."""
    recurrent = _STATE_DTYPES[config.linear_state_dtype]
    requested = getattr(cache_config, "mamba_ssm_cache_dtype", "auto") if cache_config is not None else "auto"
    if requested not in (None, "auto"):
        if requested not in _STATE_DTYPES:
            raise ValueError(f"--mamba-ssm-cache-dtype {requested!r} is not supported by hybridserve layers; "
                             f"choose one of {', '.join(_STATE_DTYPES)}")
        recurrent = _STATE_DTYPES[requested]
    return ((model_dtype,) if config.linear_short_conv else ()) + (recurrent,)


def _sharded_param(*shape: int, dtype=None) -> nn.Parameter:
    """A per-head parameter (this rank's rows) loaded from the full tensor split along dim 0 (A_log, dt_bias,
    conv weights)."""
    param = nn.Parameter(torch.empty(*shape, dtype=dtype), requires_grad=False)
    param.weight_loader = sharded_weight_loader(0)
    return param


class HybridLinearAttention(nn.Module, MambaBase):
    """One linear-attention layer: in_proj → [custom op: conv, activations, recurrence over the state pool]
    → gated RMSNorm → out_proj."""

    def __init__(self, config, vllm_config, prefix: str):
        super().__init__()
        self.prefix = prefix
        self.config = config
        self.model_config = vllm_config.model_config
        self.cache_config = vllm_config.cache_config
        quant = vllm_config.quant_config
        self.tp_size, self.tp_rank = get_tensor_model_parallel_world_size(), get_tensor_model_parallel_rank()
        tp = self.tp_size
        d = config.hidden_size
        self.mixer = config.linear_mixer
        self.H = _divide(config.linear_num_heads, tp, "linear_num_heads")
        self.Hkv = _divide(config.linear_num_kv_heads, tp, "linear_num_kv_heads")
        self.K, self.V = config.linear_key_head_dim, config.linear_value_head_dim
        self.scale = self.K**-0.5
        self.short_conv = bool(config.linear_short_conv)
        self.output_gate = bool(config.linear_output_gate)
        H, Hkv, K, V = config.linear_num_heads, config.linear_num_kv_heads, self.K, self.V
        # One matmul for everything read from x. Shard order (load_weights relies on it):
        # query, key, value, [out_gate], then GDN's beta and decay logits.
        sizes = [H * K, Hkv * K, Hkv * V] + ([H * V] if self.output_gate else [])
        if self.mixer == "gdn":
            sizes += [H, H]
        self.in_sizes = [s // tp for s in sizes]
        self.in_proj = MergedColumnParallelLinear(d, sizes, bias=config.linear_qkv_bias, quant_config=quant,
                                                  prefix=f"{prefix}.in_proj")
        if config.linear_qkv_bias:  # only q/k/v have biases; the gate/beta/decay rows of the merged bias stay 0
            self.in_proj.bias.data.zero_()
        if self.mixer == "gdn":
            self.A_log = _sharded_param(self.H, dtype=torch.float32)
            self.dt_bias = _sharded_param(self.H, dtype=torch.float32)
            if self.short_conv:  # depthwise weights [channels, 1, size], rows split by head like the projections
                size = config.linear_conv_size
                self.query_conv = _sharded_param(self.H * K, 1, size)
                self.key_conv = _sharded_param(self.Hkv * K, 1, size)
                self.value_conv = _sharded_param(self.Hkv * V, 1, size)
        else:
            rank = config.gla_gate_low_rank_dim
            self.decay_down_proj = ReplicatedLinear(d, rank, bias=False, quant_config=None,
                                                    prefix=f"{prefix}.decay_down_proj")
            self.decay_up_proj = ColumnParallelLinear(rank, H * K, bias=True, quant_config=None,
                                                      prefix=f"{prefix}.decay_up_proj")
        self.out_norm_weight = nn.Parameter(torch.ones(V), requires_grad=False)
        self.norm_eps = config.linear_norm_eps
        self.out_proj = RowParallelLinear(H * V, d, bias=False, quant_config=quant, prefix=f"{prefix}.out_proj")
        self.kv_cache: tuple[torch.Tensor, ...] = (torch.tensor([]),)

        context = vllm_config.compilation_config.static_forward_context
        if prefix in context:
            raise ValueError(f"duplicate layer name {prefix}")
        context[prefix] = self

    # ---------------------------------------------------------------- MambaBase
    def get_state_shape(self):
        return state_shapes(self.config, self.tp_size)

    def get_state_dtype(self):
        return state_dtypes(self.config, self.model_config.dtype, self.cache_config)

    @property
    def mamba_type(self):
        return MambaAttentionBackendEnum.LINEAR  # LinearAttentionMetadata: slots, query_start_loc, seq_lens

    # ---------------------------------------------------------------- forward
    def forward(self, hidden_states: torch.Tensor, output: torch.Tensor) -> None:
        projected, _ = self.in_proj(hidden_states)
        gk = None
        if self.mixer == "gla":
            down, _ = self.decay_down_proj(hidden_states)
            gk, _ = self.decay_up_proj(down)  # raw gate logits; the kernel applies logsigmoid / normaliser
        core = torch.empty(hidden_states.shape[0], self.H * self.V, dtype=hidden_states.dtype,
                           device=hidden_states.device)
        getattr(torch.ops.vllm, OP_NAME)(projected, gk if gk is not None else projected, core, self.prefix)
        o = core.view(-1, self.H, self.V).float()
        o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + self.norm_eps) * self.out_norm_weight.float()
        if self.output_gate:
            q, k, v = self.in_sizes[:3]
            gate = projected[:, q + k + v: q + k + v + self.in_sizes[3]].view(-1, self.H, self.V)
            o = o * F.silu(gate.float())
        out, _ = self.out_proj(o.to(hidden_states.dtype).reshape(-1, self.H * self.V))
        output.copy_(out)

    def core(self, projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor) -> None:
        """Inside the custom op: everything that reads or writes the state pool."""
        metadata = get_forward_context().attn_metadata
        if isinstance(metadata, dict):
            metadata = metadata.get(self.prefix)
        if metadata is None:  # the memory-profiling run has no requests and no pool
            core_out.zero_()
            return
        nd, n_dec = metadata.num_decode_tokens, metadata.num_decodes
        n = nd + metadata.num_prefill_tokens
        slots = metadata.state_indices_tensor
        q_size, k_size, v_size = self.in_sizes[:3]
        qkv = projected[:n, : q_size + k_size + v_size]
        recurrent = self.kv_cache[-1]
        if self.short_conv:
            qkv = self._short_conv(qkv, metadata, self.kv_cache[0])
        q, k, v = qkv.split([q_size, k_size, v_size], dim=-1)
        if self.mixer == "gdn":
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q, k, v = self._heads(q, k, v)
        out = core_out[:n].view(n, self.H, self.V)
        prefill_cu = metadata.query_start_loc[n_dec:] - nd
        prefill_slots = slots[n_dec: n_dec + metadata.num_prefills]
        if self.mixer == "gdn":
            b, a = projected[:n, -2 * self.H: -self.H].contiguous(), projected[:n, -self.H:].contiguous()
            if nd:
                out[:nd] = gdn_decode_(q[:nd], k[:nd], v[:nd], a[:nd], b[:nd], self.A_log, self.dt_bias, recurrent,
                                       slots[:n_dec], self.scale, use_qk_l2norm=True)
            if n > nd:
                out[nd:] = gdn_prefill_varlen(q[nd:], k[nd:], v[nd:], None, None, prefill_cu, recurrent,
                                              prefill_slots, self._has_initial_state(metadata), self.scale,
                                              use_qk_l2norm=True, a=a[nd:n], b=b[nd:n], A_log=self.A_log,
                                              dt_bias=self.dt_bias)
        else:
            gk = gk[:n].reshape(n, self.H, self.K).contiguous()
            norm = self.config.gla_gate_logit_normalizer
            if nd:
                out[:nd] = gla_decode_(q[:nd], k[:nd], v[:nd], gk[:nd], recurrent, slots[:n_dec], self.scale,
                                       gate_logit_normalizer=norm)
            if n > nd:
                out[nd:] = gla_prefill_varlen(q[nd:], k[nd:], v[nd:], gk[nd:], prefill_cu, recurrent, prefill_slots,
                                              self._has_initial_state(metadata), self.scale,
                                              gate_logit_normalizer=norm)

    def _heads(self, q, k, v):
        n = q.shape[0]
        q, k, v = q.reshape(n, self.H, self.K), k.reshape(n, self.Hkv, self.K), v.reshape(n, self.Hkv, self.V)
        if self.Hkv != self.H:  # runtime GQA (RADLADS): query head h reads kv head h // group
            group = self.H // self.Hkv
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return q.contiguous(), k.contiguous(), v.contiguous()

    @staticmethod
    def _has_initial_state(metadata) -> torch.Tensor:
        """Prefill rows whose request already has tokens in the pool (a later chunk of a chunked prefill, or a
        prefix-cache hit); the others start from a zero state, whatever the slot held before."""
        n_dec = metadata.num_decodes
        starts = metadata.query_start_loc[n_dec:]
        query_lens = starts[1:] - starts[:-1]
        return (metadata.seq_lens[n_dec: n_dec + metadata.num_prefills] > query_lens).to(torch.int32)

    def _short_conv(self, qkv: torch.Tensor, metadata, conv_state: torch.Tensor) -> torch.Tensor:
        """Causal depthwise conv over each request's tokens, continuing from (and updating) its conv state."""
        weight = torch.cat([self.query_conv, self.key_conv, self.value_conv])[:, 0]  # [C, size]
        width = weight.shape[1]
        nd, n_dec = metadata.num_decode_tokens, metadata.num_decodes
        out = torch.empty_like(qkv)
        slots = metadata.state_indices_tensor
        if nd:  # one token each: window = [state, x]; state <- window[1:]
            dec_slots = slots[:n_dec].clamp(min=0)
            window = torch.cat([conv_state[dec_slots].to(qkv.dtype), qkv[:nd, :, None]], dim=-1)
            out[:nd] = (window * weight.to(qkv.dtype)).sum(-1)
            keep = (slots[:n_dec] >= 0)[:, None, None]
            conv_state[dec_slots] = torch.where(keep, window[..., 1:].to(conv_state.dtype), conv_state[dec_slots])
        if metadata.num_prefills:
            has_initial = self._has_initial_state(metadata).tolist()
            cu = (metadata.query_start_loc[n_dec:] - nd).tolist()
            for i, slot in enumerate(slots[n_dec: n_dec + metadata.num_prefills].tolist()):
                x = qkv[nd + cu[i]: nd + cu[i + 1]].t()  # [C, T]
                prev = conv_state[slot].to(x.dtype) if has_initial[i] and slot >= 0 else x.new_zeros(x.shape[0], width - 1)
                full = torch.cat([prev, x], dim=-1)
                y = F.conv1d(full[None], weight.to(x.dtype)[:, None, :], groups=x.shape[0])[0]
                out[nd + cu[i]: nd + cu[i + 1]] = y.t()
                if slot >= 0:
                    conv_state[slot] = full[:, -(width - 1):].to(conv_state.dtype)
        return out


def _op(projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor, layer_name: str) -> None:
    get_forward_context().no_compile_layers[layer_name].core(projected, gk, core_out)


def _op_fake(projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor, layer_name: str) -> None:
    return None


direct_register_custom_op(op_name=OP_NAME, op_func=eager_during_capture(_op), mutates_args=["core_out"],
                          fake_impl=_op_fake)
