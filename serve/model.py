"""HybridForCausalLM for vLLM: config → layers → model → load_weights, as vLLM's own model files.

Reads the exported checkpoint as it is (`HybridConfig`, the safetensors names of `export/modeling_hybrid.py`).
Softmax layers are vLLM's decoder layers of the teacher family (paged attention: RoPE scaling, biases,
qk-norm, GQA, sliding windows exactly as vLLM serves the teacher); linear layers are `HybridLinearAttention`
(state pool) with the family's RMSNorm and MLP. Tensor parallelism splits attention heads, linear-attention
heads and the MLP across ranks.

No `from __future__ import annotations` here: vLLM's @support_torch_compile reads the real annotation objects
of `forward` to find the dynamic (token) dimensions.
"""


import copy
import math
from collections.abc import Iterable

import torch
from torch import nn
from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.distributed import get_pp_group
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateCopyFuncCalculator
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.interfaces import HasInnerState, IsHybrid, SupportsPP
from vllm.model_executor.models.llama import LlamaMLP
from vllm.model_executor.models.utils import make_empty_intermediate_tensors_factory, make_layers, maybe_prefix
from vllm.sequence import IntermediateTensors

from .compat import softmax_decoder_layer
from .linear_layer import HybridLinearAttention, packed_state_shapes, state_dtypes, state_shapes
from .state_packing import PackLimit, StateSlot, config_pack, config_packing_plan, vllm_pack_limit

# checkpoint name fragment -> (vLLM parameter fragment, shard id) for the stacked projections.
_SOFTMAX_STACKED = [
    (".self_attn.q_proj", ".self_attn.qkv_proj", "q"),
    (".self_attn.k_proj", ".self_attn.qkv_proj", "k"),
    (".self_attn.v_proj", ".self_attn.qkv_proj", "v"),
    (".mlp.gate_proj", ".mlp.gate_up_proj", 0),
    (".mlp.up_proj", ".mlp.gate_up_proj", 1),
]


def _linear_stacked(config) -> list[tuple[str, str, int]]:
    """The shards of the linear layers' merged in_proj, in `HybridLinearAttention`'s order."""
    names = ["query_proj", "key_proj", "value_proj"] + (["out_gate_proj"] if config.linear_output_gate else [])
    if config.linear_mixer == "gdn":
        names += ["beta_proj", "decay_proj"]
    return [(f".linear_attn.{name}.", ".linear_attn.in_proj.", i) for i, name in enumerate(names)]


def teacher_view(config):
    """A copy of the config as the teacher family's vLLM layers read it: `layer_types` is the teacher's own
    full/sliding map (ours says softmax/linear)."""
    view = copy.copy(config)
    view.layer_types = list(config.teacher_layer_types)
    return view


class HybridLinearDecoderLayer(nn.Module):
    """Pre-norm block with a linear-attention mixer, same residual convention as vLLM's decoder layers."""

    def __init__(self, config, vllm_config: VllmConfig, prefix: str, slot: StateSlot):
        super().__init__()
        # The run owner's name: "model.layers.5" with owner 3 -> "model.layers.3.linear_attn".
        owner = f"{prefix.rsplit('.', 1)[0]}.{slot.owner}.linear_attn"
        self.linear_attn = HybridLinearAttention(config, vllm_config, prefix=f"{prefix}.linear_attn", slot=slot,
                                                 state_owner=owner)
        self.mlp = LlamaMLP(hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
                            hidden_act=config.hidden_act, quant_config=vllm_config.quant_config,
                            bias=getattr(config, "mlp_bias", False), prefix=f"{prefix}.mlp")
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None):
        if residual is None:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
        else:
            hidden_states, residual = self.input_layernorm(hidden_states, residual)
        mixed = torch.empty_like(hidden_states)
        self.linear_attn(hidden_states, mixed)
        hidden_states, residual = self.post_attention_layernorm(mixed, residual)
        return self.mlp(hidden_states), residual


def pack_limit(vllm_config: VllmConfig) -> PackLimit | None:
    """The server's bound on the state pack (serve/state_packing.py), from one linear layer's state page. The model
    and its class (asked for the state shapes before the model exists) both use this, so they agree."""
    config, model_config = vllm_config.model_config.hf_config, vllm_config.model_config
    shapes = state_shapes(config, vllm_config.parallel_config.tensor_parallel_size)
    dtypes = state_dtypes(config, model_config.dtype, vllm_config.cache_config)
    layer_bytes = sum(math.prod(shape) * dtype.itemsize for shape, dtype in zip(shapes, dtypes))
    return vllm_pack_limit(vllm_config, layer_bytes)


@support_torch_compile
class HybridModel(nn.Module):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        teacher = teacher_view(config)
        # Linear layers sharing cache pages (serve/state_packing.py); the model class reports the same shapes.
        packing = config_packing_plan(config, vllm_config.parallel_config.pipeline_parallel_size,
                                      pack_limit(vllm_config))
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size,
                                                   prefix=f"{prefix}.embed_tokens")

        def layer(prefix: str) -> nn.Module:
            index = int(prefix.rsplit(".", 1)[1])
            if config.layer_types[index] == "full_attention":
                return softmax_decoder_layer(config.teacher_family, teacher, vllm_config, prefix)
            return HybridLinearDecoderLayer(config, vllm_config, prefix, packing[index])

        self.start_layer, self.end_layer, self.layers = make_layers(config.num_hidden_layers, layer,
                                                                    prefix=f"{prefix}.layers")
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.make_empty_intermediate_tensors = make_empty_intermediate_tensors_factory(
            ["hidden_states", "residual"], config.hidden_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor | IntermediateTensors:
        if get_pp_group().is_first_rank:
            hidden_states = inputs_embeds if inputs_embeds is not None else self.embed_tokens(input_ids)
            residual = None
        else:
            hidden_states, residual = intermediate_tensors["hidden_states"], intermediate_tensors["residual"]
        for layer in self.layers[self.start_layer: self.end_layer]:
            hidden_states, residual = layer(positions, hidden_states, residual)
        if not get_pp_group().is_last_rank:
            return IntermediateTensors({"hidden_states": hidden_states, "residual": residual})
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class HybridForCausalLM(nn.Module, HasInnerState, IsHybrid, SupportsPP):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = ""):
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        type(self)._state_count = len(state_shapes(config, 1))
        self.model = HybridModel(vllm_config=vllm_config, prefix=maybe_prefix(prefix, "model"))
        if get_pp_group().is_last_rank:
            self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size,
                                          quant_config=vllm_config.quant_config, prefix=maybe_prefix(prefix, "lm_head"))
            if config.tie_word_embeddings:
                self.lm_head = self.lm_head.tie_weights(self.model.embed_tokens)
        self.logits_processor = LogitsProcessor(config.vocab_size)
        self.make_empty_intermediate_tensors = self.model.make_empty_intermediate_tensors

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    # ------------------------------------------------------------ state of the linear layers (IsHybrid)
    @classmethod
    def get_mamba_state_shape_from_config(cls, vllm_config: VllmConfig):
        config, parallel = vllm_config.model_config.hf_config, vllm_config.parallel_config
        return packed_state_shapes(config, parallel.tensor_parallel_size,
                                   config_pack(config, parallel.pipeline_parallel_size, pack_limit(vllm_config)))

    @classmethod
    def get_mamba_state_dtype_from_config(cls, vllm_config: VllmConfig):
        return state_dtypes(vllm_config.model_config.hf_config, vllm_config.model_config.dtype, vllm_config.cache_config)

    # How many state tensors a linear layer has (conv window + recurrent, or recurrent only). vLLM asks for the
    # copy functions through a classmethod, so the instance records its config's count on the class (one model
    # per process).
    _state_count = 1

    @classmethod
    def get_mamba_state_copy_func(cls):
        # Prefix caching ("align" mode) copies whole per-request states at block boundaries; the temporal copy of
        # one block is exactly that, for the conv window as for the recurrent state (no speculative offsets).
        (copy_state,) = MambaStateCopyFuncCalculator.linear_attention_state_copy_func()
        return (copy_state,) * cls._state_count

    # ------------------------------------------------------------ weights
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        params = dict(self.named_parameters())
        stacked = _SOFTMAX_STACKED + _linear_stacked(self.config)
        loaded: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb.inv_freq" in name:
                continue
            if name.startswith("lm_head.") and self.config.tie_word_embeddings:
                continue  # the head is the embedding
            if name.endswith("out_norm.weight"):
                name = name.replace("out_norm.weight", "out_norm_weight")
            for old, new, shard in stacked:
                if old in name:
                    target = name.replace(old, new)
                    if target not in params:  # e.g. a pipeline stage that does not hold this layer
                        break
                    params[target].weight_loader(params[target], tensor, shard)
                    loaded.add(target)
                    break
            else:
                if name.endswith(("_conv.weight",)):  # ShortConv keeps its weight in a submodule
                    name = name[: -len(".weight")]
                if name not in params:
                    continue
                param = params[name]
                getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                loaded.add(name)
        return loaded
