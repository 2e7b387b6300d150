"""How much generation memory a hybrid needs compared with its teacher (model cards, `hybridserve info`).

Softmax layers keep a KV cache that grows with every token; linear layers keep a fixed-size recurrent
state per sequence (plus a short-conv window for Gated DeltaNet with `linear_short_conv`). The numbers
here follow the shapes `HybridCache` really stores, so they can be checked against `state_bytes()`.
"""

from __future__ import annotations

from collections.abc import Mapping

_STATE_DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def memory_summary(config, dtype_bytes: int = 2) -> dict:
    """Per-token KV bytes and per-sequence state bytes of the hybrid and of its all-softmax teacher.

    `config` is a HybridConfig or a config.json dict; `dtype_bytes` is the activation / KV-cache dtype
    (2 for bf16/fp16). The recurrent state uses the config's own `linear_state_dtype` (float32 by default)
    because the model stores it in that dtype whatever the activations are; the conv window is kept in
    the activation dtype.
    """
    if isinstance(config, Mapping):
        from .configuration_hybrid import HybridConfig

        # from_dict fills the derived defaults (head_dim, kv heads, ...) that a raw dict may leave out
        config = HybridConfig.from_dict(dict(config))
    layer_types = list(config.layer_types)
    n_layers = len(layer_types)
    n_softmax = sum(t == "full_attention" for t in layer_types)
    n_linear = n_layers - n_softmax

    kv_per_layer = 2 * config.num_key_value_heads * config.head_dim * dtype_bytes  # K and V
    H, Hkv = config.linear_num_heads, config.linear_num_kv_heads
    K, V = config.linear_key_head_dim, config.linear_value_head_dim
    state_bytes = _STATE_DTYPE_BYTES[config.linear_state_dtype]
    # Runtime-GQA kv heads are repeated before the recurrence, so the state always has H heads.
    recurrent_per_layer = H * K * V * state_bytes
    conv_per_layer = 0
    # Only Gated DeltaNet has the short conv (GLA ignores linear_short_conv); q, k and v each keep a window.
    if config.linear_short_conv and config.linear_mixer == "gdn":
        channels = H * K + Hkv * K + Hkv * V
        conv_per_layer = (config.linear_conv_size - 1) * channels * dtype_bytes

    teacher_kv = n_layers * kv_per_layer
    hybrid_kv = n_softmax * kv_per_layer
    recurrent = n_linear * recurrent_per_layer
    conv = n_linear * conv_per_layer
    state = recurrent + conv
    saved = teacher_kv - hybrid_kv
    return {
        "num_layers": n_layers,
        "num_softmax_layers": n_softmax,
        "num_linear_layers": n_linear,
        "dtype_bytes": dtype_bytes,
        "state_dtype_bytes": state_bytes,
        "kv_bytes_per_token_per_layer": kv_per_layer,
        "teacher_kv_bytes_per_token": teacher_kv,
        "hybrid_kv_bytes_per_token": hybrid_kv,
        "kv_fraction": hybrid_kv / teacher_kv if teacher_kv else 0.0,
        "recurrent_state_bytes_per_sequence": recurrent,
        "conv_state_bytes_per_sequence": conv,
        "state_bytes_per_sequence": state,
        # Context length up to which the hybrid's fixed state outweighs the KV it saves; beyond it the
        # hybrid needs less memory per sequence than the teacher (None: no layer converted, no saving).
        "break_even_tokens": -(-state // saved) if saved > 0 else None,
    }


def hybrid_bytes_per_sequence(summary: dict, tokens: int) -> int:
    """Cache bytes of one sequence of `tokens` tokens in the hybrid (KV grows, state does not)."""
    return tokens * summary["hybrid_kv_bytes_per_token"] + summary["state_bytes_per_sequence"]


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units: these are memory sizes)."""
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "GiB":
            break
    return f"{n:.1f} {unit}"


__all__ = ["memory_summary", "hybrid_bytes_per_sequence", "format_bytes"]
