"""Generation cache of a hybrid: a growing KV cache for softmax layers, a fixed-size recurrent state
(plus short-conv window) for linear layers.

transformers' own cache classes change between releases (5.17 vs 5.24 renamed the argument and added
linear-attention layers), so this is a small self-contained class with the few members that
`GenerationMixin` and the teacher attention modules use: `update`, `get_seq_length`, `is_compileable`,
`is_linear`, `is_croppable`, `reorder_cache`.
"""

from __future__ import annotations

import torch


class HybridCache:
    is_compileable = False  # grows with the sequence; generate() must not try to compile around it
    is_croppable = False  # a recurrent state cannot be rolled back to an earlier position

    def __init__(self, config):
        self.layer_types = list(config.layer_types)
        n = len(self.layer_types)
        self.keys: list[torch.Tensor | None] = [None] * n
        self.values: list[torch.Tensor | None] = [None] * n
        self.states: list[torch.Tensor | None] = [None] * n
        self.conv_states: list[tuple | None] = [None] * n
        self.seen_tokens = 0

    # ---- what GenerationMixin reads
    @property
    def is_linear(self) -> list[bool]:
        return [t == "linear_attention" for t in self.layer_types]

    def get_seq_length(self, layer_idx: int | None = 0) -> int:
        return self.seen_tokens

    def __len__(self) -> int:
        return len(self.layer_types)

    # ---- softmax layers (called by transformers' attention modules as cache.update(k, v, idx, ...))
    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        if self.keys[layer_idx] is not None:
            key_states = torch.cat([self.keys[layer_idx], key_states], dim=-2)
            value_states = torch.cat([self.values[layer_idx], value_states], dim=-2)
        self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        return key_states, value_states

    # ---- linear layers
    def recurrent_state(self, layer_idx: int) -> torch.Tensor | None:
        return self.states[layer_idx]

    def set_recurrent_state(self, layer_idx: int, state: torch.Tensor) -> None:
        self.states[layer_idx] = state

    def conv_state(self, layer_idx: int):
        return self.conv_states[layer_idx]

    def set_conv_state(self, layer_idx: int, states: tuple) -> None:
        self.conv_states[layer_idx] = states

    # ---- bookkeeping
    def advance(self, num_tokens: int) -> None:
        """Called once per model forward, after every layer has consumed the new tokens."""
        self.seen_tokens += num_tokens

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: keep the rows of the chosen beams in every layer's cache."""
        def pick(t):
            return None if t is None else t.index_select(0, beam_idx.to(t.device))

        self.keys = [pick(t) for t in self.keys]
        self.values = [pick(t) for t in self.values]
        self.states = [pick(t) for t in self.states]
        self.conv_states = [None if c is None else tuple(pick(t) for t in c) for c in self.conv_states]

    def state_bytes(self) -> int:
        """Bytes held now: KV tensors plus recurrent and conv states (what `hybridserve info` predicts)."""
        tensors = [t for t in self.keys + self.values + self.states if t is not None]
        tensors += [t for c in self.conv_states if c is not None for t in c]
        return sum(t.numel() * t.element_size() for t in tensors)
