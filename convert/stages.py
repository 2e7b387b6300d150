"""The losses and parameter groups of RADLADS stages 1-3 (method.md §4), wired to the generic Stage loop.

Stage 1  attention-output alignment: teacher-forced, every linear mixer trained in parallel on the
         teacher's normalised attention input against the teacher's attention output; only the mixers
         train; no LM head is computed.
Stage 2  KL(teacher || student) over the full vocabulary, chunked (convert/losses.py); everything trains,
         mixers (linear and kept softmax layers) at lr_mixer, the rest at lr; teacher frozen, eval, no grad.
Stage 3  next-token CE at long context, from the stage-2 weights (never re-imports teacher layers).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..export.modeling_hybrid import HybridForCausalLM
from . import distributed as dist
from .config import StageConfig
from .losses import alignment_loss, chunked_distill_loss
from .stage0 import build_student


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class TeacherAttentionTap:
    """Records, for chosen teacher layers, the attention block's input (after input_layernorm) and output."""

    def __init__(self, teacher: nn.Module, layers: list[int]):
        self.records: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.handles = []
        for i in layers:
            attn = teacher.model.layers[i].self_attn
            self.handles.append(attn.register_forward_hook(self._hook(i), with_kwargs=True))

    def _hook(self, index: int):
        def record(module, args, kwargs, output):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            self.records[index] = (x.detach(), output[0].detach())

        return record

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


# ---------------------------------------------------------------------------------------------- stage 1
class Stage1:
    """Trainable state: the linear mixers only (an nn.ModuleDict keyed by layer index)."""

    def __init__(self, teacher, student: HybridForCausalLM, cfg: StageConfig, device, amp_dtype):
        self.teacher, self.student, self.cfg, self.device, self.amp = teacher, student, cfg, device, amp_dtype
        freeze(student)
        self.layers = student.config.linear_layers
        self.mixers = nn.ModuleDict({str(i): student.model.layers[i].linear_attn for i in self.layers})
        for p in self.mixers.parameters():
            p.requires_grad_(True)
        self.mixers.train()
        dist.shard_each(self.mixers.values())
        self.tap = TeacherAttentionTap(teacher, self.layers)

    def param_groups(self):
        return [("mixers", [p for p in self.mixers.parameters() if p.requires_grad], self.cfg.lr)]

    def losses(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        with torch.no_grad(), autocast(self.device, self.amp):
            self.teacher.model(input_ids=batch, use_cache=False)  # base model only: no LM-head logits
        per_layer = []
        for i in self.layers:
            x, y = self.tap.records.pop(i)
            with autocast(self.device, self.amp):
                out = self.mixers[str(i)](x)
            per_layer.append(alignment_loss(out, y, self.cfg.loss))
        return torch.stack(per_layer)

    def loss_fn(self, batch):
        loss = self.losses(batch).mean()
        return loss, {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(self, batches) -> float:
        self.mixers.eval()
        try:
            return float(torch.stack([self.losses(b).mean() for b in batches]).mean())
        finally:
            self.mixers.train()


# ---------------------------------------------------------------------------------------------- stage 2
def student_from_stage1(teacher, stage1_student: HybridForCausalLM, softmax_layers, **options) -> HybridForCausalLM:
    """The stage-2 student: softmax layers restored from the teacher at `softmax_layers`, every other
    layer's linear mixer taken from the (all-linear) stage-1 student, everything else from the teacher
    (stage 1 never changes it). One stage-1 result feeds any number of stage-2 runs."""
    student, _ = build_student(teacher, softmax_layers, **options)
    for i in student.config.linear_layers:
        source = stage1_student.model.layers[i].linear_attn.state_dict()
        student.model.layers[i].linear_attn.load_state_dict(source, strict=True)
    return student


def mixer_param_names(model: nn.Module) -> set[str]:
    return {n for n, _ in model.named_parameters() if ".linear_attn." in n or ".self_attn." in n}


class Stage2:
    """KL distillation (stage 2) or CE fine-tuning (stage 3): the whole student trains."""

    def __init__(self, teacher, student: HybridForCausalLM, cfg: StageConfig, device, amp_dtype, chunk_tokens: int):
        self.teacher, self.student, self.cfg, self.device, self.amp = teacher, student, cfg, device, amp_dtype
        self.chunk_tokens = chunk_tokens
        for p in student.parameters():
            p.requires_grad_(True)
        student.train()
        self.mixer_names = mixer_param_names(student)

    def param_groups(self):
        mixers, rest = [], []
        for name, p in self.student.named_parameters():
            (mixers if name in self.mixer_names else rest).append(p)
        lr_mixer = self.cfg.lr_mixer if self.cfg.lr_mixer is not None else self.cfg.lr
        return [("mixers", mixers, lr_mixer), ("rest", rest, self.cfg.lr)]

    def _losses(self, batch: torch.Tensor):
        batch = batch.to(self.device)
        inputs, labels = batch, batch[:, 1:]
        t_hidden = None
        if self.cfg.kl_weight:
            with torch.no_grad(), autocast(self.device, self.amp):
                t_hidden = self.teacher.model(input_ids=inputs, use_cache=False).last_hidden_state[:, :-1]
        with autocast(self.device, self.amp):
            s_hidden = self.student.model(input_ids=inputs, use_cache=False).last_hidden_state[:, :-1]
        return chunked_distill_loss(
            s_hidden, self.student.lm_head.weight,
            t_hidden, self.teacher.lm_head.weight if t_hidden is not None else None,
            labels, temperature=self.cfg.temperature, kl_weight=self.cfg.kl_weight, ce_weight=self.cfg.ce_weight,
            chunk_tokens=self.chunk_tokens,
        )

    def loss_fn(self, batch):
        loss, kl, ce = self._losses(batch)
        metrics = {"loss": loss.item()}
        if self.cfg.kl_weight:
            metrics["kl"] = kl.item()
        if self.cfg.ce_weight:
            metrics["ce"] = ce.item()
        return loss, metrics

    @torch.no_grad()
    def evaluate(self, batches) -> float:
        """Held-out KL (stage 2) or CE (stage 3) per token."""
        self.student.eval()
        try:
            values = []
            for b in batches:
                _, kl, ce = self._losses(b)
                values.append(kl if self.cfg.kl_weight else ce)
            return float(torch.stack(values).mean())
        finally:
            self.student.train()
