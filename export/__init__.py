"""export/: the hybrid model (config, model, cache, linear mixers) and its Hub-ready checkpoint format."""

from .configuration_hybrid import HybridConfig, HybridConfigError, layer_types_for
from .modeling_hybrid import HybridForCausalLM, HybridModel

__all__ = ["HybridConfig", "HybridConfigError", "HybridForCausalLM", "HybridModel", "layer_types_for"]
