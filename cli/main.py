"""The `hybridserve` command line. Each command is one job; errors print one line and exit non-zero."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from . import __version__

app = typer.Typer(
    name="hybridserve",
    help="Turn a softmax-attention LLM into a fast linear/softmax hybrid, export it, inspect it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input or environment: one message, no traceback."""
    from .convert.teacher import TeacherError
    from .export.checkpoint import ExportError
    from .export.configuration_hybrid import HybridConfigError

    return (TeacherError, ExportError, HybridConfigError, FileNotFoundError)


def _parse_layers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        _fail(f"--softmax-layers must be comma-separated integers, got {text!r}")


def _is_hybrid_checkpoint(path: str) -> bool:
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "hybridserve"
    except (OSError, json.JSONDecodeError):
        return False


@app.command()
def version() -> None:
    """Print the hybridserve version."""
    out.print(__version__)


@app.command()
def info(
    path: str = typer.Argument(..., help="A hybrid checkpoint folder (an export)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    dtype_bytes: int = typer.Option(2, help="Bytes per KV-cache element (2 = bf16/fp16 serving)."),
) -> None:
    """Layer map, parameter counts, and KV-cache / recurrent-state memory of a hybrid vs its teacher."""
    try:
        from .export.inspect import describe_checkpoint

        report = describe_checkpoint(path, dtype_bytes=dtype_bytes)
    except _user_errors() as e:
        _fail(str(e))
    if as_json:
        out.print_json(json.dumps(report))
        return
    _print_info(report)


def _print_info(report: dict) -> None:
    from .export.memory import format_bytes

    cfg = report["config"]
    out.print(f"[bold]{report['path']}[/]  ({cfg['teacher_family']} teacher, {cfg['linear_mixer']} linear layers)")
    out.print(f"layer map  {report['layer_map']}  (S softmax, L linear)", highlight=False)
    out.print(f"softmax    {report['softmax_layers']}  ({len(report['softmax_layers'])}/{cfg['num_hidden_layers']} layers)")
    mem, p = report["memory"], report["parameters"]
    table = Table(title=f"teacher vs hybrid (KV cache {mem['dtype_bytes']} B/element, state {cfg['linear_state_dtype']})")
    for column in ("", "teacher", "hybrid", "ratio"):
        table.add_column(column, justify="left" if not column else "right")
    table.add_row("parameters", f"{p['teacher']:,}", f"{p['hybrid']:,}", f"{p['hybrid'] / p['teacher']:.3f}")
    t, h = mem["teacher_kv_bytes_per_token"], mem["hybrid_kv_bytes_per_token"]
    table.add_row("KV cache / token", format_bytes(t), format_bytes(h), f"{h / t:.3f}")
    table.add_row("state / sequence", "0 B", format_bytes(mem["state_bytes_per_sequence"]), "")
    for n in report["context_lengths"]:
        t, h = report["per_sequence_bytes"][str(n)]
        table.add_row(f"cache @ {n // 1024}K tokens", format_bytes(t), format_bytes(h), f"{h / t:.3f}")
    out.print(table)
    if mem["break_even_tokens"] is not None:
        out.print(f"the hybrid's cache is smaller than the teacher's from {mem['break_even_tokens']:,} tokens per sequence")
    v = report["vllm"]
    out.print(f"in vLLM    {v['cache_groups']} cache groups, {v['state_pack']} linear layer(s) per state page "
              f"({v['cache_groups_unpacked']} groups unpacked; the scheduler walks each group per request and step)")
    if v["state_pack"] > 1 and v.get("attention_block_tokens"):
        out.print(f"           attention blocks of up to {v['attention_block_tokens']:,} tokens; with prefix caching on, "
                  "vLLM needs --max-num-batched-tokens at least that, or fewer layers share a page")
    out.print("           scheduler: hybridserve's (serve/scheduler.py), which skips that walk on decode steps that change "
              "no block, with prefix caching off")


@app.command("convert")
def convert_command(
    teacher: str = typer.Argument(None, help="Teacher: builtin name, .gguf file, HF folder or Hub id (default: smollm2-135m)."),
    out_dir: Path = typer.Option(Path("runs/convert"), "--out", "-o", help="Run folder (stages, checkpoints, final export)."),
    preset: str = typer.Option("quick", help="quick (CPU demo, minutes) or paper (method.md's budgets)."),
    config_file: Path = typer.Option(None, "--config", help="YAML file with RunConfig fields (applied after the preset)."),
    softmax_layers: str = typer.Option(None, help="Comma-separated layers that keep softmax attention."),
    ratio: float = typer.Option(None, help="Softmax share when no layer list is given (default 0.25)."),
    select: str = typer.Option(None, help="How --ratio picks layers: uniform, or a selection method run between stage 1 "
                               "and stage 2 (ga-s2, gr-s2, avg-s2, ga-s1, iterative, ablation, ppl; see `select`)."),
    layers_from: Path = typer.Option(None, "--layers-from", help="A selection.json: its top-K layers (K from --ratio, "
                                     "else the file's requested budget)."),
    mixer: str = typer.Option(None, help="Linear mixer: gdn or gla."),
    data: list[str] = typer.Option(None, help="Data source(s): builtin, a .txt/.jsonl/.parquet file or folder, hf:org/name."),
    device: str = typer.Option(None, help="auto, cpu or cuda."),
    sets: list[str] = typer.Option(None, "--set", help="Override any field, e.g. --set stage2.tokens=2000000."),
    resume: bool = typer.Option(False, help="Continue an interrupted run in --out from its last checkpoints."),
) -> None:
    """Distil a hybrid: stage 0 transfer, stage 1 alignment, stage 2 KL (stage 3 optional), export RUN/final."""
    from .convert.config import ConfigError, build_config
    from .convert.data import DataError
    from .convert.pipeline import run_convert
    from .convert.trainer import ResumeError
    from .selection.errors import SelectionError

    try:
        layer_source, sets = _layer_source(select, layers_from, softmax_layers, ratio, list(sets or []))
        if layer_source is not None:
            select = None  # the RunConfig's own `select` only knows uniform
        overrides = {"teacher": teacher, "ratio": ratio, "select": select, "mixer": mixer, "device": device,
                     "data": list(data) if data else None,
                     "softmax_layers": _parse_layers(softmax_layers) if softmax_layers else None}
        if layers_from is not None:
            overrides["softmax_layers"] = layer_source.layers
        config = build_config(preset, config_file, overrides, sets)
        summary = run_convert(config, out_dir, resume=resume, console=console, layer_source=layer_source)
    except (*_user_errors(), ConfigError, DataError, ResumeError, SelectionError) as e:
        _fail(str(e))
    if summary is not None:  # rank 0 (or the only process)
        out.print(f"final hybrid: [bold]{summary['final']}[/] (after {summary['final_stage']}); summary in {out_dir / 'summary.json'}")


def _layer_source(select, layers_from, softmax_layers, ratio, sets):
    """convert's layer choice from a selection: (hook for run_convert or None, --set items left for the config)."""
    from .selection.errors import SelectionError

    if layers_from is not None and (select not in (None, "uniform") or softmax_layers):
        raise SelectionError("--layers-from cannot be combined with --select or --softmax-layers")
    if layers_from is not None:
        from .selection.convert_hooks import SelectionFile

        return SelectionFile(layers_from, ratio=ratio), sets
    if select in (None, "uniform"):
        return None, sets
    if softmax_layers:
        raise SelectionError("--select chooses the layers; do not also give --softmax-layers")
    from .selection.convert_hooks import SelectDuringConvert

    selection_sets = [item for item in sets if item.startswith("select.")]
    return SelectDuringConvert(select, ratio if ratio is not None else 0.25, selection_sets), \
        [item for item in sets if not item.startswith("select.")]


@app.command("export")
def export_command(
    source: str = typer.Argument(
        ...,
        help="A teacher (builtin name like smollm2-135m, a .gguf file, an HF folder or Hub id) to build a stage-0 "
        "hybrid from, or an existing hybrid checkpoint folder to re-export.",
    ),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Output folder (written atomically)."),
    softmax_layers: str = typer.Option(None, help="Comma-separated layer indices that keep softmax attention."),
    ratio: float = typer.Option(0.25, help="Softmax share when --softmax-layers is not given (uniformly spread)."),
    mixer: str = typer.Option("gdn", help="Linear mixer: gdn (Gated DeltaNet, gdn_v4) or gla (gla_v1)."),
    gqa_mode: str = typer.Option("head", help="k/v expansion: head (faithful), legacy_row (paper code), runtime."),
    bias_transfer: bool = typer.Option(True, help="Carry teacher q/k/v biases into linear layers."),
    short_conv: bool = typer.Option(False, help="Add a causal short convolution to GDN q/k/v."),
    dtype: str = typer.Option("bfloat16", help="Weight dtype of the export: bfloat16, float16 or float32."),
    overwrite: bool = typer.Option(False, help="Replace a non-empty output folder."),
    push_to_hub: str = typer.Option(None, help="Also upload to this Hub repo (needs HF_TOKEN)."),
    private: bool = typer.Option(False, help="Create the Hub repo as private."),
    prompt: str = typer.Option(None, help="After export, reload the folder and greedily continue this prompt."),
    max_new_tokens: int = typer.Option(24, help="Tokens to generate for --prompt."),
    seed: int = typer.Option(0, help="Seed of the parameters with no teacher counterpart (same seed, same export)."),
) -> None:
    """Build a hybrid from a teacher by weight transfer (stage 0) and export a Hub-ready checkpoint."""
    import torch

    from .export import checkpoint

    try:
        torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(dtype)
        if torch_dtype is None:
            _fail(f"--dtype must be bfloat16, float16 or float32, got {dtype!r}")
        checkpoint.check_output_dir(out_dir, overwrite)
        if _is_hybrid_checkpoint(source):
            model, tokenizer, provenance, generation_config = _reexport_source(source)
        else:
            model, tokenizer, provenance, generation_config = _stage0(
                source, softmax_layers, ratio, mixer, gqa_mode, bias_transfer, short_conv, prompt, max_new_tokens,
                seed,
            )
        with console.status(f"writing {out_dir}"):
            model = model.to(torch_dtype)
            saved = checkpoint.save_hybrid(
                model, out_dir, tokenizer=tokenizer, generation_config=generation_config,
                provenance=provenance, overwrite=overwrite,
            )
        console.print(f"exported [bold]{saved}[/]")
        if push_to_hub:
            with console.status(f"uploading to {push_to_hub}"):
                url = checkpoint.push_to_hub(saved, push_to_hub, private=private)
            console.print(f"uploaded to {url}")
        if prompt:
            _generate_from(saved, prompt, max_new_tokens)
    except _user_errors() as e:
        _fail(str(e))


def _reexport_source(source: str):
    from transformers import AutoTokenizer, GenerationConfig

    from .export import checkpoint

    with console.status(f"loading {source}"):
        model = checkpoint.load_hybrid(source)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=True) if (Path(source) / "tokenizer_config.json").exists() else None
    provenance_file = Path(source) / "hybridserve.json"
    provenance = json.loads(provenance_file.read_text()).get("provenance", {}) if provenance_file.exists() else {}
    has_generation_config = (Path(source) / "generation_config.json").exists()
    generation_config = GenerationConfig.from_pretrained(source) if has_generation_config else None
    return model, tokenizer, provenance | {"reexported_from": str(source)}, generation_config


def _stage0(source, softmax_layers, ratio, mixer, gqa_mode, bias_transfer, short_conv, prompt, max_new_tokens,
            seed=0):
    from .convert.stage0 import build_student, softmax_budget, uniform_layers
    from .convert.teacher import load_teacher

    with console.status(f"loading teacher {source}"):
        teacher, tokenizer, teacher_info = load_teacher(source)
    n = teacher.config.num_hidden_layers
    layers = _parse_layers(softmax_layers) if softmax_layers else uniform_layers(n, softmax_budget(n, ratio))
    if prompt:  # the teacher's answer, to read the hybrid's next to it
        _show_continuation("teacher", teacher, tokenizer, prompt, max_new_tokens)
    with console.status("stage 0: transferring weights"):
        student, report = build_student(
            teacher, layers, seed=seed, mixer=mixer, gqa_mode=gqa_mode, transfer_bias=bias_transfer,
            short_conv=short_conv,
        )
    console.print(
        f"stage 0: {len(layers)}/{n} softmax layers {layers}, {mixer} elsewhere; "
        f"{len(report.copied)} tensors copied, {len(report.expanded)} expanded, {len(report.fresh)} fresh"
    )
    provenance = {
        "stage": "stage0",
        "seed": seed,
        "teacher": dataclasses.asdict(teacher_info),
        "softmax_layers": layers,
        "transfer": report.summary(),
    }
    return student, tokenizer, provenance, getattr(teacher, "generation_config", None)


def _generate_from(path: Path, prompt: str, max_new_tokens: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with console.status("reloading the export with transformers (trust_remote_code)"):
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True, dtype=torch.float32).eval()
    _show_continuation("hybrid (reloaded export)", model, tokenizer, prompt, max_new_tokens)


def _show_continuation(who: str, model, tokenizer, prompt: str, max_new_tokens: int) -> None:
    import torch

    with console.status(f"generating with the {who}"):
        ids = tokenizer(prompt, return_tensors="pt").to(model.device)
        with torch.no_grad():
            generated = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    text = tokenizer.decode(generated[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    out.print(f"[bold]{who}:[/] {prompt}[italic]{text}[/]", highlight=False)


def _register_eval() -> None:
    from .eval_cmd import eval_command

    app.command("eval")(eval_command)


_register_eval()


def _register_select() -> None:
    from .select_cmd import merge_command, select_command

    app.command("select")(select_command)
    app.command("select-merge")(merge_command)


_register_select()


def _register_serve() -> None:
    from .serve_cmd import bench_command, serve_command

    app.command("serve", context_settings={"allow_extra_args": True})(serve_command)
    app.command("bench")(bench_command)


_register_serve()


@app.callback()
def _quiet_libraries() -> None:
    """Our own status lines replace transformers' per-tensor progress bars and notices."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # e.g. transformers' GGUF de-quantisation bar; read at tqdm import
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main() -> None:  # python -m hybridserve
    app()


if __name__ == "__main__":
    sys.exit(main())
