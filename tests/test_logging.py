"""Optional trackers of `hybridserve convert` (RunConfig.report_to): TensorBoard event files and W&B offline runs
carry the same numbers as metrics.jsonl, survive a resume, are written by rank 0 only, and a missing library fails
at config validation. The trainer runs a toy regression here (the stages' losses are tested in test_convert.py)."""

from __future__ import annotations

import glob
import json
import struct
import sys
import time

import pytest
import torch

from hybridserve.convert import trainer as trainer_module
from hybridserve.convert.config import ConfigError, StageConfig, build_config
from hybridserve.convert.trainer import ResumeError, Stage


class RowSampler:
    """Deterministic rows of a fixed regression problem, resumable like BlockSampler."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
        self.position = 0

    def next_batch(self):
        i = self.position % len(self.x)
        self.position += 1
        return self.x[i:i + 1], self.y[i:i + 1]

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


class CrashAt(Exception):
    pass


def toy_stage(folder, report_to, *, steps=6, fingerprint="f0", crash_at=None, run_config=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    sampler = RowSampler()
    calls = [0]

    def loss_fn(batch):
        calls[0] += 1
        if crash_at is not None and calls[0] == crash_at:
            raise CrashAt(f"killed at forward {crash_at}")
        x, y = batch
        loss = (model(x).squeeze(-1) - y).pow(2).mean()
        return loss, {"loss": loss.item(), "mse": loss.item()}

    def evaluate():
        with torch.no_grad():
            return float((model(sampler.x).squeeze(-1) - sampler.y).pow(2).mean())

    cfg = StageConfig(tokens=steps, seq_len=1, batch_size=1, micro_batch_size=1, lr=0.05, schedule="constant",
                      checkpoint_every=2, eval_every=3)
    return Stage("stage1", folder, cfg, trainable=model, param_groups=[("all", list(model.parameters()), 0.05)],
                 loss_fn=loss_fn, sampler=sampler, evaluate=evaluate, fingerprint=fingerprint,
                 report_to=report_to, run_config=run_config)


def metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})  # 0 = keep every event
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_the_metrics_jsonl_numbers(tmp_path):
    folder = tmp_path / "stage1"
    toy_stage(folder, ["tensorboard"]).run()
    rows = metrics(folder)
    scalars = tensorboard_scalars(folder)
    assert {"stage1/loss", "stage1/mse", "stage1/lr", "stage1/grad_norm", "stage1/tokens_per_s", "stage1/eval",
            "stage1/tokens"} <= set(scalars)
    assert scalars["stage1/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in rows if "loss" in r]
    assert scalars["stage1/eval"] == [(r["step"], pytest.approx(r["eval"], rel=1e-6)) for r in rows if "eval" in r]
    assert [s for s, _ in scalars["stage1/eval"]] == [0, 3, 6]  # the starting point, every eval_every, the end
    assert scalars["stage1/eval"][-1][1] < scalars["stage1/eval"][0][1]  # a real training curve, not constants


def test_tensorboard_after_a_crash_and_resume_has_each_step_once(tmp_path):
    folder = tmp_path / "stage1"
    with pytest.raises(CrashAt):  # checkpoints at steps 2 and 4; steps 1-5 logged; dies in step 6
        toy_stage(folder, ["tensorboard"], crash_at=6).run()
    assert [r["step"] for r in metrics(folder)] == [0, 1, 2, 3, 4, 5]
    toy_stage(folder, ["tensorboard"]).run(resume=True)
    straight = tmp_path / "straight"
    toy_stage(straight, ["tensorboard"]).run()
    resumed, uninterrupted = tensorboard_scalars(folder)["stage1/loss"], tensorboard_scalars(straight)["stage1/loss"]
    assert [s for s, _ in resumed] == [1, 2, 3, 4, 5, 6]  # step 5 of the dead run is purged, then redone
    assert [v for _, v in resumed] == pytest.approx([v for _, v in uninterrupted], rel=1e-6)


def _wandb_history(run_file, wait_s: float = 120.0) -> tuple[list[dict], dict]:
    """History rows and config of a W&B offline run file (a LevelDB-style log of protobuf records).

    `run.finish()` only informs W&B's service process that the run is over; that process writes the
    file's buffered tail later (a CI run once read it while it held the header alone). So this waits,
    up to `wait_s`, for the run's closing `exit` record before it trusts what it read.
    """
    deadline = time.monotonic() + wait_s
    while True:
        rows, config, complete = _parse_wandb_run(run_file)
        if complete or time.monotonic() > deadline:
            assert complete, f"W&B never wrote the exit record of {run_file}"
            return rows, config
        time.sleep(0.2)


def _parse_wandb_run(run_file) -> tuple[list[dict], dict, bool]:
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, pending, rows, config = open(run_file, "rb").read(), 7, 32768, b"", [], {}
    complete = False
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (kind == 0 and length == 0) or pos + 7 + length > len(data):  # the end, or a record still being written
            break
        pending, pos = pending + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a FULL record or the LAST fragment of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
            elif record.WhichOneof("record_type") == "run":
                config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
            complete = complete or record.WhichOneof("record_type") == "exit"
    return rows, config, complete


def test_wandb_offline_run_holds_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    folder = tmp_path / "run" / "stage1"
    toy_stage(folder, ["wandb"], run_config={"teacher": "tiny", "seed": 0}).run()
    files = glob.glob(str(folder / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(files) == 1
    rows, config = _wandb_history(files[0])
    logged = [(r["stage1/step"], r["stage1/loss"]) for r in rows if "stage1/loss" in r]
    assert logged == [(r["step"], pytest.approx(r["loss"], rel=1e-9)) for r in metrics(folder) if "loss" in r]
    assert [r["stage1/eval"] for r in rows if "stage1/eval" in r] == pytest.approx(
        [r["eval"] for r in metrics(folder) if "eval" in r], rel=1e-9)
    assert config["teacher"] == "tiny" and config["seed"] == 0


def test_only_rank_zero_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module.dist, "is_main", lambda: False)
    folder = tmp_path / "stage1"
    toy_stage(folder, ["tensorboard"]).run()
    assert not (folder / "tensorboard").exists() and not (folder / "metrics.jsonl").exists()


def test_report_to_is_validated_with_the_config(monkeypatch):
    assert build_config("quick").report_to == []
    assert build_config("quick", sets=["report_to=tensorboard"]).report_to == ["tensorboard"]
    assert build_config("quick", sets=["report_to=[tensorboard, tensorboard]"]).report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="unknown tracker 'mlflow'"):
        build_config("quick", sets=["report_to=tensorboard,mlflow"])
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(ConfigError, match=r"tensorboard was requested.*pip install tensorboard"):
        build_config("quick", sets=["report_to=tensorboard"])
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"wandb was requested.*pip install wandb"):
        build_config("quick", overrides={"report_to": ["wandb"]})
    assert build_config("quick", sets=["report_to=none"]).report_to == []  # nothing named: nothing imported


def test_trackers_do_not_change_the_fingerprint():
    plain, tracked = build_config("quick"), build_config("quick", sets=["report_to=tensorboard"])
    assert plain.fingerprint("stage1") == tracked.fingerprint("stage1")
    assert plain.fingerprint("stage1") != build_config("quick", sets=["seed=1"]).fingerprint("stage1")


def test_checkpoint_of_another_configuration_is_refused(tmp_path):
    folder = tmp_path / "stage1"
    with pytest.raises(CrashAt):
        toy_stage(folder, [], crash_at=4).run()
    with pytest.raises(ResumeError, match="different configuration"):
        toy_stage(folder, [], fingerprint="another").run(resume=True)
