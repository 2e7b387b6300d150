"""hybridserve: turn a softmax-attention LLM into a fast linear/softmax hybrid, export it, serve it."""

__version__ = "0.1.0"
