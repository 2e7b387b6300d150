from .naive import naive_short_conv_decode_

__all__ = ["naive_short_conv_decode_"]
