"""The vLLM plugin (entry point `vllm.general_plugins` → `hybridserve.serve.plugin:register`).

vLLM calls `register()` once in every process it starts (API server, engine core, workers, the model
inspection subprocess), so it is idempotent, cheap and touches no GPU: it registers our config class with
transformers (so a checkpoint's `model_type: hybridserve` loads without --trust-remote-code), names the model
class lazily by string (vLLM imports it only when a checkpoint asks for it), lists our state-mutating op
among the graph-splitting ops, and gives engines of our architecture `serve/scheduler.py`'s scheduler by default.
"""

from __future__ import annotations

import os

ARCHITECTURE = "HybridForCausalLM"
MODEL_CLASS = "hybridserve.serve.model:HybridForCausalLM"
OP_NAME = "hybridserve_linear_attention"  # the linear layers' custom op, vllm::<OP_NAME>
SCHEDULER = "hybridserve.serve.scheduler.HybridScheduler"
STOCK_SCHEDULER_ENV = "HYBRIDSERVE_STOCK_SCHEDULER"  # =1: keep vLLM's own scheduler


def default_scheduler(vllm_config) -> None:
    """vLLM's per-architecture config hook (`MODELS_CONFIG_MAP`): our scheduler unless the user chose one."""
    scheduler = vllm_config.scheduler_config
    if scheduler.scheduler_cls is None and os.environ.get(STOCK_SCHEDULER_ENV, "0") in ("", "0"):
        scheduler.scheduler_cls = SCHEDULER


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
    _config_hook()
    _done = True


def _config_hook() -> None:
    from vllm.model_executor.models.config import MODELS_CONFIG_MAP, VerifyAndUpdateConfig

    class HybridConfigHook(VerifyAndUpdateConfig):
        verify_and_update_config = staticmethod(default_scheduler)

    MODELS_CONFIG_MAP.setdefault(ARCHITECTURE, HybridConfigHook)
