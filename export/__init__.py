"""export/: the hybrid model (config, model, cache, linear mixers) and its Hub-ready checkpoint format."""

from .checkpoint import ExportError, load_hybrid, push_to_hub, save_hybrid, verify_checkpoint
from .configuration_hybrid import HybridConfig, HybridConfigError, layer_types_for
from .memory import memory_summary
from .modeling_hybrid import HybridForCausalLM, HybridModel

__all__ = [
    "ExportError",
    "HybridConfig",
    "HybridConfigError",
    "HybridForCausalLM",
    "HybridModel",
    "layer_types_for",
    "load_hybrid",
    "memory_summary",
    "push_to_hub",
    "save_hybrid",
    "verify_checkpoint",
]
