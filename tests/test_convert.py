"""`hybridserve convert` on a tiny teacher and a tiny local corpus: each stage does its job, runs resume
exactly after SIGKILL, two gloo ranks equal one process, and bad input fails early with one message."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from hybridserve.convert.config import ConfigError, build_config
from hybridserve.convert.pipeline import run_convert
from hybridserve.export import load_hybrid
from hybridserve.main import app

from .helpers import save_tiny_teacher

WORDS = "the a of to and in is was he that it his her for with as had you on at by not be this".split()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("convert")
    teacher = save_tiny_teacher(root / "teacher", "llama", num_hidden_layers=4, seed=3)
    rng = random.Random(0)
    corpus = root / "corpus.jsonl"
    with open(corpus, "w") as f:
        for _ in range(300):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))}) + "\n")
    return {"teacher": str(teacher), "corpus": str(corpus), "cache": root / "cache"}


@pytest.fixture(autouse=True)
def private_cache(assets, monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(assets["cache"]))


TINY = [
    "stage1.tokens=2560", "stage1.seq_len=32", "stage1.batch_size=4", "stage1.micro_batch_size=2",
    "stage1.checkpoint_every=4", "stage1.eval_every=5", "stage1.eval_blocks=2", "stage1.lr=0.003",
    "stage2.tokens=1280", "stage2.seq_len=32", "stage2.batch_size=2", "stage2.micro_batch_size=2",
    "stage2.checkpoint_every=4", "stage2.eval_every=5", "stage2.eval_blocks=2", "stage2.lr_mixer=0.001",
    "eval_fraction=0.1", "kl_chunk_tokens=16", "export_dtype=float32",
]


def tiny_config(assets, *extra, **overrides):
    return build_config("quick", None, {"teacher": assets["teacher"], "data": [assets["corpus"]],
                                        "softmax_layers": [2], **overrides}, TINY + list(extra))


def _metrics(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def test_pipeline_stages_do_their_jobs(assets, tmp_path):
    run = tmp_path / "run"
    summary = run_convert(tiny_config(assets), run)

    # stage 1 lowers the held-out alignment loss and changes nothing but the linear mixers
    s1 = _metrics(run / "stage1")
    assert s1[-1]["eval"] < s1[0]["eval"]
    stage1 = load_hybrid(run / "stage1" / "model")
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(assets["teacher"])
    ref_state = reference.state_dict()
    for name, value in stage1.state_dict().items():
        if ".linear_attn." not in name:
            assert torch.equal(value, ref_state[name]), name
    assert stage1.config.layer_types == ["linear_attention"] * 4

    # stage 2 lowers the held-out KL; the kept softmax layer starts from the teacher and is trained
    s2 = _metrics(run / "stage2")
    assert s2[-1]["eval"] < s2[0]["eval"]
    final = load_hybrid(run / "final")
    assert final.config.softmax_layers == [2]
    assert not torch.equal(final.model.layers[2].self_attn.q_proj.weight, reference.model.layers[2].self_attn.q_proj.weight)
    assert summary["final_stage"] == "stage2"
    saved = json.loads((run / "summary.json").read_text())
    assert set(saved["timings"]) >= {"stage1_s", "stage2_s"} and saved["versions"]["torch"] == torch.__version__


def test_stage3_starts_from_stage2_not_the_teacher(assets, tmp_path):
    run = tmp_path / "run"
    run_convert(tiny_config(assets, "stage3.enabled=true", "stage3.tokens=64", "stage3.seq_len=32",
                            "stage3.batch_size=2", "stage3.micro_batch_size=2", "stage3.lr=1e-12",
                            "stage3.lr_mixer=1e-12", "stage3.eval_blocks=1"), run)
    stage2 = load_hybrid(run / "stage2" / "model")
    final = load_hybrid(run / "final")
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(assets["teacher"])
    w2 = stage2.model.layers[2].self_attn.q_proj.weight
    w3 = final.model.layers[2].self_attn.q_proj.weight
    assert torch.allclose(w2, w3, atol=1e-8)  # stage 3 (lr 1e-12) kept the stage-2 softmax weights
    assert (w3 - teacher.model.layers[2].self_attn.q_proj.weight).abs().max() > 1e-5  # which are not the teacher's
    assert "ce" in _metrics(run / "stage3")[-1]


def _convert_command(assets, run, *extra):
    return [sys.executable, "-m", "hybridserve", "convert", assets["teacher"], "--data", assets["corpus"], "--out", str(run),
            "--softmax-layers", "2", *sum((["--set", s] for s in TINY + ["stage1.tokens=5120", "stage2.enabled=false"]), []),
            *extra]


def test_sigkill_then_resume_equals_uninterrupted(assets, tmp_path):
    env = dict(os.environ, HYBRIDSERVE_CACHE=str(assets["cache"]), PYTHONUNBUFFERED="1")
    straight = tmp_path / "straight"
    subprocess.run(_convert_command(assets, straight), check=True, env=env, capture_output=True, timeout=600)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_convert_command(assets, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = run / "stage1" / "checkpoint.pt", time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "the run ended before its first checkpoint"
    assert not (run / "final").exists() or proc.returncode == 0
    done = subprocess.run(_convert_command(assets, run, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    a, b = _metrics(straight / "stage1"), _metrics(run / "stage1")
    assert [m["step"] for m in a] == [m["step"] for m in b]
    assert abs(a[-1]["loss"] - b[-1]["loss"]) <= 1e-5 and abs(a[-1]["eval"] - b[-1]["eval"]) <= 1e-5


def test_two_gloo_ranks_equal_one_process(assets, tmp_path):
    env = dict(os.environ, HYBRIDSERVE_CACHE=str(assets["cache"]), OMP_NUM_THREADS="1")
    single, double = tmp_path / "one", tmp_path / "two"
    subprocess.run(_convert_command(assets, single), check=True, env=env, capture_output=True, timeout=600)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = _convert_command(assets, double)
    done = subprocess.run(torchrun + command[1:], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, "\n".join(l for l in done.stderr.splitlines() if not l.startswith("W1"))[-4000:]
    a, b = _metrics(single / "stage1"), _metrics(double / "stage1")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for key in ("loss", "eval"):
            if key in x:
                assert abs(x[key] - y[key]) <= 1e-4 * max(1.0, abs(x[key])), (key, x, y)


# ---------------------------------------------------------------------------------------------- bad input
def _cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def test_bad_inputs_fail_early(assets, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert "empty" in _cli("convert", assets["teacher"], "--data", empty, "--out", tmp_path / "a").lower()
    for ratio in ("1.5", "1", "0", "-0.25"):  # the softmax share must lie strictly inside (0, 1)
        assert "ratio" in _cli("convert", assets["teacher"], "--ratio", ratio, "--out", tmp_path / "b")
    assert "unknown tracker 'mlflow'" in _cli("convert", assets["teacher"], "--set", "report_to=mlflow", "--out",
                                              tmp_path / "b")
    assert "repeat" in _cli("convert", assets["teacher"], "--softmax-layers", "1,1", "--out", tmp_path / "c")
    assert "max_position_embeddings" in _cli("convert", assets["teacher"], "--data", assets["corpus"], "--out",
                                             tmp_path / "d", "--set", "stage1.seq_len=100000", "--set", "stage1.tokens=100000000")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write" in _cli("convert", assets["teacher"], "--data", assets["corpus"], "--out", blocker / "run")
    with pytest.raises(ConfigError, match="unknown field"):
        build_config("quick", None, None, ["stage1.tokenz=5"])


def test_resume_with_a_different_config_is_refused(assets, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(assets, "stage2.enabled=false")
    run_convert(config, run)
    changed = tiny_config(assets, "stage2.enabled=false", "stage1.lr=0.01")
    with pytest.raises(ConfigError, match="different configuration"):
        run_convert(changed, run, resume=True)
    with pytest.raises(ConfigError, match="--resume"):
        run_convert(config, run)
    # the same refusal from the command line: one line, exit status 1, the run folder untouched
    before = (run / "config.json").read_text()
    sets = sum((["--set", s] for s in TINY + ["stage2.enabled=false", "stage1.lr=0.01"]), [])
    output = _cli("convert", assets["teacher"], "--data", assets["corpus"], "--softmax-layers", "2", "--out", run,
                  "--resume", *sets)
    assert "different configuration" in output and "stage1" in output
    assert (run / "config.json").read_text() == before


@pytest.mark.slow
def test_real_smollm2_through_both_stages(tmp_path, monkeypatch):
    """The README's main job on the real teacher and the built-in corpus, cut to two steps per stage."""
    monkeypatch.delenv("HYBRIDSERVE_CACHE", raising=False)  # the real teacher and corpus live in the default cache
    config = build_config("quick", None, None, ["stage1.tokens=512", "stage2.tokens=512", "stage1.eval_blocks=1",
                                                "stage2.eval_blocks=1"])
    summary = run_convert(config, tmp_path / "run")
    final = load_hybrid(tmp_path / "run" / "final")
    assert final.config.softmax_layers == [1, 5, 9, 13, 16, 20, 24, 28]
    assert final.lm_head.weight.data_ptr() == final.model.embed_tokens.weight.data_ptr()
    for stage in ("stage1", "stage2"):
        assert summary["results"][stage]["steps"] == 2 and math.isfinite(summary["results"][stage]["final_eval"])


def test_report_to_tensorboard_through_convert_and_resume_without_it(assets, tmp_path):
    """`--set report_to=tensorboard` reaches every stage's trainer; trackers do not change results, so a resume
    may drop them (the configuration check ignores report_to)."""
    pytest.importorskip("tensorboard")  # in the test extra: CI always has it
    run = tmp_path / "run"
    short = ["stage1.tokens=256", "stage2.tokens=128"]
    run_convert(tiny_config(assets, *short, "report_to=tensorboard"), run)
    for stage in ("stage1", "stage2"):
        events = list((run / stage / "tensorboard").glob("events.out.tfevents.*"))
        assert events and events[0].stat().st_size > 0, stage
    summary = run_convert(tiny_config(assets, *short), run, resume=True)  # no tracker now: accepted
    assert summary["final_stage"] == "stage2"
