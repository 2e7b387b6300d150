"""Synthetic associative-recall prompts for the ablation baseline (method.md §5.4 "AR" and "AR-multihop").

AR: a list of `pairs` "key: value" lines (keys = alphabetic words of the teacher's vocabulary with at least
three letters, values 0..9), then a question asking for the sum of three keys' values. Multi-hop: a key may
instead point at another key ("key: other"), in acyclic chains of at most `max_hops` links (probability 0.4
per key), so the sum needs the aliases resolved. Generation is seeded: the same seed gives the same prompts.

Where the vocabulary has too few such words (tiny test tokenizers), keys are made of random letters.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

ALIAS_PROBABILITY = 0.4


@dataclass(frozen=True)
class RecallSample:
    prompt: str
    answer: str  # the gold continuation, with its leading space


def vocabulary_words(tokenizer, limit: int = 5000) -> list[str]:
    words = set()
    for token in tokenizer.get_vocab():
        text = tokenizer.convert_tokens_to_string([token]).strip()
        if len(text) >= 3 and text.isascii() and text.isalpha() and text.islower():
            words.add(text)
    return sorted(words)[:limit]


def _keys(rng: random.Random, pool: list[str], count: int) -> list[str]:
    if len(pool) >= 4 * count:
        return rng.sample(pool, count)
    keys: set[str] = set()
    while len(keys) < count:
        keys.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 5))))
    return sorted(keys, key=lambda _: rng.random())


def make_samples(tokenizer, samples: int, pairs: int, seed: int = 0, multihop: bool = False,
                 max_hops: int = 2) -> list[RecallSample]:
    rng = random.Random(f"recall-{seed}-{multihop}")
    pool = vocabulary_words(tokenizer)
    out = []
    for _ in range(samples):
        keys = _keys(rng, pool, pairs)
        values = {key: rng.randint(0, 9) for key in keys}
        target: dict[str, str] = {}  # alias -> the key it points at
        depth = {key: 0 for key in keys}
        if multihop:
            for i, key in enumerate(keys[1:], start=1):
                choices = [other for other in keys[:i] if depth[other] + 1 <= max_hops]
                if choices and rng.random() < ALIAS_PROBABILITY:
                    other = rng.choice(choices)
                    target[key], depth[key] = other, depth[other] + 1

        def resolve(key: str) -> int:
            while key in target:
                key = target[key]
            return values[key]

        lines = [f"{key}: {target[key] if key in target else values[key]}" for key in keys]
        order = list(range(len(lines)))
        rng.shuffle(order)
        asked = rng.sample(keys, 3)
        if multihop and target:  # ask at least one alias, so a hop is needed
            first = rng.choice(sorted(target))
            asked = [first] + [k for k in rng.sample(keys, 3) if k != first][:2]
        total = sum(resolve(k) for k in asked)
        prompt = ("Remember these pairs.\n" + "\n".join(lines[i] for i in order) +
                  f"\nWhat is {asked[0]} + {asked[1]} + {asked[2]}? Answer:")
        out.append(RecallSample(prompt, f" {total}"))
    return out
