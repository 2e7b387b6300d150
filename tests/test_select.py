"""`hybridserve select` on a tiny teacher whose layer 2 is made decisive: GA-S2 and its variants rank it first,
runs are deterministic, shards merge into the unsharded result, worker processes equal one process, a SIGKILLed
selection resumes without recomputing finished rounds, and convert consumes the result."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from hybridserve.convert.config import build_config
from hybridserve.convert.pipeline import run_convert
from hybridserve.export import load_hybrid
from hybridserve.main import app
from hybridserve.selection.errors import SelectionError
from hybridserve.selection.runner import merge_shards, run_selection
from hybridserve.selection.settings import SelectSettings

from .helpers import needs_vllm, save_tiny_teacher

WORDS = "the a of to and in is was he that it his her for with as had you on at by not be this".split()
DECISIVE = 2
LAYERS = 4


def save_decisive_teacher(path, seed=3, zero_others=False):
    """A tiny llama whose layer-2 attention dominates: its q/v/o are scaled up (a sharp, strong attention that a
    linear mixer cannot copy), the other layers' attention outputs are scaled down to 5 % (or zeroed), and the
    embeddings are scaled so the logits (and so the KL) are far from uniform."""
    from safetensors.torch import load_file, save_file

    path = save_tiny_teacher(path, "llama", num_hidden_layers=LAYERS, seed=seed)
    state = load_file(str(path / "model.safetensors"))
    for i in range(LAYERS):
        prefix = f"model.layers.{i}.self_attn."
        if i == DECISIVE:
            state[prefix + "o_proj.weight"] *= 8.0
            state[prefix + "q_proj.weight"] *= 6.0
            state[prefix + "v_proj.weight"] *= 3.0
        else:
            state[prefix + "o_proj.weight"] *= 0.0 if zero_others else 0.05
    state["model.embed_tokens.weight"] *= 10.0
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


TINY = [
    "stage1.tokens=1280", "stage1.seq_len=32", "stage1.batch_size=4", "stage1.micro_batch_size=2",
    "stage1.checkpoint_every=10", "stage1.eval_every=10", "stage1.eval_blocks=2", "stage1.lr=0.003",
    "stage2.tokens=1280", "stage2.seq_len=32", "stage2.batch_size=2", "stage2.micro_batch_size=2",
    "stage2.checkpoint_every=10", "stage2.eval_every=10", "stage2.eval_blocks=2", "stage2.lr_mixer=0.001",
    "eval_fraction=0.1", "kl_chunk_tokens=64", "export_dtype=float32",
]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("select")
    teacher = save_decisive_teacher(root / "teacher")
    rng = random.Random(0)
    corpus = root / "corpus.jsonl"
    with open(corpus, "w") as f:
        for _ in range(300):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 80)))}) + "\n")
    os.environ["HYBRIDSERVE_CACHE"] = str(root / "cache")  # restored by the module's last fixture user below
    config = run_config({"teacher": str(teacher), "corpus": str(corpus)})
    stage1_run = root / "stage1-run"
    run_convert(config_with(config, "stage2.enabled=false"), stage1_run)
    return {"root": root, "teacher": str(teacher), "corpus": str(corpus), "cache": root / "cache",
            "stage1": str(stage1_run)}


@pytest.fixture(autouse=True)
def private_cache(assets, monkeypatch):
    monkeypatch.setenv("HYBRIDSERVE_CACHE", str(assets["cache"]))


def run_config(assets, *extra):
    return build_config("quick", None, {"teacher": assets["teacher"], "data": [assets["corpus"]]}, TINY + list(extra))


def config_with(config, *sets):
    return build_config("quick", None, {"teacher": config.teacher, "data": config.data}, TINY + list(sets))


def settings(assets, **kw):
    base = dict(method="ga-s2", ratio=0.25, tokens=768, rounds=4, window=3, stage1=assets["stage1"])
    return SelectSettings(**{**base, **kw})


@pytest.fixture(scope="module")
def ga_result(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("ga")
    os.environ["HYBRIDSERVE_CACHE"] = str(assets["cache"])
    return out, run_selection(run_config(assets), settings(assets), out)


def test_ga_s2_ranks_the_decisive_layer_first_and_writes_everything(ga_result):
    out, data = ga_result
    assert data["ranking"][0] == DECISIVE and sorted(data["ranking"]) == list(range(LAYERS))
    kl = data["scores"]["train_kl"]
    assert kl[str(DECISIVE)] < 0.5 * min(v for layer, v in kl.items() if layer != str(DECISIVE))
    assert data["scores"]["heldout_kl"][str(DECISIVE)] == min(data["scores"]["heldout_kl"].values())
    primary = next(b for b in data["budgets"] if b["primary"])
    assert primary["k"] == 1 and primary["layers"] == [DECISIVE]
    two = next(b for b in data["budgets"] if b["k"] == 2)
    assert set(primary["layers"]) < set(two["layers"])  # nested budgets from one ranking
    # memory: 1 of 4 layers keeps a KV cache (2 kv heads x 32 x K and V x 2 bytes), 3 keep a 4 x 32 x 32 fp32 state
    assert primary["memory"]["kv_bytes_per_token"] == 2 * 2 * 32 * 2
    assert primary["memory"]["state_bytes_per_sequence"] == 3 * 4 * 32 * 32 * 4
    assert [h["round"] for h in data["history"]] == [1, 2, 3, 4] and data["history"][-1]["tokens"] == 768
    assert data["tokens"]["spent"] == 4 * 768 and data["teacher"]["digest"]
    saved = json.loads((out / "selection.json").read_text())
    assert saved["ranking"] == data["ranking"] and saved["format"] == "hybridserve-selection"
    assert (out / "plot.png").stat().st_size > 1000 and "| 0.250 (requested) | 1 | [2] |" in (out / "report.md").read_text()
    assert not list((out / "passes").rglob("checkpoint.pt"))  # candidate checkpoints are removed once finished


def test_same_seed_same_result_and_shards_merge_to_it(assets, ga_result, tmp_path):
    """The shards recompute every candidate in other runs and another order: equal scores (exactly) show that a
    seed fixes the result, and the merge gives exactly the unsharded selection."""
    _, whole = ga_result
    for i in range(2):
        shard = run_selection(run_config(assets), settings(assets, shard=f"{i}/2"), tmp_path / f"shard{i}")
        assert shard["shard"] == f"{i}/2" and not (tmp_path / f"shard{i}" / "selection.json").exists()
    merged = merge_shards([tmp_path / "shard1", tmp_path / "shard0"], tmp_path / "merged")
    for key in ("ranking", "scores", "budgets", "early_stop"):
        assert merged[key] == whole[key], key
    assert [h["ranking"] for h in merged["history"]] == [h["ranking"] for h in whole["history"]]
    with pytest.raises(SelectionError, match="every shard exactly once"):
        merge_shards([tmp_path / "shard0", tmp_path / "shard0"], tmp_path / "bad")


def test_two_worker_processes_equal_one_process(assets, ga_result, tmp_path):
    _, whole = ga_result
    data = run_selection(run_config(assets), settings(assets, workers=2), tmp_path / "parallel")
    assert data["ranking"] == whole["ranking"]
    for key in ("train_kl", "heldout_kl"):
        for layer, value in whole["scores"][key].items():
            assert data["scores"][key][layer] == pytest.approx(value, rel=1e-4, abs=1e-6)
    pids = {json.loads(line)["pid"] for line in (tmp_path / "parallel" / "events.jsonl").read_text().splitlines()}
    assert len(pids) == 2 and os.getpid() not in pids


def test_parent_of_workers_keeps_its_context_on_the_cpu():
    """With worker processes the selecting process only plans and collects: its teacher and stage-1 copies stay off
    the GPU the workers share (on an H200 they pushed the fifth of five SmolLM2 workers out of memory)."""
    from hybridserve.selection.runner import parent_device

    cuda = torch.device("cuda", 0)
    assert parent_device(SelectSettings(method="ga-s2", workers=4), cuda).type == "cpu"
    assert parent_device(SelectSettings(method="ga-s2", workers=1), cuda) == cuda
    assert parent_device(SelectSettings(method="uniform", workers=4), cuda) == cuda  # computes in this process


def test_early_stop_saves_tokens(assets, ga_result, tmp_path):
    data = run_selection(run_config(assets), settings(assets, rounds=6, tokens=1152, threshold=1.0, patience=2),
                         tmp_path / "early")
    es = data["early_stop"]
    assert es["stopped_at_round"] == 3 and es["rounds_run"] == 3 and es["total_rounds"] == 6
    assert data["tokens"]["saved"] == data["tokens"]["spent"] == 4 * 3 * 192
    assert data["ranking"][0] == DECISIVE


def _select_command(assets, out, *extra):
    sets = [f"--set={item}" for item in TINY]
    return [sys.executable, "-m", "hybridserve", "select", assets["teacher"], "--data", assets["corpus"], "--out", str(out),
            "--stage1", assets["stage1"], "--tokens", "768", "--rounds", "4", "--window", "3", *sets, *extra]


@pytest.mark.parametrize("kill_after", [6, 13], ids=["round-2", "last-round"])
def test_sigkill_mid_selection_then_resume_recomputes_nothing_finished(assets, ga_result, tmp_path, kill_after):
    """4 candidates x 4 rounds = 16 candidate rounds; killed inside round 2, or inside the last round (which writes no
    checkpoints, only each finished candidate's scores)."""
    env = dict(os.environ, HYBRIDSERVE_CACHE=str(assets["cache"]), PYTHONUNBUFFERED="1")
    out = tmp_path / "killed"
    proc = subprocess.Popen(_select_command(assets, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events, deadline = out / "events.jsonl", time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if events.exists() and len(events.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [json.loads(line) for line in events.read_text().splitlines()]
    assert kill_after <= len(before) < 16, "the selection was not interrupted mid-way"
    last_round = [r for r in before if r["to_step"] == 12]
    assert not any(r["checkpointed"] for r in last_round)  # finished candidates are not written after the last round
    assert not (out / "selection.json").exists()
    done = subprocess.run(_select_command(assets, out), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    computed = [(r["candidate"], r["to_step"]) for r in records if r["computed_steps"]]
    assert len(computed) == len(set(computed)), "a finished candidate round was computed twice"
    assert {(r["candidate"], r["to_step"]) for r in records} == {(f"ga-{i:02d}", 3 * r) for i in range(4) for r in range(1, 5)}
    resumed = json.loads((out / "selection.json").read_text())
    _, straight = ga_result
    assert resumed["ranking"] == straight["ranking"]
    for layer, value in straight["scores"]["train_kl"].items():
        assert resumed["scores"]["train_kl"][layer] == pytest.approx(value, rel=1e-5)


@pytest.mark.parametrize("method", ["gr-s2", "avg-s2", "ga-s1"])
def test_variants_find_the_decisive_layer(assets, tmp_path, method):
    data = run_selection(run_config(assets), settings(assets, method=method, tokens=256, rounds=2), tmp_path / method)
    assert data["ranking"][0] == DECISIVE and data["method"] == method


def test_iterative_greedy_picks_then_rescores(assets, tmp_path):
    data = run_selection(run_config(assets), settings(assets, method="iterative", k=2, tokens=256, rounds=2), tmp_path / "it")
    assert data["ranking"][0] == DECISIVE and len(data["passes"]) == 2
    second = data["passes"][1]["ranking"]
    assert DECISIVE not in second and data["ranking"][1] == second[0]  # re-scored with layer 2 kept softmax
    assert (tmp_path / "it" / "passes" / "iterative-2" / "iterative-2-00" / "metrics.jsonl").exists()


def test_teacher_baselines_give_the_documented_sets(assets, tmp_path):
    """With the other layers' attention outputs exactly zero, switching them off changes nothing: their drops
    are exactly 0 and ties go to the lower index, so the ranking is [2, 0, 1, 3]."""
    teacher = save_decisive_teacher(tmp_path / "zeroed", zero_others=True)
    config = build_config("quick", None, {"teacher": str(teacher), "data": [assets["corpus"]]}, TINY)
    for method in ("ppl", "ablation", "ablation-multihop"):
        data = run_selection(config, SelectSettings(method=method, k=1, recall_samples=6, recall_pairs=8, ppl_blocks=2),
                             tmp_path / method)
        assert data["ranking"] == [DECISIVE, 0, 1, 3], method
        assert data["budgets"][0]["layers"] == [DECISIVE]
        drops = data["scores"]["importance"]
        if method == "ppl":
            assert drops[str(DECISIVE)] > 0 and all(drops[str(i)] == 0.0 for i in (0, 1, 3))
        else:
            per_layer = data["details"]["per_layer"]
            assert per_layer[str(DECISIVE)]["logprob_drop"] > 0
            assert all(per_layer[str(i)]["logprob_drop"] == 0.0 for i in (0, 1, 3))
    uniform = run_selection(config, SelectSettings(method="uniform", k=2, anchor="end"), tmp_path / "uniform")
    assert next(b for b in uniform["budgets"] if b["primary"])["layers"] == [1, 3]
    manual = run_selection(config, SelectSettings(method="manual", layers=[3, 0]), tmp_path / "manual")
    primary = next(b for b in manual["budgets"] if b["primary"])
    assert primary["k"] == 2 and primary["layers"] == [0, 3] and manual["ranking"] == [3, 0]


@needs_vllm
def test_measure_throughput_serves_the_teacher_and_every_budget_in_vllm(assets, tmp_path, monkeypatch):
    """--measure-throughput writes the teacher and each chosen set's stage-0 hybrid as model folders, serves each in
    vLLM with the same rows, and records per budget the output rate and its multiple of the teacher's; the
    selection itself is on disk before vLLM starts. A rerun serves nothing again."""
    from hybridserve.selection import throughput

    written = {}  # softmax layers of each model folder as written (the folders are deleted once served)
    save_budget = throughput._save_budget

    def record(context, layers, path, dtype):
        save_budget(context, layers, path, dtype)
        types = json.loads((path / "config.json").read_text())["layer_types"]
        written[path.name] = [i for i, t in enumerate(types) if t == "full_attention"]

    monkeypatch.setattr(throughput, "_save_budget", record)
    config = run_config(assets)
    chosen = SelectSettings(method="uniform", k=1, measure_throughput=True, throughput_rows="48:4:2")
    data = run_selection(config, chosen, tmp_path / "sel")
    run = data["throughput"]
    assert run["rows"] == [{"input_len": 48, "output_len": 4, "num_prompts": 2}]
    teacher = run["teacher"]["rows"][0]
    assert teacher["prompts"] == 2 and teacher["output_tok_s"] > 0
    assert [b["k"] for b in data["budgets"]] == [1, 2]
    for budget in data["budgets"]:
        row = budget["throughput"]["rows"][0]
        assert row["prompts"] == 2 and row["output_tok_s"] > 0
        assert row["vs_teacher"] == pytest.approx(row["output_tok_s"] / teacher["output_tok_s"])
        assert written[f"k{budget['k']:02d}"] == budget["layers"]
    assert not any((tmp_path / "sel" / "throughput" / "models").iterdir())  # served, then deleted
    on_disk = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert on_disk["throughput"] == run and on_disk["budgets"][0]["throughput"] == data["budgets"][0]["throughput"]
    assert "| 48 / 4 × 2 | " in (tmp_path / "sel" / "report.md").read_text()

    def no_vllm(*args, **kwargs):
        raise AssertionError("a finished model was served again")

    monkeypatch.setattr("hybridserve.serve.bench.run_model", no_vllm)
    again = run_selection(config, chosen, tmp_path / "sel")
    assert again["budgets"][1]["throughput"] == data["budgets"][1]["throughput"]


def test_measure_throughput_gives_the_models_back_where_they_were(monkeypatch):
    """Under `convert --select` the teacher and stage-1 student go on to stage 2: the measurement moves them off the
    device for vLLM and back afterwards, also when it fails."""
    from types import SimpleNamespace

    from hybridserve.selection import runner, throughput

    seen = {}

    def fake_measure(context, budgets, out, device, rows, log):
        seen["during"] = (next(context.teacher.parameters()).device.type, context.stage1_student.weight.dtype)
        raise RuntimeError("vLLM failed")

    monkeypatch.setattr(throughput, "measure_budgets", fake_measure)
    teacher, student = torch.nn.Linear(2, 2).to(torch.float64), torch.nn.Linear(2, 2)
    moves = []
    for model in (teacher, student):
        original = model.to
        model.to = lambda *a, _o=original, **k: (moves.append(a), _o(*a, **k))[1]
    context = SimpleNamespace(teacher=teacher, stage1_student=student)
    with pytest.raises(RuntimeError, match="vLLM failed"):
        runner.measure_throughput(context, {"budgets": []}, None, torch.device("cpu"), None)
    assert seen["during"] == ("cpu", torch.float32)
    assert moves == [("cpu",), ("cpu",), (torch.device("cpu"),), (torch.device("cpu"),)]  # off, then back home


# ---------------------------------------------------------------------------------------------- convert + errors
def _cli(*args, code=0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_convert_uses_a_selection_and_refuses_another_teachers(assets, ga_result, tmp_path):
    out, _ = ga_result
    sets = sum((["--set", s] for s in TINY + ["stage1.tokens=128", "stage2.tokens=64"]), [])
    _cli("convert", assets["teacher"], "--data", assets["corpus"], "--out", tmp_path / "run", "--layers-from",
         out / "selection.json", "--ratio", "0.25", *sets)
    assert load_hybrid(tmp_path / "run" / "final").config.softmax_layers == [DECISIVE]
    other = save_decisive_teacher(tmp_path / "other", seed=11)
    message = _cli("convert", str(other), "--data", assets["corpus"], "--out", tmp_path / "run2", "--layers-from",
                   out / "selection.json", *sets, code=1)
    assert "another teacher" in message


def test_convert_select_runs_stage1_selection_stage2_export(assets, tmp_path):
    sets = sum((["--set", s] for s in TINY + ["stage1.tokens=640", "stage2.tokens=64", "select.tokens=256",
                                              "select.rounds=2", "select.window=2"]), [])
    _cli("convert", assets["teacher"], "--data", assets["corpus"], "--out", tmp_path / "run", "--select", "ga-s2",
         "--ratio", "0.25", *sets)
    run = tmp_path / "run"
    selection = json.loads((run / "selection" / "selection.json").read_text())
    assert selection["ranking"][0] == DECISIVE
    assert load_hybrid(run / "final").config.softmax_layers == [DECISIVE]
    summary = json.loads((run / "summary.json").read_text())
    assert "selection_s" in summary["timings"]


def test_bad_inputs_fail_with_one_clear_message(assets, ga_result, tmp_path):
    out, _ = ga_result
    base = ["select", assets["teacher"], "--data", assets["corpus"], "--stage1", assets["stage1"]]
    assert "only 4 layers" in _cli(*base, "--out", tmp_path / "a", "--k", "9", code=1)
    assert "ratio must be in" in _cli(*base, "--out", tmp_path / "b", "--ratio", "0", code=1)
    assert "unknown selection method" in _cli(*base, "--out", tmp_path / "c", "--method", "best", code=1)
    assert "i/N" in _cli(*base, "--out", tmp_path / "d", "--shard", "2", code=1)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"layers": [1, 2]}))
    assert "not a hybridserve selection" in _cli("convert", assets["teacher"], "--out", tmp_path / "e", "--layers-from",
                                                 foreign, code=1)
    assert "cannot read the selection file" in _cli("convert", assets["teacher"], "--out", tmp_path / "e2",
                                                    "--layers-from", assets["corpus"], code=1)
    assert "no selection file" in _cli("convert", assets["teacher"], "--out", tmp_path / "f", "--layers-from",
                                       tmp_path / "missing.json", code=1)
    assert "ratio must be in" in _cli("convert", assets["teacher"], "--out", tmp_path / "g", "--layers-from",
                                      out / "selection.json", "--ratio", "1.5", code=1)
    other = save_decisive_teacher(tmp_path / "other", seed=11)
    assert "not distilled from this teacher" in _cli("select", str(other), "--data", assets["corpus"], "--stage1",
                                                     assets["stage1"], "--out", tmp_path / "h", code=1)
    assert "not a finished selection shard" in _cli("select-merge", tmp_path / "a", "--out", tmp_path / "m", code=1)
