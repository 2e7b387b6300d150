"""What a chosen layer set buys at inference: KV-cache bytes per token and recurrent-state bytes per sequence
(export/memory.py's accounting of the shapes the hybrid cache really stores), next to the teacher's."""

from __future__ import annotations

from ..convert.stage0 import hybrid_config_from_teacher
from ..export.memory import hybrid_bytes_per_sequence, memory_summary

REPORT_CONTEXTS = (4096, 32768, 131072)


def memory_for_set(teacher_config, layers: list[int], mixer: str = "gdn", gqa_mode: str = "head",
                   short_conv: bool = False, dtype_bytes: int = 2) -> dict:
    config = hybrid_config_from_teacher(teacher_config, layers, mixer=mixer, gqa_mode=gqa_mode, short_conv=short_conv)
    summary = memory_summary(config, dtype_bytes=dtype_bytes)
    return {
        "kv_bytes_per_token": summary["hybrid_kv_bytes_per_token"],
        "teacher_kv_bytes_per_token": summary["teacher_kv_bytes_per_token"],
        "kv_fraction": summary["kv_fraction"],
        "state_bytes_per_sequence": summary["state_bytes_per_sequence"],
        "break_even_tokens": summary["break_even_tokens"],
        "cache_bytes_per_sequence": {str(n): hybrid_bytes_per_sequence(summary, n) for n in REPORT_CONTEXTS},
        "teacher_cache_bytes_per_sequence": {str(n): n * summary["teacher_kv_bytes_per_token"] for n in REPORT_CONTEXTS},
        "dtype_bytes": dtype_bytes,
    }
