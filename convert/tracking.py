"""Optional experiment trackers next to metrics.jsonl: TensorBoard event files and Weights & Biases runs.

`RunConfig.report_to` names them ("tensorboard", "wandb"; empty by default). `check_trackers` runs at config
validation time, so a tracker whose library is missing fails before any model is loaded rather than an hour into
a run. Only rank 0 writes (the trainer creates `Trackers` on the main rank only); metrics.jsonl stays the source
of truth, trackers are views of the same records.

Layout: TensorBoard writes `<stage folder>/tensorboard/events.out.tfevents.*`, one scalar per metric, tagged
`<stage>/<metric>` at the optimiser step. W&B logs the same keys to one run per stage, named
`<run folder>-<stage>`, into `<stage folder>/wandb/` (set WANDB_MODE=offline to keep it local; WANDB_PROJECT picks
the project, default "hybridserve"). The W&B run id is derived from the stage folder, so a resumed stage continues
the same W&B run.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

TRACKERS = ("tensorboard", "wandb")
# What each tracker imports, and the pip requirement that provides it.
_MODULES = {"tensorboard": ("torch.utils.tensorboard", "tensorboard"), "wandb": ("wandb", "wandb")}


class TrackerError(ValueError):
    """A tracker that is unknown or whose library cannot be imported."""


def normalise_trackers(names) -> list[str]:
    """`report_to` as a list: accepts a list, a comma-separated string, or None / "none" for no tracker."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [n for n in names.replace(" ", "").split(",") if n]
    names = [str(n).strip().lower() for n in names]
    return [] if names in (["none"], []) else list(dict.fromkeys(names))


def check_trackers(names) -> list[str]:
    """The normalised tracker list; raises TrackerError if one is unknown or its library does not import."""
    names = normalise_trackers(names)
    for name in names:
        if name not in TRACKERS:
            raise TrackerError(f"report_to: unknown tracker {name!r}; choose from {', '.join(TRACKERS)} (or leave it empty)")
        module, requirement = _MODULES[name]
        try:
            __import__(module)
        except Exception as e:  # ImportError, or a broken install (protobuf mismatch, ...) that fails on import
            raise TrackerError(
                f"report_to: {name} was requested but `{module}` cannot be imported ({type(e).__name__}: {e}); "
                f"pip install {requirement}, or remove {name} from report_to"
            ) from None
    return names


def _scalars(record: dict) -> dict[str, float]:
    """The numeric, finite metrics of a metrics.jsonl record, without the bookkeeping fields."""
    out = {}
    for key, value in record.items():
        if key in ("stage", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Trackers:
    """Fans metrics.jsonl records out to the requested trackers. `start_step` > 0 means a resumed stage."""

    def __init__(self, names, folder: str | Path, stage: str, *, run_config: dict | None = None, start_step: int = 0):
        self.stage, self.folder = stage, Path(folder)
        self._tensorboard = self._wandb = None
        names = check_trackers(names)
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            # TensorBoard hides earlier events at or past purge_step: those a killed run wrote after the checkpoint
            # we resume from (metrics.jsonl drops them too), or everything of an attempt that is started again.
            self._tensorboard = SummaryWriter(log_dir=str(self.folder / "tensorboard"),
                                              purge_step=start_step + 1 if start_step else 0)
        if "wandb" in names:
            import wandb

            run_name = f"{self.folder.resolve().parent.name}-{stage}"
            # W&B adds wandb/ below `dir`: the files land in <stage folder>/wandb/.
            run_id = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
            self._wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "hybridserve"), name=run_name, id=run_id,
                                     dir=str(self.folder), config=run_config or {}, resume="allow", reinit="create_new")
            # Our `step` is the x axis (W&B's own step counter cannot go back after a resume).
            self._wandb.define_metric(f"{stage}/step")
            self._wandb.define_metric(f"{stage}/*", step_metric=f"{stage}/step")

    def log(self, record: dict) -> None:
        step = int(record.get("step", 0))
        scalars = _scalars(record)
        if self._tensorboard is not None:
            for key, value in scalars.items():
                self._tensorboard.add_scalar(f"{self.stage}/{key}", value, global_step=step)
        if self._wandb is not None:
            self._wandb.log({f"{self.stage}/step": step, **{f"{self.stage}/{k}": v for k, v in scalars.items()}})

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
