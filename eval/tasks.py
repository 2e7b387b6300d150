"""RULER-style synthetic long-context tasks, generated offline at any length in the evaluated model's own tokens.

The task design follows RULER (Hsieh et al., "RULER: What's the Real Context Size of Your Long-Context Language
Models?", 2024; NVIDIA, Apache-2.0): needle-in-a-haystack variants, variable tracking, common- and frequent-word
extraction, scored by string match. This is our own implementation (own code and wording); it adds associative
recall on raw token ids (MQAR, as in Zoology, Arora et al. 2023). See docs/eval.md.

Every prompt is sized with the tokenizer it will be fed through: the filler (haystack words, list entries) is
binary-searched so that the whole prompt - chat template and answer prefix included - is as close to the requested
length as the filler's granularity allows, never longer. Needles are spread evenly over depths (across samples for
one needle, over the context for several). Everything random comes from `random.Random` seeded with a string of
(seed, task, length, sample index), so the same arguments give the same prompts on every machine.
"""

from __future__ import annotations

import random
import re
import string
import uuid
from dataclasses import dataclass
from typing import Callable

from . import words as _words
from .common import EvalError, Needle, Sample
from .haystack import Haystack, make_haystack

# ------------------------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    build: Callable[["_Context"], Sample]
    max_new_tokens: int  # generation budget (ignored by token_recall tasks)
    kind: str = "generate"  # "generate" | "token_recall"
    uses_haystack: bool = True


TASKS: dict[str, TaskSpec] = {}


def _task(name: str, description: str, max_new_tokens: int, kind: str = "generate", uses_haystack: bool = True):
    def register(fn):
        TASKS[name] = TaskSpec(name, description, fn, max_new_tokens, kind, uses_haystack)
        return fn

    return register


NIAH_TASKS = (
    "niah_single_number", "niah_single_uuid", "niah_single_word",
    "niah_multikey", "niah_multivalue", "niah_multiquery",
)
RULER_TASKS = NIAH_TASKS + ("vt", "cwe", "fwe")
# "ppl" is perplexity on held-out text: the runner handles it (see perplexity.py), it has no prompts.
SUITES: dict[str, tuple[str, ...]] = {
    "ruler": RULER_TASKS,
    "niah": NIAH_TASKS,
    "ar": ("mqar",),
    "recall": RULER_TASKS + ("mqar",),
    "ppl": ("ppl",),
    "all": RULER_TASKS + ("mqar", "ppl"),
}
PPL_TASK = "ppl"


def resolve_tasks(suite: str | None = "ruler", tasks: str | list[str] | None = None) -> list[str]:
    """Task names from a suite name or an explicit comma-separated list (the list wins); unknown names fail."""
    if tasks:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
    else:
        if suite not in SUITES:
            raise EvalError(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
        names = list(SUITES[suite])
    known = set(TASKS) | {PPL_TASK}
    bad = [t for t in names if t not in known]
    if bad:
        raise EvalError(f"unknown task(s) {', '.join(map(repr, bad))}; tasks: {', '.join(sorted(known))}")
    if not names:
        raise EvalError("no tasks selected")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------ prompting


class Prompter:
    """Turns (instruction text, answer prefix) into the exact string and token ids the model will see."""

    def __init__(self, tokenizer, chat: bool | str = "auto"):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat == "auto":
            chat = has_template
        elif chat and not has_template:
            raise EvalError("chat prompts were requested but the tokenizer has no chat template")
        self.chat = bool(chat)
        self._offsets_ok = bool(getattr(tokenizer, "is_fast", False))

    def render(self, user_text: str, answer_prefix: str) -> str:
        if self.chat:
            head = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": user_text}], tokenize=False, add_generation_prompt=True
            )
            return head + answer_prefix
        return f"{user_text}\n{answer_prefix}"

    def encode(self, text: str) -> list[int]:
        # A chat template writes its own bos (if any); plain prompts get the tokenizer's usual special tokens.
        return list(self.tokenizer(text, add_special_tokens=not self.chat, verbose=False)["input_ids"])

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def char_to_token(self, text: str, ids: list[int], chars: list[int]) -> list[int]:
        """Index of the first token that covers (or follows) each character offset."""
        if self._offsets_ok:
            enc = self.tokenizer(text, add_special_tokens=not self.chat, return_offsets_mapping=True, verbose=False)
            offsets = enc["offset_mapping"]
            out = []
            for c in chars:
                out.append(next((i for i, (s, e) in enumerate(offsets) if e > c and e > s), len(offsets)))
            return out
        return [len(self.encode(text[:c])) for c in chars]  # slow tokenizers: close enough


def _fit(build: Callable[[int], str], prompter: Prompter, target: int, task: str) -> tuple[int, str]:
    """The largest filler size n whose prompt `build(n)` has at most `target` tokens, and that prompt."""
    base = build(0)
    if prompter.count(base) > target:
        raise EvalError(
            f"{target} tokens is too short for task {task}: its fixed text alone takes {prompter.count(base)} tokens"
        )
    lo, hi = 0, max(1, target // 4)
    while prompter.count(build(hi)) <= target:  # grow until too long
        lo, hi = hi, hi * 2
        if hi > 64 * target + 64:
            raise EvalError(f"task {task}: the prompt does not grow with its filler (is the haystack empty?)")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if prompter.count(build(mid)) <= target:
            lo = mid
        else:
            hi = mid
    return lo, build(lo)


# ------------------------------------------------------------------------------------------------ generation context


@dataclass
class _Context:
    """Everything one sample's builder needs."""

    task: str
    tokenizer: object
    prompter: Prompter
    length: int
    index: int
    num_samples: int
    seed: int
    haystack: Haystack
    rng: random.Random
    max_new_tokens: int

    def single_depth(self) -> float:
        """One needle per sample: depths spread evenly over the samples, 0 (start) to 1 (end)."""
        return self.index / (self.num_samples - 1) if self.num_samples > 1 else 0.5

    def spread_depths(self, k: int) -> list[float]:
        """k needles in one sample: evenly spread over the context, shifted from sample to sample."""
        shift = (self.index + 0.5) / self.num_samples
        return [(j + shift) / k for j in range(k)]


def _haystack_prompt(ctx: _Context, instruction: str, question: str, answer_prefix: str,
                     needles: list[tuple[float, str]], answers: list[str], metadata: dict | None = None) -> Sample:
    """Hide `needles` ((depth, text), kept in this order) in haystack sentences and size the prompt."""
    start = ctx.rng.randrange(len(ctx.haystack.sentences))
    order = sorted(range(len(needles)), key=lambda j: (needles[j][0], j))

    def context_for(num_words: int) -> tuple[str, list[int]]:
        sentences = ctx.haystack.take(num_words, start)
        # Insert before the sentence whose cumulative word share is closest to the depth.
        cum, total = [0], 0
        for s in sentences:
            total += s.count(" ") + 1
            cum.append(total)
        slots = []
        for j in order:
            depth = needles[j][0]
            slots.append(min(range(len(cum)), key=lambda i: abs(cum[i] - depth * total)) if total else 0)
        pieces, offsets, pos = [], [0] * len(needles), 0
        k = 0
        for i in range(len(sentences) + 1):
            while k < len(order) and slots[k] == i:
                j = order[k]
                offsets[j] = pos
                pieces.append(needles[j][1])
                pos += len(needles[j][1]) + 1
                k += 1
            if i < len(sentences):
                pieces.append(sentences[i])
                pos += len(sentences[i]) + 1
        return " ".join(pieces), offsets

    def build(num_words: int) -> str:
        context, _ = context_for(num_words)
        return ctx.prompter.render(f"{instruction}\n\n{context}\n\n{question}", answer_prefix)

    num_words, text = _fit(build, ctx.prompter, ctx.length, ctx.task)
    context, offsets = context_for(num_words)
    ids = ctx.prompter.encode(text)
    c0 = text.find(context)
    if c0 < 0:  # a chat template that rewrote the content: find each needle instead
        starts = [text.find(n[1]) for n in needles]
        c0, c1 = min(starts), max(s + len(n[1]) for s, n in zip(starts, needles))
    else:
        starts, c1 = [c0 + o for o in offsets], c0 + len(context)
    ends = [s + len(n[1]) for s, n in zip(starts, needles)]
    t0, t1, *marks = ctx.prompter.char_to_token(text, ids, [c0, c1, *starts, *ends])
    tstarts, tends = marks[: len(needles)], marks[len(needles):]
    # Achieved depth: haystack tokens before the needle / all haystack tokens (needle tokens excluded).
    sizes = [e - b for b, e in zip(tstarts, tends)]
    hay = max(1, t1 - t0 - sum(sizes))
    placed = [
        Needle(text=n[1], depth=n[0], char_start=s, token_start=t,
               token_depth=(t - t0 - sum(sz for b, sz in zip(tstarts, sizes) if b < t)) / hay)
        for n, s, t in zip(needles, starts, tstarts)
    ]
    return Sample(
        task=ctx.task, index=ctx.index, length=ctx.length, input_ids=ids, answers=answers, prompt=text,
        max_new_tokens=ctx.max_new_tokens, needles=placed, chat=ctx.prompter.chat, metadata=metadata or {},
    )


# ------------------------------------------------------------------------------------------------ values


def _key(rng: random.Random, taken: set[str]) -> str:
    """An adjective-noun key such as 'nimble-harbour', distinct from those in `taken`."""
    while True:
        key = f"{rng.choice(_words.ADJECTIVES)}-{rng.choice(_words.NOUNS)}"
        if key not in taken:
            taken.add(key)
            return key


def _value(kind: str, rng: random.Random, taken: set[str]) -> str:
    while True:
        if kind == "number":
            value = str(rng.randint(1_000_000, 9_999_999))
        elif kind == "uuid":
            value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        else:  # word
            value = f"{rng.choice(_words.ADJECTIVES)}-{rng.choice(_words.NOUNS)}"
        if value not in taken:
            taken.add(value)
            return value


_KIND_NAME = {"number": ("number", "numbers"), "uuid": ("uuid", "uuids"), "word": ("word", "words")}


def _needle(kind: str, key: str, value: str) -> str:
    return f"One of the special magic {_KIND_NAME[kind][1]} for {key} is: {value}."


def _niah(ctx: _Context, kind: str, num_keys: int, num_values: int, num_queries: int) -> Sample:
    """NIAH: `num_keys` keys with `num_values` values each are hidden; `num_queries` keys are asked for."""
    taken: set[str] = set()
    keys = [_key(ctx.rng, taken) for _ in range(num_keys)]
    values = {k: [_value(kind, ctx.rng, taken) for _ in range(num_values)] for k in keys}
    queried = ctx.rng.sample(keys, num_queries)
    pairs = [(k, v) for k in keys for v in values[k]]
    ctx.rng.shuffle(pairs)
    depths = [ctx.single_depth()] if len(pairs) == 1 else ctx.spread_depths(len(pairs))
    needles = [(d, _needle(kind, k, v)) for d, (k, v) in zip(depths, pairs)]
    one, many = _KIND_NAME[kind]
    plural = num_values * num_queries > 1
    what = many if plural else one
    asked = queried[0] if num_queries == 1 else ", ".join(queried[:-1]) + f" and {queried[-1]}"
    instruction = (
        f"Some special magic {many} are hidden in the following text. Memorize them: "
        f"you will be asked about them afterwards."
    )
    if plural:
        question = f"What are all the special magic {what} for {asked} mentioned in the text above?"
        prefix = f"The special magic {what} for {asked} mentioned in the text above are"
    else:
        question = f"What is the special magic {what} for {asked} mentioned in the text above?"
        prefix = f"The special magic {what} for {asked} mentioned in the text above is"
    answers = [v for k in queried for v in values[k]]
    return _haystack_prompt(ctx, instruction, question, prefix, needles, answers,
                            {"keys": queried})


@_task("niah_single_number", "one needle, a 7-digit number", 32)
def _niah_single_number(ctx):
    return _niah(ctx, "number", 1, 1, 1)


@_task("niah_single_uuid", "one needle, a UUID", 64)
def _niah_single_uuid(ctx):
    return _niah(ctx, "uuid", 1, 1, 1)


@_task("niah_single_word", "one needle, an adjective-noun word", 32)
def _niah_single_word(ctx):
    return _niah(ctx, "word", 1, 1, 1)


@_task("niah_multikey", "4 needles with different keys; one is asked for", 32)
def _niah_multikey(ctx):
    return _niah(ctx, "number", 4, 1, 1)


@_task("niah_multivalue", "4 needles with the same key; all 4 values must be recalled", 96)
def _niah_multivalue(ctx):
    return _niah(ctx, "number", 1, 4, 1)


@_task("niah_multiquery", "4 needles with different keys; all 4 are asked for", 96)
def _niah_multiquery(ctx):
    return _niah(ctx, "number", 4, 1, 4)


# ------------------------------------------------------------------------------------------------ variable tracking

VT_HOPS = 4


def _var_name(rng: random.Random, taken: set[str]) -> str:
    while True:
        name = "".join(rng.choices(string.ascii_uppercase, k=5))
        if name not in taken:
            taken.add(name)
            return name


@_task("vt", f"variable tracking: a chain of {VT_HOPS} assignments hidden in the haystack", 48)
def _vt(ctx):
    taken: set[str] = set()
    names = [_var_name(ctx.rng, taken) for _ in range(VT_HOPS + 1)]
    value = str(ctx.rng.randint(10_000, 99_999))
    statements = [f"VAR {names[0]} = {value}."] + [f"VAR {names[i]} = VAR {names[i - 1]}." for i in range(1, len(names))]
    needles = list(zip(ctx.spread_depths(len(statements)), statements))  # increasing depths: chain order kept
    instruction = "Memorize and track the chain of variable assignments hidden in the following text."
    question = f"Question: Find all variables that are assigned the value {value} in the text above."
    prefix = (f"Answer: Following the chain of variable assignments in the text above, {len(names)} variables are "
              f"assigned the value {value}, they are:")
    return _haystack_prompt(ctx, instruction, question, prefix, needles, names, {"value": value})


# ------------------------------------------------------------------------------------------------ word extraction

CWE_COMMON = 10
_ALL_WORDS = tuple(sorted(set(_words.NOUNS) | set(_words.ADJECTIVES) | set(_words.VERBS)))


def _list_prompt(ctx: _Context, instruction: str, question: str, answer_prefix: str,
                 entries_for: Callable[[int], list[str]], answers: list[str], numbered: bool, sep: str,
                 metadata: dict) -> Sample:
    def build(n: int) -> str:
        entries = entries_for(n)
        body = sep.join(f"{i + 1}. {w}" for i, w in enumerate(entries)) if numbered else sep.join(entries)
        return ctx.prompter.render(f"{instruction}\n\n{body}\n\n{question}", answer_prefix)

    n, text = _fit(build, ctx.prompter, ctx.length, ctx.task)
    return Sample(
        task=ctx.task, index=ctx.index, length=ctx.length, input_ids=ctx.prompter.encode(text), answers=answers,
        prompt=text, max_new_tokens=ctx.max_new_tokens, chat=ctx.prompter.chat, metadata={**metadata, "entries": n},
    )


@_task("cwe", f"common-word extraction: name the {CWE_COMMON} words repeated most often in a list", 128,
       uses_haystack=False)
def _cwe(ctx):
    # Common words appear f_common times, the others at most f_rare times: the gap grows with the length.
    f_common = max(3, min(30, ctx.length // 256))
    f_rare = max(1, min(3, f_common // 3))
    pool = list(_ALL_WORDS)
    ctx.rng.shuffle(pool)
    common, rare = pool[:CWE_COMMON], pool[CWE_COMMON:]
    order_seed = ctx.rng.getrandbits(64)

    def entries_for(n: int) -> list[str]:
        if n > len(rare) * f_rare:
            raise EvalError(f"cwe: {ctx.length} tokens needs more distinct words than the word list has")
        entries = [w for w in common for _ in range(f_common)] + [rare[i // f_rare] for i in range(n)]
        random.Random(order_seed).shuffle(entries)
        return entries

    instruction = ("Below is a numbered list of words. Some words appear more often than others: "
                   "keep track of the ones that appear most often.")
    question = f"Question: What are the {CWE_COMMON} most common words in the list above?"
    prefix = f"Answer: The {CWE_COMMON} most common words in the list above are:"
    return _list_prompt(ctx, instruction, question, prefix, entries_for, common, True, " ",
                        {"common_frequency": f_common, "rare_frequency": f_rare})


FWE_ALPHA = 2.0
FWE_TOP = 3


def _coded_word(rng: random.Random, taken: set[str]) -> str:
    while True:
        w = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 6)))
        if w not in taken:
            taken.add(w)
            return w


@_task("fwe", f"frequent-word extraction: the {FWE_TOP} most frequent coded words of a Zipf-distributed text", 64,
       uses_haystack=False)
def _fwe(ctx):
    word_rng = random.Random(ctx.rng.getrandbits(64))
    order_seed = ctx.rng.getrandbits(64)
    vocab: list[str] = []
    taken: set[str] = set()

    def word(r: int) -> str:
        while len(vocab) <= r:
            vocab.append(_coded_word(word_rng, taken))
        return vocab[r]

    def counts_for(n: int) -> list[int]:
        """Zipf(alpha) expected counts, floored; what is left over becomes words that appear once."""
        ranks = max(1, int((n / 1.0) ** (1 / FWE_ALPHA)) + 1)
        norm = sum(r ** -FWE_ALPHA for r in range(1, n + 2))
        counts = [int(n * r ** -FWE_ALPHA / norm) for r in range(1, ranks + 1)]
        counts = [c for c in counts if c > 0]
        return counts + [1] * (n - sum(counts))

    def entries_for(n: int) -> list[str]:
        counts = counts_for(n)
        entries = [word(r) for r, c in enumerate(counts) for _ in range(c)]
        random.Random(order_seed).shuffle(entries)
        return entries

    instruction = ("Read the following coded text and keep count of how often each coded word appears. "
                   "The dots '...' only separate the words.")
    question = f"Question: Ignore the dots. What are the {FWE_TOP} most frequent coded words in the text above?"
    prefix = f"Answer: The {FWE_TOP} most frequent coded words in the text above are:"
    sample = _list_prompt(ctx, instruction, question, prefix, entries_for, [], False, " ... ", {})
    counts = counts_for(sample.metadata["entries"])
    if len(counts) <= FWE_TOP or not all(counts[i] > counts[i + 1] for i in range(FWE_TOP)):
        raise EvalError(f"fwe: {ctx.length} tokens is too short to make {FWE_TOP} clearly most frequent words")
    sample.answers = [word(r) for r in range(FWE_TOP)]
    sample.metadata["top_counts"] = counts[: FWE_TOP + 1]
    return sample


# ------------------------------------------------------------------------------------------------ MQAR on token ids

MQAR_PAIRS = 16
_WORDLIKE = re.compile(r"^\s?[A-Za-z]{3,}$")


_POOLS: dict[int, tuple[object, list[int], list[int]]] = {}


def _token_pool(tokenizer, exclude: set[int]) -> list[int]:
    """Token ids for keys and values: word-like tokens (e.g. ' apple') not in the filler, else any normal token."""
    cached = _POOLS.get(id(tokenizer))
    if cached is None or cached[0] is not tokenizer:
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        ids = [i for i in range(len(tokenizer)) if i not in special]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        wordlike = [i for i, p in zip(ids, pieces)
                    if p is not None and _WORDLIKE.match(tokenizer.convert_tokens_to_string([p]))]
        cached = _POOLS[id(tokenizer)] = (tokenizer, ids, wordlike)
    _, ids, wordlike = cached
    wordlike = [i for i in wordlike if i not in exclude]
    return wordlike if len(wordlike) >= 4 * MQAR_PAIRS else [i for i in ids if i not in exclude]


@_task("mqar", f"multi-query associative recall on token ids: {MQAR_PAIRS} key-value pairs hidden in filler tokens, "
       "all queried at the end (teacher-forced, greedy)", 0, kind="token_recall")
def _mqar(ctx):
    tok = ctx.tokenizer
    prefix = list(tok("", add_special_tokens=True)["input_ids"])  # e.g. [bos] for tokenizers that add one
    n_pairs = MQAR_PAIRS
    body = ctx.length - len(prefix) - 2 * n_pairs  # filler + hidden pairs
    if body < 4 * n_pairs:
        raise EvalError(f"{ctx.length} tokens is too short for task mqar ({n_pairs} pairs need at least "
                        f"{len(prefix) + 6 * n_pairs})")
    n_filler = body - 2 * n_pairs
    start = ctx.rng.randrange(len(ctx.haystack.sentences))
    filler: list[int] = []
    words = max(64, n_filler)
    while len(filler) < n_filler:
        text = " ".join(ctx.haystack.take(words, start))
        filler = list(tok(" " + text, add_special_tokens=False, verbose=False)["input_ids"])
        words *= 2
    filler = filler[:n_filler]
    pool = _token_pool(tok, set(filler))
    if len(pool) < 2 * n_pairs:
        raise EvalError(f"mqar: the tokenizer has too few tokens outside the filler for {n_pairs} pairs")
    chosen = ctx.rng.sample(pool, 2 * n_pairs)
    keys, values = chosen[:n_pairs], chosen[n_pairs:]
    depths = ctx.spread_depths(n_pairs)
    ids = list(prefix)
    needles, cut = [], 0
    for d, k, v in zip(depths, keys, values):
        at = round(d * n_filler)
        ids += filler[cut:at]
        cut = at
        needles.append((d, len(ids), [k, v]))
        ids += [k, v]
    ids += filler[cut:]
    context_end = len(ids)
    order = list(range(n_pairs))
    ctx.rng.shuffle(order)
    targets = []
    for j in order:
        ids.append(keys[j])
        targets.append((len(ids), values[j]))
        ids.append(values[j])
    span = max(1, context_end - len(prefix))
    placed = [Needle(text=tok.decode(kv), depth=d, char_start=-1, token_start=t, token_depth=(t - len(prefix)) / span)
              for d, t, kv in needles]
    return Sample(
        task=ctx.task, index=ctx.index, length=ctx.length, input_ids=ids, answers=[tok.decode([v]) for v in values],
        kind="token_recall", needles=placed, targets=targets, metadata={"pairs": n_pairs, "query_start": context_end},
    )


# ------------------------------------------------------------------------------------------------ entry points


def generate_sample(task: str, tokenizer, length: int, index: int = 0, *, num_samples: int = 1, seed: int = 0,
                    haystack: str | Haystack = "noise", chat: bool | str = "auto",
                    max_new_tokens: int | None = None) -> Sample:
    """Sample `index` (of `num_samples`) of `task` at `length` tokens of `tokenizer`."""
    if task not in TASKS:
        resolve_tasks(tasks=[task])  # raises the unknown-task error (or says that ppl has no prompts)
        raise EvalError(f"task {task!r} has no prompts (it is evaluated directly)")
    if not isinstance(length, int) or length <= 0:
        raise EvalError(f"length must be a positive number of tokens, got {length!r}")
    if num_samples < 1 or not 0 <= index < num_samples:
        raise EvalError(f"sample index {index} is out of range for {num_samples} samples")
    spec = TASKS[task]
    ctx = _Context(
        task=task, tokenizer=tokenizer, prompter=Prompter(tokenizer, chat if spec.kind == "generate" else False),
        length=length, index=index, num_samples=num_samples, seed=seed,
        haystack=make_haystack(haystack if spec.uses_haystack else "noise"),
        rng=random.Random(f"hybridserve-eval:{seed}:{task}:{length}:{index}"),
        max_new_tokens=max_new_tokens or spec.max_new_tokens,
    )
    return spec.build(ctx)


def generate_samples(task: str, tokenizer, length: int, num_samples: int, *, seed: int = 0,
                     haystack: str | Haystack = "noise", chat: bool | str = "auto",
                     max_new_tokens: int | None = None) -> list[Sample]:
    """All `num_samples` samples of `task` at `length` tokens (the haystack is read once)."""
    if task in TASKS and TASKS[task].uses_haystack:
        haystack = make_haystack(haystack)
    return [
        generate_sample(task, tokenizer, length, i, num_samples=num_samples, seed=seed, haystack=haystack, chat=chat,
                        max_new_tokens=max_new_tokens)
        for i in range(num_samples)
    ]
