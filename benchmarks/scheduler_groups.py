"""vLLM's scheduler time per decode step against the number of cache groups a hybrid layout gives it (no model).

  python benchmarks/scheduler_groups.py [--layers 30] [--softmax 30,15,10,8,4] [--requests 512] [--prompt 1024]
      [--output 256] [--schedulers vllm,hybridserve] [--out docs/benchmarks/scheduler-groups.md]

Builds the cache specs vLLM would get from a SmolLM2-135M-shaped hybrid (9 heads × 64 for the linear state, float32;
3 KV heads × 64 bf16 for softmax layers) for each softmax count, with and without state packing
(serve/state_packing.py), lets vLLM's own `get_kv_cache_configs` group them, and runs vLLM's `Scheduler` over
`--requests` requests of `--prompt` tokens, feeding it one sampled token per running request per step as a model
would. It times `schedule()` and `update_from_output()` over the steps where every request decodes. The scheduler is
host code, so the numbers describe this machine's CPU; a GPU server pays the same per step, and at small models
it is the step's critical path (docs/benchmarks/serving-runs-1-5.md, run 5). `--schedulers` times vLLM's own `Scheduler` and
hybridserve's (serve/scheduler.py: the same, with a short path for decode steps that change no block).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HEADS, KV_HEADS, HEAD_DIM = 9, 3, 64


def layout_specs(num_layers: int, num_softmax: int, pack: int) -> dict:
    """layer name -> vLLM cache spec, as the model would declare them: softmax layers first, linear layers after,
    one state page per `pack` linear layers, and the attention block size grown until its page covers that."""
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec, MambaSpec

    state = (pack, HEADS, HEAD_DIM, HEAD_DIM) if pack > 1 else (HEADS, HEAD_DIM, HEAD_DIM)
    page = math.prod(state) * 4
    per_token = 2 * KV_HEADS * HEAD_DIM * 2
    block = 16 * math.ceil(page / per_token / 16) if num_softmax < num_layers else 16
    num_linear = num_layers - num_softmax
    specs = {f"layers.{i}": FullAttentionSpec(block_size=block, num_kv_heads=KV_HEADS, head_size=HEAD_DIM,
                                              dtype=torch.bfloat16) for i in range(num_softmax)}
    for j in range(math.ceil(num_linear / pack)):
        specs[f"layers.{num_softmax + j}"] = MambaSpec(block_size=block, shapes=(state,), dtypes=(torch.float32,),
                                                       page_size_padded=max(page, block * per_token))
    return specs


def vllm_config(folder: Path, args):
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HEADS * HEAD_DIM,
              "intermediate_size": 1536, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
              "num_hidden_layers": args.layers, "vocab_size": 49152, "max_position_embeddings": 8192,
              "rms_norm_eps": 1e-5, "head_dim": HEAD_DIM}
    (folder / "config.json").write_text(json.dumps(config))
    length = args.prompt + args.output
    model = ModelConfig(model=str(folder), skip_tokenizer_init=True, max_model_len=length, dtype="bfloat16")
    sched = SchedulerConfig(max_num_seqs=args.requests, max_num_batched_tokens=16384, max_model_len=length,
                            is_encoder_decoder=False)
    config = VllmConfig(model_config=model, scheduler_config=sched,
                        cache_config=CacheConfig(block_size=16, enable_prefix_caching=False))
    config.cache_config.kv_cache_layout = "NHD"  # the engine core resolves this; the scheduler only needs a value
    return config


def time_scheduler(config, specs: dict, args, scheduler_cls=None) -> dict:
    from vllm.sampling_params import SamplingParams
    from vllm.v1.core.kv_cache_utils import get_kv_cache_configs
    from vllm.v1.core.sched.scheduler import Scheduler
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request
    from vllm.v1.structured_output import StructuredOutputManager

    cache = get_kv_cache_configs(config, [specs], [40 * 2**30])[0]
    config.cache_config.num_gpu_blocks = cache.num_blocks
    block = min(g.kv_cache_spec.block_size for g in cache.kv_cache_groups)
    scheduler = (scheduler_cls or Scheduler)(config, cache, StructuredOutputManager(config), block_size=block)
    params = SamplingParams(max_tokens=args.output, ignore_eos=True)
    for i in range(args.requests):
        scheduler.add_request(Request(str(i), [1] * args.prompt, params, None, arrival_time=0))
    steps, schedule_s, update_s = 0, 0.0, 0.0
    while scheduler.has_requests():
        t0 = time.perf_counter()
        out = scheduler.schedule()
        t1 = time.perf_counter()
        ids = list(out.num_scheduled_tokens)
        done = [scheduler.requests[i].num_computed_tokens + out.num_scheduled_tokens[i]
                >= scheduler.requests[i].num_prompt_tokens for i in ids]
        result = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
                                   sampled_token_ids=[[7] if d else [] for d in done])
        t2 = time.perf_counter()
        scheduler.update_from_output(out, result)
        t3 = time.perf_counter()
        if len(ids) == args.requests and all(done) and sum(out.num_scheduled_tokens.values()) == args.requests:
            steps, schedule_s, update_s = steps + 1, schedule_s + t1 - t0, update_s + t3 - t2
    return {"groups": len(cache.kv_cache_groups), "block_size": block, "decode_steps": steps,
            "schedule_ms": 1e3 * schedule_s / max(steps, 1), "update_ms": 1e3 * update_s / max(steps, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30)
    parser.add_argument("--softmax", default="30,15,10,8,4")
    parser.add_argument("--requests", type=int, default=512)
    parser.add_argument("--prompt", type=int, default=1024)
    parser.add_argument("--output", type=int, default=256)
    parser.add_argument("--schedulers", default="vllm,hybridserve")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import vllm

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from hybridserve.serve.bench import machine
    from hybridserve.serve.scheduler import HybridScheduler
    from hybridserve.serve.state_packing import choose_pack

    classes = {"vllm": None, "hybridserve": HybridScheduler}

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = vllm_config(Path(tmp), args)
        for k in [int(x) for x in args.softmax.split(",")]:
            packs = sorted({1, choose_pack(k, args.layers - k)})
            for pack in packs:
                for name in args.schedulers.split(","):
                    r = time_scheduler(config, layout_specs(args.layers, k, pack), args, classes[name])
                    rows.append({"softmax": k, "pack": pack, "scheduler": name, **r})
                    print(f"K={k} pack={pack} {name}: {r['groups']} groups, block {r['block_size']}: schedule "
                          f"{r['schedule_ms']:.2f} ms, update {r['update_ms']:.2f} ms per decode step", flush=True)
    lines = [f"vLLM {vllm.__version__} scheduler, {args.requests} requests of {args.prompt} + {args.output} tokens, "
             f"{args.layers} layers; {machine()['device']}; `python "
             f"benchmarks/scheduler_groups.py --softmax {args.softmax} --requests {args.requests} --schedulers "
             f"{args.schedulers}`", "",
             "| softmax layers | state pack | scheduler | cache groups | attention block | schedule() ms / step | "
             "update_from_output() ms / step |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['softmax']} | {r['pack']} | {r['scheduler']} | {r['groups']} | {r['block_size']} | {r['schedule_ms']:.2f} | "
              f"{r['update_ms']:.2f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
