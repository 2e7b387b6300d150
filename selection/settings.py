"""Settings of one `hybridserve select` job (the distillation hyper-parameters live in convert's RunConfig).

The scoring runs use RunConfig.stage2 (the final run's hyper-parameters, method.md §5.2) except for the
token budget, which is `tokens` here: by default a third of stage2.tokens (the paper's ~200M probes for
600M final runs). Override any field with `--set select.FIELD=VALUE`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import yaml

from .errors import SelectionError

RUN_METHODS = ("ga-s2", "gr-s2", "avg-s2", "iterative")  # short stage-2 runs per candidate
CHEAP_METHODS = ("ga-s1", "uniform", "manual", "ablation", "ablation-multihop", "ppl")
METHODS = RUN_METHODS + CHEAP_METHODS
SCORES = ("train", "heldout")
KEEP_MODES = ("device", "cpu", "disk")


@dataclass
class SelectSettings:
    method: str = "ga-s2"
    ratio: float | None = 0.25
    k: int | None = None  # explicit softmax layer count (wins over ratio)
    budgets: list = field(default_factory=list)  # extra ratios / counts to report nested sets for
    score: str = "train"  # ranking score: train = KL averaged over the last `window` steps; heldout = held-out KL
    window: int = 10  # steps averaged by the train score (the paper's code logs 10-step means)
    tokens: int | None = None  # scoring budget per candidate (None: stage2.tokens // 3)
    rounds: int = 10  # lock-step rounds the budget is split into (each ends with a held-out evaluation)
    early_stop: bool = True
    threshold: float = 0.8  # top-K Jaccard similarity between consecutive rounds that counts as stable
    patience: int = 3  # consecutive stable comparisons before scoring stops
    workers: int = 1  # processes, one candidate run at a time each (one GPU each on CUDA)
    shard: str | None = None  # "i/N": score only candidates i, i+N, ... (merge the shards afterwards)
    keep: str = "cpu"  # where a candidate's weights and optimiser wait between rounds: device, cpu, disk
    checkpoint_rounds: int = 1  # write candidate checkpoints every N rounds (a crash recomputes at most N-1)
    keep_checkpoints: bool = False  # keep candidate checkpoints after the selection finished
    iterative_picks: int | None = None  # iterative greedy: layers picked by re-scoring (None: K)
    anchor: str = "center"  # uniform: center, start or end
    stride: int | None = None  # uniform: layers between picks (default L // K)
    offset: int = 0  # uniform: first layer (start) or distance from the last layer (end)
    layers: list | None = None  # manual: the layer list, best first
    recall_samples: int = 64  # ablation: prompts per task
    recall_pairs: int = 50  # ablation: key-value pairs per prompt (method.md: 50)
    recall_hops: int = 2  # ablation-multihop: longest alias chain
    recall_batch: int = 8
    ppl_blocks: int = 16  # ppl: held-out blocks (of stage2.seq_len tokens) scored per ablated layer
    stage1: str | None = None  # a convert run folder or a stage-1 model folder; None: run stage 1 here
    measure_throughput: bool = False  # serve the teacher and each chosen set's stage-0 hybrid in vLLM, time them
    throughput_rows: str | None = None  # INPUT:OUTPUT:PROMPTS rows for it (None: throughput.GPU_ROWS / CPU_ROWS)

    def check(self) -> None:
        if self.method not in METHODS:
            raise SelectionError(f"unknown selection method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.score not in SCORES:
            raise SelectionError(f"--score must be train or heldout, got {self.score!r}")
        if self.keep not in KEEP_MODES:
            raise SelectionError(f"keep must be one of {', '.join(KEEP_MODES)}, got {self.keep!r}")
        if self.ratio is not None and not 0.0 < self.ratio <= 1.0:
            raise SelectionError(f"ratio must be in (0, 1] (the softmax share of the layers), got {self.ratio}")
        if self.k is not None and self.k < 1:
            raise SelectionError(f"K (softmax layers) must be a positive integer, got {self.k}")
        for name in ("window", "rounds", "patience", "workers", "checkpoint_rounds", "recall_samples",
                     "recall_pairs", "recall_batch", "ppl_blocks"):
            if getattr(self, name) < 1:
                raise SelectionError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.tokens is not None and self.tokens < 1:
            raise SelectionError(f"tokens must be positive, got {self.tokens}")
        if not 0.0 < self.threshold <= 1.0:
            raise SelectionError(f"early-stop threshold must be in (0, 1], got {self.threshold}")
        if self.shard is not None:
            parse_shard(self.shard)
            if self.measure_throughput:
                raise SelectionError("--measure-throughput needs the whole selection; it cannot run in one --shard")
            if self.method == "iterative":
                raise SelectionError("iterative greedy re-scores after every pick and cannot be sharded; use --workers")
        if self.throughput_rows is not None:
            from ..serve.bench import BenchError, parse_rows

            try:
                parse_rows(self.throughput_rows)
            except BenchError as e:
                raise SelectionError(f"throughput_rows: {e}") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise SelectionError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise SelectionError(f"--shard {text}: need 0 <= i < N")
    return i, n


def apply_sets(settings: SelectSettings, items: list[str]) -> list[str]:
    """Apply `select.FIELD=VALUE` items to `settings`; return the other items (for the RunConfig)."""
    rest = []
    known = {f.name: f for f in dataclasses.fields(settings)}
    for item in items:
        key, sep, value = item.partition("=")
        if not key.startswith("select."):
            rest.append(item)
            continue
        name = key[len("select."):]
        if not sep or name not in known:
            raise SelectionError(f"--set {item}: unknown selection field (known: {', '.join(sorted(known))})")
        setattr(settings, name, yaml.safe_load(value))
    return rest
