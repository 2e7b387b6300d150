"""Linear-attention operators used by every hybridserve model (convert, export, serve).

The model calls only the four functions below. Each has the fla calling convention
(q, k [B, T, H, K]; v [B, T, H, V]; decay in log space; state [B, H, K, V] float32) and returns
(o, final_state or None). CPU tensors (and float64 anywhere) run the plain-PyTorch references beside each
kernel folder (`gated_delta_rule/naive.py`, `gla/naive.py`), exactly as before, differentiating through
autograd. CUDA tensors run the Triton kernels through the `torch.ops.hybridserve.*` custom ops (`ops.py`) when
triton is importable (else the references); those ops are differentiable (Triton backward for head dims up to
128, else recomputed through the chunked reference).

Serving (vLLM) uses the state-pool functions: `gdn_decode_`, `gdn_recurrent_varlen_`, `gdn_prefill_varlen`,
`gla_decode_`, `gla_recurrent_varlen_`, `gla_prefill_varlen`, and the short conv's
`short_conv_decode_` / `short_conv_varlen_`; they update a state pool [num_slots, H, K, V]
in place through per-sequence slot indices (README.md in this folder documents the layouts).

Importing this package never imports triton.
"""

# This folder is the package `hybridserve.kernels`. Run from the repository root, it is also visible as a top-level
# package `kernels`, the import name of Hugging Face's `kernels` library, and transformers imports whatever answers to
# that name when it probes for that library. A second copy of this package would register the `hybridserve::*` custom
# ops again and re-point torch's dispatcher at the copy's functions (its own JIT and autotune caches, its own module
# state). So under any other name the package defines nothing.
if __name__ == "hybridserve.kernels":
    from . import ops
    from .api import (
        PAD_SLOT_ID,
        chunk_gated_delta_rule,
        chunk_gla,
        fused_recurrent_gated_delta_rule,
        fused_recurrent_gla,
        gdn_decode_,
        gdn_prefill_varlen,
        gdn_recurrent_varlen_,
        gla_decode_,
        gla_prefill_varlen,
        gla_recurrent_varlen_,
        short_conv_decode_,
        short_conv_varlen_,
    )

    # The model-facing API (tests/test_kernels_reference.py pins it). The state-pool functions, PAD_SLOT_ID and the
    # `ops` module are public too, for the serving layer, and are imported by name.
    __all__ = ["chunk_gated_delta_rule", "fused_recurrent_gated_delta_rule", "chunk_gla", "fused_recurrent_gla"]
