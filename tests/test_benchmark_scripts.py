"""The benchmark scripts' pure logic (the GPU runs themselves are not tests): which head dims a kernels session
validated, and how convert_gpu.py reads throughput from metrics.jsonl; and the CPU engine-step benchmark, run at toy
size in the real vLLM-CPU engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import load_benchmark, needs_vllm

ROOT = Path(__file__).resolve().parents[1]


def _session(tmp_path, statuses, checks=None, K=64):
    probes = [{"probe": f"p{i}", "dims": [9, K, K], "dtype": "bfloat16", "variant": "default", "status": s}
              for i, s in enumerate(statuses)]
    # a bisect variant that failed must not count against the default path, nor one that passed for it
    probes.append({"probe": "p0", "dims": [9, K, K], "dtype": "bfloat16", "variant": "config 1", "status": "WRONG"})
    (tmp_path / "probes.json").write_text(json.dumps({"info": {}, "probes": probes, "bisect": []}))
    if checks is not None:
        (tmp_path / f"check_{K}.json").write_text(json.dumps([{"check": f"c{i}", "ok": ok} for i, ok in enumerate(checks)]))
    return tmp_path


def test_head_dims_verdict(tmp_path):
    verdict = load_benchmark("head_dims_verdict").verdict
    assert verdict(_session(tmp_path / "a", ["PASS", "PASS"], [True, True])) == ["64x64"]
    assert verdict(_session(tmp_path / "b", ["PASS", "WRONG"], [True])) == []       # one probe wrong
    assert verdict(_session(tmp_path / "c", ["PASS", "PASS"], [True, False])) == []  # one real-size check failed
    assert verdict(_session(tmp_path / "d", ["PASS", "PASS"], None)) == []           # checks never ran
    assert verdict(tmp_path / "nothing") == []


@pytest.fixture
def tmp_path(tmp_path):
    for sub in "abcd":
        (tmp_path / sub).mkdir()
    return tmp_path


def test_convert_gpu_steady_rate_and_shapes(tmp_path):
    cg = load_benchmark("convert_gpu")
    assert cg.shape("96x512:48") == (96, 512, 48) and cg.shape("8x128") == (8, 128, 8)
    rows = [{"step": 0, "tokens": 0, "eval": 1.0}]  # the starting evaluation has no timing
    # step 1 carries compilation (slow); steady state afterwards: 1000 tokens per 0.5 s
    rows += [{"step": s, "tokens": 1000 * s, "seconds": 30.0 + 0.5 * (s - 1)} for s in range(1, 8)]
    f = tmp_path / "metrics.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    assert cg.steady_rate(f) == pytest.approx(2000.0)
    f.write_text("\n".join(json.dumps(r) for r in rows[:3]))
    with pytest.raises(SystemExit, match="too few steps"):
        cg.steady_rate(f)


def test_serving_profile_summary_busy_share_and_host_ops(tmp_path):
    """The profile summary separates GPU busy time from the span (overlapping kernels counted once) and lists the
    host time of hybridserve's ops and of vLLM's host scopes."""
    summarise = load_benchmark("serving_profile").summarise
    events = [
        {"ph": "X", "cat": "kernel", "name": "k1", "ts": 0.0, "dur": 100.0},
        {"ph": "X", "cat": "kernel", "name": "k2", "ts": 50.0, "dur": 100.0},   # overlaps k1: busy 0..150
        {"ph": "X", "cat": "kernel", "name": "k1", "ts": 350.0, "dur": 50.0},   # gap 150..350: busy 200 of 400
        {"ph": "X", "cat": "cpu_op", "name": "vllm::hybridserve_linear_attention", "ts": 0.0, "dur": 30.0},
        {"ph": "X", "cat": "cpu_op", "name": "vllm::hybridserve_linear_attention", "ts": 60.0, "dur": 50.0},
        {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0.0, "dur": 5.0},
        {"ph": "X", "cat": "user_annotation", "name": "execute_model", "ts": 0.0, "dur": 300.0},
        {"ph": "X", "cat": "user_annotation", "name": "execute_context_2(64)_generation_3(3)", "ts": 0.0, "dur": 40.0},
        {"ph": "X", "cat": "user_annotation", "name": "execute_context_0(0)_generation_5(5)", "ts": 50.0, "dur": 10.0},
        {"ph": "X", "cat": "user_annotation", "name": "execute_context_0(0)_generation_5(5)", "ts": 70.0, "dur": 30.0},
    ]
    trace = tmp_path / "trace"
    trace.mkdir()
    (trace / "t.json").write_text(json.dumps({"traceEvents": events}))
    text = summarise(trace, tmp_path / "profile.md", steps=2)
    assert "GPU busy 0.2 ms of a 0.4 ms span (50%); 3 kernels." in text
    assert "| `vllm::hybridserve_linear_attention` | 0.08 | 2 | 40 | 1.0 |" in text
    assert "| `execute_model` | 0.30 | 1 | 0.150 |" in text  # host scopes, per step
    assert "| `execute_context_N(N)_generation_N(N)` | 0.08 | 3 | 0.040 |" in text  # digits folded: one row
    assert "| decode | 2 | 0.02 | 5 |" in text and "| mixed | 1 | 0.04 | 67 |" in text  # steps by kind
    assert "aten::mm" not in text  # device kernels exist: the table lists kernels, host rows only for our ops
    assert (tmp_path / "profile.md").read_text() == text


def test_serving_gpu_model_variants():
    """`<model>_bf16state` serves the same folder with a bfloat16 recurrent state, `_unpacked` without state packing,
    `_vllmsched` / `_hybridsched` with vLLM's or hybridserve's scheduler; the native anchor gets vLLM's Triton GDN
    prefill."""
    variant = load_benchmark("serving_gpu")._model_variant
    assert variant("qwen2_1p5b_hybrid") == ("qwen2_1p5b_hybrid", None, None)
    assert variant("qwen2_1p5b_hybrid_bf16state") == ("qwen2_1p5b_hybrid", {"mamba_ssm_cache_dtype": "bfloat16"}, None)
    assert variant("qwen3next_1p5b") == ("qwen3next_1p5b", {"additional_config": {"gdn_prefill_backend": "triton"}},
                                         None)
    # `_unpacked`: the same model with a state page per linear layer (state packing off), with or without bf16 state
    assert variant("qwen2_1p5b_hybrid_bf16state_unpacked") == (
        "qwen2_1p5b_hybrid", {"mamba_ssm_cache_dtype": "bfloat16", "hf_overrides": {"serve_state_pack": 1}}, None)
    assert variant("qwen2_1p5b_hybrid_bf16state_vllmsched") == (
        "qwen2_1p5b_hybrid", {"mamba_ssm_cache_dtype": "bfloat16"}, {"HYBRIDSERVE_STOCK_SCHEDULER": "1"})
    assert variant("qwen2_1p5b_hybridsched") == (
        "qwen2_1p5b", {"scheduler_cls": "hybridserve.serve.scheduler.HybridScheduler"}, None)
    assert variant("qwen2_1p5b_hybrid_bf16state_vllmsched_pdecode") == (
        "qwen2_1p5b_hybrid", {"mamba_ssm_cache_dtype": "bfloat16"},
        {"HYBRIDSERVE_STOCK_SCHEDULER": "1", "HYBRIDSERVE_GDN_DECODE": "persistent"})


def test_serve_layer_gpu_parses_mixed_steps():
    """serve_layer_gpu.py's --prefill: SEQSxLEN, or D+SEQSxLEN for a step with D decodes ahead of the prompts."""
    parse = load_benchmark("serve_layer_gpu").parse_prefill
    assert parse("8x1024, 256+15x1024,") == [(0, 8, 1024), (256, 15, 1024)]
    assert parse("") == []


def test_serve_check_gpu_common_prefix():
    """serve_check_gpu.py scores each prompt by the leading tokens vLLM and transformers share."""
    prefix = load_benchmark("serve_check_gpu").common_prefix
    assert prefix([1, 2, 3], [1, 2, 4]) == 2
    assert prefix([1, 2], [1, 2, 3]) == 2 and prefix([], [1]) == 0 and prefix([5], [6]) == 0


def test_serve_check_gpu_margins(tmp_path):
    """serve_check_gpu.py's teacher-forced margin: zero at every position for the model's own float32 greedy tokens,
    whole logits for tokens no engine would choose."""
    import torch

    check = load_benchmark("serve_check_gpu")
    path = check.build(tmp_path / "m", "qwen2_gdn", 32, torch.float32)
    prompts = [[11, 12, 13, 14, 15], list(range(20, 60))]
    greedy = check.reference(path, prompts, 8, torch.float32, "cpu")
    assert all(max(m) < 1e-4 for m in check.margins(path, prompts, greedy, "cpu"))
    wrong = [[(t + 97) % 200 + 10 for t in g] for g in greedy]
    assert all(max(m) > 1.0 for m in check.margins(path, prompts, wrong, "cpu"))


def test_serving_profile_step_annotation_both_formats():
    """vLLM's per-step annotation, old (`execute_context_2(64)_generation_3(3)`) and new format (total tokens first,
    `sq`/`sk` fields per group): prefill and decode requests and tokens read the same."""
    step = load_benchmark("serving_profile")._STEP
    old = step.fullmatch("execute_context_2(64)_generation_3(3)")
    new = step.fullmatch("execute_67_context_2(sq64sk64sqsq2048sqsk2048)_generation_3(sq3sk3000sqsq3sqsk3000)")
    assert old.groups() == new.groups() == ("2", "64", "3", "3")


def test_serving_profile_decode_step_periods():
    """Decode-only steps on the host clock: start-to-next-start period, the model runner's scope inside it, and the
    rest outside it; mixed steps and the last step (no successor) are left out."""
    period_lines = load_benchmark("serving_profile")._period_lines
    step = lambda name, ts, dur: {"ph": "X", "cat": "user_annotation", "name": name, "ts": ts, "dur": dur}  # noqa: E731
    decode = "execute_context_0(0)_generation_5(5)"
    events = [step("execute_context_2(64)_generation_3(3)", 0.0, 400.0), step(decode, 1000.0, 3000.0),
              step(decode, 9000.0, 5000.0), step(decode, 16000.0, 4000.0), step(decode, 30000.0, 1000.0)]
    text = "\n".join(period_lines(events))
    # periods 8, 7, 14 ms (median 8); inside 3, 5, 4 ms (median 4); outside 5, 2, 10 ms (median 5)
    assert "| period (start to next start) | 8.00 | 8.00 |" in text
    assert "| inside the model runner's scope | 4.00 | 4.00 |" in text
    assert "| outside it | 5.00 | – |" in text
    assert period_lines(events[:2]) == []  # fewer than two decode periods: nothing to say


@needs_vllm
def test_engine_steps_cpu_times_each_part_of_a_decode_step(tmp_path):
    """engine_steps_cpu.py in the real vLLM-CPU engine, at toy size: a teacher and a hybrid (2 softmax of 6 layers)
    unpacked and packed, each under vLLM's scheduler and hybridserve's; every decode-only step timed, the groups
    vLLM made reported."""
    out = tmp_path / "steps.md"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine_steps_cpu.py"), "--layers", "6",
                           "--softmax", "6,2", "--requests", "8", "--prompt", "8", "--output", "6", "--runs", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [(r["softmax"], r["pack"], r["groups"], r["scheduler"]) for r in rows] == [
        (k, pack, groups, scheduler) for k, pack, groups in [(6, 1, 1), (2, 1, 3), (2, 2, 2)]
        for scheduler in ("vllm", "hybridserve")]
    for r in rows:
        assert r["decode_steps"] == 5  # every step after the prefill one, all 8 requests decoding
        assert all(r[f"{part}_ms"] > 0 for part in ("schedule", "runner", "forward", "sample", "update"))
    assert "| 2 | 2 | hybridserve | 2 |" in out.read_text()


def test_decode_sweep_plumbing_on_cpu(tmp_path):
    """decode_sweep_gpu.py at toy size through the Triton interpreter (its timings are wall clock and mean
    nothing): the float64 check of both kernels runs and passes, and the JSON and table carry both kernels and
    both state dtypes, so the GPU call that depends on them cannot fail on plumbing."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_sweep_gpu.py"), "--cpu-smoke", "--quick",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("agree with float64") == 2, r.stdout
    rows = json.loads((tmp_path / "decode_sweep.json").read_text())["rows"]
    assert {(x["kernel"], x["state"]) for x in rows if "us" in x} == {
        (k, s) for k in ("old", "new", "copy") for s in ("float32", "bfloat16")}
    assert not [x for x in rows if "error" in x]
    table = (tmp_path / "decode_sweep.md").read_text()
    assert "| bfloat16 | 3 | new (defaults) |" in table and "old (one tile per program" in table
    assert "| float32 | 3 | copy of the same bytes |" in table


def test_decode_tile_grid_plumbing_on_cpu(tmp_path):
    """decode_sweep_gpu.py --tile-grid: the one-tile kernel's configs are checked against float64 and timed as
    "tile" rows of both state dtypes, and the persistent kernel's grid is left out."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "decode_sweep_gpu.py"), "--cpu-smoke", "--quick",
                        "--tile-grid", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("agree with float64") == 2, r.stdout
    rows = json.loads((tmp_path / "decode_sweep.json").read_text())["rows"]
    tiles = [x for x in rows if x["label"] == "tile"]
    assert {(x["state"], x["BV"], x["num_warps"]) for x in tiles} == {(s, 16, 1) for s in ("float32", "bfloat16")}
    assert all("us" in x for x in tiles) and not [x for x in rows if x["label"] == "new"]
    assert "| bfloat16 | 3 | tile | 16 | 1 |" in (tmp_path / "decode_sweep.md").read_text()


@pytest.mark.parametrize("what", ["fwd", "bwd", "gla_fwd", "gla_bwd", "decode"])
def test_ncu_script_plumbing_on_cpu(what):
    """ncu_kernels_gpu.py runs each path at toy size through the interpreter (on the GPU ncu wraps it; here it only
    has to run), so a profiling step of a GPU job cannot fail on plumbing."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ncu_kernels_gpu.py"), "--what", what,
                        "--cpu-smoke"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("state" if what == "decode" else "1x70"), r.stdout
    assert f"profiled one call: ours {what} " in r.stdout


def test_ncu_script_fla_needs_fla_or_says_so():
    """--impl fla profiles fla-core's op beside ours; where fla is missing (CI) it stops with one line, not a trace,
    and decode has no fla counterpart."""
    script = str(ROOT / "benchmarks" / "ncu_kernels_gpu.py")
    r = subprocess.run([sys.executable, script, "--what", "decode", "--impl", "fla", "--cpu-smoke"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert ("fla-core is not importable" in r.stderr) or ("not decode" in r.stderr), r.stderr[-2000:]
    assert "Traceback" not in r.stderr


def test_state_pass_plumbing_on_cpu(tmp_path):
    """state_pass_gpu.py at toy size through the Triton interpreter (timings are wall clock and mean nothing): its
    checks run and pass (pipelined configs against the 1-stage kernel and the float32 reference, the packed pool
    path bit for bit), and every step reaches the JSON and the tables the next GPU session reads."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "state_pass_gpu.py"), "--cpu-smoke", "--quick",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "state_pass.json").read_text())["rows"]
    checks = [x for x in rows if x["kind"].startswith("check")]
    assert len(checks) == 2 + 4 and all(x["ok"] for x in checks)  # 1-2 stages; 2 pool dtypes x stages 2, 3
    assert all(x["max_diff_vs_1_stage"] == 0 for x in checks if x["kind"] == "check_state")
    assert {(x["kind"], x["stages"]) for x in rows if x["kind"] in ("fwd_state", "bwd_dh")} == {
        (kind, s) for kind in ("fwd_state", "bwd_dh") for s in (1, 2)}
    assert {x["impl"] for x in rows if x["kind"] == "gdn_op"} == {
        "ours, defaults", "ours, 1 stage", "ours, 2 stages", "ours, 3 stages"}
    assert not [x for x in rows if any(isinstance(v, str) and "Error" in v for v in x.values())]
    table = (tmp_path / "state_pass.md").read_text()
    assert "## GDN backward: the dh pass alone (ms)" in table and "| 16 | 4 | 2 |" in table  # smoke tiles: BV 16


def test_short_prefill_plumbing_on_cpu(tmp_path):
    """short_prefill_gpu.py at toy size through the Triton interpreter (timings mean nothing): the fused kernel's
    checks run and pass at every chunk size and on the packed pool path, and each step reaches the JSON and tables."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "short_prefill_gpu.py"), "--cpu-smoke",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "short_prefill.json").read_text())["rows"]
    checks = [x for x in rows if x["kind"] == "check"]
    assert len(checks) == 2 * 2 + 2 and all(x["ok"] for x in checks)
    assert {(x["shape"], x["impl"]) for x in rows if x["kind"] == "size"} == {
        (s, i) for s in ("1x16", "1x40", "2x20 packed") for i in ("three kernels", "fused")}
    assert {x["impl"] for x in rows if x["kind"] == "serving_op"} == {"three kernels", "fused"}
    timed = [x for x in rows if x["kind"] in ("size", "serving_op", "sweep")]
    assert timed and all(isinstance(x["graph_ms"], float) for x in timed)  # a string would be a caught error
    assert "## The serving op (prologue + forward + pool)" in (tmp_path / "short_prefill.md").read_text()


def test_kernels_bench_gla_rows_without_the_reference(tmp_path):
    """kernels.py --no-ref: the GLA prefill rows of ours (and fla where importable) without the PyTorch reference,
    whose seconds per shape a short GPU job cannot spend; without the flag the reference row is there."""
    script = str(ROOT / "benchmarks" / "kernels.py")
    for flags, with_ref in (["--no-ref"], False), ([], True):
        out = tmp_path / ("noref" if flags else "ref")
        r = subprocess.run([sys.executable, script, "--cpu-smoke", "--sections", "gla_prefill", "--out", str(out),
                            *flags], capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        rows = [x for x in json.loads((out / "kernels_bench.json").read_text())["rows"] if x["kind"] == "gla_prefill"]
        assert {x["impl"] for x in rows} - {"fla"} == ({"ours", "torch ref"} if with_ref else {"ours"}), rows


def test_check_kernels_gdn_chunk_on_cpu(tmp_path):
    """check_kernels_gpu.py's GDN chunk group at toy size through the interpreter: every check passes, the JSON holds
    them, and the public op's row names its B x T (4 sequences on the GPU, where the default forward route is a fused
    one)."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "check_kernels_gpu.py"), "--cpu-smoke", "--only",
                        "gdn_chunk", "--json", str(tmp_path / "check.json")], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = json.loads((tmp_path / "check.json").read_text())
    assert rows and all(x["ok"] for x in rows)
    assert any(x["check"] == "gdn public chunk op o 2x40" for x in rows), [x["check"] for x in rows]


def test_kernels_bench_phases_name_the_route(tmp_path):
    """kernels.py's forward-by-kernel rows name the state + output route they ran, and a fused route's time is in
    the table (the nineteenth session's report left it out): split at the defaults here, the route set otherwise."""
    script = str(ROOT / "benchmarks" / "kernels.py")
    for route in ("", "fused-x-aqk"):
        out = tmp_path / (route or "default")
        env = dict(os.environ, HYBRIDSERVE_GDN_STATE_OUT=route)
        r = subprocess.run([sys.executable, script, "--cpu-smoke", "--sections", "chunk_phases", "--out", str(out)],
                           capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        rows = [x for x in json.loads((out / "kernels_bench.json").read_text())["rows"]
                if x["kind"] == "gdn_chunk_phases"]
        assert rows and all(x["route"] == (route or "split") for x in rows), rows
        timed = ("state_out_ms",) if route else ("state_ms", "out_ms")
        assert all(isinstance(x[t], float) for x in rows for t in ("prep_ms",) + timed), rows
        table = (out / "kernels_bench.md").read_text()
        assert "| state + out (fused) |" in table and f"| {route or 'split'} |" in table


def test_ncu_summary_one_row_per_launch(tmp_path):
    """ncu_summary.py reads Nsight Compute's text report: one row per launch (names with spaces and parentheses
    too), durations in ms whatever the unit, the sum per report; a missing file is one clear error."""
    ncu_summary = load_benchmark("ncu_summary")
    report = """==PROF== Disconnected from process 1
  _gdn_chunk_prep_kernel (4096, 16, 1)x(128, 1, 1), Context 1, Stream 7, Device 0, CC 9.0
    Section: GPU Speed Of Light Throughput
    DRAM Throughput                   %        44.28
    Duration                         ms         2.87
    Compute (SM) Throughput           %        33.96
    Local Memory Spilling Requests                        3,014,656
    Registers Per Thread             register/thread             164
    Theoretical Active Warps per SM        warp           12
  void at::vectorized_elementwise_kernel<8, at::FillFunctor<c10::BFloat16>> (int, T2, T3) (262144, 1, 1)x(128, 1, 1), \
Context 1, Stream 7, Device 0, CC 9.0
    Duration                         us       159.42
"""  # (the backslash joins the launch line, as ncu prints it)
    rows = ncu_summary.parse(report)
    assert [r["kernel"] for r in rows] == ["_gdn_chunk_prep_kernel",
                                          "void at::vectorized_elementwise_kernel<8, at::FillFunctor<c10::BFloat16>> "
                                          "(int, T2, T3)"]
    assert rows[0] == dict(kernel="_gdn_chunk_prep_kernel", grid=(4096, 16, 1), block=(128, 1, 1), dram_pct=44.28,
                           duration=2.87, sm_pct=33.96, spill_requests=3014656.0, registers=164.0, warps_per_sm=12.0)
    assert rows[1]["duration"] == pytest.approx(0.15942)
    (tmp_path / "a.txt").write_text(report)
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ncu_summary.py"), str(tmp_path / "a.txt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "| a | **sum** | | **3.03** |" in r.stdout, r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ncu_summary.py"), str(tmp_path / "none.txt")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no such report" in r.stderr


def test_kernels_bwd_gla_rows_time_both_backward_intra_methods(tmp_path):
    """kernels_bwd.py's GLA forward + backward rows: ours at the defaults and with the backward's intra dQ, dK by
    columns (HYBRIDSERVE_GLA_BWD_INTRA set only around that row), no PyTorch reference with --no-ref, at the B x T
    --shapes names (a malformed list: one clear error), only the rows --impls names."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_bwd.py"), "--cpu-smoke", "--sections", "gla",
                        "--no-ref", "--shapes", "1x40", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [x for x in json.loads((tmp_path / "kernels_bwd.json").read_text())["rows"] if x["kind"] == "gla_fwdbwd"]
    impls = {x["impl"] for x in rows} - {"fla chunk_gla"}
    assert impls == {"ours (Triton fwd + default Triton bwd)", "ours (bwd intra by columns)"}, rows
    assert all("fwdbwd_ms" in x and (x["B"], x["T"]) == (1, 40) for x in rows)  # --shapes replaced the grid
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_bwd.py"), "--cpu-smoke", "--sections", "gla",
                        "--no-ref", "--shapes", "1x40", "--impls", "default,fla", "--out", str(tmp_path / "some")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [x for x in json.loads((tmp_path / "some" / "kernels_bwd.json").read_text())["rows"]
            if x["kind"] == "gla_fwdbwd"]
    assert {x["impl"] for x in rows} - {"fla chunk_gla"} == {"ours (Triton fwd + default Triton bwd)"}  # --impls
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_bwd.py"), "--cpu-smoke", "--shapes", "8by4"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "--shapes" in r.stderr and "Traceback" not in r.stderr


def test_kernels_bwd_times_every_gdn_state_out_route(tmp_path):
    """kernels_bwd.py's GDN rows with --impls route: the forward's four non-default state + output routes
    (HYBRIDSERVE_GDN_STATE_OUT set around each row), each timed forward and forward + backward, none failing."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels_bwd.py"), "--cpu-smoke", "--sections",
                        "fwdbwd", "--no-ref", "--impls", "route", "--out", str(tmp_path)], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [x for x in json.loads((tmp_path / "kernels_bwd.json").read_text())["rows"] if x["kind"] == "gdn_fwdbwd"]
    assert [x["impl"] for x in rows] == [f"ours (state+out route {route})"
                                         for route in ("split", "fused-aqk", "fused-x", "fused-x-aqk")]
    assert all("fwd_ms" in x and "fwdbwd_ms" in x and "error" not in x for x in rows), rows


def test_chunk_configs_plumbing_on_cpu(tmp_path):
    """chunk_configs_gpu.py at toy size through the Triton interpreter (timings are wall clock and mean nothing):
    every candidate config of every GDN and GLA kernel, backward and forward, is pinned, launched by its check (the
    switches that choose it set, whatever the toy head dims' default), checked against the float32 reference and
    passes (the dqkw kernel's DK_T layout among them), and reaches the JSON and the tables; a malformed shape is one
    clear error."""
    script = str(ROOT / "benchmarks" / "chunk_configs_gpu.py")
    r = subprocess.run([sys.executable, script, "--cpu-smoke", "--out", str(tmp_path)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    cc = load_benchmark("chunk_configs_gpu")
    rows = json.loads((tmp_path / "chunk_configs.json").read_text())["rows"]
    want = {"wy": len(cc.WY_CANDIDATES), "dqkw": len(cc.DQKW_CANDIDATES), "dv_local": len(cc.DV_LOCAL_CANDIDATES),
            "dh": len(cc.DH_CANDIDATES), "prep": len(cc.PREP_CANDIDATES), "out": len(cc.OUT_CANDIDATES),
            **{name: len(tiles) for name, (_, tiles) in cc.STATE_OUT_SWEEPS.items()},
            **{name: len(cc.PREP_CANDIDATES) for name in ("prep_aqk", "prep_x", "prep_x_aqk")},
            "gla_intra": len(cc.GLA_INTRA_CANDIDATES), "gla_out": len(cc.GLA_OUT_CANDIDATES),
            "gla_state": len(cc.GLA_STATE_CANDIDATES), "gla_bwd_intra": len(cc.GLA_BWD_INTRA_CANDIDATES),
            "gla_bwd_inter": len(cc.GLA_BWD_INTER_CANDIDATES)}
    assert {k: sum(x["kernel"] == k for x in rows) for k in want} == want
    assert all(x["ok"] and x["worst_rel"] <= x["tol"] and isinstance(x["ms"], float) for x in rows), rows
    assert {x["tol"] for x in rows if x["kernel"] in cc.FORWARD} == {1e-2}
    assert {tuple(x["errors"]) for x in rows if x["kernel"] in ("out", "gla_out", *cc.STATE_OUT_SWEEPS)} == \
        {("o", "final state")}
    assert {tuple(x["errors"]) for x in rows if x["kernel"] == "gla_bwd_inter"} == {("dq", "dk", "dv", "dgk", "dh0")}
    assert any("DK_T=1" in x["config"] for x in rows if x["kernel"] == "dqkw")
    table = (tmp_path / "chunk_configs.md").read_text()
    assert all(f"## {k}\n" in table for k in want) and "| BK=64 w4 s3 |" in table
    r = subprocess.run([sys.executable, script, "--cpu-smoke", "--shape", "8by4"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "--shape" in r.stderr and "Traceback" not in r.stderr


def test_chunk_configs_a_wrong_config_fails_and_is_not_timed(monkeypatch):
    """A config whose outputs miss the tolerance (or are not finite) is reported FAIL and never timed."""
    # transformers' probe for Hugging Face's `kernels` may have imported this repository's kernels/ folder as a
    # top-level `kernels` by now (tests/test_kernels_import_name.py); the script must get its sibling kernels.py
    monkeypatch.delitem(sys.modules, "kernels", raising=False)
    cc = load_benchmark("chunk_configs_gpu")
    before = len(cc.kb.RESULTS["rows"])
    timed = []
    for kernel, worst in (("wy", cc.TOL["bwd"] * 3), ("out", float("nan")), ("prep", cc.TOL["fwd"] * 1.5)):
        r = dict(kind="config", kernel=kernel, config="bad", shape="1x1")
        cc.one(r, lambda: (worst, {"x": worst}), lambda: timed.append(1) or 1.0)
        assert r["ok"] is False and "ms" not in r
    r = dict(kind="config", kernel="dqkw", config="never launched", shape="1x1")  # right numbers, kernel not run
    cc.one(r, lambda: (0.0, {"dq": 0.0}), lambda: timed.append(1) or 1.0, launches=[])
    assert r["ok"] is False and "never launched" in r["error"] and "ms" not in r
    assert not timed and len(cc.kb.RESULTS["rows"]) == before + 4
    md = cc.markdown(cc.kb.RESULTS["rows"][before:], {"shape": "1x1", "check": "1x1"})
    assert md.count("| FAIL |") == 4
