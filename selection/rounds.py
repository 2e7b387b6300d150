"""Lock-step scoring rounds: advance every candidate to the same step, score, check ranking stability.

`rounds.json` in a pass folder is the commit log: one record per finished round with every candidate's raw
scores (KL averaged over the last `window` training steps, and the held-out KL at the round's end). It is
rewritten atomically after each round, so a killed job resumes at the first unrecorded round; candidates
that already reached it skip it (their checkpoint is there), the others continue from their checkpoint.
Rankings and the early-stop decision are recomputed from the raw scores (`replay`), which is also how the
shards of a sharded job are merged into exactly the unsharded result.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .early_stop import StabilityTracker
from .errors import SelectionError
from .scoring import average_rank_importance, rank

FORMAT = 1


def write_json(path: Path, data) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=1, default=str))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_event(path: Path, record: dict) -> None:
    """One line per write on an O_APPEND descriptor: lines of several worker processes never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PassPlan:
    """What one pass scores: method kind, candidates (name -> probe layer), budget shape."""

    kind: str  # ga, gr, avg (ga + gr candidates), it (iterative pass: ga conditioned on chosen layers)
    candidates: tuple  # ((name, probe layer, group), ...) group: ga or gr
    k: int
    round_steps: int
    total_rounds: int
    tokens_per_step: int


def importance_of(plan: PassPlan, raw: dict, score_key: str) -> dict[int, float]:
    """Per-layer importance (higher = keep softmax) from one round's raw candidate scores."""
    groups: dict[str, dict[int, float]] = {"ga": {}, "gr": {}}
    for name, probe, group in plan.candidates:
        if name in raw:
            groups[group][probe] = raw[name][score_key]
    if plan.kind in ("ga", "it"):
        return {layer: -kl for layer, kl in groups["ga"].items()}
    if plan.kind == "gr":
        return dict(groups["gr"])
    ga_rank = rank({layer: -kl for layer, kl in groups["ga"].items()})
    gr_rank = rank(dict(groups["gr"]))
    return average_rank_importance(ga_rank, gr_rank)


def replay(plan: PassPlan, rounds: list[dict], score_key: str, threshold: float, patience: int,
           early_stop: bool) -> tuple[list[dict], int | None]:
    """Rankings, top-K sets and Jaccard similarities per round; the index of the stopping round (or None)."""
    tracker = StabilityTracker(plan.k, threshold, patience)
    history, stop = [], None
    for index, record in enumerate(rounds):
        importance = importance_of(plan, record["candidates"], score_key)
        ranking = rank(importance)
        stable = tracker.update(ranking)
        history.append({"round": record["round"], "step": record["step"], "tokens": record["tokens"],
                        "scores": record["candidates"], "importance": importance, "ranking": ranking,
                        "top_k": sorted(ranking[: plan.k]), "jaccard": tracker.similarities[-1]})
        if early_stop and stable:
            stop = index
            break
    return history, stop


class RoundLog:
    """rounds.json of one pass."""

    def __init__(self, folder: Path, fingerprint: str, plan: PassPlan, shard: str | None):
        self.folder, self.path = Path(folder), Path(folder) / "rounds.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        fresh = {"format": FORMAT, "fingerprint": fingerprint, "shard": shard, "kind": plan.kind, "k": plan.k,
                 "candidates": [list(c) for c in plan.candidates], "round_steps": plan.round_steps,
                 "total_rounds": plan.total_rounds, "tokens_per_step": plan.tokens_per_step,
                 "rounds": [], "stopped_at": None, "finished": False}
        if self.path.exists():
            data = json.loads(self.path.read_text())
            if data.get("fingerprint") != fingerprint or data.get("shard") != shard:
                raise SelectionError(
                    f"{self.path} belongs to a selection with other settings (teacher, stage 1, data, budget, method or "
                    f"shard); use a new --out, or repeat the original command to resume it")
            self.data = data
        else:
            self.data = fresh
            self.save()

    def save(self) -> None:
        write_json(self.path, self.data)

    @property
    def rounds(self) -> list[dict]:
        return self.data["rounds"]

    def remove_checkpoints(self) -> None:
        for child in self.folder.iterdir():
            if child.is_dir() and (child / "checkpoint.pt").exists():
                (child / "checkpoint.pt").unlink()


def run_rounds(plan: PassPlan, log: RoundLog, specs: list, executor, *, score_key: str, window: int, threshold: float,
               patience: int, early_stop: bool, keep_checkpoints: bool, progress=None) -> None:
    """Advance `specs` (this process's or this shard's candidates) round by round until done or stable."""
    if log.data["finished"]:
        return
    start = len(log.rounds) + 1
    for r in range(start, plan.total_rounds + 1):
        end = r * plan.round_steps
        last = r == plan.total_rounds
        raw = executor.advance(specs, end, r, last, window, on_done=progress)
        log.rounds.append({"round": r, "step": end, "tokens": end * plan.tokens_per_step, "candidates": raw})
        stop = None
        if early_stop:
            _, stop = replay(plan, log.rounds, score_key, threshold, patience, True)
        if stop is not None:
            log.data["stopped_at"] = r
        log.data["finished"] = stop is not None or last
        log.save()
        if log.data["finished"]:
            break
    executor.release()
    if not keep_checkpoints:
        log.remove_checkpoints()


def merge_round_logs(logs: list[dict]) -> dict:
    """The shards' rounds.json merged into one unsharded log (rounds cut to the rounds every shard finished)."""
    if not logs:
        raise SelectionError("merge: no shard folders given")
    first = logs[0]
    for key in ("kind", "k", "round_steps", "total_rounds", "tokens_per_step", "candidates"):
        for other in logs[1:]:
            if other.get(key) != first.get(key):
                raise SelectionError(f"merge: the shards disagree on {key} ({first.get(key)} vs {other.get(key)}); "
                                     f"they must come from the same command with different --shard")
    base_fps = {log["fingerprint"] for log in logs}
    if len(base_fps) != 1:
        raise SelectionError("merge: the shards were run with different settings (fingerprints differ)")
    shards = sorted(log.get("shard") or "" for log in logs)
    n = int(shards[0].split("/")[1]) if shards[0] else 1
    expected = [f"{i}/{n}" for i in range(n)]
    if shards != expected:
        raise SelectionError(f"merge: need every shard exactly once ({', '.join(expected)}), got {', '.join(shards)}")
    unfinished = [log["shard"] for log in logs if not log["finished"]]
    if unfinished:
        raise SelectionError(f"merge: shard(s) {', '.join(unfinished)} have not finished; resume them first")
    common = min(len(log["rounds"]) for log in logs)
    merged = dict(first, shard=None, rounds=[], stopped_at=None, finished=True)
    for i in range(common):
        candidates = {}
        for log in logs:
            candidates.update(log["rounds"][i]["candidates"])
        merged["rounds"].append(dict(logs[0]["rounds"][i], candidates=candidates))
    return merged

