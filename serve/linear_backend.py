"""vLLM's LINEAR state-pool backend, with the state indices of decode-only steps kept at one address.

Our layers use vLLM's `LinearAttentionMetadata` (slots, query_start_loc, seq_lens). A FULL CUDA graph of a decode
step reads every tensor at the address it had when the graph was captured, so the slots must live in a buffer that
outlives the capture. vLLM's stock LINEAR builder returns a view of the runner's block table (persistent) with prefix
caching off, but in prefix-caching "align" mode it gathers each request's current block into a fresh tensor every
step; a replayed graph would then read the freed tensor of the capture step. vLLM's own GDN/Mamba builders copy the
decode slots into a persistent buffer for that reason; this builder does the same for ours (one small copy per
decode step), whatever the cache mode.
"""

from __future__ import annotations

import dataclasses

import torch
from vllm.v1.attention.backends.linear_attn import LinearAttentionBackend, LinearAttentionMetadataBuilder


def persistent_decode_slots(metadata, buffer: torch.Tensor | None):
    """metadata with its state indices copied into `buffer` when the step is decode-only and fits (a FULL-graph
    step); otherwise metadata unchanged. Padding rows keep what the runner gave them (its null block)."""
    slots = metadata.state_indices_tensor
    n = slots.shape[0]
    if buffer is None or metadata.num_prefills or n > buffer.shape[0]:
        return metadata
    buffer[:n].copy_(slots, non_blocking=True)
    return dataclasses.replace(metadata, state_indices_tensor=buffer[:n])


class HybridLinearMetadataBuilder(LinearAttentionMetadataBuilder):
    def __init__(self, kv_cache_spec, layer_names, vllm_config, device):
        super().__init__(kv_cache_spec, layer_names, vllm_config, device)
        mode = getattr(vllm_config.compilation_config, "cudagraph_mode", None)
        full = mode is not None and mode.has_full_cudagraphs()
        size = vllm_config.scheduler_config.max_num_seqs
        self._decode_slots = torch.zeros(size, dtype=torch.int32, device=device) if full else None

    def build(self, common_prefix_len, common_attn_metadata, fast_build: bool = False):
        metadata = super().build(common_prefix_len, common_attn_metadata, fast_build)
        return persistent_decode_slots(metadata, self._decode_slots)


class HybridLinearBackend(LinearAttentionBackend):
    @staticmethod
    def get_builder_cls():
        return HybridLinearMetadataBuilder
