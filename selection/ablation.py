"""Teacher-only baselines: switch off one teacher attention layer and measure what is lost.

ablation / ablation-multihop (method.md §5.4 AR): the synthetic recall task of recall.py, teacher-forced.
  For each prompt the gold answer is appended; `exact` = every answer token is the argmax (the same as greedy
  decoding producing the answer), `logprob` = mean log-probability of the answer tokens. A layer's importance
  is the drop in exact-match accuracy when its attention output is zeroed; the drop in log-probability breaks
  ties (on small teachers accuracy is often 0 with or without the layer).
ppl: the increase of held-out cross-entropy (nats per token; perplexity ratio = exp of it) when the layer's
  attention output is zeroed.
The zeroing hook returns a new tensor (never edits the teacher's activations in place).
"""

from __future__ import annotations

import contextlib
import math

import torch

from .recall import make_samples


@contextlib.contextmanager
def attention_zeroed(teacher, layer: int | None):
    if layer is None:
        yield
        return

    def zero(module, args, output):
        if isinstance(output, tuple):
            return (torch.zeros_like(output[0]),) + tuple(output[1:])
        return torch.zeros_like(output)

    handle = teacher.model.layers[layer].self_attn.register_forward_hook(zero)
    try:
        yield
    finally:
        handle.remove()


def _encode_samples(tokenizer, samples):
    encoded = []
    for s in samples:
        prompt = tokenizer(s.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(s.answer, add_special_tokens=False)["input_ids"]
        encoded.append((prompt, answer))
    return encoded


@torch.no_grad()
def recall_scores(teacher, encoded, device, batch: int, layer: int | None) -> dict:
    """Exact-match accuracy and mean answer log-probability over the encoded (prompt, answer) pairs."""
    exact, logprob = 0, 0.0
    pad = 0
    for start in range(0, len(encoded), batch):
        chunk = encoded[start : start + batch]
        length = max(len(p) + len(a) for p, a in chunk)
        ids = torch.full((len(chunk), length), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), length), dtype=torch.long)
        for row, (p, a) in enumerate(chunk):  # left padding: every answer ends at the last position
            seq = p + a
            ids[row, length - len(seq):] = torch.tensor(seq)
            mask[row, length - len(seq):] = 1
        with attention_zeroed(teacher, layer):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift the real tokens' positions
            logits = teacher(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                             use_cache=False).logits.float()
        logp = torch.log_softmax(logits, -1)
        for row, (_, a) in enumerate(chunk):
            n = len(a)
            positions = torch.arange(length - n - 1, length - 1, device=logp.device)
            gold = torch.tensor(a, device=logp.device)
            picked = logp[row, positions, gold]
            logprob += float(picked.mean())
            exact += int(bool((logp[row, positions].argmax(-1) == gold).all()))
    return {"accuracy": exact / len(encoded), "logprob": logprob / len(encoded)}


def recall_ablation(teacher, tokenizer, device, *, samples: int, pairs: int, batch: int, seed: int, multihop: bool,
                    max_hops: int, progress=None) -> dict:
    """Per-layer drops; returns {"baseline": {...}, "per_layer": {l: {...}}, "importance": {l: acc drop},
    "ranking": [...]}."""
    encoded = _encode_samples(tokenizer, make_samples(tokenizer, samples, pairs, seed, multihop, max_hops))
    base = recall_scores(teacher, encoded, device, batch, None)
    per_layer = {}
    for layer in range(teacher.config.num_hidden_layers):
        scores = recall_scores(teacher, encoded, device, batch, layer)
        per_layer[layer] = {**scores, "accuracy_drop": base["accuracy"] - scores["accuracy"],
                            "logprob_drop": base["logprob"] - scores["logprob"]}
        if progress is not None:
            progress(layer)
    ranking = sorted(per_layer, key=lambda l: (-per_layer[l]["accuracy_drop"], -per_layer[l]["logprob_drop"], l))
    return {"baseline": base, "per_layer": per_layer,
            "importance": {l: per_layer[l]["accuracy_drop"] for l in per_layer}, "ranking": ranking}


@torch.no_grad()
def heldout_ce(teacher, batches, device, layer: int | None) -> float:
    total, count = 0.0, 0
    for b in batches:
        b = b.to(device)
        with attention_zeroed(teacher, layer):
            logits = teacher(input_ids=b, use_cache=False).logits.float()
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1),
                                               reduction="sum")
        total += float(ce)
        count += b[:, 1:].numel()
    return total / count


def ppl_ablation(teacher, batches, device, progress=None) -> dict:
    base = heldout_ce(teacher, batches, device, None)
    per_layer = {}
    for layer in range(teacher.config.num_hidden_layers):
        ce = heldout_ce(teacher, batches, device, layer)
        per_layer[layer] = {"ce": ce, "ce_increase": ce - base, "ppl_ratio": math.exp(min(ce - base, 50.0))}
        if progress is not None:
            progress(layer)
    importance = {l: per_layer[l]["ce_increase"] for l in per_layer}
    ranking = sorted(importance, key=lambda l: (-importance[l], l))
    return {"baseline": {"ce": base, "ppl": math.exp(min(base, 50.0))}, "per_layer": per_layer,
            "importance": importance, "ranking": ranking}
