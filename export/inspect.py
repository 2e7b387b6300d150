"""What a hybrid checkpoint costs and saves: layer map, parameters and cache memory vs its teacher.

Reads only config.json; parameter counts come from building both models on the meta device, so
`hybridserve info` answers in about a second for any model size, without reading the weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import ExportError
from .configuration_hybrid import HybridConfig, HybridConfigError
from .memory import hybrid_bytes_per_sequence, memory_summary
from .model_card import layer_map
from .modeling_hybrid import HybridForCausalLM

CONTEXT_LENGTHS = (1024, 8192, 32768, 131072)


def read_config(path: str | Path) -> HybridConfig:
    config_file = Path(path) / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{path} is not a hybrid checkpoint folder: it has no config.json")
    try:
        data = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ExportError(f"{config_file} is not valid JSON: {e}") from None
    if data.get("model_type") != HybridConfig.model_type:
        raise ExportError(
            f"{path} holds a {data.get('model_type')!r} model, not a hybridserve hybrid "
            f"(model_type {HybridConfig.model_type!r})"
        )
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        data.pop(key, None)
    return HybridConfig(**data)


def count_parameters(config: HybridConfig) -> int:
    """Unique parameters (tied embeddings counted once) of the model `config` describes."""
    with torch.device("meta"):
        model = HybridForCausalLM(config)
    return sum(p.numel() for p in model.parameters())


def teacher_equivalent(config: HybridConfig) -> HybridConfig:
    """The same architecture with every layer softmax: the teacher's shape."""
    data = config.to_dict()
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        data.pop(key, None)
    data["layer_types"] = ["full_attention"] * config.num_hidden_layers
    return HybridConfig(**data)


def describe_checkpoint(path: str | Path, dtype_bytes: int = 2) -> dict:
    try:
        config = read_config(path)
    except HybridConfigError as e:
        raise ExportError(f"{path}: invalid hybrid config: {e}") from None
    memory = memory_summary(config, dtype_bytes=dtype_bytes)
    per_sequence = {
        str(n): (n * memory["teacher_kv_bytes_per_token"], hybrid_bytes_per_sequence(memory, n)) for n in CONTEXT_LENGTHS
    }
    return {
        "path": str(path),
        "config": {
            k: getattr(config, k)
            for k in ("teacher_family", "linear_mixer", "num_hidden_layers", "hidden_size", "num_attention_heads",
                      "num_key_value_heads", "head_dim", "linear_num_heads", "linear_key_head_dim",
                      "linear_value_head_dim", "linear_gqa_mode", "linear_state_dtype", "max_position_embeddings")
        },
        "layer_map": layer_map(config),
        "softmax_layers": config.softmax_layers,
        "parameters": {"teacher": count_parameters(teacher_equivalent(config)), "hybrid": count_parameters(config)},
        "memory": memory,
        "context_lengths": list(CONTEXT_LENGTHS),
        "per_sequence_bytes": per_sequence,
        "vllm": vllm_layout(config, memory),
    }


def vllm_layout(config, memory: dict | None = None) -> dict:
    """How vLLM will group this model's caches when served (serve/state_packing.py): the linear layers per state page
    and the cache groups its scheduler walks per request per step, with and without that packing. With the model's
    memory_summary: also the attention block vLLM sizes to one packed page (at most; with prefix caching on it must
    fit --max-num-batched-tokens, or fewer layers share a page)."""
    from ..serve.state_packing import attention_block_tokens, config_pack, packed_grouping

    softmax = len(config.softmax_layers)
    linear = config.num_hidden_layers - softmax
    try:
        pack = config_pack(config)
    except ValueError as e:
        raise ExportError(f"invalid hybrid config: {e}") from None
    layout = {"state_pack": pack, "cache_groups": packed_grouping(softmax, linear, pack)[0],
              "cache_groups_unpacked": packed_grouping(softmax, linear, 1)[0]}
    if memory and softmax and linear:
        page = pack * memory["state_bytes_per_sequence"] // linear
        layout["attention_block_tokens"] = attention_block_tokens(page, memory["kv_bytes_per_token_per_layer"])
    return layout
