"""GA-S2 and friends: which layers of a teacher keep softmax attention (method.md, layer selection)."""
