"""How `hybridserve convert` takes its softmax layers from a selection.

`convert --layers-from OUT/selection.json [--ratio R]`  SelectionFile: the top-K prefix of the file's ranking;
    the layers are known before the teacher loads, and the teacher is checked against the file's identity.
`convert --select ga-s2 [--ratio R]`  SelectDuringConvert: stage 1, then the selection (in RUN/selection,
    resumable like every stage) from the stage-1 student already in memory, then stage 2 with the chosen layers.
"""

from __future__ import annotations

from pathlib import Path

from .errors import SelectionError
from .identity import check_same_teacher
from .output import layers_from_selection, read_selection
from .settings import METHODS, SelectSettings

CONVERT_METHODS = tuple(m for m in METHODS if m not in ("manual",))


class SelectionFile:
    def __init__(self, path: str | Path, ratio: float | None = None, k: int | None = None):
        self.path = Path(path)
        self.data = read_selection(self.path)
        self.layers = layers_from_selection(self.data, ratio=ratio, k=k)

    def check_teacher(self, teacher, info) -> None:
        if teacher.config.num_hidden_layers != self.data["num_layers"]:
            raise SelectionError(f"{self.path} is for a {self.data['num_layers']}-layer teacher; this teacher has "
                                 f"{teacher.config.num_hidden_layers} layers")
        check_same_teacher(self.data["teacher"], teacher, info, where=str(self.path))

    def after_stage1(self, **_) -> list[int] | None:
        return None

    def provenance(self) -> dict:
        return {"selection": {"file": str(self.path), "method": self.data["method"], "ranking": self.data["ranking"]}}


class SelectDuringConvert:
    def __init__(self, method: str, ratio: float | None, sets: list[str] | None = None):
        from .settings import apply_sets

        if method not in CONVERT_METHODS:
            raise SelectionError(f"--select {method!r}: choose uniform or one of {', '.join(CONVERT_METHODS)}")
        self.settings = SelectSettings(method=method, ratio=ratio)
        apply_sets(self.settings, list(sets or []))
        self.settings.check()
        if self.settings.shard:
            raise SelectionError("convert --select runs the whole selection; shard it with `hybridserve select` instead")
        self.result: dict | None = None

    def check_teacher(self, teacher, info) -> None:
        from ..convert import distributed as dist

        if dist.world_size() > 1:
            raise SelectionError("convert --select cannot run under torchrun; run `hybridserve select` (with --workers) "
                                 "first, then `torchrun ... convert --layers-from SELECTION/selection.json`")

    def after_stage1(self, *, config, teacher, tokenizer, teacher_info, store, stage1_student, stage1_path, device, amp,
                     run_dir, console=None) -> list[int]:
        from .context import Context
        from .identity import teacher_identity
        from .runner import run_selection

        context = Context(config, self.settings, teacher, tokenizer, teacher_info, teacher_identity(teacher, teacher_info),
                          store, device, amp, stage1_student=stage1_student, stage1_path=Path(stage1_path))
        self.result = run_selection(config, self.settings, Path(run_dir) / "selection", console=console, context=context)
        primary = next(b for b in self.result["budgets"] if b.get("primary"))
        return list(primary["layers"])

    def provenance(self) -> dict:
        if self.result is None:
            return {}
        return {"selection": {"method": self.result["method"], "ranking": self.result["ranking"],
                              "folder": "selection"}}
