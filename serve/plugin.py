"""The vLLM plugin (entry point `vllm.general_plugins` → `hybridserve.serve.plugin:register`).

vLLM calls `register()` once in every process it starts (API server, engine core, workers, the model
inspection subprocess), so it is idempotent, cheap and touches no GPU: it registers our config class with
transformers (so a checkpoint's `model_type: hybridserve` loads without --trust-remote-code), names the model
class lazily by string (vLLM imports it only when a checkpoint asks for it) and lists our state-mutating op
among the graph-splitting ops.
"""

from __future__ import annotations

ARCHITECTURE = "HybridForCausalLM"
MODEL_CLASS = "hybridserve.serve.model:HybridForCausalLM"
OP_NAME = "hybridserve_linear_attention"  # the linear layers' custom op, vllm::<OP_NAME>

_done = False


def register() -> None:
    global _done
    if _done:
        return
    from transformers import AutoConfig
    from vllm import ModelRegistry

    from hybridserve.export.configuration_hybrid import HybridConfig

    from .compat import add_splitting_op

    AutoConfig.register(HybridConfig.model_type, HybridConfig, exist_ok=True)
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)
    add_splitting_op(f"vllm::{OP_NAME}")
    _done = True
