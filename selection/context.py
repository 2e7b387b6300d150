"""Everything a selection job shares between its candidate runs: the frozen teacher, the tokenised data, the
stage-1 (all-linear) student, the device. Built once per process (the parallel workers build their own)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from ..convert.config import RunConfig
from .errors import SelectionError
from .identity import teacher_identity
from .settings import SelectSettings


@dataclass
class Context:
    config: RunConfig
    settings: SelectSettings
    teacher: torch.nn.Module
    tokenizer: object
    teacher_info: object
    identity: dict
    store: object  # convert.data.TokenStore
    device: torch.device
    amp: torch.dtype | None
    stage1_student: torch.nn.Module | None = None
    stage1_path: Path | None = None

    @property
    def num_layers(self) -> int:
        return self.teacher.config.num_hidden_layers

    @property
    def student_options(self) -> dict:
        c = self.config
        return dict(mixer=c.mixer, gqa_mode=c.gqa_mode, transfer_bias=c.transfer_bias, short_conv=c.short_conv)


def amp_dtype(config: RunConfig, device: torch.device) -> torch.dtype:
    if config.dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, config.dtype)


def pick_device(config: RunConfig, index: int | None = None) -> torch.device:
    use_cuda = torch.cuda.is_available() if config.device == "auto" else config.device == "cuda"
    if use_cuda:
        if not torch.cuda.is_available():
            raise SelectionError("device cuda requested but no CUDA device is available")
        return torch.device("cuda", index or 0)
    return torch.device("cpu")


def load_context(config: RunConfig, settings: SelectSettings, stage1_path: Path | None, device: torch.device,
                 progress: bool = True) -> Context:
    from ..convert.data import DataSpec, prepare_tokens
    from ..convert.stages import freeze
    from ..convert.teacher import default_cache_dir, load_teacher

    amp = amp_dtype(config, device)
    teacher, tokenizer, info = load_teacher(config.teacher, dtype=amp if device.type == "cuda" else torch.float32)
    freeze(teacher).to(device)
    config.check(max_positions=teacher.config.max_position_embeddings)
    store = prepare_tokens(DataSpec(list(config.data), eval_fraction=config.eval_fraction, max_tokens=config.data_max_tokens),
                           tokenizer, default_cache_dir() / "data", progress=progress)
    context = Context(config, settings, teacher, tokenizer, info, teacher_identity(teacher, info), store, device, amp)
    if stage1_path is not None:
        attach_stage1(context, stage1_path)
    return context


def stage1_model_folder(path: str | Path) -> Path:
    """A convert run folder (RUN/stage1/model) or a model folder itself."""
    path = Path(path)
    for candidate in (path / "stage1" / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise SelectionError(f"{path} holds no stage-1 model (expected RUN/stage1/model/ or a model folder with config.json)")


def attach_stage1(context: Context, path: str | Path) -> None:
    """Load the all-linear stage-1 student and check it was distilled from this teacher with this mixer."""
    from ..export.checkpoint import load_hybrid

    folder = stage1_model_folder(path)
    student = load_hybrid(folder).float().eval()
    cfg = student.config
    if cfg.softmax_layers:
        raise SelectionError(f"{folder} is not a stage-1 (all-linear) student: layers {cfg.softmax_layers} are softmax")
    if cfg.num_hidden_layers != context.num_layers:
        raise SelectionError(f"{folder} has {cfg.num_hidden_layers} layers, the teacher {context.num_layers}")
    if cfg.linear_mixer != context.config.mixer:
        raise SelectionError(f"{folder} was trained with the {cfg.linear_mixer} mixer, this job uses {context.config.mixer}; "
                             f"pass --mixer {cfg.linear_mixer}")
    ours = context.teacher.get_input_embeddings().weight.detach().float().cpu()
    theirs = student.model.embed_tokens.weight.detach().float()
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-2, rtol=1e-2):
        raise SelectionError(f"{folder} was not distilled from this teacher (embeddings differ)")
    context.stage1_student = student
    context.stage1_path = folder


def stage1_digest(student) -> str:
    """Changes when the stage-1 student does, so candidate checkpoints of another stage 1 are never resumed."""
    import hashlib

    h = hashlib.sha256()
    for name, value in sorted(student.state_dict().items()):
        if ".linear_attn." in name:
            h.update(name.encode())
            h.update(value.detach().float().cpu().flatten()[:64].numpy().tobytes())
    return h.hexdigest()[:16]


def context_summary(context: Context) -> dict:
    info = context.teacher_info
    return {"teacher": context.identity, "teacher_info": dataclasses.asdict(info) if dataclasses.is_dataclass(info) else info,
            "stage1": str(context.stage1_path) if context.stage1_path else None, "device": str(context.device)}
