"""Types shared by the generators, backends and the runner."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


class EvalError(ValueError):
    """Bad evaluation input (unknown task, impossible length, empty haystack, ...); the message says what to do."""


@dataclass(frozen=True)
class Needle:
    """One inserted piece of evidence and where it ended up in the prompt.

    `depth` is the requested relative position inside the context (0 = start, 1 = end); `token_depth` the
    achieved one, measured in tokens of the context. `char_start` indexes `Sample.prompt`, `token_start` indexes
    `Sample.input_ids` (the first token that overlaps the needle's first character).
    """

    text: str
    depth: float
    char_start: int
    token_start: int
    token_depth: float


@dataclass
class Sample:
    """One evaluation prompt with its references.

    kind "generate": the backend greedily continues `input_ids` (the tokenisation of `prompt`) for up to
    `max_new_tokens` tokens, and the score is the share of `answers` found in the output (case-insensitive).
    kind "token_recall": no generation; `input_ids` is scored teacher-forced and the score is the share of
    `targets` (position, token id) that the model predicts greedily from the tokens before them.
    """

    task: str
    index: int
    length: int  # the requested length in tokens
    input_ids: list[int]
    answers: list[str]
    prompt: str | None = None
    max_new_tokens: int = 0
    kind: str = "generate"
    needles: list[Needle] = field(default_factory=list)
    targets: list[tuple[int, int]] = field(default_factory=list)
    chat: bool = False
    metadata: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def describe(self) -> dict:
        """A JSON-able summary without the (long) prompt itself."""
        return {
            "index": self.index,
            "tokens": self.num_tokens,
            "answers": list(self.answers),
            "depths": [round(n.depth, 4) for n in self.needles],
            "token_depths": [round(n.token_depth, 4) for n in self.needles],
            **({"metadata": self.metadata} if self.metadata else {}),
        }


def needle_dicts(needles: list[Needle]) -> list[dict]:
    return [asdict(n) for n in needles]
