"""Haystacks: the filler text that needles are hidden in.

* "noise": one short paragraph of trivial sentences repeated ("The grass is green. The sky is blue. ..."), RULER's
  "repeat" haystack and lm-eval's `niah_single_1`. Needs nothing, so it is the default and what the tests use.
* "corpus" (or "corpus:<source>"): sentences of hybridserve's built-in public-domain corpus
  (`hybridserve.convert.corpus.fetch_builtin_corpus()`, imported only when asked for); natural text like RULER's
  essay haystack.
* "file:<path>" or a path: a UTF-8 text file of your own.

A haystack is a list of sentences read cyclically from a seed-chosen start, so any length can be filled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .common import EvalError

NOISE_SENTENCES = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)

# Split after . ! ? (optionally closed by a quote or bracket) when whitespace and a capital, digit or quote follow.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[A-Z0-9])")
# Enough text for ~200K tokens; reading more of the corpus only costs time.
_CORPUS_WORDS = 150_000


def split_sentences(text: str) -> list[str]:
    """Whitespace-normalised sentences of `text` (a regex splitter: punkt data is not available offline)."""
    text = " ".join(text.split())
    if not text:
        return []
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


class Haystack:
    """Sentences to fill a context with, read cyclically."""

    def __init__(self, name: str, sentences: list[str]):
        sentences = [" ".join(s.split()) for s in sentences]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise EvalError(f"the haystack {name!r} is empty: it has no text to hide needles in")
        self.name = name
        self.sentences = sentences
        self._words = [s.split(" ") for s in sentences]

    def __repr__(self) -> str:
        return f"Haystack({self.name!r}, {len(self.sentences)} sentences)"

    def take(self, num_words: int, start: int = 0) -> list[str]:
        """Sentences, read cyclically from sentence `start`, holding exactly `num_words` words (the last one is
        cut short when needed)."""
        out: list[str] = []
        left, i, n = num_words, start % len(self.sentences), len(self.sentences)
        while left > 0:
            words = self._words[i]
            if len(words) <= left:
                out.append(self.sentences[i])
                left -= len(words)
            else:  # cut short; end it like a sentence so that a needle never continues a fragment
                out.append(" ".join(words[:left]).rstrip(",;:") + ".")
                left = 0
            i = (i + 1) % n
        return out


def noise_haystack() -> Haystack:
    return Haystack("noise", list(NOISE_SENTENCES))


def text_haystack(text: str, name: str = "text") -> Haystack:
    return Haystack(name, split_sentences(text))


def _corpus_folder() -> Path:
    try:
        from hybridserve.convert.corpus import fetch_builtin_corpus
    except ImportError as e:
        raise EvalError(
            "the built-in corpus is not available in this installation (hybridserve.convert.corpus: "
            f"{e}); use --haystack noise or --haystack file:<path>"
        ) from e
    try:
        return Path(fetch_builtin_corpus())
    except Exception as e:  # a fetch failure (offline, no npm, ...) becomes one clear line
        raise EvalError(f"could not fetch the built-in corpus: {type(e).__name__}: {e}") from e


def corpus_documents(source: str | None = None, folder: str | Path | None = None) -> dict[str, list[str]]:
    """Texts of the built-in corpus by source (`<source>.jsonl` files of {"text": ...} lines), in file order."""
    folder = Path(folder) if folder is not None else _corpus_folder()
    files = sorted(folder.glob("*.jsonl"))
    if source is not None:
        files = [f for f in files if f.stem == source]
        if not files:
            known = ", ".join(sorted(f.stem for f in folder.glob("*.jsonl"))) or "none"
            raise EvalError(f"the built-in corpus has no source {source!r} (sources: {known})")
    docs: dict[str, list[str]] = {}
    for f in files:
        texts = []
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    text = json.loads(line).get("text", "")
                    if text.strip():
                        texts.append(text)
        docs[f.stem] = texts
    if not any(docs.values()):
        raise EvalError(f"the built-in corpus in {folder} has no text")
    return docs


def corpus_haystack(source: str | None = None, folder: str | Path | None = None) -> Haystack:
    """Sentences from the built-in corpus, sources interleaved document by document, about 150K words."""
    docs = corpus_documents(source, folder)
    sentences: list[str] = []
    words = 0
    iters = [iter(texts) for _, texts in sorted(docs.items())]
    while iters and words < _CORPUS_WORDS:
        for it in list(iters):
            text = next(it, None)
            if text is None:
                iters.remove(it)
                continue
            for s in split_sentences(text):
                sentences.append(s)
                words += s.count(" ") + 1
    return Haystack("corpus" if source is None else f"corpus:{source}", sentences)


def make_haystack(spec: str | Haystack | None = "noise") -> Haystack:
    """A haystack from its name: "noise", "corpus", "corpus:<source>", "file:<path>" or a path to a text file."""
    if isinstance(spec, Haystack):
        return spec
    spec = (spec or "noise").strip()
    if spec == "noise":
        return noise_haystack()
    if spec == "corpus" or spec.startswith("corpus:"):
        return corpus_haystack((spec.split(":", 1)[1] or None) if ":" in spec else None)
    path = Path(spec[5:] if spec.startswith("file:") else spec).expanduser()
    if not path.is_file():
        raise EvalError(f"unknown haystack {spec!r}: use noise, corpus, corpus:<source>, or file:<path> of a text file")
    return text_haystack(path.read_text(encoding="utf-8", errors="replace"), name=f"file:{path.name}")
