"""Parallel candidate runs on the devices of one machine: one worker process per GPU (or per CPU slice; with
more workers than GPUs, worker i uses GPU i mod #GPUs, which helps small models that cannot fill a GPU).

Each worker builds its own context (teacher, data, stage-1 student) on its device and keeps its candidates
(those with index % workers == worker) between rounds; the parent process sends "advance to step S" for
every round and collects the scores, so candidates stay in lock step exactly as in a sequential run.
"""

from __future__ import annotations

import os
import queue
import traceback
from pathlib import Path

import torch

from .errors import SelectionError


def _worker_main(index: int, workers: int, payload: dict, inbox, outbox) -> None:
    parent = os.getppid()
    try:
        from ..convert.config import RunConfig, StageConfig, _merge
        from .candidates import CandidateSpec, LocalExecutor
        from .context import load_context, pick_device
        from .rounds import append_event
        from .settings import SelectSettings

        config = RunConfig()
        _merge(config, payload["config"], "worker")
        settings = SelectSettings(**payload["settings"])
        # more workers than GPUs share them round-robin: small models leave a GPU mostly idle per process
        device = pick_device(config, index % torch.cuda.device_count() if torch.cuda.is_available() else None)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:  # share the CPU cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
        context = load_context(config, settings, Path(payload["stage1"]), device, progress=False)
        cfg = StageConfig(**payload["stage_cfg"])
        folder = Path(payload["folder"])
        events = Path(payload["events"])
        executor = LocalExecutor(context, cfg, folder, lambda record: append_event(events, record))
        outbox.put(("ready", index, None))
        while True:
            try:
                message = inbox.get(timeout=5)
            except queue.Empty:
                if os.getppid() != parent:  # the parent died (e.g. SIGKILL): do not linger as an orphan
                    return
                continue
            if message[0] == "stop":
                executor.release()
                outbox.put(("stopped", index, None))
                return
            _, specs, end, round_index, last, window = message
            specs = [CandidateSpec(name, probe, tuple(layers)) for name, probe, layers in specs]
            results = executor.advance(specs, end, round_index, last, window)
            outbox.put(("result", index, results))
    except BaseException:  # report any failure to the parent, which raises it as one error
        outbox.put(("error", index, traceback.format_exc()))


class ProcessExecutor:
    """The LocalExecutor interface, spread over `workers` processes."""

    def __init__(self, context, cfg, folder: Path, workers: int, events: Path):
        import dataclasses

        import torch.multiprocessing as mp

        payload = {"config": context.config.to_dict(), "settings": context.settings.to_dict(),
                   "stage1": str(context.stage1_path), "stage_cfg": dataclasses.asdict(cfg), "folder": str(folder), "events": str(events)}
        ctx = mp.get_context("spawn")
        self.workers = workers
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(workers)]
        self.procs = [ctx.Process(target=_worker_main, args=(i, workers, payload, self.inboxes[i], self.outbox), daemon=True)
                      for i in range(workers)]
        for p in self.procs:
            p.start()
        self._collect("ready")

    def _collect(self, kind: str) -> dict:
        results, pending = {}, set(range(self.workers))
        while pending:
            try:
                tag, index, data = self.outbox.get(timeout=30)
            except queue.Empty:
                dead = [i for i in pending if not self.procs[i].is_alive()]
                if dead:
                    self.release()
                    raise SelectionError(f"selection worker(s) {dead} died without a result (out of memory?)") from None
                continue
            if tag == "error":
                self.release()
                raise SelectionError(f"selection worker {index} failed:\n{data}")
            if tag == kind:
                pending.discard(index)
                if data:
                    results.update(data)
        return results

    def advance(self, specs, end_step: int, round_index: int, last: bool, window: int, on_done=None) -> dict:
        for i in range(self.workers):
            mine = [(s.name, s.probe, list(s.softmax_layers)) for j, s in enumerate(specs) if j % self.workers == i]
            self.inboxes[i].put(("advance", mine, end_step, round_index, last, window))
        results = self._collect("result")
        if on_done is not None:
            for name in results:
                on_done(name)
        return {s.name: results[s.name] for s in specs}

    def release(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive():
                self.inboxes[i].put(("stop",))
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self.procs = []
        self.workers = 0
