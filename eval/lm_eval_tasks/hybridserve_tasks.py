"""Documents and scoring of the `hybridserve_*` lm-eval tasks; lm-eval loads this file through the YAML files'
`!function hybridserve_tasks.<name>` (by path, so the file name must stay unique and the folder flat).

Every task builds its documents with hybridserve's own offline generator, from lm-eval's metadata: the model args
(`pretrained=` or `tokenizer=` names the tokenizer that sizes the prompts) merged with `--metadata`:

    max_seq_lengths  prompt lengths in the model's tokens (default [4096], as lm-eval's RULER)
    num_samples      samples per length (default 20; lm-eval's RULER hard-codes 500)
    seed             generator seed (default 0); haystack: noise | corpus | corpus:<source> | file:<path>
    chat             auto (the tokenizer's chat template when it has one; default) | on | off

The prompts are the ones `hybridserve eval` makes for the same settings (the chat template is already applied, so
do not add lm-eval's --apply_chat_template). The score is RULER's string match: per length under metrics named by
the length (-1 where a length was not run, lm-eval RULER's convention) and over all samples as `score`.
"""

from __future__ import annotations

import json
from pathlib import Path

from hybridserve.eval.common import EvalError
from hybridserve.eval.scoring import string_match_all
from hybridserve.eval.tasks import TASKS, generate_samples

DEFAULT_LENGTHS = (4096,)
DEFAULT_SAMPLES = 20
# Lengths with their own metric; the YAML template lists the same (lm-eval needs metric names up front).
LENGTH_METRICS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
_TOKENIZER_KEYS = ("tokenizer", "pretrained", "model")  # where lm-eval's model args name the model


def _tokenizer(kwargs: dict):
    from transformers import AutoTokenizer

    name = next((kwargs[k] for k in _TOKENIZER_KEYS if isinstance(kwargs.get(k), str) and kwargs[k]), None)
    if name is None:
        raise EvalError("hybridserve lm-eval tasks size prompts in the model's tokens: pass --model_args "
                        "pretrained=<model folder> (or tokenizer=<folder>)")
    trust = str(kwargs.get("trust_remote_code", False)).lower() in ("1", "true", "yes")
    return name, AutoTokenizer.from_pretrained(name, trust_remote_code=trust)


def _max_positions(name: str) -> int | None:
    """The model's positions when `name` is a local folder (lm-eval would silently left-truncate longer prompts)."""
    config = Path(name) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text())
    return data.get("max_position_embeddings") or data.get("text_config", {}).get("max_position_embeddings")


def _lengths(value) -> list[int]:
    if value is None:
        return list(DEFAULT_LENGTHS)
    values = [value] if isinstance(value, (int, str)) else list(value)
    try:
        lengths = [int(v) for v in values]
    except (TypeError, ValueError):
        raise EvalError(f"max_seq_lengths must be token counts, got {value!r}") from None
    if not lengths or any(n <= 0 for n in lengths):
        raise EvalError(f"max_seq_lengths must be positive token counts, got {value!r}")
    return lengths


def build_documents(task: str, **kwargs) -> dict:
    """lm-eval's `custom_dataset`: {"test": datasets.Dataset} with one row per (length, sample)."""
    import datasets

    name, tokenizer = _tokenizer(kwargs)
    lengths, samples = _lengths(kwargs.get("max_seq_lengths")), int(kwargs.get("num_samples", DEFAULT_SAMPLES))
    chat = {"on": True, "true": True, "off": False, "false": False}.get(str(kwargs.get("chat", "auto")).lower(), "auto")
    budget, limit = TASKS[task].max_new_tokens, _max_positions(name)
    rows = []
    for length in lengths:
        if limit is not None and length + budget > limit:
            raise EvalError(f"{task} at {length} tokens needs {length + budget} positions (prompt + {budget} generated); "
                            f"{name} has max_position_embeddings {limit}")
        for sample in generate_samples(task, tokenizer, length, samples, seed=int(kwargs.get("seed", 0)),
                                       haystack=kwargs.get("haystack", "noise"), chat=chat):
            rows.append({"input": sample.prompt, "outputs": list(sample.answers), "max_length": length,
                         "index": sample.index, "num_tokens": sample.num_tokens,
                         "depths": [float(n.depth) for n in sample.needles]})
    return {"test": datasets.Dataset.from_list(rows, split=datasets.Split.TEST)}


def doc_to_text(doc: dict) -> str:
    return doc["input"]  # the exact prompt (no template rendering that could touch whitespace)


def doc_to_target(doc: dict) -> str:
    return ", ".join(doc["outputs"])


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    score = string_match_all(results[0], doc["outputs"])
    per_length = {str(n): -1.0 for n in LENGTH_METRICS}
    if doc["max_length"] in LENGTH_METRICS:
        per_length[str(doc["max_length"])] = score
    return {"score": score, **per_length}


def aggregate_length(scores: list[float]) -> float:
    """Mean over the samples of one length; -1 when that length was not run."""
    ran = [s for s in scores if s != -1]
    return sum(ran) / len(ran) if ran else -1.0


# One entry point per task: lm-eval's `!function` names a function, and passes only keyword arguments.
def niah_single_number(**kwargs):
    return build_documents("niah_single_number", **kwargs)


def niah_single_uuid(**kwargs):
    return build_documents("niah_single_uuid", **kwargs)


def niah_single_word(**kwargs):
    return build_documents("niah_single_word", **kwargs)


def niah_multikey(**kwargs):
    return build_documents("niah_multikey", **kwargs)


def niah_multivalue(**kwargs):
    return build_documents("niah_multivalue", **kwargs)


def niah_multiquery(**kwargs):
    return build_documents("niah_multiquery", **kwargs)


def vt(**kwargs):
    return build_documents("vt", **kwargs)


def cwe(**kwargs):
    return build_documents("cwe", **kwargs)


def fwe(**kwargs):
    return build_documents("fwe", **kwargs)
