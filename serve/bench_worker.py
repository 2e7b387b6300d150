"""One model under vLLM, several workloads: `python -m hybridserve.serve.bench_worker SPEC.json OUT.json`.

Runs in its own process (one engine per process: memory is returned between models, and a model that fails
cannot take the others down). For each row it sends `num_prompts` random-token prompts of `input_len` tokens
at once (offline engine, continuous batching), each generating exactly `output_len` tokens (EOS ignored), and
records wall time and per-request latencies from vLLM's request metrics. `num_prompts` "max" means as many as
this engine admits at once (its KV/state pool's concurrency, capped by max_num_seqs): each model then runs at its
own memory limit, the regime hybrids exist for.

The engine is stepped here rather than through `LLM.generate` (which runs the same loop) so that the arrival of
every token is timed. That gives the **full-concurrency decode rate**: tokens per second between the moment the
last request received its first token (no prefill left) and the moment the first request finished (all still
running) -- decode steps only, every request in the batch. Rows that run in waves (more prompts than the engine
admits) have no such window and report none.

`repeats` > 1 runs every row that many times (new random prompts each time) and reports the run with the median
output rate, with every run's rates under "repeats": one run's rate on a host-bound engine moves by tens of percent
between runs (docs/benchmarks/select.md, run of the eighth session), so a single number cannot carry a ratio.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time

from ..files import write_json_atomic


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _latencies(outputs) -> tuple[list[float], list[float]]:
    """TTFT (arrival → first token) and TPOT (mean gap between later tokens) per request, in seconds."""
    ttft, tpot = [], []
    for out in outputs:
        m = getattr(out, "metrics", None)
        if m is None:
            continue
        if getattr(m, "first_token_latency", 0):
            ttft.append(m.first_token_latency)
        n = getattr(m, "num_generation_tokens", 0)
        if n > 1 and m.last_token_ts > m.first_token_ts:
            tpot.append((m.last_token_ts - m.first_token_ts) / (n - 1))
    return ttft, tpot


def _stepped_generate(llm, prompts: list, params) -> tuple[list, dict]:
    """Run `prompts` to completion by stepping the engine; returns the outputs in prompt order and the
    full-concurrency decode window (tokens, seconds, rate; rate None when the requests never all ran at once)."""
    engine = llm.llm_engine
    ids = [f"bench-{i}" for i in range(len(prompts))]
    for rid, prompt in zip(ids, prompts):
        engine.add_request(rid, prompt, params)
    seen = dict.fromkeys(ids, 0)
    first, done, finals, arrivals = {}, {}, {}, []
    while engine.has_unfinished_requests():
        outputs = engine.step()
        now = time.perf_counter()
        new = 0
        for out in outputs:
            n = len(out.outputs[0].token_ids)  # cumulative output: the request's tokens so far
            new += n - seen[out.request_id]
            seen[out.request_id] = n
            if n and out.request_id not in first:
                first[out.request_id] = now
            if out.finished:
                done[out.request_id] = now
                finals[out.request_id] = out
        arrivals.append((now, new))
    window = {"decode_tokens": None, "decode_window_s": None, "decode_tok_s": None}
    if len(first) == len(ids) and done:
        start, end = max(first.values()), min(done.values())
        if end > start:
            tokens = sum(new for t, new in arrivals if start < t <= end)
            window = {"decode_tokens": tokens, "decode_window_s": end - start, "decode_tok_s": tokens / (end - start)}
    return [finals[i] for i in ids], window


def _num_prompts(row: dict, admitted: float | None, max_num_seqs: int) -> int:
    if row["num_prompts"] != "max":
        return row["num_prompts"]
    if not admitted:
        raise RuntimeError("num_prompts 'max' needs the engine's max concurrency, which this vLLM did not report")
    return max(1, min(int(admitted), max_num_seqs))


# What each repeated run keeps beside the reported (median) one.
_REPEAT_KEYS = ("output_tok_s", "total_tok_s", "decode_tok_s", "wall_s", "tpot_median_s")


def _qualname(cls) -> str | None:
    return cls if cls is None or isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"


def run(spec: dict, out: str | None = None) -> dict:
    from vllm import LLM, SamplingParams

    engine_args = dict(model=spec["model"], dtype=spec.get("dtype", "auto"), seed=0, disable_log_stats=False,
                       max_model_len=spec["max_model_len"], enable_prefix_caching=spec.get("prefix_caching", False),
                       gpu_memory_utilization=spec.get("gpu_memory_utilization", 0.9),
                       max_num_seqs=spec.get("max_num_seqs", 256), enforce_eager=spec.get("enforce_eager", False))
    engine_args.update(spec.get("engine_args", {}))
    started = time.perf_counter()
    llm = LLM(**engine_args)
    startup_s = time.perf_counter() - started
    cache = llm.llm_engine.vllm_config.cache_config
    result = {"name": spec["name"], "model": spec["model"], "startup_s": startup_s, "rows": [],
              "max_concurrency": getattr(cache, "kv_cache_max_concurrency", None),
              "kv_cache_tokens": getattr(cache, "kv_cache_size_tokens", None),
              "num_gpu_blocks": getattr(cache, "num_gpu_blocks", None),
              "block_size": getattr(cache, "block_size", None),
              # None: vLLM's own; a hybridserve checkpoint gets serve/scheduler.py's from the plugin.
              "scheduler": _qualname(llm.llm_engine.vllm_config.scheduler_config.scheduler_cls)}
    # Token ids the tokenizer knows too (vLLM checks prompts against it); speed does not depend on which ids.
    vocab = min(llm.llm_engine.model_config.get_vocab_size(), len(llm.get_tokenizer()))
    rng = random.Random(spec.get("seed", 0))
    # Warm-up (JIT, allocator) outside the timed rows.
    llm.generate([{"prompt_token_ids": [rng.randrange(10, vocab - 10) for _ in range(16)]}],
                 SamplingParams(max_tokens=4, ignore_eos=True, detokenize=False), use_tqdm=False)
    repeats = max(1, int(spec.get("repeats", 1)))
    for row in spec["rows"]:
        count = _num_prompts(row, result["max_concurrency"], engine_args["max_num_seqs"])
        runs = [_run_row(llm, row, count, rng, vocab) for _ in range(repeats)]
        record = median_run(runs)
        if repeats > 1:
            record["repeats"] = [{k: r[k] for k in _REPEAT_KEYS} for r in runs]
        result["rows"].append({**row, **record})
        print(json.dumps({"row": result["rows"][-1]}), flush=True)
        if out is not None:  # after every row: a worker stopped later (time limit, OOM) keeps what it measured
            write_json_atomic(out, result)
    return result


def median_run(runs: list[dict]) -> dict:
    """The run with the median output rate (the lower middle one of an even count): a real run's numbers, all
    from the same run, rather than medians mixed from different ones."""
    ordered = sorted(runs, key=lambda r: r["output_tok_s"])
    return dict(ordered[(len(ordered) - 1) // 2])


def _run_row(llm, row: dict, count: int, rng: random.Random, vocab: int) -> dict:
    """One timed run of a row: `count` new random prompts at once."""
    from vllm import SamplingParams

    prompts = [{"prompt_token_ids": [rng.randrange(10, vocab - 10) for _ in range(row["input_len"])]}
               for _ in range(count)]
    params = SamplingParams(temperature=0.0, max_tokens=row["output_len"], ignore_eos=True, detokenize=False)
    started = time.perf_counter()
    outputs, window = _stepped_generate(llm, prompts, params)
    wall = time.perf_counter() - started
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    prompt_tokens = sum(len(p["prompt_token_ids"]) for p in prompts)
    ttft, tpot = _latencies(outputs)
    return {
        "prompts": count, **window, "wall_s": wall, "output_tokens": generated,
        "output_tok_s": generated / wall, "total_tok_s": (generated + prompt_tokens) / wall,
        "ttft_median_s": statistics.median(ttft) if ttft else None, "ttft_p90_s": _percentile(ttft, 0.9),
        "tpot_median_s": statistics.median(tpot) if tpot else None, "tpot_p90_s": _percentile(tpot, 0.9),
    }


def main(argv: list[str]) -> int:
    spec = json.loads(open(argv[0]).read())
    result = run(spec, out=argv[1])
    write_json_atomic(argv[1], {**result, "complete": True})
    return 0


if __name__ == "__main__":  # the engine core is a spawned process that re-imports this module: keep the guard
    sys.exit(main(sys.argv[1:]))
