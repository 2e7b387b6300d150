"""`hybridserve select`: run one selection method and write the selection folder.

    OUT/job.json               the resolved settings of the last invocation
    OUT/stage1/                stage 1 run by `select` itself when no --stage1 is given (a convert run folder)
    OUT/passes/<pass>/         rounds.json (the per-round commit log) and one folder per candidate run
                               (metrics.jsonl, checkpoint.pt while the pass is running)
    OUT/events.jsonl           one line per candidate round actually computed (what resumes recomputed)
    OUT/selection.json, report.md, plot.png      the result (a shard writes shard.json instead)

Re-running the same command resumes: finished passes are read back, finished rounds are never recomputed,
and an interrupted candidate continues from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path

import torch

from ..convert.config import RunConfig
from .budgets import resolve_budget
from .candidates import CandidateSpec, LocalExecutor, scoring_stage_config
from .context import Context, context_summary, load_context, pick_device, stage1_digest
from .errors import SelectionError
from .output import budget_entries, teacher_config_from_dict, versions, write_report, write_selection
from .plot import write_plot
from .rounds import PassPlan, RoundLog, append_event, replay, run_rounds, write_json
from .settings import RUN_METHODS, SelectSettings, parse_shard

STAGE1_METHODS = RUN_METHODS + ("ga-s1",)
RANKING_RULES = {
    "ga-s2": "lowest KL with only that layer softmax first",
    "iterative": "greedy: each pick re-scored with the layers already picked kept softmax",
    "gr-s2": "highest KL with only that layer linear first",
    "avg-s2": "mean of the GA-S2 and GR-S2 rank positions",
    "ga-s1": "highest per-layer stage-1 alignment loss first",
    "ablation": "largest recall accuracy drop (then log-prob drop) when the teacher layer's attention is zeroed",
    "ablation-multihop": "as ablation, on multi-hop recall",
    "ppl": "largest held-out cross-entropy increase when the teacher layer's attention is zeroed",
    "uniform": "evenly spread",
    "manual": "the given list",
}


def _say(console, text):
    if console is not None:
        console.print(text, highlight=False)


def ensure_stage1(config: RunConfig, settings: SelectSettings, out: Path, console=None) -> Path:
    """The stage-1 model folder: --stage1, or stage 1 run (or resumed) in OUT/stage1 through `convert`."""
    if settings.stage1:
        from .context import stage1_model_folder

        return stage1_model_folder(settings.stage1)
    from ..convert.pipeline import run_convert

    stage_only = dataclasses.replace(config, stage2=dataclasses.replace(config.stage2, enabled=False),
                                     stage3=dataclasses.replace(config.stage3, enabled=False),
                                     softmax_layers=None)
    run_dir = out / "stage1"
    if not (run_dir / "stage1" / "model" / "config.json").exists():
        _say(console, f"stage 1 (all-linear alignment) into {run_dir}")
        run_convert(stage_only, run_dir, resume=True, console=console)
    return run_dir / "stage1" / "model"


def _plan_fingerprint(context: Context, cfg, kind: str, candidates) -> str:
    data = {"run": context.config.fingerprint("stage2"), "scoring": dataclasses.asdict(cfg), "kind": kind,
            "candidates": [list(c) for c in candidates], "teacher": context.identity["digest"],
            "stage1": stage1_digest(context.stage1_student)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _candidates(kind: str, n: int, chosen: list[int], tag: str) -> list[tuple[str, int, tuple, str]]:
    """(name, probe layer, softmax layers, group) per candidate."""
    out = []
    if kind in ("ga", "avg", "it"):
        for layer in range(n):
            if layer in chosen:
                continue
            name = f"{tag}-{layer:02d}" if kind == "it" else f"ga-{layer:02d}"
            out.append((name, layer, tuple(sorted(chosen + [layer])), "ga"))
    if kind in ("gr", "avg"):
        for layer in range(n):
            out.append((f"gr-{layer:02d}", layer, tuple(i for i in range(n) if i != layer), "gr"))
    return out


class PassRunner:
    """Runs scoring passes of this job (in this process or over worker processes)."""

    def __init__(self, context: Context, out: Path, k: int, console=None):
        self.context, self.out, self.k, self.console = context, out, k, console
        s = context.settings
        tokens = s.tokens if s.tokens is not None else max(context.config.stage2.tokens // 3, 1)
        per_step = context.config.stage2.batch_size * context.config.stage2.seq_len
        if tokens < per_step:
            raise SelectionError(f"scoring budget of {tokens} tokens is less than one step ({per_step} tokens)")
        self.cfg, self.round_steps = scoring_stage_config(context.config.stage2, tokens, s.rounds)
        self.tokens_per_step = per_step
        self.total_rounds = self.cfg.tokens // per_step // self.round_steps
        self.shard = parse_shard(s.shard) if s.shard else None
        self.events = out / "events.jsonl"

    def run(self, kind: str, name: str, chosen: list[int] | None = None) -> tuple[PassPlan, RoundLog]:
        c, s = self.context, self.context.settings
        raw = _candidates(kind, c.num_layers, chosen or [], name)
        plan = PassPlan(kind, tuple((n, probe, group) for n, probe, _, group in raw), self.k, self.round_steps,
                        self.total_rounds, self.tokens_per_step)
        folder = self.out / "passes" / name
        log = RoundLog(folder, _plan_fingerprint(c, self.cfg, kind, plan.candidates), plan, s.shard)
        specs = [CandidateSpec(n, probe, layers) for n, probe, layers, _ in raw]
        if self.shard is not None:
            i, count = self.shard
            specs = specs[i::count]
        if log.data["finished"]:
            _say(self.console, f"{name}: finished earlier, read back from {log.path}")
            return plan, log
        done = len(log.rounds)
        _say(self.console, f"{name}: {len(specs)} candidate runs x {self.total_rounds} rounds of {self.round_steps} steps "
                           f"({self.round_steps * self.tokens_per_step:,} tokens per round)"
                           + (f"; resuming after round {done}" if done else ""))
        executor = self._executor(folder)
        early = s.early_stop and self.shard is None  # a shard cannot see the other candidates
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, disable=self.console is None) as bar:
            task = bar.add_task(name, total=len(specs) * self.total_rounds, completed=len(specs) * done)
            run_rounds(plan, log, specs, executor, score_key=f"{s.score}_kl", window=s.window, threshold=s.threshold,
                       patience=s.patience, early_stop=early, keep_checkpoints=s.keep_checkpoints,
                       progress=lambda _name: bar.advance(task))
        return plan, log

    def _executor(self, folder: Path):
        workers = self.context.settings.workers
        if workers > 1:
            from .workers import ProcessExecutor

            return ProcessExecutor(self.context, self.cfg, folder, workers, self.events)
        return LocalExecutor(self.context, self.cfg, folder, lambda record: append_event(self.events, record))


def pass_summary(plan: PassPlan, log_data: dict, settings: SelectSettings) -> dict:
    """Ranking, scores, history and token accounting of a finished pass (from its raw rounds)."""
    score_key = f"{settings.score}_kl"
    history, stop = replay(plan, log_data["rounds"], score_key, settings.threshold, settings.patience, settings.early_stop)
    if not history:
        raise SelectionError("the pass recorded no rounds")
    final = history[-1]
    groups = {name: (probe, group) for name, probe, group in plan.candidates}

    def per_layer(scores: dict, key: str, group: str) -> dict:
        return {str(groups[n][0]): v[key] for n, v in scores.items() if groups[n][1] == group}

    main_group = "gr" if plan.kind == "gr" else "ga"
    rounds_run = len(history)
    per_candidate_budget = plan.total_rounds * plan.round_steps * plan.tokens_per_step
    per_candidate = rounds_run * plan.round_steps * plan.tokens_per_step
    computed_rounds = len(log_data["rounds"])  # a sharded pass may have run past the merged stopping round
    n_candidates = len(plan.candidates)
    spent = computed_rounds * plan.round_steps * plan.tokens_per_step * n_candidates
    budget = per_candidate_budget * n_candidates
    summary = {
        "ranking": final["ranking"],
        "importance": {str(k): v for k, v in final["importance"].items()},
        "train_kl": per_layer(final["scores"], "train_kl", main_group),
        "heldout_kl": per_layer(final["scores"], "heldout_kl", main_group),
        "history": [{"round": h["round"], "step": h["step"], "tokens": h["tokens"],
                     "per_layer": ({str(k): v for k, v in h["importance"].items()} if plan.kind == "avg"
                                   else per_layer(h["scores"], score_key, main_group)),
                     "train_kl": per_layer(h["scores"], "train_kl", main_group),
                     "heldout_kl": per_layer(h["scores"], "heldout_kl", main_group),
                     "ranking": h["ranking"], "top_k": h["top_k"], "jaccard": h["jaccard"]} for h in history],
        "early_stop": {"enabled": settings.early_stop, "k": plan.k, "threshold": settings.threshold,
                       "patience": settings.patience, "stopped_at_round": history[stop]["round"] if stop is not None else None,
                       "stopped_at_tokens": history[stop]["tokens"] if stop is not None else None,
                       "rounds_run": rounds_run, "total_rounds": plan.total_rounds},
        "tokens": {"per_candidate": per_candidate, "per_candidate_budget": per_candidate_budget,
                   "candidates": n_candidates, "spent": spent, "budget": budget, "saved": budget - spent,
                   "saved_fraction": (budget - spent) / budget if budget else 0.0},
    }
    if plan.kind == "avg":
        summary["gr_train_kl"] = per_layer(final["scores"], "train_kl", "gr")
        summary["gr_heldout_kl"] = per_layer(final["scores"], "heldout_kl", "gr")
    return summary


def _combine_iterative(summaries: list[dict], picks: list[int]) -> dict:
    last = summaries[-1]
    rest = [layer for layer in last["ranking"] if layer not in picks]
    tokens = {key: sum(s["tokens"][key] for s in summaries) for key in ("spent", "budget", "saved", "candidates")}
    tokens["saved_fraction"] = tokens["saved"] / tokens["budget"] if tokens["budget"] else 0.0
    tokens["per_candidate"] = summaries[0]["tokens"]["per_candidate"]
    first = summaries[0]
    return {**first, "ranking": picks + rest, "tokens": tokens,
            "passes": [{"pick": p, "ranking": s["ranking"], "early_stop": s["early_stop"]} for p, s in zip(picks, summaries)]}


def run_scoring(context: Context, out: Path, k: int, console=None) -> dict:
    s = context.settings
    runner = PassRunner(context, out, k, console)
    kind = {"ga-s2": "ga", "gr-s2": "gr", "avg-s2": "avg"}.get(s.method)
    if kind is not None:
        plan, log = runner.run(kind, s.method)
        if runner.shard is not None:
            return {"shard": s.shard, "passes": {s.method: str(log.path)}}
        return pass_summary(plan, log.data, s)
    # iterative greedy: pick the best layer, then re-score the rest with it kept softmax, ...
    picks, summaries = [], []
    for p in range(1, min(s.iterative_picks or k, context.num_layers) + 1):
        plan, log = runner.run("it", f"iterative-{p}", picks)
        summary = pass_summary(plan, log.data, s)
        summaries.append(summary)
        picks.append(summary["ranking"][0])
        _say(console, f"iterative pick {p}: layer {picks[-1]}")
    return _combine_iterative(summaries, picks)


def run_cheap(context: Context, k: int, console=None) -> dict:
    """Methods without distillation runs."""
    from .ablation import ppl_ablation, recall_ablation
    from .baselines import manual_ranking, uniform, uniform_ranking

    s, n = context.settings, context.num_layers
    if s.method == "uniform":
        return {"ranking": uniform_ranking(n, s.anchor, s.stride, s.offset, k),
                "sets_for": lambda kk: uniform(n, kk, s.anchor, s.stride, s.offset)}
    if s.method == "manual":
        return {"ranking": manual_ranking(n, list(s.layers or []))}
    if s.method in ("ablation", "ablation-multihop"):
        result = recall_ablation(context.teacher, context.tokenizer, context.device, samples=s.recall_samples,
                                 pairs=s.recall_pairs, batch=s.recall_batch, seed=context.config.seed,
                                 multihop=s.method == "ablation-multihop", max_hops=s.recall_hops)
    elif s.method == "ppl":
        from ..convert.data import eval_batches

        c2 = context.config.stage2
        batches = eval_batches(context.store, c2.seq_len, c2.micro_batch_size, max_blocks=s.ppl_blocks)
        result = ppl_ablation(context.teacher, batches, context.device)
    else:  # ga-s1
        result = ga_s1(context)
    return {"ranking": result["ranking"], "importance": {str(l): v for l, v in result["importance"].items()},
            "details": {"baseline": result.get("baseline"), "per_layer": {str(l): v for l, v in result["per_layer"].items()}}}


def ga_s1(context: Context) -> dict:
    """GA-S1: restoring layer l removes exactly its own teacher-forced stage-1 loss, so the importance of l
    is the stage-1 student's held-out alignment loss at l."""
    import torch

    from ..convert.data import eval_batches
    from ..convert.stages import Stage1

    c1 = context.config.stage1
    student = context.stage1_student.to(context.device)
    runner = Stage1(context.teacher, student, c1, context.device, context.amp)
    try:
        with torch.no_grad():
            batches = eval_batches(context.store, c1.seq_len, c1.micro_batch_size, max_blocks=c1.eval_blocks)
            losses = torch.stack([runner.losses(b) for b in batches]).mean(0).tolist()
    finally:
        runner.tap.remove()
    per_layer = {layer: {"alignment_loss": v} for layer, v in zip(runner.layers, losses)}
    importance = {layer: v for layer, v in zip(runner.layers, losses)}
    ranking = sorted(importance, key=lambda l: (-importance[l], l))
    return {"ranking": ranking, "importance": importance, "per_layer": per_layer}


def assemble(context_info: dict, settings: SelectSettings, k: int, result: dict, teacher_config, mixer: str,
             gqa_mode: str, short_conv: bool, num_layers: int, extra: dict) -> dict:
    budgets = budget_entries(result["ranking"], num_layers, k, settings.budgets, teacher_config, mixer, gqa_mode, short_conv,
                             sets_for=result.get("sets_for"))
    data = {
        "method": settings.method, "num_layers": num_layers, "mixer": mixer, "teacher": context_info["teacher"],
        "teacher_config": teacher_config.to_dict(),
        "score_key": f"{settings.score}_kl" if settings.method in RUN_METHODS else None,
        "ranking_rule": RANKING_RULES[settings.method], "ranking": result["ranking"], "k": k, "budgets": budgets,
        "scores": {key: result[key] for key in ("importance", "train_kl", "heldout_kl", "gr_train_kl", "gr_heldout_kl")
                   if key in result},
        "history": result.get("history", []), "early_stop": result.get("early_stop"), "tokens": result.get("tokens"),
        "passes": result.get("passes"), "details": result.get("details"), "stage1": context_info.get("stage1"),
        "settings": settings.to_dict(), "versions": versions(), **extra,
    }
    data["scores"].setdefault("importance", {})
    return data


def finish(out: Path, data: dict, console=None) -> dict:
    path = write_selection(out, data)
    write_report(out, data)
    plot = write_plot(out, data)
    _say(console, f"wrote {path}, {out / 'report.md'}" + (f", {plot}" if plot else ""))
    return data


def parent_device(settings: SelectSettings, device: torch.device) -> torch.device:
    """Where the selecting process keeps its own context. With worker processes it only plans rounds and collects
    scores (every worker loads its own teacher, data and stage-1 student on its GPU), so its copy stays on the CPU:
    on one shared GPU, a parent's teacher and stage-1 memory (12.5 GB for SmolLM2, most of it stage 1's cached
    blocks) is what pushed the fifth of five workers out of memory on an H200."""
    if settings.workers > 1 and settings.method in RUN_METHODS:
        return torch.device("cpu")
    return device


def free_device_memory(device: torch.device) -> None:
    """Return the CUDA caching allocator's unused blocks to the driver (after stage 1, before the workers start)."""
    if device.type == "cuda":
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def run_selection(config: RunConfig, settings: SelectSettings, out: str | Path, *, console=None,
                  context: Context | None = None) -> dict:
    """Run `settings.method`; returns selection.json's content (or the shard summary for --shard)."""
    settings.check()
    if settings.measure_throughput:
        from .throughput import require_vllm

        require_vllm()  # before hours of scoring, not after
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SelectionError(f"cannot create the selection folder {out}: {e.strerror or e}") from None
    if (out / "job.json").exists():  # resuming: a shard folder stays that shard
        previous = json.loads((out / "job.json").read_text()).get("settings", {})
        if previous.get("shard") != settings.shard:
            raise SelectionError(f"{out} holds a selection run with --shard {previous.get('shard')}; use another --out")
    timings, t0 = {}, time.time()
    needs_stage1 = settings.method in STAGE1_METHODS
    device = pick_device(config)
    if context is None:
        stage1 = ensure_stage1(config, settings, out, console) if needs_stage1 else None
        timings["stage1_s"] = time.time() - t0
        free_device_memory(device)  # stage 1 ran in this process: hand its cached blocks back before the workers start
        t0 = time.time()
        context = load_context(config, settings, stage1, parent_device(settings, device), progress=console is not None)
        timings["load_s"] = time.time() - t0
    elif needs_stage1 and context.stage1_student is None:
        raise SelectionError(f"{settings.method} needs a stage-1 student")
    n = context.num_layers
    k = resolve_budget(n, settings.ratio, settings.k)
    if settings.method == "manual" and settings.k is None and settings.layers:
        k = len(settings.layers)
    if settings.method == "iterative" and settings.iterative_picks is not None and settings.iterative_picks < 1:
        raise SelectionError("iterative_picks must be at least 1")
    info = context_summary(context)
    write_json(out / "job.json", {"settings": settings.to_dict(), "config": config.to_dict(), **info})
    t0 = time.time()
    if settings.method in RUN_METHODS:
        result = run_scoring(context, out, k, console)
    else:
        result = run_cheap(context, k, console)
    timings["scoring_s"] = time.time() - t0
    c = context.config
    if settings.shard:
        shard = {"shard": settings.shard, "k": k, "num_layers": n, "teacher_config": context.teacher.config.to_dict(),
                 "mixer": c.mixer, "gqa_mode": c.gqa_mode, "short_conv": c.short_conv, **info,
                 "settings": settings.to_dict(), "passes": result["passes"]}
        write_json(out / "shard.json", shard)
        _say(console, f"shard {settings.shard} done; merge all shards with `hybridserve select-merge`")
        return shard
    data = assemble(info, settings, k, result, context.teacher.config, c.mixer, c.gqa_mode, c.short_conv, n,
                    {"timings": timings})
    data = finish(out, data, console)  # the selection is safe on disk before vLLM runs
    if settings.measure_throughput:
        data = measure_throughput(context, data, out, device, settings.throughput_rows, console)
    return data


def measure_throughput(context: Context, data: dict, out: Path, device: torch.device, rows: str | None,
                       console=None) -> dict:
    """Serve the teacher and every chosen set in vLLM (selection/throughput.py); rewrite the outputs with the
    numbers. vLLM sizes its cache to the GPU memory that is free, so this process gives its own back first, and
    takes it again afterwards (under `convert --select` the same teacher and stage-1 student go on to stage 2)."""
    from .throughput import measure_budgets

    models = [m for m in (context.teacher, context.stage1_student) if m is not None]
    homes = [next(m.parameters()).device for m in models]
    for model in models:
        model.to("cpu")
    free_device_memory(device)
    try:
        data["throughput"] = measure_budgets(context, data["budgets"], out, device, rows,
                                             log=lambda text: _say(console, text))
    finally:
        for model, home in zip(models, homes):
            model.to(home)
    return finish(out, data, console)


def merge_shards(shard_dirs: list[str | Path], out: str | Path, console=None) -> dict:
    """Combine the shards of one sharded selection into the selection an unsharded run gives."""
    from .rounds import merge_round_logs

    if not shard_dirs:
        raise SelectionError("merge: give the shard folders")
    shards = []
    for d in shard_dirs:
        path = Path(d) / "shard.json"
        if not path.exists():
            raise SelectionError(f"{d} is not a finished selection shard (no shard.json)")
        shards.append(json.loads(path.read_text()))
    digests = {s["teacher"]["digest"] for s in shards}
    if len(digests) != 1:
        raise SelectionError("merge: the shards were run for different teachers")
    first = shards[0]
    settings = SelectSettings(**{**first["settings"], "shard": None})
    merged_passes = {}
    for name in first["passes"]:
        logs = [json.loads(Path(s["passes"][name]).read_text()) for s in shards]
        merged_passes[name] = merge_round_logs(logs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (name, log), = merged_passes.items()
    plan = PassPlan(log["kind"], tuple(tuple(c) for c in log["candidates"]), log["k"], log["round_steps"],
                    log["total_rounds"], log["tokens_per_step"])
    write_json(out / "rounds.json", log)
    result = pass_summary(plan, log, settings)
    teacher_config = teacher_config_from_dict(first["teacher_config"])
    data = assemble(first, settings, first["k"], result, teacher_config, first["mixer"], first["gqa_mode"],
                    first["short_conv"], first["num_layers"], {"merged_from": [str(d) for d in shard_dirs]})
    return finish(out, data, console)

