"""Scoring as RULER does it: case-insensitive string match of the references in the model's output."""

from __future__ import annotations

from .common import Sample


def string_match_all(prediction: str, references: list[str]) -> float:
    """Share of the references found in the prediction (RULER's metric for NIAH, VT, CWE, FWE)."""
    if not references:
        return 0.0
    text = prediction.lower()
    return sum(ref.lower() in text for ref in references) / len(references)


def string_match_part(prediction: str, references: list[str]) -> float:
    """1 if any reference is found (RULER's metric for QA tasks)."""
    text = prediction.lower()
    return float(any(ref.lower() in text for ref in references))


def token_recall(greedy: list[bool], sample: Sample, context_len: int) -> float:
    """Share of `sample.targets` predicted greedily; `greedy[i]` is for token `context_len + i` of the sample."""
    if not sample.targets:
        return 0.0
    return sum(bool(greedy[pos - context_len]) for pos, _ in sample.targets) / len(sample.targets)


def score_generation(sample: Sample, prediction: str) -> float:
    return string_match_all(prediction, sample.answers)
