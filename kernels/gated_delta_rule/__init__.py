from .naive import naive_chunk_gated_delta_rule, naive_recurrent_gated_delta_rule

__all__ = ["naive_chunk_gated_delta_rule", "naive_recurrent_gated_delta_rule"]
