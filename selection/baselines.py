"""Selections that need no distillation runs: uniform interleaving and a manual list.

Uniform (method.md §5.4/§5.6). The official configs follow several conventions, so they are options:
  anchor="center"  each layer at the centre of its span of the depth (hybridserve's default, the same as
                   `convert --ratio`): uniform(28, 7) = [2, 6, 10, 14, 18, 22, 26]
  anchor="start"   offset + i * stride: uniform(28, 7, "start") = [0, 4, ..., 24] (Qwen2.5-1.5B/7B configs)
  anchor="end"     (L - 1 - offset) - i * stride: uniform(28, 7, "end") = [3, 7, ..., 27] (Llama-3.2-3B 25 %)
stride defaults to L // K; the Qwen2.5-3B 12.5 % config used stride 8 ([0, 8, 16, 24, 32]), so pass it.
The ranking of a uniform set is its layers in the order they are generated (a nested prefix is again spread).
"""

from __future__ import annotations

from ..convert.stage0 import uniform_layers
from .budgets import check_k
from .errors import SelectionError

ANCHORS = ("center", "start", "end")


def uniform(num_layers: int, k: int, anchor: str = "center", stride: int | None = None, offset: int = 0) -> list[int]:
    check_k(num_layers, k)
    if anchor not in ANCHORS:
        raise SelectionError(f"uniform anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
    if anchor == "center":
        if stride is not None or offset:
            raise SelectionError("uniform: --stride/--offset apply to anchor start or end, not center")
        return uniform_layers(num_layers, k)
    stride = num_layers // k if stride is None else stride
    if stride < 1:
        raise SelectionError(f"uniform stride must be at least 1, got {stride}")
    if offset < 0:
        raise SelectionError(f"uniform offset must be non-negative, got {offset}")
    if anchor == "start":
        layers = [offset + i * stride for i in range(k)]
    else:
        layers = [num_layers - 1 - offset - i * stride for i in range(k)]
    if min(layers) < 0 or max(layers) >= num_layers:
        raise SelectionError(f"uniform: {k} layers with stride {stride} and offset {offset} do not fit in {num_layers} layers")
    return sorted(layers)


def uniform_ranking(num_layers: int, anchor: str = "center", stride: int | None = None, offset: int = 0,
                    k: int | None = None) -> list[int]:
    """A full ranking whose first K entries are `uniform(L, K, ...)` for the requested K."""
    chosen = uniform(num_layers, k or 1, anchor, stride, offset)
    rest = [i for i in uniform_layers(num_layers, num_layers) if i not in chosen]
    return chosen + rest


def manual_ranking(num_layers: int, layers: list[int]) -> list[int]:
    if not layers:
        raise SelectionError("manual selection: give the layers, e.g. --layers 3,10,17")
    if len(set(layers)) != len(layers):
        raise SelectionError(f"manual selection: layers repeat: {layers}")
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise SelectionError(f"manual selection: layer(s) {bad} out of range for a {num_layers}-layer teacher")
    return list(layers)
