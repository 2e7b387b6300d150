"""Where a vLLM step of a hybrid spends its time: torch-profiler trace of one workload, summarised per kernel.

  python benchmarks/serving_profile.py MODEL OUT_DIR [--rows 1024:256:512,1024:1:256,128:256:512] [--max-model-len 4096]
      [--eager] [--prefix-caching]      # MODEL: a model folder, or <folder>_bf16state as serving_gpu.py names the variants

Runs MODEL in vLLM (same settings as `hybridserve bench`), warms up, then profiles each row with vLLM's own torch
profiler (`profiler_config`), and writes OUT_DIR/profile.md (and one profile-<row>.md per row): GPU busy share of
the span, host time inside hybridserve's ops, device time per kernel name (top 40) with launch counts, and per-step
averages, so a slow row can be explained by bytes and launches rather than guessed. The
engine core is a spawned process: the code stays under the __main__ guard.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import random
import re
import sys
import time
from pathlib import Path


def summarise(trace: Path, out: Path, steps: int) -> str:
    """Summarise one trace file (or the last trace in a folder) into `out`; returns the markdown."""
    files = [trace] if trace.is_file() else _traces(trace)
    if not files:
        raise SystemExit(f"no trace written under {trace}")
    events = json.loads(gzip.open(files[-1]).read() if files[-1].suffix == ".gz" else files[-1].read_text())
    events = events.get("traceEvents", events)
    kernels = collections.defaultdict(lambda: [0.0, 0])
    cpu_ops = collections.defaultdict(lambda: [0.0, 0])
    for e in events:
        if e.get("ph") != "X":
            continue
        bucket = kernels if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") else (
            cpu_ops if e.get("cat") == "cpu_op" else None)
        if bucket is not None:
            bucket[e["name"]][0] += e.get("dur", 0.0)
            bucket[e["name"]][1] += 1
    table = kernels or cpu_ops  # on a CPU machine there are no device kernels (CPU ops nest: shares overlap)
    total = sum(v[0] for v in table.values()) or 1.0
    lines = [f"Trace: {files[-1].name}; {'device kernels' if kernels else 'CPU ops'}; total {total / 1e3:.1f} ms "
             f"over ~{steps} engine steps ({total / 1e3 / max(steps, 1):.2f} ms per step).", ""]
    lines += _busy_lines(events) + _host_lines(cpu_ops, steps) + _scope_lines(events, steps)
    lines += ["| name | time (ms) | share | launches | per step |", "|---|---|---|---|---|"]
    for name, (dur, count) in sorted(table.items(), key=lambda kv: -kv[1][0])[:40]:
        short = name if len(name) < 90 else name[:87] + "..."
        lines.append(f"| `{short}` | {dur / 1e3:.2f} | {dur / total:.1%} | {count} | {count / max(steps, 1):.1f} |")
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


def _busy_lines(events: list) -> list[str]:
    """How much of the profiled span the GPU was busy (union of kernel intervals): far below 100 % means the
    steps are host-bound (launch and Python overhead), not limited by kernel time."""
    spans = sorted((e["ts"], e["ts"] + e.get("dur", 0.0)) for e in events
                   if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    if not spans:
        return []
    busy, (cur_s, cur_e) = 0.0, spans[0]
    for s, e in spans[1:]:
        if s > cur_e:
            busy, cur_s, cur_e = busy + cur_e - cur_s, s, e
        else:
            cur_e = max(cur_e, e)
    busy += cur_e - cur_s
    span = spans[-1][1] - spans[0][0]
    return [f"GPU busy {busy / 1e3:.1f} ms of a {span / 1e3:.1f} ms span ({busy / max(span, 1e-9):.0%}); "
            f"{len(spans)} kernels.", ""]


# vLLM's per-step annotation: `execute_context_<reqs>(<tokens>)_generation_<reqs>(<tokens>)` in older releases,
# `execute_<total>_context_<reqs>(sq<tokens>sk..)_generation_<reqs>(sq<tokens>sk..)` in newer ones.
_STEP = re.compile(r"execute_(?:\d+_)?context_(\d+)\((?:sq)?(\d+)[^)]*\)_generation_(\d+)\((?:sq)?(\d+)[^)]*\)")


def _scope_lines(events: list, steps: int, top: int = 15) -> list[str]:
    """vLLM's host-side scopes (record_function annotations), digits folded so that one scope is one row, and its
    engine steps by kind (`execute_context_<prefill reqs>(<tokens>)_generation_<decode reqs>(<tokens>)`): how many
    prefill-only, decode-only and mixed steps ran and their mean host time each."""
    scopes = collections.defaultdict(lambda: [0.0, 0])
    kinds = collections.defaultdict(lambda: [0.0, 0, 0])  # host us, steps, tokens
    for e in events:
        if e.get("ph") != "X" or e.get("cat") != "user_annotation":
            continue
        dur = e.get("dur", 0.0)
        scopes[re.sub(r"\d+", "N", e["name"])][0] += dur
        scopes[re.sub(r"\d+", "N", e["name"])][1] += 1
        if m := _STEP.fullmatch(e["name"]):
            prefill, decode = int(m.group(1)), int(m.group(3))
            kind = "mixed" if prefill and decode else ("prefill" if prefill else "decode" if decode else "empty")
            kinds[kind][0] += dur
            kinds[kind][1] += 1
            kinds[kind][2] += int(m.group(2)) + int(m.group(4))
    if not scopes:
        return []
    lines = _period_lines(events)
    if kinds:
        lines += ["| engine steps | count | host ms per step | tokens per step |", "|---|---|---|---|"]
        for kind, (dur, count, tokens) in sorted(kinds.items()):
            lines.append(f"| {kind} | {count} | {dur / 1e3 / count:.2f} | {tokens / count:,.0f} |")
        lines.append("")
    lines += ["| host scope | host ms | calls | ms per step |", "|---|---|---|---|"]
    for name, (dur, count) in sorted(scopes.items(), key=lambda kv: -kv[1][0])[:top]:
        short = name if len(name) < 90 else name[:87] + "..."
        lines.append(f"| `{short}` | {dur / 1e3:.2f} | {count} | {dur / 1e3 / max(steps, 1):.3f} |")
    return lines + [""]


def _period_lines(events: list) -> list[str]:
    """Decode-only steps on the host's clock: the period from one step's start to the next one's, split into the
    model runner's own scope and the rest (the engine core's scheduling and output handling, and any wait for the
    GPU). Two models whose runner scopes match but whose periods differ spend the difference outside the model."""
    steps = sorted((e["ts"], e.get("dur", 0.0), m) for e in events
                   if e.get("ph") == "X" and e.get("cat") == "user_annotation" and (m := _STEP.fullmatch(e["name"])))
    periods, inside = [], []
    for (t0, dur, m), (t1, _, _) in zip(steps, steps[1:]):
        if int(m.group(1)) == 0 and int(m.group(3)) > 0:  # decode-only
            periods.append((t1 - t0) / 1e3)
            inside.append(dur / 1e3)
    if len(periods) < 2:
        return []

    def median(xs):
        return sorted(xs)[len(xs) // 2]

    def p90(xs):
        return sorted(xs)[int(0.9 * (len(xs) - 1))]

    return ["| decode steps (host clock) | median ms | p90 ms |", "|---|---|---|",
            f"| period (start to next start) | {median(periods):.2f} | {p90(periods):.2f} |",
            f"| inside the model runner's scope | {median(inside):.2f} | {p90(inside):.2f} |",
            f"| outside it | {median([p - i for p, i in zip(periods, inside)]):.2f} | – |", ""]


def _host_lines(cpu_ops: dict, steps: int) -> list[str]:
    """Host time inside hybridserve's own ops (the linear layer's custom op runs eagerly in mixed steps)."""
    rows = [(n, d, c) for n, (d, c) in cpu_ops.items() if "hybridserve" in n]
    if not rows:
        return []
    lines = ["| host op | host ms | calls | µs per call | per step |", "|---|---|---|---|---|"]
    for name, dur, count in sorted(rows, key=lambda r: -r[1]):
        lines.append(f"| `{name}` | {dur / 1e3:.2f} | {count} | {dur / max(count, 1):.0f} | {count / max(steps, 1):.1f} |")
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("out", type=Path)
    p.add_argument("--rows", default="1024:256:512,1024:1:256,128:256:512")
    p.add_argument("--max-model-len", type=int, default=4096)
    p.add_argument("--eager", action="store_true")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--prefix-caching", action="store_true", help="turn vLLM's prefix caching on (the benchmark has it off)")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    trace_dir = (a.out / "trace").resolve()
    import os

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # CPU build only: a small KV cache for a smoke run
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    from vllm import LLM, SamplingParams

    from serving_gpu import _model_variant  # (this folder is on sys.path when run as a script)

    # MODEL may name a serving_gpu.py variant: `.../<folder>_bf16state`, or a qwen3next model (engine arguments as the
    # serving benchmark runs them)
    model = Path(a.model)
    folder, extra, env = _model_variant(model.name)
    os.environ.update(env or {})
    # Prefix caching off by default, as `hybridserve bench` runs every model (bench_worker.py). vLLM's own default
    # turns it on, and with it the hybrids' "align" state mode (a state block per block of tokens, copied at each
    # boundary): the profiles of run 4 (docs/benchmarks/serving-runs-1-5.md) ran that way, unlike the benchmark rows.
    profiler = {"profiler": "torch", "torch_profiler_dir": str(trace_dir), "torch_profiler_with_stack": False}
    llm = LLM(model=str(model.parent / folder), dtype=a.dtype, max_model_len=a.max_model_len, enforce_eager=a.eager,
              seed=0, max_num_seqs=512, enable_prefix_caching=a.prefix_caching, profiler_config=profiler,
              **(extra or {}))
    vocab = min(llm.llm_engine.model_config.get_vocab_size(), len(llm.get_tokenizer()))
    rng = random.Random(0)
    budget = llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens
    report = []
    for row in a.rows.split(","):  # one engine, one trace per row (e.g. a prefill-only and a decode-heavy one)
        inp, outp, n = (int(x) for x in row.split(":"))
        prompts = lambda: [{"prompt_token_ids": [rng.randrange(10, vocab - 10) for _ in range(inp)]}  # noqa: E731
                           for _ in range(n)]
        params = SamplingParams(temperature=0.0, max_tokens=outp, ignore_eos=True, detokenize=False)
        llm.generate(prompts(), params, use_tqdm=False)  # warm-up: JIT, autotune, graphs
        before = set(_traces(trace_dir))
        llm.start_profile()
        t0 = time.perf_counter()
        llm.generate(prompts(), params, use_tqdm=False)
        wall = time.perf_counter() - t0
        llm.stop_profile()
        new = _wait_for_new_trace(trace_dir, before)
        # at least one step per output token, plus the prefill steps beyond the first: the prompt tokens over the
        # engine's token budget per step
        steps = outp + max(0, -(-inp * n // budget) - 1)
        text = summarise(new, a.out / f"profile-{inp}x{outp}x{n}.md", steps)
        report.append(f"## row {row}: {wall:.2f} s wall, ~{steps} steps ({wall * 1e3 / steps:.1f} ms per step)\n\n{text}")
        print(report[-1], flush=True)
    (a.out / "profile.md").write_text(f"# vLLM profile of {a.model}\n\n" + "\n".join(report))


def _traces(trace_dir: Path) -> list[Path]:
    return sorted(trace_dir.rglob("*.json.gz")) + sorted(trace_dir.rglob("*.json")) if trace_dir.exists() else []


def _wait_for_new_trace(trace_dir: Path, before: set, timeout: float = 120.0) -> Path:
    """The engine core writes the trace asynchronously after stop_profile: wait until a new file stops growing."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        new = [f for f in _traces(trace_dir) if f not in before]
        if new:
            size = new[-1].stat().st_size
            time.sleep(2)
            if new[-1].stat().st_size == size and size > 0:
                return new[-1]
        time.sleep(1)
    raise SystemExit(f"no new trace under {trace_dir} within {timeout:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
