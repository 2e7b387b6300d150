"""The name of the custom op of the linear layers, importable without vLLM's model code."""

OP_NAME = "hybridserve_linear_attention"
