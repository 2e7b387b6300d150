"""HybridForCausalLM: a Llama / Qwen2 / Qwen3 / Mistral teacher with some attention layers replaced by
linear attention (Gated DeltaNet or GLA). One definition serves distillation, export and generation.

Softmax layers *are* the teacher family's transformers attention module (RoPE scaling, biases, qk-norm,
GQA and sliding windows come from transformers itself); MLPs, norms and rotary embeddings are the
family's too, so an all-softmax hybrid reproduces the teacher bit for bit. This file, its config, cache
and linear mixers are copied next to exported weights and loaded with `trust_remote_code=True` where
hybridserve is not installed; they import only torch and transformers (and each other).
"""

from __future__ import annotations

from dataclasses import fields

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2
from transformers.models.qwen3 import modeling_qwen3

from .cache_hybrid import HybridCache
from .configuration_hybrid import HybridConfig
from .linear_attention import LINEAR_MIXER_CLASSES, GatedDeltaNet, ShortConv, decay_init

_FAMILY = {
    "llama": (modeling_llama, "Llama"),
    "qwen2": (modeling_qwen2, "Qwen2"),
    "qwen3": (modeling_qwen3, "Qwen3"),
    "mistral": (modeling_mistral, "Mistral"),
}
# transformers 5.24 renamed `past_key_values` to `cache` in model outputs and generate(); accept both.
_CACHE_FIELD = "cache" if "cache" in {f.name for f in fields(CausalLMOutputWithPast)} else "past_key_values"


def family_class(config: HybridConfig, part: str):
    """The teacher family's own transformers class for `part` (Attention, MLP, RMSNorm, RotaryEmbedding)."""
    module, prefix = _FAMILY[config.teacher_family]
    return getattr(module, prefix + part)


class TeacherView:
    """The config as the teacher's attention modules expect it: every field is ours, except that
    `layer_types` means the teacher's own per-layer attention kind (full or sliding window)."""

    def __init__(self, config: HybridConfig):
        object.__setattr__(self, "_config", config)

    def __getattr__(self, name):
        if name == "layer_types":
            return self._config.teacher_layer_types
        return getattr(self._config, name)


def causal_mask(
    attention_mask: torch.Tensor | None,
    batch: int,
    q_len: int,
    past_len: int,
    dtype: torch.dtype,
    device: torch.device,
    window: int | None = None,
) -> torch.Tensor:
    """Additive [B, 1, q, kv] mask: causal, minus padded keys, minus keys outside a sliding window.

    A fully masked row (a padding query) gets a uniform average instead of NaN because it adds the
    dtype's minimum rather than -inf; its output is never used.
    """
    kv_len = past_len + q_len
    q_pos = torch.arange(past_len, kv_len, device=device)[:, None]
    k_pos = torch.arange(kv_len, device=device)[None, :]
    allowed = k_pos <= q_pos
    if window is not None:
        allowed = allowed & (q_pos - k_pos < window)
    allowed = allowed[None, None].expand(batch, 1, q_len, kv_len)
    if attention_mask is not None:
        if attention_mask.shape[-1] < kv_len:
            raise ValueError(f"attention_mask covers {attention_mask.shape[-1]} tokens but the cache plus input has {kv_len}")
        allowed = allowed & attention_mask[:, None, None, -kv_len:].bool()
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)


class HybridDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm block: x + Mixer(norm(x)), then x + MLP(norm(x)); the mixer is softmax or linear."""

    def __init__(self, config: HybridConfig, layer_idx: int):
        super().__init__()
        self.layer_type = config.layer_types[layer_idx]
        norm = family_class(config, "RMSNorm")
        self.input_layernorm = norm(config.hidden_size, eps=config.rms_norm_eps)
        if self.layer_type == "full_attention":
            self.self_attn = family_class(config, "Attention")(TeacherView(config), layer_idx)
        else:
            self.linear_attn = LINEAR_MIXER_CLASSES[config.linear_mixer](config, layer_idx)
        self.post_attention_layernorm = norm(config.hidden_size, eps=config.rms_norm_eps)
        self.mlp = family_class(config, "MLP")(config)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None, token_mask=None, cache=None):
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        if self.layer_type == "full_attention":
            # cache goes in positionally: the keyword is `past_key_values` in 5.17 and `cache` in 5.24
            hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask, cache)
        else:
            hidden_states = self.linear_attn(hidden_states, token_mask, cache)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.mlp(self.post_attention_layernorm(hidden_states))
        return residual + hidden_states


class HybridPreTrainedModel(PreTrainedModel):
    config: HybridConfig
    config_class = HybridConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HybridDecoderLayer"]
    _supports_sdpa = True
    _is_stateful = True  # recurrent state: no assisted decoding / cache cropping

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # generate() must not build a DynamicCache: prepare_inputs_for_generation makes a HybridCache

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, GatedDeltaNet):
            A_log, dt_bias = decay_init(module.A_log.shape[0])
            init.copy_(module.A_log, A_log)
            init.copy_(module.dt_bias, dt_bias)
        elif isinstance(module, ShortConv):
            init.kaiming_uniform_(module.weight, a=5**0.5)


class HybridModel(HybridPreTrainedModel):
    def __init__(self, config: HybridConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, self.padding_idx)
        self.layers = nn.ModuleList(HybridDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = family_class(config, "RMSNorm")(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = family_class(config, "RotaryEmbedding")(config=config)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: HybridCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        cache: HybridCache | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        cache = cache if cache is not None else past_key_values
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        if use_cache and cache is None:
            cache = HybridCache(self.config)
        B, T = inputs_embeds.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError("attention_mask must be 2-D [batch, past + new tokens] (1 = token, 0 = padding)")
        if position_ids is None:
            if attention_mask is not None:  # left padding: positions count real tokens only
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -T:]
            else:
                position_ids = torch.arange(past, past + T, device=inputs_embeds.device)[None].expand(B, T)
        token_mask = None
        if attention_mask is not None and not bool(attention_mask[:, -T:].all()):
            token_mask = attention_mask[:, -T:].to(torch.float32)

        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        masks = {}  # one additive mask per distinct window
        for i, layer in enumerate(self.layers):
            mask = None
            if layer.layer_type == "full_attention":
                window = self.config.sliding_window_of(i)
                if window not in masks:
                    masks[window] = causal_mask(
                        attention_mask, B, T, past, hidden_states.dtype, hidden_states.device, window
                    )
                mask = masks[window]
            hidden_states = layer(hidden_states, mask, position_embeddings, token_mask, cache)
        hidden_states = self.norm(hidden_states)
        if cache is not None:
            cache.advance(T)
        return BaseModelOutputWithPast(last_hidden_state=hidden_states, **{_CACHE_FIELD: cache})


class HybridForCausalLM(HybridPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: HybridConfig):
        super().__init__(config)
        self.model = HybridModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: HybridCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        cache: HybridCache | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache if cache is not None else past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: getattr(outputs, _CACHE_FIELD)})

    def prepare_inputs_for_generation(
        self,
        input_ids,
        next_sequence_length=None,
        past_key_values=None,
        attention_mask=None,
        inputs_embeds=None,
        is_first_iteration=False,
        cache=None,
        position_ids=None,
        use_cache=True,
        **kwargs,
    ):
        """Feed only the tokens the cache has not seen; create the HybridCache on the first step."""
        cache = cache if cache is not None else past_key_values
        if cache is None and use_cache:
            cache = HybridCache(self.config)
        seen = cache.get_seq_length() if cache is not None else 0
        inputs = {_CACHE_FIELD: cache, "use_cache": use_cache, "attention_mask": attention_mask}
        if inputs_embeds is not None and seen == 0:
            inputs["inputs_embeds"] = inputs_embeds
            new = inputs_embeds.shape[1]
        else:
            # After a prompt given as inputs_embeds, input_ids holds only the generated tokens, so `seen`
            # does not index it; generate() says how many tokens are new (5.24), else take what is unseen.
            if next_sequence_length is not None:
                start = input_ids.shape[1] - next_sequence_length
            else:
                start = seen if input_ids.shape[1] > seen else input_ids.shape[1] - 1
            inputs["input_ids"] = input_ids[:, start:].contiguous()
            new = inputs["input_ids"].shape[1]
        if position_ids is not None:
            inputs["position_ids"] = position_ids[..., -new:]
        if kwargs.get("logits_to_keep") is not None:
            inputs["logits_to_keep"] = kwargs["logits_to_keep"]
        return inputs

    def _reorder_cache(self, cache, beam_idx):
        cache.reorder_cache(beam_idx)
        return cache


__all__ = ["HybridForCausalLM", "HybridModel", "HybridPreTrainedModel", "HybridDecoderLayer", "causal_mask"]
