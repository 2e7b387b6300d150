"""Linear-attention operators used by every hybridserve model (convert, export, serve).

The model calls only the four functions below. Each has the fla calling convention
(q, k [B, T, H, K]; v [B, T, H, V]; decay in log space; state [B, H, K, V] float32) and returns
(o, final_state or None). Today they run the plain-PyTorch references beside each kernel folder
(`gated_delta_rule/naive.py`, `gla/naive.py`), which work on any device and differentiate through
autograd; the Triton kernels plug in behind these same names.
"""

from __future__ import annotations

from .gated_delta_rule.naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule
from .gla.naive import naive_chunk_gla, naive_recurrent_gla


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Gated delta rule over whole sequences (training, prefill)."""
    return naive_chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state, output_final_state)


def fused_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False):
    """Gated delta rule one token at a time (decode)."""
    return naive_recurrent_gated_delta_rule(q, k, v, g, beta, scale, initial_state, output_final_state)


def chunk_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention over whole sequences (training, prefill)."""
    return naive_chunk_gla(q, k, v, gk, scale, initial_state, output_final_state)


def fused_recurrent_gla(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """Gated linear attention one token at a time (decode)."""
    return naive_recurrent_gla(q, k, v, gk, scale, initial_state, output_final_state)


__all__ = ["chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "chunk_gla", "fused_recurrent_gla"]
