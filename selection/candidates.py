"""Candidate scoring runs: one short stage-2 KL run per candidate layer set, advanced in lock-step rounds.

A candidate reuses convert's machinery unchanged: the stage-2 student from the stage-1 checkpoint
(`student_from_stage1`), the Stage2 KL loss, the BlockSampler (same seed, so every candidate sees the same
batches in the same order) and the resumable Stage loop with its atomic checkpoints and metrics.jsonl.
Rounds: the Stage runs for the whole budget (so its LR schedule is the full run's), and a sampler wrapper
stops it when the round's last step is done; the candidate then waits (on the device, in CPU memory, or only
on disk) for the next round. Each round ends with a held-out evaluation (eval_every = steps per round).
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress

from ..convert.config import StageConfig
from ..convert.trainer import Stage
from .context import Context, stage1_digest
from .scoring import eval_at, read_metrics, window_mean


@dataclass(frozen=True)
class CandidateSpec:
    name: str  # folder name, unique within a selection: ga-07, gr-07, it2-07
    probe: int  # the layer this candidate scores
    softmax_layers: tuple  # the layers that are softmax in this candidate


class StopRound(Exception):
    """Raised by the sampler when the Stage is about to take the first step of the next round."""


class RoundSampler:
    """Wraps a BlockSampler; refuses the batch of step `stop_at` (no batch is consumed, so nothing is lost)."""

    def __init__(self, inner, stage_ref):
        self.inner, self.stage_ref, self.stop_at = inner, stage_ref, None

    def next_batch(self):
        if self.stop_at is not None and self.stage_ref().step >= self.stop_at:
            raise StopRound
        return self.inner.next_batch()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


class RoundStage(Stage):
    """convert's Stage, quiet, continuing from memory when the candidate never left it."""

    in_memory = False

    def load_checkpoint(self) -> bool:
        if self.in_memory:
            return True
        return super().load_checkpoint()

    def save_final_checkpoint(self) -> None:
        # The runner checkpoints candidates every `checkpoint_rounds` rounds and never after the last one (the pass
        # is over and its checkpoints are deleted). The trainer's own end-of-stage save would write every candidate
        # at the last round: 30 x 1.6 GB for SmolLM2, more than a 64 GB GPU machine's disk holds.
        pass

    def _progress(self):
        return Progress(disable=True)

    def _say(self, text: str) -> None:
        pass


def scoring_stage_config(base: StageConfig, tokens: int, rounds: int) -> tuple[StageConfig, int]:
    """The scoring runs' stage config and the steps per round: the budget is rounded up to whole rounds."""
    cfg = copy.deepcopy(base)
    per_step = cfg.batch_size * cfg.seq_len
    steps = max(1, tokens // per_step)
    rounds = min(rounds, steps)
    round_steps = -(-steps // rounds)
    cfg.tokens = round_steps * rounds * per_step
    cfg.eval_every = round_steps
    cfg.checkpoint_every = round_steps * rounds + 1  # the selection runner decides when to checkpoint
    cfg.log_every = 1
    return cfg, round_steps


def _move_optimizer(optimizer: torch.optim.Optimizer, device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                state[key] = value.to(device, non_blocking=True)


class CandidateRun:
    """One candidate's student, optimiser and data position, advanced round by round."""

    def __init__(self, context: Context, spec: CandidateSpec, cfg: StageConfig, folder: Path, fingerprint: str):
        from ..convert.data import BlockSampler, eval_batches
        from ..convert.stages import Stage2, student_from_stage1

        self.context, self.spec, self.cfg, self.folder = context, spec, cfg, Path(folder)
        c = context
        torch.manual_seed(c.config.seed)
        student = student_from_stage1(c.teacher, c.stage1_student, list(spec.softmax_layers), **c.student_options)
        self.student = student.float().to(c.device)
        self.runner = Stage2(c.teacher, self.student, cfg, c.device, c.amp, c.config.kl_chunk_tokens)
        sampler = BlockSampler(c.store, cfg.seq_len, cfg.micro_batch_size, seed=c.config.seed)
        held_out = eval_batches(c.store, cfg.seq_len, cfg.micro_batch_size, max_blocks=cfg.eval_blocks)
        self.sampler = RoundSampler(sampler, lambda: self.stage)
        self.stage = RoundStage(spec.name, self.folder, cfg, trainable=self.student, param_groups=self.runner.param_groups(),
                                loss_fn=self.runner.loss_fn, sampler=self.sampler,
                                evaluate=lambda: self.runner.evaluate(held_out), fingerprint=fingerprint)
        self.rng = None
        self.where = c.device

    @property
    def step(self) -> int:
        return self.stage.step

    def advance_to(self, end_step: int) -> int:
        """Train until optimiser step `end_step`; returns the steps actually computed."""
        self._to(self.context.device)
        if self.rng is not None:  # each candidate keeps its own RNG stream, whatever ran in between
            torch.set_rng_state(self.rng)
        before = self.stage.step
        self.sampler.stop_at = end_step
        try:
            self.stage.run(resume=True)
        except StopRound:
            pass
        self.stage.in_memory = True
        self.rng = torch.get_rng_state()
        self.stage.optimizer.zero_grad(set_to_none=True)  # the next step starts from zero anyway: free them now
        return self.stage.step - before

    def load_existing_checkpoint(self) -> int:
        """Resume from the candidate's checkpoint when there is one; the step it holds (0 if none)."""
        if self.stage.checkpoint_file.exists():
            self.stage.load_checkpoint()
            self.stage.in_memory = True
        return self.stage.step

    def checkpoint(self) -> None:
        self.stage.save_checkpoint()

    def scores(self, end_step: int, window: int) -> dict:
        records = read_metrics(self.stage.metrics_file)
        return {"train_kl": window_mean(records, end_step, window, "kl"), "heldout_kl": eval_at(records, end_step)}

    def park(self, keep: str) -> None:
        """Between rounds: stay on the device, or move to CPU memory."""
        if keep == "cpu":
            self._to(torch.device("cpu"))

    def _to(self, device) -> None:
        if self.where == device:
            return
        self.student.to(device)
        _move_optimizer(self.stage.optimizer, device)
        self.where = device


def candidate_fingerprint(context: Context, cfg: StageConfig, spec: CandidateSpec) -> str:
    c = context.config
    data = {"run": c.fingerprint(), "stage": cfg.__dict__, "softmax_layers": list(spec.softmax_layers),
            "teacher": context.identity["digest"], "stage1": stage1_digest(context.stage1_student)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


class LocalExecutor:
    """Advances candidates in this process, one at a time, keeping them between rounds as `keep` says."""

    def __init__(self, context: Context, cfg: StageConfig, folder: Path, events):
        self.context, self.cfg, self.folder, self.events = context, cfg, Path(folder), events
        self.runs: dict[str, CandidateRun] = {}
        self._fingerprints: dict[str, str] = {}

    def _run_for(self, spec: CandidateSpec) -> CandidateRun:
        run = self.runs.get(spec.name)
        if run is None:
            run = CandidateRun(self.context, spec, self.cfg, self.folder / spec.name, self._fingerprint(spec))
            run.load_existing_checkpoint()
        return run

    def advance(self, specs: list[CandidateSpec], end_step: int, round_index: int, last: bool, window: int,
                on_done=None) -> dict[str, dict]:
        settings = self.context.settings
        results = {}
        for spec in specs:
            start = time.time()
            finished = self._finished(spec, end_step) if last else None
            if finished is not None:  # its last round ran before a crash: the scores were kept, the weights need not be
                results[spec.name] = finished
                self.events({"event": "advanced", "candidate": spec.name, "from_step": end_step, "to_step": end_step,
                             "computed_steps": 0, "checkpointed": False, "pid": os.getpid(), "seconds": 0.0})
                if on_done is not None:
                    on_done(spec.name)
                continue
            run = self._run_for(spec)
            from_step = run.step
            computed = run.advance_to(end_step)
            checkpointed = False
            # after the last round the pass is finished and its checkpoints are deleted: writing them is waste (1.6 GB
            # per SmolLM2 candidate) unless asked to keep them; a small record of the final scores keeps a crash from
            # recomputing it
            due = settings.keep == "disk" or round_index % settings.checkpoint_rounds == 0
            if computed and (settings.keep_checkpoints if last else due):
                run.checkpoint()
                checkpointed = True
            results[spec.name] = run.scores(end_step, window)
            if last:
                self._write_finished(spec, end_step, results[spec.name])
            if settings.keep == "disk":
                self.runs.pop(spec.name, None)
                del run
                gc.collect()  # the run holds reference cycles (stage <-> sampler): free its tensors now
            else:
                run.park(settings.keep)
                self.runs[spec.name] = run
            self.events({"event": "advanced", "candidate": spec.name, "from_step": from_step, "to_step": end_step,
                         "computed_steps": computed, "checkpointed": checkpointed, "pid": os.getpid(),
                         "seconds": round(time.time() - start, 3)})
            if on_done is not None:
                on_done(spec.name)
        return results

    def _fingerprint(self, spec: CandidateSpec) -> str:
        if spec.name not in self._fingerprints:
            self._fingerprints[spec.name] = candidate_fingerprint(self.context, self.cfg, spec)
        return self._fingerprints[spec.name]

    def _finished(self, spec: CandidateSpec, end_step: int) -> dict | None:
        marker = self.folder / spec.name / "finished.json"
        if not marker.exists():
            return None
        data = json.loads(marker.read_text())
        ok = data.get("step") == end_step and data.get("fingerprint") == self._fingerprint(spec)
        return data["scores"] if ok else None

    def _write_finished(self, spec: CandidateSpec, end_step: int, scores: dict) -> None:
        marker = self.folder / spec.name / "finished.json"
        tmp = marker.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"step": end_step, "fingerprint": self._fingerprint(spec), "scores": scores}))
        os.replace(tmp, marker)

    def release(self) -> None:
        self.runs.clear()
        gc.collect()
