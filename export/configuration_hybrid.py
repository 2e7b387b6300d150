"""Configuration of a hybrid softmax / linear-attention model distilled from a Llama-family teacher.

This file is copied next to exported weights and loaded by `trust_remote_code`, so it imports nothing but
transformers. The teacher's architecture fields are kept under their own names and values (vLLM and the
softmax layers read them as if this were the teacher's config); the hybrid adds `layer_types` (the
Qwen3-Next / vLLM convention) and the `linear_*` settings of the linear-attention layers.
"""

from __future__ import annotations

from transformers import PretrainedConfig

TEACHER_FAMILIES = ("llama", "qwen2", "qwen3", "mistral")
LAYER_TYPES = ("full_attention", "linear_attention")
LINEAR_MIXERS = ("gdn", "gla")
# How a student k/v projection was made from a teacher with fewer KV heads than query heads:
#   "head"       each student head h copies teacher KV head h // group (head-faithful, the default);
#   "legacy_row" the official hybrid-distillation code's row repeat (reproduction only, it scrambles heads);
#   "runtime"    keep the teacher's KV heads and repeat them at run time (RADLADS; fewer parameters).
GQA_MODES = ("head", "legacy_row", "runtime")


class HybridConfigError(ValueError):
    """A hybrid configuration that cannot describe a working model."""


def layer_types_for(num_layers: int, softmax_layers) -> list[str]:
    """`layer_types` for a model of `num_layers` layers that keeps softmax attention at `softmax_layers`."""
    chosen = list(softmax_layers)
    for index in chosen:
        if isinstance(index, bool) or not isinstance(index, int):
            raise HybridConfigError(f"softmax layer index {index!r} is not an integer")
        if not 0 <= index < num_layers:
            raise HybridConfigError(
                f"softmax layer index {index} is out of range: the teacher has {num_layers} layers (0..{num_layers - 1})"
            )
    if len(set(chosen)) != len(chosen):
        raise HybridConfigError(f"softmax layer indices repeat: {sorted(chosen)}")
    keep = set(chosen)
    return ["full_attention" if i in keep else "linear_attention" for i in range(num_layers)]


def _standard_rope(rope_parameters, rope_theta, rope_scaling) -> dict:
    """One rope dict in transformers 5 form ({"rope_type", "rope_theta", scaling keys}) from old or new fields."""
    params = dict(rope_parameters or {})
    if rope_scaling:
        params.update(rope_scaling)
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    params.setdefault("rope_type", "default")
    if rope_theta is not None:
        params.setdefault("rope_theta", rope_theta)
    params.setdefault("rope_theta", 10000.0)
    return params


class HybridConfig(PretrainedConfig):
    model_type = "hybridserve"
    keys_to_ignore_at_inference = ["past_key_values", "cache"]

    def __init__(
        self,
        # --- the teacher's architecture, unchanged ---
        teacher_family: str = "llama",
        vocab_size: int = 32000,
        hidden_size: int = 4096,
        intermediate_size: int = 11008,
        num_hidden_layers: int = 32,
        num_attention_heads: int = 32,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 2048,
        rms_norm_eps: float = 1e-6,
        rope_parameters: dict | None = None,
        rope_theta: float | None = None,
        rope_scaling: dict | None = None,
        attention_bias: bool | None = None,
        attention_dropout: float = 0.0,
        mlp_bias: bool = False,
        sliding_window: int | None = None,
        teacher_layer_types: list[str] | None = None,
        initializer_range: float = 0.02,
        tie_word_embeddings: bool = False,
        use_cache: bool = True,
        bos_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        # --- the hybrid ---
        layer_types: list[str] | None = None,
        linear_mixer: str = "gdn",
        linear_num_heads: int | None = None,
        linear_num_kv_heads: int | None = None,
        linear_key_head_dim: int | None = None,
        linear_value_head_dim: int | None = None,
        linear_gqa_mode: str = "head",
        linear_qkv_bias: bool = False,
        linear_output_gate: bool = True,
        linear_short_conv: bool = False,
        linear_conv_size: int = 4,
        linear_norm_eps: float = 1e-5,
        linear_state_dtype: str = "float32",
        gla_gate_low_rank_dim: int = 16,
        gla_gate_logit_normalizer: float = 16.0,
        **kwargs,
    ):
        self.teacher_family = teacher_family
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads or num_attention_heads
        self.head_dim = head_dim or hidden_size // num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_parameters = _standard_rope(rope_parameters, rope_theta, rope_scaling)
        # Qwen2 always has q/k/v biases (and none on o); the other families say so in `attention_bias`.
        self.attention_bias = (teacher_family == "qwen2") if attention_bias is None else attention_bias
        self.attention_dropout = attention_dropout
        self.mlp_bias = mlp_bias
        self.sliding_window = sliding_window
        self.teacher_layer_types = list(teacher_layer_types or ["full_attention"] * num_hidden_layers)
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        self.bos_token_id, self.eos_token_id, self.pad_token_id = bos_token_id, eos_token_id, pad_token_id

        self.layer_types = list(layer_types or ["linear_attention"] * num_hidden_layers)
        self.linear_mixer = linear_mixer
        self.linear_num_heads = linear_num_heads or num_attention_heads
        self.linear_key_head_dim = linear_key_head_dim or self.head_dim
        self.linear_value_head_dim = linear_value_head_dim or self.head_dim
        self.linear_gqa_mode = linear_gqa_mode
        if linear_num_kv_heads is None:
            linear_num_kv_heads = self.num_key_value_heads if linear_gqa_mode == "runtime" else self.linear_num_heads
        self.linear_num_kv_heads = linear_num_kv_heads
        self.linear_qkv_bias = linear_qkv_bias
        self.linear_output_gate = linear_output_gate
        self.linear_short_conv = linear_short_conv
        self.linear_conv_size = linear_conv_size
        self.linear_norm_eps = linear_norm_eps
        self.linear_state_dtype = linear_state_dtype
        self.gla_gate_low_rank_dim = gla_gate_low_rank_dim
        self.gla_gate_logit_normalizer = gla_gate_logit_normalizer
        # Check before PretrainedConfig.__init__: its own layer_types validator would otherwise raise a
        # transformers error (not a HybridConfigError) for a layer map of the wrong length or kind.
        self.check()
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    # ------------------------------------------------------------------ validation
    def check(self) -> None:
        """Raise one clear HybridConfigError for the first thing that cannot work."""
        n = self.num_hidden_layers
        if self.teacher_family not in TEACHER_FAMILIES:
            raise HybridConfigError(
                f"unsupported teacher family {self.teacher_family!r}; supported: {', '.join(TEACHER_FAMILIES)}"
            )
        if self.linear_mixer not in LINEAR_MIXERS:
            raise HybridConfigError(f"unknown linear mixer {self.linear_mixer!r}; choose one of {', '.join(LINEAR_MIXERS)}")
        if self.linear_gqa_mode not in GQA_MODES:
            raise HybridConfigError(f"unknown linear_gqa_mode {self.linear_gqa_mode!r}; choose one of {', '.join(GQA_MODES)}")
        for name, types in (("layer_types", self.layer_types), ("teacher_layer_types", self.teacher_layer_types)):
            if len(types) != n:
                raise HybridConfigError(f"{name} has {len(types)} entries but the model has {n} layers")
        bad = sorted({t for t in self.layer_types if t not in LAYER_TYPES})
        if bad:
            raise HybridConfigError(f"unknown layer type(s) {bad} in layer_types; allowed: {', '.join(LAYER_TYPES)}")
        bad = sorted({t for t in self.teacher_layer_types if t not in ("full_attention", "sliding_attention")})
        if bad:
            raise HybridConfigError(f"unknown teacher layer type(s) {bad}")
        if "sliding_attention" in self.teacher_layer_types and not self.sliding_window:
            raise HybridConfigError("teacher_layer_types has sliding_attention layers but sliding_window is not set")
        if self.num_attention_heads % self.num_key_value_heads:
            raise HybridConfigError(
                f"num_attention_heads ({self.num_attention_heads}) is not a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.linear_num_heads % self.linear_num_kv_heads:
            raise HybridConfigError(
                f"linear_num_heads ({self.linear_num_heads}) is not a multiple of linear_num_kv_heads ({self.linear_num_kv_heads})"
            )
        if self.linear_gqa_mode != "runtime" and self.linear_num_kv_heads != self.linear_num_heads:
            raise HybridConfigError("linear_num_kv_heads differs from linear_num_heads, which needs linear_gqa_mode='runtime'")
        if self.linear_short_conv and self.linear_mixer != "gdn":
            raise HybridConfigError("linear_short_conv is only implemented for the gdn mixer")
        if self.linear_short_conv and self.linear_conv_size < 2:
            raise HybridConfigError(f"linear_conv_size must be >= 2 with a short conv, got {self.linear_conv_size}")
        if self.linear_state_dtype not in ("float32", "bfloat16", "float16"):
            raise HybridConfigError(f"linear_state_dtype must be float32, bfloat16 or float16, got {self.linear_state_dtype!r}")

    # ------------------------------------------------------------------ views
    @property
    def softmax_layers(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "full_attention"]

    @property
    def linear_layers(self) -> list[int]:
        return [i for i, t in enumerate(self.layer_types) if t == "linear_attention"]

    @property
    def qk_norm(self) -> bool:
        """Qwen3 normalises q and k per head before RoPE (read by vLLM and `hybridserve info`)."""
        return self.teacher_family == "qwen3"

    def sliding_window_of(self, layer: int) -> int | None:
        """The attention window of softmax layer `layer`, as the teacher had it (None = full causal)."""
        return self.sliding_window if self.teacher_layer_types[layer] == "sliding_attention" else None
