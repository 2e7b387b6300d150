"""Scores and rankings.

Every method turns its measurements into an *importance* per layer (higher = keeping that layer softmax
matters more) and ranks layers by importance, best first; ties go to the lower layer index so a ranking is
a pure function of the scores.

GA-S2: importance = -KL of the hybrid with only that layer softmax (lower KL = better addition).
GR-S2: importance = +KL of the hybrid with only that layer linear (higher KL = the layer hurts most when lost).
AVG-S2: importance = -(GA rank + GR rank) / 2 (positions, 0 = best), ties broken by the GA rank.
"""

from __future__ import annotations

import json
import math
from pathlib import Path


def rank(importance: dict[int, float]) -> list[int]:
    """Layers by importance, highest first; NaN sorts last; ties by layer index."""
    def key(layer):
        value = importance[layer]
        return (1, 0.0, layer) if value is None or math.isnan(value) else (0, -value, layer)

    return sorted(importance, key=key)


def positions(ranking: list[int]) -> dict[int, int]:
    return {layer: i for i, layer in enumerate(ranking)}


def average_rank_importance(ga_ranking: list[int], gr_ranking: list[int]) -> dict[int, float]:
    """AVG-S2: minus the mean rank position; the GA position breaks ties (a 1e-6 nudge keeps scores exact)."""
    ga, gr = positions(ga_ranking), positions(gr_ranking)
    return {layer: -(ga[layer] + gr[layer]) / 2 - 1e-6 * ga[layer] for layer in ga}


def read_metrics(path: str | Path) -> list[dict]:
    """A trainer metrics.jsonl; a line cut by a crash is skipped."""
    records = []
    path = Path(path)
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def window_mean(records: list[dict], end_step: int, window: int, key: str = "kl") -> float:
    """Mean of `key` over the training steps (end_step - window, end_step] (fewer at the start)."""
    values = [r[key] for r in records if key in r and end_step - window < r.get("step", 0) <= end_step]
    return float(sum(values) / len(values)) if values else float("nan")


def eval_at(records: list[dict], step: int) -> float:
    """The held-out score logged at exactly `step`."""
    for r in reversed(records):
        if r.get("step") == step and "eval" in r:
            return float(r["eval"])
    return float("nan")
