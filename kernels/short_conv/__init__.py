from .naive import naive_short_conv_decode_, naive_short_conv_varlen_

__all__ = ["naive_short_conv_decode_", "naive_short_conv_varlen_"]
