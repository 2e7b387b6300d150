"""`hybridserve select [TEACHER]`: KL-guided layer selection (GA-S2 and its variants, baselines) into a selection
folder; `hybridserve select-merge SHARD... --out DIR` combines the shards of a `--shard i/N` job.
Register with `app.command("select")(select_command)` and `app.command("select-merge")(merge_command)`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import typer
from rich.console import Console

_console = Console(stderr=True, soft_wrap=True)
_out = Console(soft_wrap=True)


def _fail(message: str) -> None:
    _console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _errors() -> tuple[type[Exception], ...]:
    from hybridserve.convert.config import ConfigError
    from hybridserve.convert.data import DataError
    from hybridserve.convert.teacher import TeacherError
    from hybridserve.convert.trainer import ResumeError
    from hybridserve.export.checkpoint import ExportError
    from hybridserve.export.configuration_hybrid import HybridConfigError
    from hybridserve.selection.errors import SelectionError

    return (SelectionError, ConfigError, DataError, ResumeError, TeacherError, ExportError, HybridConfigError,
            FileNotFoundError)


def _layers(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        _fail(f"--layers must be comma-separated integers, got {text!r}")


def select_command(
    teacher: str = typer.Argument(None, help="Teacher: builtin name, .gguf file, HF folder or Hub id (default: smollm2-135m)."),
    out_dir: Path = typer.Option(Path("runs/select"), "--out", "-o", help="Selection folder (resumable: repeat the command)."),
    method: str = typer.Option("ga-s2", help="ga-s2 (default), gr-s2, avg-s2, ga-s1, iterative; baselines uniform, "
                               "ablation, ablation-multihop, ppl, manual."),
    ratio: float = typer.Option(0.25, help="Softmax share: K = round(ratio x layers)."),
    k: int = typer.Option(None, "--k", help="Softmax layer count (instead of --ratio)."),
    budgets: str = typer.Option(None, help="More budgets to report nested sets for, e.g. 0.125,0.5,4 "
                                "(the paper's 12.5/25/33/50 % are always reported)."),
    score: str = typer.Option("train", help="Ranking score: train (KL averaged over the last --window steps) or heldout."),
    window: int = typer.Option(None, help="Steps averaged by the train score (default 10)."),
    tokens: int = typer.Option(None, help="Scoring tokens per candidate (default: a third of stage2.tokens)."),
    rounds: int = typer.Option(None, help="Lock-step rounds per candidate run (default 10)."),
    early_stop: bool = typer.Option(True, help="Stop when the top-K set is stable (Jaccard >= --threshold, --patience rounds)."),
    threshold: float = typer.Option(None, help="Top-K Jaccard similarity that counts as stable (default 0.8)."),
    patience: int = typer.Option(None, help="Consecutive stable rounds before stopping (default 3)."),
    workers: int = typer.Option(1, help="Candidate runs in parallel: one process per GPU (or CPU slice)."),
    shard: str = typer.Option(None, help="Score only candidates i, i+N, ... of i/N; then `hybridserve select-merge`."),
    keep: str = typer.Option(None, help="Where candidates wait between rounds: cpu (default), device, disk."),
    stage1: str = typer.Option(None, help="A convert run folder or stage-1 model to start from (default: run stage 1 here)."),
    layers: str = typer.Option(None, help="manual: the layer list, best first."),
    anchor: str = typer.Option(None, help="uniform: center (default), start or end."),
    stride: int = typer.Option(None, help="uniform: layers between picks (default L // K)."),
    offset: int = typer.Option(None, help="uniform: first layer (start) or distance from the last (end)."),
    iterative_picks: int = typer.Option(None, help="iterative: layers to pick by re-scoring (default K)."),
    measure_throughput: bool = typer.Option(False, help="Serve the teacher and each chosen set in vLLM and time them."),
    throughput_rows: str = typer.Option(None, help="Rows INPUT:OUTPUT:PROMPTS for --measure-throughput "
                                        "(default GPU 1024:256:512,4096:256:max; CPU 64:16:4)."),
    mixer: str = typer.Option(None, help="Linear mixer: gdn or gla."),
    data: List[str] = typer.Option(None, help="Data source(s): builtin, a file or folder, hf:org/name."),
    device: str = typer.Option(None, help="auto, cpu or cuda."),
    preset: str = typer.Option("quick", help="Distillation preset for stage 1 and the scoring runs: quick or paper."),
    config_file: Path = typer.Option(None, "--config", help="YAML file with RunConfig fields."),
    sets: List[str] = typer.Option(None, "--set", help="Override a field: stage2.lr=1e-4, or select.FIELD=VALUE."),
) -> None:
    """Choose which layers keep softmax attention (GA-S2: one short KL run per layer), write selection.json,
    report.md and plot.png; `convert --layers-from OUT/selection.json` uses it."""
    _quiet_libraries()
    try:
        from hybridserve.convert.config import build_config
        from hybridserve.selection.budgets import parse_budgets
        from hybridserve.selection.runner import run_selection
        from hybridserve.selection.settings import SelectSettings, apply_sets

        settings = SelectSettings(method=method, ratio=ratio, k=k, budgets=parse_budgets(budgets), score=score,
                                  early_stop=early_stop, workers=workers, shard=shard, stage1=stage1, layers=_layers(layers),
                                  iterative_picks=iterative_picks, measure_throughput=measure_throughput,
                                  throughput_rows=throughput_rows, tokens=tokens)
        for name, value in (("window", window), ("rounds", rounds), ("threshold", threshold), ("patience", patience),
                            ("keep", keep), ("anchor", anchor), ("stride", stride), ("offset", offset)):
            if value is not None:
                setattr(settings, name, value)
        rest = apply_sets(settings, list(sets or []))
        overrides = {"teacher": teacher, "mixer": mixer, "device": device, "data": list(data) if data else None}
        config = build_config(preset, config_file, overrides, rest)
        result = run_selection(config, settings, out_dir, console=_console)
    except _errors() as e:
        _fail(str(e))
    if result.get("shard"):
        _out.print(f"shard {result['shard']} finished in {out_dir}")
        return
    primary = next(b for b in result["budgets"] if b.get("primary"))
    _out.print(f"{result['method']}: ranking {result['ranking']}", highlight=False)
    _out.print(f"softmax layers for K = {primary['k']}: {primary['layers']}  ({out_dir / 'selection.json'})", highlight=False)


def merge_command(
    shards: List[Path] = typer.Argument(..., help="The shard folders of one `select --shard i/N` job."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the merged selection."),
) -> None:
    """Merge the shards of a sharded selection into the selection an unsharded run gives."""
    _quiet_libraries()
    try:
        from hybridserve.selection.runner import merge_shards

        result = merge_shards(list(shards), out_dir, console=_console)
    except _errors() as e:
        _fail(str(e))
    _out.print(f"{result['method']}: ranking {result['ranking']}  ({out_dir / 'selection.json'})", highlight=False)
