"""One training stage: optimiser, LR schedule, gradient accumulation, progress, JSONL metrics, and
atomic, exactly-resumable checkpoints. Stages 1-3 differ only in the loss and the parameter groups.

A checkpoint holds the trainable state, the optimiser, the data position and every RNG, plus the
fingerprint of the configuration: `--resume` continues bit-for-bit where the last checkpoint left off,
and refuses a checkpoint written under a different configuration.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import distributed as dist
from .config import StageConfig
from .tracking import Trackers


class ResumeError(RuntimeError):
    """A checkpoint that cannot be resumed under the current configuration."""


def lr_at(step: int, total: int, base: float, cfg: StageConfig) -> float:
    """Learning rate of one parameter group at optimiser step `step` (0-based) of `total`."""
    if cfg.warmup_steps and step < cfg.warmup_steps:  # linear warm-up from 1 % (RADLADS' code)
        return base * (0.01 + 0.99 * step / cfg.warmup_steps)
    final = min(cfg.lr_final, base)
    if cfg.schedule == "constant":
        return base
    if cfg.schedule == "cosine":  # cosine from base to lr_final over the whole stage
        progress = step / max(total - 1, 1)
        return final + 0.5 * (base - final) * (1 + math.cos(math.pi * progress))
    # s-cos-s (RADLADS step 2a): flat, quarter-cosine down to lr_final, flat
    progress = step / max(total - 1, 1)
    if progress <= cfg.anneal_start:
        return base
    if progress >= cfg.anneal_end:
        return final
    span = (progress - cfg.anneal_start) / (cfg.anneal_end - cfg.anneal_start)
    return final + (base - final) * math.cos(math.pi / 2 * span)


@dataclass
class StageResult:
    steps: int
    tokens: int
    final_loss: float
    final_eval: float | None
    seconds: float
    tokens_per_s: float
    peak_memory_bytes: int | None  # CUDA allocator high-water mark of this stage (None on CPU)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Stage:
    """Runs `loss_fn(batch) -> (loss, metrics)` over `sampler` batches for cfg.tokens tokens.

    `param_groups`: [(name, params, base_lr)]. `trainable` is the module whose state is checkpointed.
    `evaluate()` returns a held-out score (lower is better) or None. `report_to` names trackers (tensorboard,
    wandb) that receive every metrics.jsonl record on rank 0; `run_config` is what W&B records as the run's config.
    """

    def __init__(self, name: str, folder: Path, cfg: StageConfig, *, trainable: torch.nn.Module, param_groups,
                 loss_fn: Callable, sampler, evaluate: Callable | None, fingerprint: str, console=None,
                 report_to=(), run_config: dict | None = None):
        self.name, self.folder, self.cfg = name, Path(folder), cfg
        self.report_to, self.run_config, self._trackers = list(report_to or []), run_config, None
        self.trainable, self.loss_fn, self.sampler, self.evaluate = trainable, loss_fn, sampler, evaluate
        self.fingerprint, self.console = fingerprint, console
        self.world = dist.world_size()
        self.accum = cfg.batch_size // (cfg.micro_batch_size * self.world)
        if self.accum < 1 or cfg.batch_size % (cfg.micro_batch_size * self.world):
            raise ResumeError(
                f"{name}: batch_size {cfg.batch_size} is not a multiple of micro_batch_size x ranks "
                f"({cfg.micro_batch_size} x {self.world})"
            )
        self.tokens_per_step = cfg.batch_size * cfg.seq_len
        self.total_steps = cfg.tokens // self.tokens_per_step
        self.groups = [(n, list(p), lr) for n, p, lr in param_groups if p]
        self.optimizer = torch.optim.AdamW(
            [{"params": p, "lr": lr, "name": n} for n, p, lr in self.groups],
            betas=(0.9, 0.95), eps=1e-8, weight_decay=cfg.weight_decay,
        )
        self.step = 0
        self.metrics_file = self.folder / "metrics.jsonl"
        self.checkpoint_file = self.folder / "checkpoint.pt"

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        state = {
            "stage": self.name,
            "fingerprint": self.fingerprint,
            "step": self.step,
            "model": dist.full_state_dict(self.trainable),
            "optimizer": dist.full_optimizer_state_dict(self.trainable, self.optimizer),
            "sampler": self.sampler.state_dict(),
            "rng": _rng_state(),
        }
        if dist.is_main():
            tmp = self.checkpoint_file.with_suffix(f".tmp-{os.getpid()}")
            torch.save(state, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.checkpoint_file)  # the rename is the commit: a crash never leaves half a file
        dist.barrier()

    def save_final_checkpoint(self) -> None:
        """The end-of-stage checkpoint (a finished stage resumes as finished). Subclasses that decide checkpoints
        themselves (layer selection's candidate runs) override it."""
        self.save_checkpoint()

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_file.exists():
            return False
        state = torch.load(self.checkpoint_file, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            raise ResumeError(
                f"{self.checkpoint_file} was written under a different configuration; resume with the same "
                f"settings, or start a new run folder"
            )
        dist.load_full_state_dict(self.trainable, state["model"])
        dist.load_full_optimizer_state_dict(self.trainable, self.optimizer, state["optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        self.step = state["step"]
        if dist.is_main():  # metrics past the checkpoint belong to the lost run: drop them
            self._truncate_metrics(self.step)
        return True

    def _truncate_metrics(self, step: int) -> None:
        if not self.metrics_file.exists():
            return
        kept = [line for line in self.metrics_file.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        self.metrics_file.write_text("".join(line + "\n" for line in kept))

    def _log(self, record: dict) -> None:
        if dist.is_main():
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self._trackers is not None:
                self._trackers.log(record)

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> StageResult:
        self.folder.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.load_checkpoint()
        if self.report_to and dist.is_main():  # only rank 0 reports, as only rank 0 writes metrics.jsonl
            self._trackers = Trackers(self.report_to, self.folder, self.name, run_config=self.run_config,
                                      start_step=self.step)
        try:
            return self._run(resumed)
        finally:
            if self._trackers is not None:
                self._trackers.close()
                self._trackers = None

    def _run(self, resumed: bool) -> StageResult:
        if resumed:
            self._say(f"{self.name}: resumed at step {self.step}/{self.total_steps}")
        else:
            if dist.is_main() and self.metrics_file.exists():
                self.metrics_file.unlink()
            if self.evaluate is not None:  # the starting point, so every curve shows what the stage bought
                self._log({"stage": self.name, "step": 0, "tokens": 0, "eval": self.evaluate()})
        start_time, start_step = time.time(), self.step
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        loss_value, eval_value = float("nan"), None
        params = [p for _, group, _ in self.groups for p in group]
        with self._progress() as progress:
            task = progress.add_task(self.name, total=self.total_steps, completed=self.step, loss=float("nan"), tps=0.0)
            while self.step < self.total_steps:
                for group, (_, _, base) in zip(self.optimizer.param_groups, self.groups):
                    group["lr"] = lr_at(self.step, self.total_steps, base, self.cfg)
                self.optimizer.zero_grad(set_to_none=True)
                metrics_sum: dict[str, float] = {}
                for _ in range(self.accum):
                    loss, metrics = self.loss_fn(self.sampler.next_batch())
                    (loss / self.accum).backward()
                    for key, value in metrics.items():
                        metrics_sum[key] = metrics_sum.get(key, 0.0) + float(value) / self.accum
                dist.sync_replicated_grads(params)
                grad_norm = dist.clip_grad_norm(params, self.cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                metrics_sum = dist.mean_over_ranks(metrics_sum)
                loss_value = metrics_sum.get("loss", float("nan"))
                elapsed = time.time() - start_time
                tps = (self.step - start_step) * self.tokens_per_step / max(elapsed, 1e-9)
                record = {"stage": self.name, "step": self.step, "tokens": self.step * self.tokens_per_step,
                          "lr": self.optimizer.param_groups[0]["lr"], "grad_norm": grad_norm, "tokens_per_s": tps,
                          "seconds": round(elapsed, 3), **metrics_sum}  # seconds since this process began the stage
                if self.evaluate is not None and (self.step % self.cfg.eval_every == 0 or self.step == self.total_steps):
                    eval_value = self.evaluate()
                    record["eval"] = eval_value
                if self.step % self.cfg.log_every == 0 or "eval" in record:
                    self._log(record)
                progress.update(task, completed=self.step, loss=loss_value, tps=tps)
                if self.step % self.cfg.checkpoint_every == 0 and self.step < self.total_steps:
                    self.save_checkpoint()
        self.save_final_checkpoint()
        seconds = time.time() - start_time
        return StageResult(
            self.step, self.step * self.tokens_per_step, loss_value, eval_value, seconds,
            (self.step - start_step) * self.tokens_per_step / max(seconds, 1e-9),
            torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
        )

    def _progress(self):
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=not dist.is_main(), transient=False,
        )

    def _say(self, text: str) -> None:
        if self.console is not None and dist.is_main():
            self.console.print(text)
