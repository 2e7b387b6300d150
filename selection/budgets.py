"""Softmax budgets: how many layers keep softmax attention, and the nested sets one ranking gives.

A budget is a ratio of the layers (K = round-half-up(ratio * L), method.md §2) or an explicit K. GA-S2 ranks
every layer once, so the sets for several budgets are prefixes of one ranking (method.md §5.2 step 4).
"""

from __future__ import annotations

from .errors import SelectionError

# The paper's budgets (12.5 / 25 / 33 / 50 % softmax), reported next to the requested one.
STANDARD_RATIOS = (0.125, 0.25, 0.33, 0.5)


def k_for_ratio(num_layers: int, ratio: float) -> int:
    if not isinstance(ratio, (int, float)) or not 0.0 < ratio <= 1.0:
        raise SelectionError(f"ratio must be in (0, 1] (the softmax share of the layers), got {ratio}")
    return max(1, int(ratio * num_layers + 0.5))


def check_k(num_layers: int, k: int) -> int:
    if not isinstance(k, int) or k < 1:
        raise SelectionError(f"K (softmax layers) must be a positive integer, got {k}")
    if k > num_layers:
        raise SelectionError(f"K = {k} softmax layers but the teacher has only {num_layers} layers")
    return k


def resolve_budget(num_layers: int, ratio: float | None = None, k: int | None = None) -> int:
    """K from exactly one of ratio and k (k wins when both are given, as an explicit count)."""
    if k is not None:
        return check_k(num_layers, k)
    if ratio is None:
        raise SelectionError("give a softmax budget: --ratio R or --k K")
    return check_k(num_layers, k_for_ratio(num_layers, ratio))


def parse_budgets(text: str | None) -> list[float | int]:
    """'0.125,0.25,7' -> [0.125, 0.25, 7]: values below 1 are ratios, whole numbers >= 1 are layer counts."""
    if not text:
        return []
    values: list[float | int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise SelectionError(f"--budgets: {part!r} is neither a ratio (0 < r < 1) nor a layer count") from None
        if value <= 0:
            raise SelectionError(f"--budgets: {part!r} must be positive")
        values.append(int(value) if value >= 1 and value.is_integer() else value)
    return values


def budget_ks(num_layers: int, primary_k: int, extra: list[float | int] | None = None,
              standard: bool = True) -> list[dict]:
    """The budgets to report: the requested K first, then `extra` and the standard ratios, deduplicated by K."""
    entries = [{"k": primary_k, "ratio": round(primary_k / num_layers, 4), "primary": True}]
    wanted = list(extra or []) + (list(STANDARD_RATIOS) if standard else [])
    for value in wanted:
        if isinstance(value, int):
            k, ratio = check_k(num_layers, value), round(value / num_layers, 4)
        else:
            if value >= 1:
                raise SelectionError(f"budget ratio {value} must be below 1")
            k, ratio = k_for_ratio(num_layers, value), value
        if k > num_layers or any(e["k"] == k for e in entries):
            continue
        entries.append({"k": k, "ratio": ratio, "primary": False})
    return sorted(entries, key=lambda e: e["k"])


def nested_sets(ranking: list[int], ks: list[int]) -> dict[int, list[int]]:
    """K -> the first K layers of the ranking, sorted (the layer list a hybrid config wants)."""
    out = {}
    for k in ks:
        if k > len(ranking):
            raise SelectionError(f"K = {k} is larger than the ranking ({len(ranking)} layers)")
        out[k] = sorted(ranking[:k])
    return out
