"""`hybridserve convert`: teacher -> stage 0 -> stage 1 -> stage 2 (-> stage 3) -> RUN_DIR/final.

Run folder layout:
    config.json            the resolved RunConfig (a resumed run must match it)
    stage1/ metrics.jsonl checkpoint.pt model/     model/ = the all-linear stage-1 student (an export)
    stage2/ ...            model/ = the distilled hybrid
    stage3/ ...            (when enabled)
    final/                 the Hub-ready export of the last stage
    summary.json           config, versions, timings, final losses
A stage whose model/ exists is done and is reused; `--resume` continues an interrupted stage from its
last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path

import torch

from ..export.checkpoint import load_hybrid, save_hybrid
from ..files import write_json_atomic
from ..export.configuration_hybrid import layer_types_for
from . import distributed as dist
from .config import ConfigError, RunConfig, load_saved
from .stage0 import build_student, softmax_budget, uniform_layers
from .stages import Stage1, Stage2, freeze, student_from_stage1
from .trainer import Stage


def _amp_dtype(config: RunConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, config.dtype)


def prepare_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Create the run folder, or check that a resumed one was made with the same configuration."""
    saved = run_dir / "config.json"
    if saved.exists():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out")
        # Trackers do not change results: a resume may add or drop one.
        before = {k: v for k, v in load_saved(saved).to_dict().items() if k != "report_to"}
        now = {k: v for k, v in config.to_dict().items() if k != "report_to"}
        if before != now:
            changed = sorted(k for k, v in now.items() if before.get(k) != v)
            raise ConfigError(f"--resume with a different configuration than {saved} (changed: {', '.join(changed)})")
        return
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise ConfigError(f"output folder {run_dir} is not empty; choose a new --out")
    # Every rank has looked at the folder before any rank writes into it (its write probe, then rank 0's
    # config.json): a rank that looked after a write would see a used folder and leave the others hanging in a
    # collective.
    dist.barrier()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write to the output folder {run_dir}: {e.strerror or e}") from None
    if dist.is_main():
        write_json_atomic(saved, config.to_dict(), default=str)
    dist.barrier()


def _versions() -> dict:
    import transformers

    from .. import __version__

    return {"hybridserve": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"}


def _stage_done(folder: Path) -> bool:
    return (folder / "model" / "config.json").exists()


def run_convert(config: RunConfig, run_dir: str | Path, *, resume: bool = False, console=None,
                layer_source=None) -> dict | None:
    """Run every enabled stage and export RUN_DIR/final. Returns the summary (None on ranks other than 0).

    `layer_source` (hybridserve.selection.convert_hooks): checks the teacher against a selection file, or
    chooses the softmax layers between stage 1 and stage 2 (`convert --select ga-s2`)."""
    from .data import DataSpec, eval_batches, prepare_tokens
    from .teacher import default_cache_dir, load_teacher

    run_dir = Path(run_dir)
    device = dist.init_from_env(config.device)
    amp = _amp_dtype(config, device)
    prepare_run_dir(run_dir, config, resume)
    torch.manual_seed(config.seed)
    say = (lambda text: console.print(text)) if console is not None and dist.is_main() else (lambda text: None)
    timings, results = {}, {}

    t0 = time.time()
    teacher, tokenizer, teacher_info = load_teacher(config.teacher, dtype=amp if device.type == "cuda" else torch.float32)
    freeze(teacher).to(device)
    n = teacher.config.num_hidden_layers
    config.check(max_positions=teacher.config.max_position_embeddings)
    layers = config.softmax_layers if config.softmax_layers is not None else uniform_layers(n, softmax_budget(n, config.ratio))
    layer_types_for(n, layers)  # validates indices against the teacher before any training
    if layer_source is not None:  # e.g. a selection file made for another teacher fails here, before training
        layer_source.check_teacher(teacher, teacher_info)
    options = dict(mixer=config.mixer, gqa_mode=config.gqa_mode, transfer_bias=config.transfer_bias,
                   short_conv=config.short_conv)
    timings["load_teacher_s"] = time.time() - t0
    say(f"teacher {config.teacher}: {n} layers; softmax layers {layers}; {config.mixer} elsewhere")

    t0 = time.time()
    store = prepare_tokens(DataSpec(list(config.data), eval_fraction=config.eval_fraction, max_tokens=config.data_max_tokens), tokenizer,
                           default_cache_dir() / "data", progress=dist.is_main())
    timings["data_s"] = time.time() - t0
    provenance = {"teacher": dataclasses.asdict(teacher_info), "softmax_layers": layers, "run_dir": str(run_dir)}

    def run_stage(name, runner, stage_cfg, trainable):
        from .data import BlockSampler

        folder = run_dir / name
        sampler = BlockSampler(store, stage_cfg.seq_len, stage_cfg.micro_batch_size, seed=config.seed,
                               rank=dist.rank(), world_size=dist.world_size())
        held_out = eval_batches(store, stage_cfg.seq_len, stage_cfg.micro_batch_size, max_blocks=stage_cfg.eval_blocks)
        stage = Stage(name, folder, stage_cfg, trainable=trainable, param_groups=runner.param_groups(),
                      loss_fn=runner.loss_fn, sampler=sampler, evaluate=lambda: runner.evaluate(held_out),
                      fingerprint=config.fingerprint(name), console=console,
                      report_to=config.report_to, run_config=config.to_dict())
        result = stage.run(resume=resume)
        results[name] = dataclasses.asdict(result)
        timings[f"{name}_s"] = result.seconds
        say(f"{name}: {result.steps} steps, {result.tokens:,} tokens, loss {result.final_loss:.4f}, held-out {result.final_eval}")
        return result

    # ---- stage 1: all-linear alignment (reused by every stage-2 run of this teacher and mixer)
    stage1_dir = run_dir / "stage1"
    if _stage_done(stage1_dir):
        say("stage1: reusing the finished stage-1 student")
        stage1_student = load_hybrid(stage1_dir / "model")
    else:
        stage1_student, _ = build_student(teacher, [], **options)
        stage1_student.to(device=device, dtype=torch.float32)  # float32 master weights; autocast does bf16
        runner = Stage1(teacher, stage1_student, config.stage1, device, amp)
        run_stage("stage1", runner, config.stage1, runner.mixers)
        runner.tap.remove()
        _save_model(stage1_student, stage1_dir / "model", tokenizer, provenance | {"stage": "stage1"})

    if layer_source is not None:  # layer selection from the stage-1 student (its own resumable folder)
        t0 = time.time()
        chosen = layer_source.after_stage1(config=config, teacher=teacher, tokenizer=tokenizer, teacher_info=teacher_info,
                                           store=store, stage1_student=stage1_student, stage1_path=stage1_dir / "model",
                                           device=device, amp=amp, run_dir=run_dir, console=console)
        if chosen is not None:
            layers = chosen
            timings["selection_s"] = time.time() - t0
            say(f"selection: softmax layers {layers}")
        provenance |= {"softmax_layers": layers, **layer_source.provenance()}

    # ---- stage 2: KL distillation of the hybrid
    final_stage, student = "stage1", stage1_student
    for name, cfg in (("stage2", config.stage2), ("stage3", config.stage3)):
        if not cfg.enabled:
            continue
        folder = run_dir / name
        if _stage_done(folder):
            say(f"{name}: reusing the finished model")
            student = load_hybrid(folder / "model")
        else:
            if name == "stage2":
                student = student_from_stage1(teacher, stage1_student.to(device), layers, **options).float()
            # stage 3 starts from the stage-2 student as it is: no layer is re-imported from the teacher
            student = dist.shard(student.to(device))
            runner = Stage2(teacher, student, cfg, device, amp, config.kl_chunk_tokens)
            run_stage(name, runner, cfg, student)
            _save_model(student, folder / "model", tokenizer, provenance | {"stage": name})
        final_stage = name

    final = run_dir / "final"
    student = student.to(getattr(torch, config.export_dtype))
    _save_model(student, final, tokenizer, provenance | {"stage": final_stage}, overwrite=True,
                generation_config=getattr(teacher, "generation_config", None))
    summary = {"config": config.to_dict(), "versions": _versions(), "timings": timings, "results": results,
               "final_stage": final_stage, "final": str(final)}
    main = dist.is_main()
    if main:
        write_json_atomic(run_dir / "summary.json", summary, default=str)
    dist.shutdown()
    return summary if main else None


def _save_model(model, folder: Path, tokenizer, provenance: dict, overwrite: bool = False, generation_config=None):
    from .distributed import full_state_dict, is_distributed

    if is_distributed():  # gather the shards into a plain CPU copy on rank 0
        state = full_state_dict(model)
        if not dist.is_main():
            dist.barrier()
            return
        plain = type(model)(model.config)
        plain.load_state_dict(state)
        model = plain
    try:
        save_hybrid(model, folder, tokenizer=tokenizer, provenance=provenance, overwrite=overwrite,
                    generation_config=generation_config)
    finally:
        dist.barrier()  # the other ranks wait in _save_model until rank 0 has written (a no-op in one process)
