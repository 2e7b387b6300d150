"""`hybridserve bench`: a hybrid against its teacher (and any other model) in vLLM on the same machine.

Each model runs in its own process (`bench_worker.py`) with the same engine settings and the same workloads
(rows of input length × output length × number of prompts, sent at once). The report gives, per row, output
and total tokens/s, TTFT and time per output token (median and p90), the ratio to the baseline, and per model
the cache bytes per sequence and the concurrency vLLM admits at the benchmark's context length. Random-token
prompts and a fixed number of generated tokens (EOS ignored) make speed independent of what the weights say,
so random-weight models of a real shape are fine for speed; the report says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GPU_ROWS = "1024:256:512,8192:256:128,32768:128:32,128:1024:512"
CPU_ROWS = "64:16:4,256:16:2"


from ..files import write_json_atomic
from .server import python_command


class BenchError(ValueError):
    """Bad benchmark input, or a model that failed to run."""


@dataclass
class BenchModel:
    name: str
    path: str
    engine_args: dict | None = None  # extra vLLM engine arguments for this model only (e.g. a backend choice)
    env: dict | None = None  # extra environment for this model's worker process


def parse_rows(text: str) -> list[dict]:
    """'1024:256:512,8192:256:128,32768:256:max' -> rows of input_len, output_len, num_prompts ("max": as many as
    each model's engine admits at once)."""
    rows = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        fields = part.split(":")
        try:
            values = [int(f) for f in fields[:2]] + [fields[2] if fields[2:] == ["max"] else int(fields[2])]
        except (ValueError, IndexError):
            values = []
        if len(fields) != 3 or len(values) != 3 or min(v for v in values if v != "max") < 1:
            raise BenchError(f"row {part!r} is not INPUT:OUTPUT:PROMPTS with positive integers (PROMPTS may be max)")
        rows.append({"input_len": values[0], "output_len": values[1], "num_prompts": values[2]})
    if not rows:
        raise BenchError("no benchmark rows given")
    return rows


def _config(path: str) -> dict:
    file = Path(path) / "config.json"
    if not file.is_file():
        raise BenchError(f"{path} is not a model folder with a config.json")
    return json.loads(file.read_text())


def cache_bytes(config: dict, tokens: int, dtype_bytes: int = 2) -> dict:
    """KV bytes/token and state bytes/sequence as vLLM stores them, for our hybrids and plain dense models."""
    if config.get("model_type") == "hybridserve":
        from hybridserve.export.memory import memory_summary

        s = memory_summary(config, dtype_bytes)
        kv, state = s["hybrid_kv_bytes_per_token"], s["state_bytes_per_sequence"]
    elif config.get("layer_types") and "linear_attention" in config["layer_types"]:
        return {"kv_bytes_per_token": None, "state_bytes_per_sequence": None, "bytes_per_sequence": None}
    else:
        heads = config["num_attention_heads"]
        head_dim = config.get("head_dim") or config["hidden_size"] // heads
        kv = config["num_hidden_layers"] * 2 * config.get("num_key_value_heads", heads) * head_dim * dtype_bytes
        state = 0
    return {"kv_bytes_per_token": kv, "state_bytes_per_sequence": state, "bytes_per_sequence": kv * tokens + state}


def cpu_model() -> str:
    """The CPU's model name (Linux), else the architecture: host-bound numbers describe this machine."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict:
    """Where a benchmark ran. The host CPU is named on GPU machines too: vLLM's steps at short context are
    host-bound, and the same card's rates moved by a third between hosts (docs/benchmarks/serving.md, run 6)."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "host": f"{cpu_model()} ({os.cpu_count()} cores)"}
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["device"] = torch.cuda.get_device_name(0)
        else:
            info["device"] = f"CPU ({os.cpu_count()} cores, {cpu_model()})"
    except ImportError:
        pass
    from .compat import vllm_version

    info["vllm"] = vllm_version()
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


_CONCURRENCY = re.compile(r"Maximum concurrency for ([\d,]+) tokens per request: ([\d.]+)x")
_KV_TOKENS = re.compile(r"KV cache size: ([\d,]+) tokens")


def _copy_log(stream, logf, name: str, log) -> None:
    """The worker's output into its log file; each finished row is also reported through `log`."""
    for line in stream:
        logf.write(line)
        if line.startswith('{"row"'):
            row = json.loads(line)["row"]
            log(f"  {name}: {row['input_len']}/{row['output_len']} x {row['num_prompts']}: "
                f"{row['output_tok_s']:.0f} output tok/s, {row['total_tok_s']:.0f} total tok/s")


def _fingerprint(path: str) -> list:
    """The model folder's files (name, size, modification time): a re-exported model is not the one measured."""
    folder = Path(path)
    return sorted([f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in folder.iterdir() if f.is_file()) \
        if folder.is_dir() else []


def run_model(model: BenchModel, rows: list[dict], work: Path, engine: dict, timeout: float, log=print,
              resume: bool = False) -> dict:
    """Run one model's rows in a fresh process; return its result (raises BenchError with the log tail).

    Every complete result is kept in WORK/<name>.measured.json with what it measured (the worker's spec, this
    machine, the model's files, the HYBRIDSERVE_* and VLLM_* environment). resume=True returns that result instead
    of serving again when all of it still matches: a benchmark rerun after a crash serves only the models it had
    not finished."""
    spec = {"name": model.name, "model": model.path, "rows": rows, **engine, "engine_args": model.engine_args or {}}
    spec_file, out_file, log_file = work / f"{model.name}.spec.json", work / f"{model.name}.json", work / f"{model.name}.log"
    record = work / f"{model.name}.measured.json"
    settings_env = {k: v for k, v in {**os.environ, **(model.env or {})}.items()
                    if k.startswith(("HYBRIDSERVE_", "VLLM_"))}  # the switches that change what runs
    key = json.loads(json.dumps({"spec": spec, "machine": machine(), "files": _fingerprint(model.path),
                                 "env": settings_env}))
    if resume and record.is_file():
        earlier = json.loads(record.read_text())
        if earlier.get("measured") == key:
            log(f"  {model.name}: reusing its result from an earlier run ({record})")
            return earlier["result"]
    spec_file.write_text(json.dumps(spec, indent=2))
    out_file.unlink(missing_ok=True)  # an earlier run's result must not pass for this one's
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env.update(model.env or {})
    started = time.perf_counter()
    with open(log_file, "w") as logf:
        # its own process group: vLLM's engine core is a child of the worker, and a stopped run must take it along
        proc = subprocess.Popen([*python_command(), "-m", "hybridserve.serve.bench_worker", str(spec_file), str(out_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        # the log is copied by a thread, so the time limit holds even while the worker prints nothing
        reader = threading.Thread(target=_copy_log, args=(proc.stdout, logf, model.name, log), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - started)))
            stopped = None if proc.returncode == 0 else f"failed in vLLM (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            stopped = f"did not finish within {timeout:.0f} s"
        if stopped is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=30)
    text = log_file.read_text()
    # the worker rewrites out_file after every row, so a model stopped part-way keeps the rows it measured
    result = json.loads(out_file.read_text()) if out_file.is_file() else None
    if stopped is None and (result is None or not result.get("complete")):
        stopped = "ended without its result"
    if stopped is not None:
        tail = "\n".join(text.strip().splitlines()[-15:])
        if not result or not result.get("rows"):
            raise BenchError(f"{model.name} {stopped}; log {log_file}:\n{tail}")
        result["incomplete"] = f"{stopped} after {len(result['rows'])} of {len(rows)} rows (log: {log_file})"
        log(f"  {model.name} {result['incomplete']}; its finished rows are kept")
    if result.get("max_concurrency") is None and (m := _CONCURRENCY.search(text)):
        result["max_concurrency"] = float(m.group(2))
    if result.get("kv_cache_tokens") is None and (m := _KV_TOKENS.search(text)):
        result["kv_cache_tokens"] = int(m.group(1).replace(",", ""))
    config = _config(model.path)
    state_dtype = (model.engine_args or {}).get("mamba_ssm_cache_dtype")
    if state_dtype not in (None, "auto"):  # the server's state dtype, not the checkpoint's, is what the pool holds
        config = {**config, "linear_state_dtype": state_dtype}
    result["cache"] = cache_bytes(config, engine["max_model_len"], 4 if engine["dtype"] == "float32" else 2)
    if not result.get("incomplete"):
        write_json_atomic(record, {"measured": key, "result": result})
    return result


def engine_settings(rows: list[dict], configs: dict, *, max_model_len: int | None = None, dtype: str = "auto",
                    gpu_memory_utilization: float = 0.9, max_num_seqs: int = 256, enforce_eager: bool = False,
                    repeats: int = 1) -> dict:
    """The engine settings every model shares; the context length covers the longest row. repeats: timed runs of
    every row (bench_worker reports the median one)."""
    if repeats < 1:
        raise BenchError(f"--repeats must be at least 1, not {repeats}")
    longest = max(r["input_len"] + r["output_len"] for r in rows)
    limit = min(c.get("max_position_embeddings", longest) for c in configs.values())
    if longest > limit:
        raise BenchError(f"the longest row needs {longest} tokens but a model allows only {limit} positions")
    if max_model_len is not None and max_model_len < longest:
        raise BenchError(f"--max-model-len {max_model_len} is shorter than the longest row ({longest} tokens)")
    settings = {"max_model_len": max_model_len or longest, "dtype": dtype,
                "gpu_memory_utilization": gpu_memory_utilization, "max_num_seqs": max_num_seqs,
                "enforce_eager": enforce_eager}
    return {**settings, "repeats": repeats} if repeats > 1 else settings


def run_bench(models: list[BenchModel], rows: list[dict], out_dir: Path, *, command: str = "", timeout: float = 3600,
              log=print, resume: bool = True, **settings) -> dict:
    """Benchmark `models` (the first is the hybrid, the second the baseline) and write bench.json/.md/.png.
    resume: reuse a model's complete result from an earlier run in the same folder when nothing it depends on
    changed (run_model)."""
    if len(models) < 2:
        raise BenchError("bench needs a model and a baseline")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise BenchError(f"model names repeat: {names}")
    configs = {m.name: _config(m.path) for m in models}
    engine = engine_settings(rows, configs, **settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "runs"
    work.mkdir(exist_ok=True)
    results = []
    for model in models:
        log(f"running {model.name} ({model.path})")
        results.append(run_model(model, rows, work, engine, timeout, log, resume=resume))
    report = write_report(results, rows, engine, out_dir, hybrid=names[0], baseline=names[1], command=command)
    stopped = [f"{r['name']} {r['incomplete']}" for r in results if r.get("incomplete")]
    if stopped:  # the report keeps what was measured, and the command still fails
        raise BenchError("incomplete benchmark (bench.md marks the missing rows): " + "; ".join(stopped))
    return report


def write_report(results: list[dict], rows: list[dict], engine: dict, out_dir: Path, *, hybrid: str, baseline: str,
                 command: str = "", machine_info: dict | None = None) -> dict:
    """bench.json, bench.md and bench.png from per-model results (also used to assemble runs made piecewise)."""
    report = {"machine": machine_info or machine(), "command": command, "engine": engine, "rows": rows,
              "models": results, "hybrid": hybrid, "baseline": baseline,
              "note": "random-token prompts, fixed output length (EOS ignored); speed does not depend on the weights"}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bench.json").write_text(json.dumps(report, indent=2))
    (out_dir / "bench.md").write_text(markdown(report))
    plot(report, out_dir / "bench.png")
    return report


def _fmt(value, scale: float = 1.0, digits: int = 0) -> str:
    return "–" if value is None else f"{value * scale:,.{digits}f}"


def _spread(row: dict, key: str) -> str:
    """" [low – high]" over a row's repeated runs, or nothing for a single run."""
    values = [r[key] for r in row.get("repeats", []) if r.get(key) is not None]
    return f" [{min(values):,.0f} – {max(values):,.0f}]" if len(values) > 1 else ""


def scheduler_name(qualname: str | None) -> str:
    """The engine's scheduler as the report names it: vLLM's own, or hybridserve's (serve/scheduler.py)."""
    if not qualname:
        return "vLLM's"
    return "hybridserve's (serve/scheduler.py)" if qualname.startswith("hybridserve.") else f"`{qualname}`"


def markdown(report: dict) -> str:
    m = report["machine"]
    base = next(r for r in report["models"] if r["name"] == report["baseline"])
    lines = [f"Device: {m.get('device')}" + (f" (host: {m['host']})" if m.get("host") else "") +
             f"; vLLM {m.get('vllm')}, torch {m.get('torch')}, transformers "
             f"{m.get('transformers')}. Engine: {report['engine']}.", "",
             f"Command: `{report['command']}`" if report["command"] else "", "", report["note"] + ".", "",
             "| in / out × prompts | model | output tok/s | total tok/s | × baseline (output) | full-concurrency decode "
             "tok/s (× baseline) | TTFT median / p90 (ms) | TPOT median / p90 (ms) |", "|---|---|---|---|---|---|---|---|"]
    for i, row in enumerate(report["rows"]):
        for model in report["models"]:
            if i >= len(model["rows"]):  # a model stopped before this row (its `incomplete` says why)
                lines.append(f"| {row['input_len']} / {row['output_len']} × {row['num_prompts']} | {model['name']} | "
                             "did not finish | – | – | – | – | – |")
                continue
            r = model["rows"][i]
            b = base["rows"][i] if i < len(base["rows"]) else None
            count = row["num_prompts"] if row["num_prompts"] != "max" else f"max ({r.get('prompts')})"
            label = f"{row['input_len']} / {row['output_len']} × {count}"
            ratio = f"{r['output_tok_s'] / b['output_tok_s']:.2f}" if b else "–"
            decode = _fmt(r.get("decode_tok_s"))
            if r.get("decode_tok_s") and b and b.get("decode_tok_s"):
                decode += f" ({r['decode_tok_s'] / b['decode_tok_s']:.2f})"
            lines.append(f"| {label} | {model['name']} | {_fmt(r['output_tok_s'])}{_spread(r, 'output_tok_s')} | "
                         f"{_fmt(r['total_tok_s'])} | "
                         f"{ratio} | {decode} | {_fmt(r['ttft_median_s'], 1e3, 1)} / {_fmt(r['ttft_p90_s'], 1e3, 1)} | "
                         f"{_fmt(r['tpot_median_s'], 1e3, 2)} / {_fmt(r['tpot_p90_s'], 1e3, 2)} |")
    lines += [f"\n**{m['name']} is incomplete:** {m['incomplete']}." for m in report["models"] if m.get("incomplete")]
    lines += ["", "Full-concurrency decode: output tokens per second between the last request's first token and the "
              "first request's last one (every request decoding, no prefill); – when the requests ran in waves."]
    if report["engine"].get("repeats", 1) > 1:
        lines += ["", f"Each row ran {report['engine']['repeats']} times per model; the table shows the run with the "
                  "median output rate, and [the lowest – the highest] output rate of the runs."]
    lines += ["", f"Cache per sequence at {report['engine']['max_model_len']} tokens and the concurrency vLLM admits:", "",
              "| model | KV bytes/token | state bytes/sequence | bytes/sequence | KV pool (tokens) | max concurrency | "
              "start-up (s) | scheduler |", "|---|---|---|---|---|---|---|---|"]
    for model in report["models"]:
        c = model["cache"]
        lines.append(f"| {model['name']} | {_fmt(c['kv_bytes_per_token'])} | {_fmt(c['state_bytes_per_sequence'])} | "
                     f"{_fmt(c['bytes_per_sequence'])} | {_fmt(model.get('kv_cache_tokens'))} | "
                     f"{_fmt(model.get('max_concurrency'), 1, 1)} | {model['startup_s']:.0f} | "
                     f"{scheduler_name(model.get('scheduler'))} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Output tokens/s against context length (input + output), one line per model, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model in report["models"]:
        points = sorted((r["input_len"] + r["output_len"], r["output_tok_s"]) for r in model["rows"])
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model["name"])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("context length (input + output tokens)")
    ax.set_ylabel("output tokens / s")
    ax.set_title(f"vLLM throughput on {report['machine'].get('device')}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
