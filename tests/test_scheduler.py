"""serve/scheduler.py: vLLM's scheduler and ours, fed the same workload, make the same decisions at every step.

The workload is built to reach every branch of the short path and of vLLM's own: requests arriving over time with
prompts of 1–250 tokens and 1–250 output tokens (chunked prefill at 96 tokens per step), two of them cut by the
512-token context, 32-token blocks (state blocks freed and allocated every 32 tokens) and a pool small enough that
vLLM preempts requests. Both the synchronous scheduler and the asynchronous one (one step in flight, as vLLM's
engine core runs it) are replayed.
"""

from __future__ import annotations

import json
import random

import pytest

from .helpers import needs_vllm

BLOCK, HEADS, HEAD_DIM = 32, 4, 32


def _specs(num_softmax: int, num_state: int, sliding: bool = False) -> dict:
    import torch
    from vllm.v1.kv_cache_interface import FullAttentionSpec, MambaSpec, SlidingWindowSpec

    per_token = 2 * HEADS * HEAD_DIM * 2
    state = (HEADS, HEAD_DIM, 8)
    kind = dict(block_size=BLOCK, num_kv_heads=HEADS, head_size=HEAD_DIM, dtype=torch.bfloat16)
    specs = {f"layers.{i}": (SlidingWindowSpec(sliding_window=64, **kind) if sliding else FullAttentionSpec(**kind))
             for i in range(num_softmax)}
    for j in range(num_state):
        specs[f"layers.{num_softmax + j}"] = MambaSpec(block_size=BLOCK, shapes=(state,), dtypes=(torch.float32,),
                                                       page_size_padded=BLOCK * per_token)
    return specs


def _config(folder, async_scheduling: bool, prefix_caching: bool = False):
    from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig

    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HEADS * HEAD_DIM,
              "intermediate_size": 256, "num_attention_heads": HEADS, "num_key_value_heads": HEADS,
              "num_hidden_layers": 4, "vocab_size": 512, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
              "head_dim": HEAD_DIM}
    (folder / "config.json").write_text(json.dumps(config))
    model = ModelConfig(model=str(folder), skip_tokenizer_init=True, max_model_len=512, dtype="bfloat16")
    sched = SchedulerConfig(max_num_seqs=16, max_num_batched_tokens=96, max_model_len=512, is_encoder_decoder=False)
    vllm_config = VllmConfig(model_config=model, scheduler_config=sched,
                             cache_config=CacheConfig(block_size=BLOCK, enable_prefix_caching=prefix_caching))
    vllm_config.scheduler_config.async_scheduling = async_scheduling
    vllm_config.cache_config.kv_cache_layout = "NHD"  # the engine core resolves this; the scheduler needs a value
    return vllm_config


def _scheduler(cls, config, specs: dict, num_blocks: int):
    from vllm.v1.core.kv_cache_utils import get_kv_cache_configs
    from vllm.v1.structured_output import StructuredOutputManager

    page = next(iter(specs.values())).page_size_bytes
    cache = get_kv_cache_configs(config, [specs], [num_blocks * page * len(specs)])[0]
    config.cache_config.num_gpu_blocks = cache.num_blocks
    return cls(vllm_config=config, kv_cache_config=cache, structured_output_manager=StructuredOutputManager(config),
               block_size=BLOCK)


def _workload(seed: int = 0) -> list[tuple[int, str, int, int]]:
    """(arrival step, request id, prompt tokens, output tokens); the last two run into max_model_len (512)."""
    rng = random.Random(seed)
    return [(rng.randrange(0, 20), f"r{i}", rng.randrange(1, 250), rng.randrange(1, 250)) for i in range(48)] + [
        (5, "long0", 400, 200), (30, "long1", 480, 100)]


def _summary(out) -> dict:
    """What a scheduler decided in one step, in a form two schedulers' outputs can be compared by."""
    cached = out.scheduled_cached_reqs
    return {"tokens": sorted(out.num_scheduled_tokens.items()),
            "new": sorted((r.req_id, r.block_ids, r.num_computed_tokens) for r in out.scheduled_new_reqs),
            "cached": sorted(zip(cached.req_ids, cached.new_block_ids, cached.num_computed_tokens)),
            "preempted": sorted(getattr(out, "preempted_req_ids", None) or ()),
            "finished": sorted(out.finished_req_ids)}


def _replay(scheduler, workload, in_flight: int) -> tuple[list[dict], int]:
    """Run the workload to the end, `in_flight` steps scheduled ahead of their outputs (1: synchronous, 2: vLLM's
    asynchronous engine core); returns every step's summary and the number of preemptions."""
    from vllm.sampling_params import SamplingParams
    from vllm.v1.outputs import ModelRunnerOutput
    from vllm.v1.request import Request

    pending, steps, preemptions, step = [], [], 0, 0
    while step < 40 or scheduler.has_requests() or pending:
        for arrival, rid, prompt, output in workload:
            if arrival == step:
                params = SamplingParams(max_tokens=output, ignore_eos=True)
                scheduler.add_request(Request(rid, [5] * prompt, params, None, arrival_time=float(arrival)))
        out = scheduler.schedule()
        steps.append(_summary(out))
        preemptions += len(steps[-1]["preempted"])
        # A request samples a token in a step that reaches the end of its prompt (vLLM's flag for the others).
        sampled = {rid: not scheduler.requests[rid].is_prefill_chunk for rid in out.num_scheduled_tokens}
        pending.append((out, sampled))
        while pending and (len(pending) >= in_flight or not scheduler.has_requests()):
            done, sampled = pending.pop(0)
            ids = list(done.num_scheduled_tokens)
            result = ModelRunnerOutput(req_ids=ids, req_id_to_index={r: k for k, r in enumerate(ids)},
                                       sampled_token_ids=[[7] if sampled[r] else [] for r in ids])
            scheduler.update_from_output(done, result)
        step += 1
        assert step < 5000, "the workload did not finish"
    return steps, preemptions


@needs_vllm
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("layout", [(2, 3), (4, 0)], ids=["hybrid", "dense"])
def test_same_decisions_as_vllm(tmp_path, asynchronous, layout):
    from vllm.v1.core.sched.async_scheduler import AsyncScheduler
    from vllm.v1.core.sched.scheduler import Scheduler

    from hybridserve.serve.scheduler import HybridAsyncScheduler, HybridScheduler

    stock_cls = AsyncScheduler if asynchronous else Scheduler
    config = _config(tmp_path, asynchronous)
    stock = _scheduler(stock_cls, config, _specs(*layout), num_blocks=24)
    ours = _scheduler(HybridScheduler, config, _specs(*layout), num_blocks=24)
    assert type(ours) is (HybridAsyncScheduler if asynchronous else HybridScheduler)
    assert ours.short_path is not None
    workload = _workload()
    expected, preempted = _replay(stock, workload, 2 if asynchronous else 1)
    got, _ = _replay(ours, workload, 2 if asynchronous else 1)
    assert preempted > 0, "the workload should make vLLM preempt"
    assert len(got) == len(expected)
    for n, (a, b) in enumerate(zip(got, expected)):
        assert a == b, f"step {n}: ours {a} != vLLM's {b}"
    pool = lambda s: s.kv_cache_manager.block_pool.get_num_free_blocks()  # noqa: E731
    assert pool(ours) == pool(stock)
    stats = ours.short_path
    assert stats.short > stats.vllm > 0, f"short path {stats.short} vs vLLM's path {stats.vllm} allocations"


@needs_vllm
def test_short_path_stays_off_where_it_does_not_model_vllm(tmp_path):
    """Prefix caching on (block hashes, align-mode states) or a sliding-window group: vLLM's path, unwrapped."""
    from hybridserve.serve.scheduler import HybridScheduler

    assert _scheduler(HybridScheduler, _config(tmp_path, False, prefix_caching=True), _specs(2, 3),
                          num_blocks=24).short_path is None
    assert _scheduler(HybridScheduler, _config(tmp_path, False), _specs(2, 3, sliding=True),
                          num_blocks=24).short_path is None


def test_plugin_makes_it_the_default_unless_told_otherwise(monkeypatch):
    from types import SimpleNamespace

    from hybridserve.serve.plugin import SCHEDULER, STOCK_SCHEDULER_ENV, default_scheduler

    config = SimpleNamespace(scheduler_config=SimpleNamespace(scheduler_cls=None))
    default_scheduler(config)
    assert config.scheduler_config.scheduler_cls == SCHEDULER
    chosen = SimpleNamespace(scheduler_config=SimpleNamespace(scheduler_cls="my.Scheduler"))
    default_scheduler(chosen)
    assert chosen.scheduler_config.scheduler_cls == "my.Scheduler"
    monkeypatch.setenv(STOCK_SCHEDULER_ENV, "1")
    stock = SimpleNamespace(scheduler_config=SimpleNamespace(scheduler_cls=None))
    default_scheduler(stock)
    assert stock.scheduler_config.scheduler_cls is None
