"""Perplexity on held-out text, with a sliding window for texts longer than the model's context.

Each token is scored exactly once. The first window scores all its tokens; every later window moves on by
`stride` tokens and scores only those, seeing `window - stride` tokens of context before them (the standard
strided evaluation: a smaller stride means more context per token and more compute). With a bos token, the
first text token is scored after bos; without one, the first token is context only.

Text: the built-in corpus's held-out split or a user's UTF-8 file; see `heldout_text`. The split is the one
distillation holds out (hybridserve.convert.data, default eval_fraction 0.01): a document is held out when the first
8 bytes of the sha256 of its text, read as a fraction of 2^64, fall below `HELDOUT_FRACTION`, so a distilled
hybrid is never measured on text it was trained on.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from .backends import Backend
from .common import EvalError

HELDOUT_FRACTION = 0.01  # convert.data's default eval_fraction


@dataclass
class PerplexityResult:
    ppl: float
    nll: float  # mean negative log-likelihood per token, nats
    tokens: int  # tokens scored
    windows: int
    window: int
    stride: int

    def to_dict(self) -> dict:
        return asdict(self)


def sliding_windows(num_tokens: int, window: int, stride: int, first: int = 1) -> list[tuple[int, int, int]]:
    """(start, score_from, end) per window over a sequence of `num_tokens`: the window reads tokens
    [start, end) and scores [score_from, end). Tokens before `first` are context only."""
    if window < 2:
        raise EvalError(f"the perplexity window must be at least 2 tokens, got {window}")
    if not 1 <= stride < window:
        raise EvalError(f"the perplexity stride must be in [1, window - 1] = [1, {window - 1}], got {stride}")
    if num_tokens <= first:
        raise EvalError(f"the text is too short for perplexity: {num_tokens} tokens")
    spans = []
    end = min(window, num_tokens)
    spans.append((0, first, end))
    while end < num_tokens:
        new_end = min(end + stride, num_tokens)
        spans.append((new_end - window, end, new_end))
        end = new_end
    return spans


def perplexity(backend: Backend, ids: list[int], window: int, stride: int | None = None,
               prefix: list[int] | None = None, batch: int = 8) -> PerplexityResult:
    """Perplexity of token sequence `ids` under `backend` with windows of `window` tokens.

    `prefix` (e.g. [bos]) is put before the text as context of its first token; without one, the first text
    token is context only. The prefix counts towards the first window's length."""
    stride = stride if stride is not None else max(1, window // 2)
    prefix = list(prefix or [])
    seq = prefix + list(ids)
    first = max(1, len(prefix))
    spans = sliding_windows(len(seq), window, stride, first=first)
    requests = [(seq[s:f], seq[f:e]) for s, f, e in spans]
    total, count = 0.0, 0
    for i in range(0, len(requests), batch):
        for score in backend.loglikelihood(requests[i:i + batch]):
            total += score.total
            count += len(score.logprobs)
    nll = -total / count
    return PerplexityResult(ppl=math.exp(nll), nll=nll, tokens=count, windows=len(spans), window=window, stride=stride)


def doc_fraction(text: str) -> float:
    """Where a document falls in [0, 1); held out when below HELDOUT_FRACTION (the rule of convert.data)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2.0 ** 64


def heldout_text(spec: str = "corpus", folder: str | Path | None = None) -> str:
    """The text to measure perplexity on: "corpus" (the held-out tail of every built-in corpus source),
    "corpus:<source>" (one source's tail) or a path / "file:<path>" to a UTF-8 text file."""
    spec = spec.strip()
    if spec == "corpus" or spec.startswith("corpus:"):
        from .haystack import corpus_documents

        source = (spec.split(":", 1)[1] or None) if ":" in spec else None
        docs = [d for _, texts in sorted(corpus_documents(source, folder).items()) for d in texts]
        held = [d for d in docs if doc_fraction(d) < HELDOUT_FRACTION]
        if not held and docs:  # as convert.data does: the document with the smallest fraction
            held = [min(docs, key=doc_fraction)]
        text = "\n\n".join(held)
    else:
        path = Path(spec[5:] if spec.startswith("file:") else spec).expanduser()
        if not path.is_file():
            raise EvalError(f"perplexity text {spec!r} not found: use corpus, corpus:<source> or a text file")
        text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise EvalError(f"the perplexity text {spec!r} is empty")
    return text


def text_perplexity(backend: Backend, text: str, window: int, stride: int | None = None,
                    max_tokens: int | None = None) -> PerplexityResult:
    """Tokenise `text` with the backend's tokenizer and measure perplexity on its first `max_tokens` tokens. The
    special tokens the tokenizer puts in front of a text (bos for Llama-style tokenizers) come first, as context."""
    tok = backend.tokenizer
    ids = list(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
    if max_tokens:
        ids = ids[:max_tokens]
    prefix = list(tok("", add_special_tokens=True)["input_ids"])
    return perplexity(backend, ids, window, stride, prefix=prefix)
