"""Stage 0 of RADLADS: build a hybrid student from a teacher by weight transfer.

Everything the student shares with the teacher (embeddings, MLPs, norms, lm_head, the kept softmax
layers) is copied exactly. Each linear layer starts from the teacher's attention of the same layer:
q and o are copied, k and v are expanded from the teacher's KV heads to the student's heads, q/k/v
biases are carried over when the mixer has them, and everything without a teacher counterpart
(gates, decay, norms, convs) gets the fresh init of method.md (PyTorch's default nn.Linear init, fla's
decay init, unit norm weights). This is a warm start, not a function-preserving one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..export.configuration_hybrid import TEACHER_FAMILIES, HybridConfig, HybridConfigError, layer_types_for
from ..export.linear_attention import GatedDeltaNet, ShortConv, decay_init
from ..export.modeling_hybrid import HybridForCausalLM


def softmax_budget(num_layers: int, ratio: float) -> int:
    """K = round-half-up(ratio * L), at least 1 for a positive ratio (method.md budgets)."""
    if not 0.0 <= ratio <= 1.0:
        raise HybridConfigError(f"softmax ratio must be within [0, 1], got {ratio}")
    k = int(ratio * num_layers + 0.5)
    return max(k, 1) if ratio > 0 else 0


def uniform_layers(num_layers: int, count: int) -> list[int]:
    """`count` softmax layers spread evenly, each at the centre of its span of the depth."""
    return sorted({int((i + 0.5) * num_layers / count) for i in range(count)}) if count else []


def _teacher_layer_types(tc) -> list[str]:
    n = tc.num_hidden_layers
    window = getattr(tc, "sliding_window", None)
    types = getattr(tc, "layer_types", None)
    if types:  # qwen2 / qwen3 list full vs sliding per layer
        return ["sliding_attention" if t == "sliding_attention" and window else "full_attention" for t in types]
    if tc.model_type == "mistral" and window:  # mistral slides every layer when a window is set
        return ["sliding_attention"] * n
    return ["full_attention"] * n


def hybrid_config_from_teacher(
    teacher_config,
    softmax_layers,
    *,
    mixer: str = "gdn",
    gqa_mode: str = "head",
    transfer_bias: bool = True,
    output_gate: bool = True,
    short_conv: bool = False,
    conv_size: int = 4,
    state_dtype: str = "float32",
) -> HybridConfig:
    """The hybrid's config: the teacher's architecture fields unchanged, plus the layer map and mixer."""
    tc = teacher_config
    family = tc.model_type
    if family not in TEACHER_FAMILIES:
        raise HybridConfigError(
            f"unsupported teacher architecture {family!r}; supported families: {', '.join(TEACHER_FAMILIES)}"
        )
    n = tc.num_hidden_layers
    teacher_types = _teacher_layer_types(tc)
    head_dim = getattr(tc, "head_dim", None) or tc.hidden_size // tc.num_attention_heads
    qkv_bias = True if family == "qwen2" else bool(getattr(tc, "attention_bias", False))
    return HybridConfig(
        teacher_family=family,
        vocab_size=tc.vocab_size,
        hidden_size=tc.hidden_size,
        intermediate_size=tc.intermediate_size,
        num_hidden_layers=n,
        num_attention_heads=tc.num_attention_heads,
        num_key_value_heads=tc.num_key_value_heads or tc.num_attention_heads,
        head_dim=head_dim,
        hidden_act=tc.hidden_act,
        max_position_embeddings=tc.max_position_embeddings,
        rms_norm_eps=tc.rms_norm_eps,
        rope_parameters=dict(tc.rope_parameters),
        attention_bias=getattr(tc, "attention_bias", family == "qwen2"),
        attention_dropout=getattr(tc, "attention_dropout", 0.0),
        mlp_bias=getattr(tc, "mlp_bias", False),
        sliding_window=getattr(tc, "sliding_window", None) if "sliding_attention" in teacher_types else None,
        teacher_layer_types=teacher_types,
        initializer_range=getattr(tc, "initializer_range", 0.02),
        tie_word_embeddings=bool(getattr(tc, "tie_word_embeddings", False)),
        bos_token_id=getattr(tc, "bos_token_id", None),
        eos_token_id=getattr(tc, "eos_token_id", None),
        pad_token_id=getattr(tc, "pad_token_id", None),
        layer_types=layer_types_for(n, softmax_layers),
        linear_mixer=mixer,
        linear_gqa_mode=gqa_mode,
        linear_qkv_bias=transfer_bias and qkv_bias,
        linear_output_gate=output_gate,
        linear_short_conv=short_conv,
        linear_conv_size=conv_size,
        linear_state_dtype=state_dtype,
    )


def expand_kv(weight: torch.Tensor, kv_heads: int, heads: int, mode: str) -> torch.Tensor:
    """Teacher k/v rows [H_kv * D, ...] -> student rows.

    "head": student head h is a copy of teacher KV head h // (H / H_kv), so q.k pairs and v -> o
    alignment of the teacher survive. "legacy_row": the official code's repeat of each *row* G times,
    which scrambles heads (kept only to reproduce the paper). "runtime": unchanged (the model repeats
    heads at run time).
    """
    if mode == "runtime" or kv_heads == heads:
        return weight.clone()
    group = heads // kv_heads
    if mode == "legacy_row":
        return weight.repeat_interleave(group, dim=0)
    per_head = weight.view(kv_heads, -1, *weight.shape[1:])
    return per_head.repeat_interleave(group, dim=0).reshape(-1, *weight.shape[1:])


@dataclass
class TransferReport:
    copied: list[str] = field(default_factory=list)
    expanded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {k: len(v) for k, v in self.__dict__.items()} | {"dropped_names": self.dropped}


def _fresh_init(student: HybridForCausalLM) -> None:
    """method.md's init for parameters with no teacher counterpart (the student is built after the
    teacher is loaded, so PyTorch's default nn.Linear init, not the model's normal(0.02))."""
    for module in student.modules():
        if isinstance(module, GatedDeltaNet):
            A_log, dt_bias = decay_init(module.A_log.shape[0])
            with torch.no_grad():
                module.A_log.copy_(A_log)
                module.dt_bias.copy_(dt_bias)
        if isinstance(module, ShortConv):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)
    for layer in student.model.layers:
        mixer = getattr(layer, "linear_attn", None)
        if mixer is None:
            continue
        for name, child in mixer.named_children():
            if isinstance(child, nn.Linear) and name not in ("query_proj", "key_proj", "value_proj", "out_proj"):
                child.reset_parameters()
        nn.init.ones_(mixer.out_norm.weight)


@torch.no_grad()
def build_student(teacher: nn.Module, softmax_layers, seed: int | None = None,
                  **options) -> tuple[HybridForCausalLM, TransferReport]:
    """Stage 0: a HybridForCausalLM initialised from `teacher` (a transformers Llama/Qwen2/Qwen3/Mistral
    causal LM). `options` go to `hybrid_config_from_teacher`. Returns the student and what was copied.
    seed: draw the parameters with no teacher counterpart from this seed (the same student every time), leaving
    the caller's random state as it was; None draws them from the current random state."""
    config = hybrid_config_from_teacher(teacher.config, softmax_layers, **options)
    param = next(teacher.parameters())
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        student = HybridForCausalLM(config).to(device=param.device, dtype=param.dtype).eval()
        _fresh_init(student)
    teacher_sd = teacher.state_dict()
    student_sd = student.state_dict()
    report = TransferReport()
    used = set()
    H, Hkv = config.num_attention_heads, config.num_key_value_heads
    for name, target in student_sd.items():
        source_name, expand = name, False
        if ".linear_attn." in name:
            prefix, rest = name.split(".linear_attn.")
            proj, _, kind = rest.partition(".")
            teacher_proj = {"query_proj": "q_proj", "key_proj": "k_proj", "value_proj": "v_proj", "out_proj": "o_proj"}.get(proj)
            if teacher_proj is None:
                report.fresh.append(name)
                continue
            source_name = f"{prefix}.self_attn.{teacher_proj}.{kind}"
            expand = proj in ("key_proj", "value_proj")
        if source_name not in teacher_sd:
            if config.tie_word_embeddings and name == "lm_head.weight":
                continue  # tied below
            report.fresh.append(name)
            continue
        value = teacher_sd[source_name]
        if expand:
            value = expand_kv(value, Hkv, config.linear_num_kv_heads if config.linear_gqa_mode == "runtime" else H, config.linear_gqa_mode)
            report.expanded.append(name)
        else:
            report.copied.append(name)
        if value.shape != target.shape:
            raise HybridConfigError(f"cannot transfer {source_name} {tuple(value.shape)} into {name} {tuple(target.shape)}")
        target.copy_(value)
        used.add(source_name)
    report.dropped = sorted(set(teacher_sd) - used - {"lm_head.weight"} if config.tie_word_embeddings else set(teacher_sd) - used)
    if config.tie_word_embeddings:
        student.tie_weights()
        if student.lm_head.weight.data_ptr() != student.model.embed_tokens.weight.data_ptr():
            raise RuntimeError("tied embeddings came apart while building the student")
    return student, report
