from .naive import naive_chunk_gla, naive_recurrent_gla

__all__ = ["naive_chunk_gla", "naive_recurrent_gla"]
