"""The linear-attention mixers (GDN gdn_v4, GLA gla_v1) as vLLM state-holding layers.

Same math and weights as `export/linear_attention.py` (the one model definition used for training and HF
export); here the projections are vLLM tensor-parallel linears (heads split across ranks) and the recurrence
reads and writes vLLM's state pool through per-request slot indices with the `hybridserve.kernels`
state-pool ops (Triton on GPU, the PyTorch references on CPU).

Per request the pool holds the recurrent state [H/tp, K, V] (float32 by default) and, with a short conv,
the last `size - 1` pre-activation q/k/v inputs [conv_channels/tp, size - 1]; with state packing, one page holds
those of several consecutive linear layers (serve/state_packing.py). Everything that touches the
pool runs inside one custom op (`vllm::hybridserve_linear_attention`), listed among vLLM's splitting ops so
torch.compile and CUDA graphs treat it as an attention op; projections, norm and gating stay outside it and
are compiled. The math inside the op (and the output norm) lives in the vLLM-free `serve/linear_core.py`, which
the GPU micro-benchmark `benchmarks/serve_layer_gpu.py` calls too; this file adds the vLLM side: parameters and
their loaders, the state-pool spec, the metadata lookup and the per-step plan shared by all linear layers.
"""

from __future__ import annotations

import torch
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

from .compat import eager_during_capture
from .linear_backend import HybridLinearBackend
from .linear_core import LayerShape, gated_rms_norm, linear_attention_core, plan_step, warm_up
from .plugin import OP_NAME
from .state_packing import StateSlot


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


def packed_state_shapes(config, tp_size: int, pack: int) -> tuple[tuple[int, ...], ...]:
    """The shapes a run owner declares for `pack` layers: a leading dimension of `pack` (1: the layer's own)."""
    shapes = state_shapes(config, tp_size)
    return shapes if pack == 1 else tuple((pack, *shape) for shape in shapes)


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


def _sharded_param(*shape: int, dtype=None, data: torch.Tensor | None = None) -> nn.Parameter:
    """A per-head parameter (this rank's rows) loaded from the full tensor split along dim 0 (A_log, dt_bias,
    conv weights). `data`: the storage to use (a view of a larger buffer) instead of a new tensor."""
    param = nn.Parameter(torch.empty(*shape, dtype=dtype) if data is None else data, requires_grad=False)
    param.weight_loader = sharded_weight_loader(0)
    return param


class HybridLinearAttention(nn.Module, MambaBase):
    """One linear-attention layer: in_proj → [custom op: conv, activations, recurrence over the state pool]
    → gated RMSNorm → out_proj.

    slot / state_owner: where its state lives when several layers share one cache page (serve/state_packing.py):
    position `slot.index` of the tensors of the layer named `state_owner`, which declares the state of all
    `slot.pack` of them; the others declare none. Without them the layer owns a page of its own."""

    def __init__(self, config, vllm_config, prefix: str, slot: StateSlot | None = None,
                 state_owner: str | None = None):
        super().__init__()
        self.prefix = prefix
        self.slot = slot or StateSlot(owner=-1, index=0, pack=1)
        self.state_owner = state_owner or prefix
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
        self.short_conv = bool(config.linear_short_conv)
        self.conv_size = config.linear_conv_size if self.short_conv else None
        self.output_gate = bool(config.linear_output_gate)
        self.shape = LayerShape(self.mixer, self.H, self.Hkv, self.K, self.V, self.output_gate,
                                config.gla_gate_logit_normalizer if self.mixer == "gla" else None)
        H, Hkv, K, V = config.linear_num_heads, config.linear_num_kv_heads, self.K, self.V
        # One matmul for everything read from x. Shard order (load_weights relies on it):
        # query, key, value, [out_gate], then GDN's beta and decay logits.
        sizes = [H * K, Hkv * K, Hkv * V] + ([H * V] if self.output_gate else [])
        if self.mixer == "gdn":
            sizes += [H, H]
        self.in_sizes = [s // tp for s in sizes]
        assert tuple(self.in_sizes) == self.shape.in_sizes
        self.in_proj = MergedColumnParallelLinear(d, sizes, bias=config.linear_qkv_bias, quant_config=quant,
                                                  prefix=f"{prefix}.in_proj")
        if config.linear_qkv_bias:  # only q/k/v have biases; the gate/beta/decay rows of the merged bias stay 0
            self.in_proj.bias.data.zero_()
        if self.mixer == "gdn":
            self.A_log = _sharded_param(self.H, dtype=torch.float32)
            self.dt_bias = _sharded_param(self.H, dtype=torch.float32)
            if self.short_conv:  # depthwise weights [channels, 1, size], rows split by head like the projections
                # The three are views of one [C, 1, size] buffer, in the conv state's channel order, so the op reads
                # them as one weight without a per-step concatenation.
                rows, size = [self.H * K, self.Hkv * K, self.Hkv * V], config.linear_conv_size
                self._conv_merged = torch.empty(sum(rows), 1, size)
                self._conv_offsets = [0, rows[0] * size, (rows[0] + rows[1]) * size]  # elements
                query, key, value = self._conv_merged.split(rows)
                self.query_conv = _sharded_param(data=query)
                self.key_conv = _sharded_param(data=key)
                self.value_conv = _sharded_param(data=value)
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
        return packed_state_shapes(self.config, self.tp_size, self.slot.pack)

    def get_kv_cache_spec(self, vllm_config):
        # A packed layer other than its run's owner has no page of its own: vLLM skips layers without a spec.
        return super().get_kv_cache_spec(vllm_config) if self.state_owner == self.prefix else None

    def get_state_dtype(self):
        return state_dtypes(self.config, self.model_config.dtype, self.cache_config)

    @property
    def mamba_type(self):
        return MambaAttentionBackendEnum.LINEAR  # LinearAttentionMetadata: slots, query_start_loc, seq_lens

    def get_attn_backend(self):
        return HybridLinearBackend  # LINEAR, with decode slots at a fixed address for FULL graphs (linear_backend.py)

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
        gate = None
        if self.output_gate:
            start = sum(self.in_sizes[:3])
            gate = projected[:, start: start + self.in_sizes[3]]
        o = gated_rms_norm(core, gate, self.out_norm_weight, self.norm_eps, self.shape, hidden_states.dtype)
        out, _ = self.out_proj(o)
        output.copy_(out)

    def core(self, projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor) -> None:
        """Inside the custom op: everything that reads or writes the state pool."""
        context = get_forward_context()
        metadata = context.attn_metadata
        if isinstance(metadata, dict):
            metadata = metadata.get(self.state_owner)
        if metadata is None:  # the memory-profiling run has no requests and no pool: warm the prefill kernels up
            if projected.is_cuda:
                conv = self.short_conv
                warm_up(self.shape, projected, gk if self.mixer == "gla" else None, self.get_state_dtype()[-1],
                        conv_weight=self._conv_weight() if conv else None, A_log=getattr(self, "A_log", None),
                        dt_bias=getattr(self, "dt_bias", None))
            core_out.zero_()
            return
        plan = _step_plan(metadata, self.conv_size, projected.is_cuda)
        conv = self.short_conv
        states = self._states(context)
        linear_attention_core(self.shape, projected, gk if self.mixer == "gla" else None, core_out, plan,
                              states[-1], conv_state=states[0] if conv else None,
                              conv_weight=self._conv_weight() if conv else None,
                              A_log=getattr(self, "A_log", None), dt_bias=getattr(self, "dt_bias", None))

    def _states(self, context) -> tuple[torch.Tensor, ...]:
        """This layer's state tensors ([conv,] recurrent), one slot per pool block: its own, or its position in
        its run owner's packed tensors (a view: one slot per block, the page as slot stride)."""
        if self.slot.pack == 1:
            return tuple(self.kv_cache)
        owner = self if self.state_owner == self.prefix else context.no_compile_layers[self.state_owner]
        return tuple(t[:, self.slot.index] for t in owner.kv_cache)

    def _conv_weight(self) -> torch.Tensor:
        """The q/k/v conv weights as one [C, 1, size] tensor. The three parameters are views of one buffer, so this
        is free; should anything have replaced a parameter's storage since (e.g. CPU offloading), concatenate."""
        merged = self._conv_merged
        base, item = merged.data_ptr(), merged.element_size()
        params = (self.query_conv, self.key_conv, self.value_conv)
        if all(p.data_ptr() == base + off * item and p.dtype == merged.dtype
               for p, off in zip(params, self._conv_offsets)):
            return merged
        return torch.cat(params)


# Per-step tensors shared by all linear layers: cached on vLLM's metadata object of the step (a new one is built
# every step; the layers of one KV-cache group share it), keyed by the conv size and by whether a CUDA graph is
# being captured, so that a graph never reads tensors computed outside it.
_PLAN_ATTR = "_hybridserve_step_plan"


def _step_plan(metadata, conv_size: int | None, on_cuda: bool):
    capturing = on_cuda and torch.cuda.is_current_stream_capturing()
    key = (conv_size, capturing)
    cached = getattr(metadata, _PLAN_ATTR, None)
    if cached is not None and cached[0] == key:
        return cached[1]
    plan = plan_step(metadata.num_decodes, metadata.num_decode_tokens, metadata.num_prefills,
                     metadata.num_prefill_tokens, metadata.query_start_loc, metadata.seq_lens,
                     metadata.state_indices_tensor, conv_size)
    try:
        setattr(metadata, _PLAN_ATTR, (key, plan))
    except (AttributeError, TypeError):  # a frozen or slotted metadata class: no sharing, still correct
        pass
    return plan


def _op(projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor, layer_name: str) -> None:
    get_forward_context().no_compile_layers[layer_name].core(projected, gk, core_out)


def _op_fake(projected: torch.Tensor, gk: torch.Tensor, core_out: torch.Tensor, layer_name: str) -> None:
    return None


direct_register_custom_op(op_name=OP_NAME, op_func=eager_during_capture(_op), mutates_args=["core_out"],
                          fake_impl=_op_fake)
