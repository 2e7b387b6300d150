"""Early stopping by ranking stability (P1 §5.3, method.md §5.2).

All candidates are scored at common checkpoints (lock-step rounds). After each round the top-K set of the
ranking is compared with the previous round's by Jaccard similarity |A ∩ B| / |A ∪ B|; scoring stops once
that similarity has stayed at or above `threshold` for `patience` consecutive comparisons. The ranking of
the stopping round is the result, and the remaining rounds' tokens are saved.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SelectionError


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class StabilityTracker:
    k: int
    threshold: float = 0.9
    patience: int = 3
    previous: frozenset | None = None
    streak: int = 0
    similarities: list = field(default_factory=list)  # one per round (None for the first)

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise SelectionError(f"early-stop threshold must be in (0, 1], got {self.threshold}")
        if self.patience < 1:
            raise SelectionError(f"early-stop patience must be at least 1, got {self.patience}")

    def update(self, ranking: list[int]) -> bool:
        """Feed one round's ranking (best first); True when scoring may stop after this round."""
        top = frozenset(ranking[: self.k])
        if self.previous is None:
            self.similarities.append(None)
        else:
            similarity = jaccard(top, self.previous)
            self.similarities.append(similarity)
            self.streak = self.streak + 1 if similarity >= self.threshold else 0
        self.previous = top
        return self.streak >= self.patience


def first_stable_round(rankings: list[list[int]], k: int, threshold: float, patience: int) -> int | None:
    """Index of the first round after which scoring stops, or None if the rankings never stabilise."""
    tracker = StabilityTracker(k, threshold, patience)
    for index, ranking in enumerate(rankings):
        if tracker.update(ranking):
            return index
    return None
