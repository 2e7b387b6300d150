"""Run a suite over models x tasks x lengths, one resumable result file per (model, task, length).

Layout of the output folder:

    OUT/results/<model>/<task>@<length>.json   one unit: settings, score, every sample's prediction and score
    OUT/results.json                           everything, plus the per-model average over the recall tasks
    OUT/results.md                             markdown tables (average, per task, perplexity)
    OUT/scores.png                             score vs length, one line per model (needs matplotlib)

A unit whose file exists and was made with the same settings is not run again, and a model all of whose units
are done is not even loaded, so an interrupted run continues where it stopped. Files are written atomically.
"""

from __future__ import annotations

import gc
import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..files import write_json_atomic
from .backends import Backend, load_backend
from .common import EvalError, Sample
from .scoring import score_generation, token_recall
from .tasks import PPL_TASK, TASKS, generate_samples, resolve_tasks

RESULT_FORMAT = 1
# Bump when a generator changes the prompts it makes for the same settings: old result files are then redone.
GENERATOR_VERSION = 1


@dataclass
class EvalSettings:
    tasks: list[str]
    lengths: list[int]
    samples: int = 20
    seed: int = 0
    haystack: str = "noise"
    chat: str = "auto"  # "auto" (use the tokenizer's chat template when it has one), "on", "off"
    max_new_tokens: int | None = None  # None: each task's own budget
    ppl_text: str = "corpus"
    ppl_tokens: int = 16384
    ppl_stride: int | None = None  # None: half the window

    def __post_init__(self):
        self.tasks = resolve_tasks(tasks=list(self.tasks))
        self.lengths = [int(n) for n in self.lengths]
        if not self.lengths or any(n <= 0 for n in self.lengths):
            raise EvalError(f"lengths must be positive numbers of tokens, got {self.lengths}")
        self.lengths = sorted(dict.fromkeys(self.lengths))
        if self.samples < 1:
            raise EvalError(f"samples must be at least 1, got {self.samples}")
        if self.chat not in ("auto", "on", "off"):
            raise EvalError(f"chat must be auto, on or off, got {self.chat!r}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise EvalError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def chat_flag(self) -> bool | str:
        return {"auto": "auto", "on": True, "off": False}[self.chat]

    def new_tokens(self, task: str) -> int:
        spec = TASKS.get(task)
        if spec is None or spec.kind != "generate":
            return 0
        return self.max_new_tokens or spec.max_new_tokens

    def unit_key(self, task: str, length: int) -> dict:
        """What decides a unit's result: a file made with other values is run again."""
        if task == PPL_TASK:
            return {"task": task, "length": length, "ppl_text": self.ppl_text, "ppl_tokens": self.ppl_tokens,
                    "ppl_stride": self.ppl_stride}
        key = {"task": task, "length": length, "samples": self.samples, "seed": self.seed, "chat": self.chat,
               "generator": GENERATOR_VERSION}
        if TASKS[task].uses_haystack:
            key["haystack"] = self.haystack
        if TASKS[task].kind == "generate":
            key["max_new_tokens"] = self.new_tokens(task)
        return key


@dataclass
class ModelRef:
    """A model to evaluate: a string for `load_backend`, or a ready Backend."""

    spec: str | Backend
    label: str = ""
    loader_kwargs: dict = field(default_factory=dict)

    @property
    def spec_text(self) -> str:
        return self.spec if isinstance(self.spec, str) else f"<{type(self.spec).__name__} {self.spec.name}>"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _labels(models: Sequence[str | Backend]) -> list[str]:
    labels, seen = [], {}
    for m in models:
        base = m.name if not isinstance(m, str) else (Path(m).name if Path(m).expanduser().exists() else m)
        base = _safe(base)
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return labels


def unit_path(out_dir: Path, label: str, task: str, length: int) -> Path:
    return Path(out_dir) / "results" / label / f"{task}@{length}.json"


def _load_unit(path: Path, key: dict, spec: str) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("format") != RESULT_FORMAT or data.get("key") != key or data.get("model_spec") != spec:
        return None
    return data


def check_lengths(backend: Backend, settings: EvalSettings, tasks: Sequence[str] | None = None) -> None:
    """Fail before any work when a prompt (plus its generated tokens) would not fit the model."""
    limit = getattr(backend, "max_length", None)
    if not limit:
        return
    for task in tasks or settings.tasks:
        need_new = settings.new_tokens(task)
        for length in settings.lengths:
            if length + need_new > limit:
                extra = f" + {need_new} generated tokens" if need_new else ""
                raise EvalError(
                    f"length {length}{extra} exceeds the {limit} positions of model {backend.name!r} "
                    f"(task {task}); use --lengths up to {limit - need_new}"
                )


# ------------------------------------------------------------------------------------------------ one unit


def _run_generate(backend: Backend, samples: list[Sample], chunk: int, advance: Callable[[int], None]) -> list[dict]:
    records = []
    for i in range(0, len(samples), chunk):
        part = samples[i:i + chunk]
        budget = max(s.max_new_tokens for s in part)
        predictions = backend.generate([s.input_ids for s in part], budget)
        for s, p in zip(part, predictions):
            records.append({**s.describe(), "prediction": p, "score": score_generation(s, p)})
        advance(len(part))
    return records


def _run_token_recall(backend: Backend, samples: list[Sample], chunk: int,
                      advance: Callable[[int], None]) -> list[dict]:
    records = []
    for i in range(0, len(samples), chunk):
        part = samples[i:i + chunk]
        starts = [s.metadata["query_start"] for s in part]
        scores = backend.loglikelihood([(s.input_ids[:q], s.input_ids[q:]) for s, q in zip(part, starts)])
        for s, q, sc in zip(part, starts, scores):
            hits = [bool(sc.greedy[pos - q]) for pos, _ in s.targets]
            records.append({**s.describe(), "hits": hits, "score": token_recall(sc.greedy, s, q)})
        advance(len(part))
    return records


def run_unit(backend: Backend, settings: EvalSettings, task: str, length: int,
             advance: Callable[[int], None] = lambda n: None) -> dict:
    """Evaluate one (task, length) on a backend; returns the unit's result (without writing it)."""
    t0 = time.perf_counter()
    chunk = max(1, int(getattr(backend, "batch_size", 1) or 1))
    if task == PPL_TASK:
        from .perplexity import heldout_text, text_perplexity

        result = text_perplexity(backend, heldout_text(settings.ppl_text), length, settings.ppl_stride,
                                 settings.ppl_tokens)
        advance(1)
        return {"task": task, "length": length, "metric": "ppl", "score": result.ppl, "perplexity": result.to_dict(),
                "seconds": round(time.perf_counter() - t0, 2)}
    samples = generate_samples(task, backend.tokenizer, length, settings.samples, seed=settings.seed,
                               haystack=settings.haystack, chat=settings.chat_flag,
                               max_new_tokens=settings.max_new_tokens)
    if TASKS[task].kind == "token_recall":
        records, metric = _run_token_recall(backend, samples, chunk, advance), "token_recall"
    else:
        records, metric = _run_generate(backend, samples, chunk, advance), "string_match_all"
    score = sum(r["score"] for r in records) / len(records)
    return {"task": task, "length": length, "metric": metric, "score": score, "chat": samples[0].chat,
            "mean_tokens": sum(r["tokens"] for r in records) / len(records),
            "seconds": round(time.perf_counter() - t0, 2), "samples": records}


# ------------------------------------------------------------------------------------------------ the suite


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def update(self, *a, **k):
        pass

    def advance(self, *a, **k):
        pass


def _progress(enabled: bool):
    if not enabled:
        return _NoProgress()
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def run_eval(models: Sequence[str | Backend], settings: EvalSettings, out_dir: str | Path, *,
             resume: bool = True, progress: bool = True, batch_size: int = 1, device: str = "cpu",
             dtype: str = "float32", trust_remote_code: bool = False, plot: bool = True,
             log: Callable[[str], None] = lambda msg: None) -> dict:
    """Evaluate every model on every (task, length) of `settings`; write and return the summary."""
    if not models:
        raise EvalError("no models to evaluate")
    out_dir = Path(out_dir)
    labels = _labels(models)
    units = [(t, n) for t in settings.tasks for n in settings.lengths]
    done: dict[tuple[str, str, int], dict] = {}
    pending: dict[str, list[tuple[str, int]]] = {}
    for model, label in zip(models, labels):
        spec = ModelRef(model, label).spec_text
        for task, length in units:
            data = _load_unit(unit_path(out_dir, label, task, length), settings.unit_key(task, length), spec) \
                if resume else None
            if data is not None:
                done[(label, task, length)] = data
            else:
                pending.setdefault(label, []).append((task, length))
    if done:
        log(f"resuming: {len(done)} of {len(units) * len(models)} results already in {out_dir / 'results'}")

    total = sum((settings.samples if t != PPL_TASK else 1) for todo in pending.values() for t, _ in todo)
    with _progress(progress and total > 0) as bar:
        overall = bar.add_task("eval", total=total)
        for model, label in zip(models, labels):
            todo = pending.get(label)
            if not todo:
                continue
            spec = ModelRef(model, label).spec_text
            bar.update(overall, description=f"loading {label}")
            backend = model if not isinstance(model, str) else load_backend(
                model, batch_size=batch_size, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
                name=label)
            check_lengths(backend, settings, sorted({t for t, _ in todo}))
            for task, length in todo:
                bar.update(overall, description=f"{label} {task}@{length}")
                result = run_unit(backend, settings, task, length, lambda n: bar.advance(overall, n))
                data = {"format": RESULT_FORMAT, "model": label, "model_spec": spec,
                        "key": settings.unit_key(task, length), **result}
                write_json_atomic(unit_path(out_dir, label, task, length), data, indent=1)
                done[(label, task, length)] = data
            if isinstance(model, str):
                del backend
                gc.collect()

    summary = summarize(labels, [ModelRef(m, lb).spec_text for m, lb in zip(models, labels)], settings, done)
    write_json_atomic(out_dir / "results.json", summary, indent=1)
    from .report import markdown_report, plot_scores

    (out_dir / "results.md").write_text(markdown_report(summary), encoding="utf-8")
    summary_plot = None
    if plot:
        summary_plot = plot_scores(summary, out_dir / "scores.png")
        if summary_plot is None:
            log("matplotlib is not installed: no plot (pip install 'hybridserve[eval]')")
    summary["files"] = {"json": str(out_dir / "results.json"), "markdown": str(out_dir / "results.md"),
                        "plot": str(summary_plot) if summary_plot else None}
    return summary


def summarize(labels: list[str], specs: list[str], settings: EvalSettings, done: dict) -> dict:
    recall_tasks = [t for t in settings.tasks if t != PPL_TASK]
    results = []
    for label in labels:
        for task in settings.tasks:
            for length in settings.lengths:
                d = done[(label, task, length)]
                row = {"model": label, "task": task, "length": length, "metric": d["metric"], "score": d["score"],
                       "seconds": d.get("seconds")}
                if "samples" in d:
                    row["samples"] = len(d["samples"])
                results.append(row)
    average = {
        label: {str(n): sum(done[(label, t, n)]["score"] for t in recall_tasks) / len(recall_tasks)
                for n in settings.lengths}
        for label in labels
    } if recall_tasks else {}
    return {
        "hybridserve_eval": RESULT_FORMAT,
        "settings": asdict(settings),
        "models": [{"label": lb, "spec": sp} for lb, sp in zip(labels, specs)],
        "recall_tasks": recall_tasks,
        "results": results,
        "average": average,
    }
