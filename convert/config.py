"""Typed configuration of a `hybridserve convert` run: presets, YAML files, `--set key=value` overrides.

Every field is validated before any model is loaded, so a typo fails in a second, not after an hour.
Presets: `paper` reproduces method.md's released hyper-parameters (100M tokens of stage 1 at 512,
600M tokens of stage 2 at 4096); `quick` is a CPU demo that finishes in minutes on 2 cores.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCHEDULES = ("cosine", "constant", "s-cos-s")


class ConfigError(ValueError):
    """A run configuration that cannot work; the message names the field."""


@dataclass
class StageConfig:
    enabled: bool = True
    tokens: int = 1_000_000  # token budget: steps = tokens // (batch_size * seq_len)
    seq_len: int = 512
    batch_size: int = 8  # sequences per optimiser step (global, over all ranks)
    micro_batch_size: int = 8  # sequences per forward on one rank (gradient accumulation makes up the rest)
    lr: float = 1e-3  # stage 1: mixers; stage 2/3: everything that is not a mixer
    lr_mixer: float | None = None  # stage 2/3: linear mixers and kept softmax layers (None = lr)
    lr_final: float = 1e-5  # end of the cosine / s-cos-s anneal
    schedule: str = "cosine"
    warmup_steps: int = 0
    anneal_start: float = 0.2  # s-cos-s: constant until this fraction of steps, then quarter-cosine ...
    anneal_end: float = 0.8  # ... to lr_final, reached at this fraction and held
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    loss: str = "l2"  # stage 1: l2 (per-token RMS, the paper's code) or mse
    temperature: float = 1.0  # stage 2: KL temperature
    kl_weight: float = 1.0
    ce_weight: float = 0.0
    checkpoint_every: int = 50  # optimiser steps between resumable checkpoints
    eval_every: int = 50
    eval_blocks: int = 8  # held-out blocks scored at each evaluation
    log_every: int = 1


@dataclass
class RunConfig:
    teacher: str = "smollm2-135m"
    data: list[str] = field(default_factory=lambda: ["builtin"])
    softmax_layers: list[int] | None = None
    ratio: float = 0.25
    select: str = "uniform"  # how layers are chosen from --ratio when no list is given
    mixer: str = "gdn"
    gqa_mode: str = "head"
    transfer_bias: bool = True
    short_conv: bool = False
    seed: int = 0
    device: str = "auto"  # auto: cuda if available else cpu
    dtype: str = "auto"  # autocast dtype: auto = bfloat16 on GPU, float32 on CPU
    gradient_checkpointing: bool = False
    kl_chunk_tokens: int = 1024
    export_dtype: str = "bfloat16"  # weights of RUN_DIR/final
    eval_fraction: float = 0.01
    data_max_tokens: int | None = None  # stop tokenising after this many tokens (required for hf: streams)
    report_to: list[str] = field(default_factory=list)  # trackers next to metrics.jsonl: tensorboard, wandb
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=lambda: StageConfig(lr=7e-6, lr_mixer=1e-4, schedule="constant"))
    stage3: StageConfig = field(
        default_factory=lambda: StageConfig(enabled=False, lr=1e-5, lr_mixer=1e-5, schedule="constant", kl_weight=0.0, ce_weight=1.0)
    )

    # ------------------------------------------------------------------ checks
    def check(self, max_positions: int | None = None) -> None:
        from ..export.configuration_hybrid import GQA_MODES, LINEAR_MIXERS

        from .tracking import TrackerError, check_trackers

        if not self.data:
            raise ConfigError("data: no data source given")
        try:  # a missing tracker library fails here, before any model loads, not mid-run
            self.report_to = check_trackers(self.report_to)
        except TrackerError as e:
            raise ConfigError(str(e)) from None
        if self.mixer not in LINEAR_MIXERS:
            raise ConfigError(f"mixer: unknown linear mixer {self.mixer!r}; choose one of {', '.join(LINEAR_MIXERS)}")
        if self.gqa_mode not in GQA_MODES:
            raise ConfigError(f"gqa_mode: choose one of {', '.join(GQA_MODES)}")
        if self.softmax_layers is None and not 0.0 < self.ratio < 1.0:
            raise ConfigError(f"ratio: the softmax share must be strictly between 0 and 1, got {self.ratio}")
        if self.softmax_layers is not None and len(set(self.softmax_layers)) != len(self.softmax_layers):
            raise ConfigError(f"softmax_layers: indices repeat: {self.softmax_layers}")
        if self.select not in ("uniform",):
            raise ConfigError(f"select: {self.select!r} is not a config value (only uniform); selection methods run through "
                              "`hybridserve convert --select ga-s2` or `hybridserve select`")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: auto, cpu or cuda, got {self.device!r}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype: auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.export_dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"export_dtype: float32, bfloat16 or float16, got {self.export_dtype!r}")
        for name in ("stage1", "stage2", "stage3"):
            stage = getattr(self, name)
            if not stage.enabled:
                continue
            for key in ("tokens", "seq_len", "batch_size", "micro_batch_size", "checkpoint_every", "eval_every", "log_every"):
                if getattr(stage, key) <= 0:
                    raise ConfigError(f"{name}.{key} must be positive, got {getattr(stage, key)}")
            if stage.batch_size % stage.micro_batch_size:
                raise ConfigError(f"{name}.batch_size ({stage.batch_size}) must be a multiple of micro_batch_size ({stage.micro_batch_size})")
            if stage.schedule not in SCHEDULES:
                raise ConfigError(f"{name}.schedule: choose one of {', '.join(SCHEDULES)}")
            if stage.loss not in ("l2", "mse"):
                raise ConfigError(f"{name}.loss: l2 or mse, got {stage.loss!r}")
            if stage.tokens < stage.batch_size * stage.seq_len:
                raise ConfigError(f"{name}.tokens ({stage.tokens}) is less than one step ({stage.batch_size} x {stage.seq_len} tokens)")
            if max_positions is not None and stage.seq_len > max_positions:
                raise ConfigError(f"{name}.seq_len {stage.seq_len} exceeds the teacher's max_position_embeddings {max_positions}")
            if stage.temperature <= 0 or stage.lr <= 0:
                raise ConfigError(f"{name}: lr and temperature must be positive")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def fingerprint(self, *sections: str) -> str:
        """Hash of what determines the given sections' results (resume refuses a different one). Trackers do not
        change results, so a resumed stage may add or drop one."""
        data = self.to_dict()
        keep = {k: v for k, v in data.items() if not k.startswith("stage") and k != "report_to"}
        for s in sections:
            keep[s] = data[s]
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


PRESETS = {
    # method.md §4.3 released hyper-parameters (global batch 96 x 512 for stage 1, 32 x 4096 for stage 2).
    "paper": {
        "stage1": dict(tokens=100_000_000, seq_len=512, batch_size=96, micro_batch_size=12, lr=1e-3, lr_final=1e-5,
                       schedule="cosine", checkpoint_every=200, eval_every=200),
        "stage2": dict(tokens=600_000_000, seq_len=4096, batch_size=32, micro_batch_size=2, lr=7e-6, lr_mixer=1e-4,
                       schedule="constant", checkpoint_every=200, eval_every=200),
        "stage3": dict(enabled=False, tokens=100_000_000, seq_len=16384, batch_size=16, micro_batch_size=1, lr=1e-5,
                       lr_mixer=1e-5, schedule="constant", kl_weight=0.0, ce_weight=1.0),
    },
    # A demo for a 2-core CPU: 10-15 minutes with SmolLM2-135M (measured: stage 1 ~9 s and stage 2 ~30-55 s
    # per step there, the latter mostly the full-vocabulary KL and the 30-layer backward). It shows the stages
    # working (held-out alignment loss and KL both fall), not a useful model.
    "quick": {
        "stage1": dict(tokens=24 * 2 * 128, seq_len=128, batch_size=2, micro_batch_size=2, lr=1e-3, lr_final=1e-5,
                       checkpoint_every=12, eval_every=12, eval_blocks=2),
        "stage2": dict(tokens=10 * 2 * 128, seq_len=128, batch_size=2, micro_batch_size=2, lr=7e-6, lr_mixer=1e-4,
                       schedule="constant", checkpoint_every=10, eval_every=10, eval_blocks=2),
        "stage3": dict(enabled=False, tokens=4 * 2 * 256, seq_len=256, batch_size=2, micro_batch_size=1, lr=1e-5,
                       lr_mixer=1e-5, schedule="constant", kl_weight=0.0, ce_weight=1.0, eval_blocks=1),
    },
}


def _merge(config: RunConfig, values: dict, where: str) -> None:
    for key, value in values.items():
        if key.startswith("stage") and isinstance(value, dict):
            stage = getattr(config, key, None)
            if not isinstance(stage, StageConfig):
                raise ConfigError(f"{where}: unknown section {key!r}")
            for k, v in value.items():
                _set_field(stage, k, v, f"{where}: {key}.{k}")
        else:
            _set_field(config, key, value, f"{where}: {key}")


def _set_field(obj, key: str, value, where: str) -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown field (known: {', '.join(sorted(fields))})")
    current = getattr(obj, key)
    if isinstance(current, bool) and isinstance(value, str):
        value = value.lower() in ("1", "true", "yes", "on")
    elif isinstance(current, (int, float)) and not isinstance(current, bool) and isinstance(value, str):
        try:
            value = type(current)(float(value)) if isinstance(current, int) else float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    setattr(obj, key, value)


def build_config(preset: str | None = "quick", file: str | Path | None = None, overrides: dict | None = None,
                 sets: list[str] | None = None) -> RunConfig:
    """Preset, then YAML file, then explicit overrides (CLI options), then `--set a.b=value` strings."""
    config = RunConfig()
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        _merge(config, PRESETS[preset], f"preset {preset}")
    if file:
        try:
            values = yaml.safe_load(Path(file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config file {file}: {e}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {file} must hold a mapping")
        _merge(config, values, str(file))
    if overrides:
        _merge(config, {k: v for k, v in overrides.items() if v is not None}, "option")
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        head, _, tail = key.partition(".")
        parsed = yaml.safe_load(value)
        _merge(config, {head: {tail: parsed}} if tail else {head: parsed}, f"--set {item}")
    config.check()
    return config


def load_saved(path: str | Path) -> RunConfig:
    """The RunConfig stored in a run folder's config.json."""
    data = json.loads(Path(path).read_text())
    config = RunConfig()
    _merge(config, data, str(path))
    return config
