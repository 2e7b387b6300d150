"""vLLM's scheduler with a short path for the decode step of a request whose cache blocks already suffice.

Why: at hundreds of concurrent sequences a small model's vLLM step is host-bound, and the scheduler's share of the
host time grows with the number of cache groups: for every running request and every group, `allocate_slots`
walks vLLM's coordinator (`remove_skipped_blocks`, `get_num_blocks_to_allocate`, `allocate_new_blocks`), about a
dozen Python calls that, on most decode steps, change nothing. A hybrid has at least two groups (softmax pages and
state pages) where its dense teacher has one, so it pays this twice (docs/benchmarks/scheduler-groups.md).

What: `HybridScheduler` is vLLM's own `Scheduler`; only its cache manager's `allocate_slots` is wrapped. For a
running request that asks for plain new tokens (no prefix-cache hit, no lookahead, no external or encoder tokens),
with prefix caching off, the wrapper checks per group what vLLM's path would do:
  * a full-attention group: nothing, when the request's blocks already hold every token it needs a slot for;
  * a state group (vLLM's Mamba manager, "none" mode, no speculative blocks): nothing, when the blocks also hold
    every token and the block behind the last processed token is already freed (vLLM frees a state block once the
    state has moved past it, walking back until it meets a freed one).
When every group would do nothing, it returns vLLM's empty block list, which is what vLLM's path returns then;
in every other case (a new block, a block to free, any other group kind or argument) it calls vLLM's own path.
So allocation, freeing and preemption stay vLLM's; `tests/test_scheduler.py` replays workloads through both
schedulers and compares every step's output.

Use: the plugin makes it the default `scheduler_cls` of every engine that serves a hybridserve checkpoint (vLLM's
own extension point, `--scheduler-cls`), unless the user names a scheduler or sets HYBRIDSERVE_STOCK_SCHEDULER=1.
vLLM schedules asynchronously by default, and then needs its `AsyncScheduler`: `HybridScheduler(...)` builds the
async variant when the config asks for it, so the one name serves both.
"""

from __future__ import annotations

import logging

from vllm.v1.core.sched.async_scheduler import AsyncScheduler
from vllm.v1.core.sched.scheduler import Scheduler

# Under vLLM's logger, so the line shows in the engine's log with vLLM's format.
logger = logging.getLogger("vllm.hybridserve.scheduler")


class HybridScheduler(Scheduler):
    """vLLM's `Scheduler`, with `allocate_slots` short-circuited for decode steps that need no block change."""

    def __new__(cls, *args, **kwargs):
        config = kwargs.get("vllm_config", args[0] if args else None)
        if cls is HybridScheduler and getattr(config.scheduler_config, "async_scheduling", False):
            cls = HybridAsyncScheduler  # a subclass of this one, so Python still runs __init__
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.short_path = install_short_path(self.kv_cache_manager)
        groups = len(self.kv_cache_manager.coordinator.single_type_managers)
        state = "on" if self.short_path is not None else "off: prefix caching or a cache group it does not model"
        logger.info("hybridserve scheduler (%s): decode short path %s (%d cache groups)", type(self).__name__, state,
                    groups)

    def shutdown(self) -> None:
        if self.short_path is not None:
            stats = self.short_path
            logger.info("hybridserve scheduler: the short path answered %d of %d slot allocations", stats.short,
                        stats.short + stats.vllm)
        super().shutdown()


class HybridAsyncScheduler(AsyncScheduler, HybridScheduler):
    """vLLM's `AsyncScheduler` with the same short path (MRO: AsyncScheduler → HybridScheduler → Scheduler)."""


def _group_plan(manager) -> list[tuple[dict, int, bool]] | None:
    """(request → blocks, block size, is a state group) per cache group, or None when a group is of a kind whose
    bookkeeping the short path does not model (sliding window, chunked local, cross attention, align mode...)."""
    from vllm.v1.core.single_type_kv_cache_manager import FullAttentionManager, MambaManager

    plan = []
    for group in manager.coordinator.single_type_managers:
        kind = type(group)
        if kind is FullAttentionManager:
            plan.append((group.req_to_blocks, group.block_size, False))
        elif kind is MambaManager and group.mamba_cache_mode == "none" and group.num_speculative_blocks == 0:
            plan.append((group.req_to_blocks, group.block_size, True))
        else:
            return None
    return plan


class ShortPathStats:
    """How many `allocate_slots` calls the short path answered, and how many went to vLLM's path."""

    __slots__ = ("short", "vllm")

    def __init__(self):
        self.short = self.vllm = 0


def install_short_path(manager) -> ShortPathStats | None:
    """Wrap `manager.allocate_slots` (a vLLM `KVCacheManager`) with the short path and return its counters; None
    when it cannot apply (prefix caching on, or a cache group the short path does not model), leaving vLLM's path
    alone."""
    from vllm.v1.request import RequestStatus

    plan = _group_plan(manager)
    if manager.enable_caching or not plan:
        return None
    stats = ShortPathStats()
    vllm_path = manager.allocate_slots
    empty = manager.empty_kv_cache_blocks
    max_len = manager.max_model_len
    running = RequestStatus.RUNNING

    def allocate_slots(request, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=None,
                       num_lookahead_tokens=0, num_external_computed_tokens=0, *args, **kwargs):
        if (args or kwargs or num_new_computed_tokens or new_computed_blocks is not None or num_lookahead_tokens
                or num_external_computed_tokens or request.status != running or num_new_tokens <= 0):
            stats.vllm += 1
            return vllm_path(request, num_new_tokens, num_new_computed_tokens, new_computed_blocks,
                             num_lookahead_tokens, num_external_computed_tokens, *args, **kwargs)
        computed = min(request.num_computed_tokens, max_len)
        need = min(computed + num_new_tokens, max_len)
        processed = max(0, computed - request.num_in_flight_tokens)
        rid = request.request_id
        for req_to_blocks, block_size, is_state in plan:
            blocks = req_to_blocks.get(rid)
            if blocks is None or len(blocks) * block_size < need:
                break  # a new block is due
            if is_state:
                # vLLM keeps only the state of the last processed token: it frees blocks
                # [0, (processed - 1) // block_size), walking back until a freed (null) one.
                skipped = min((processed - 1) // block_size, len(blocks))
                if skipped > 0 and not blocks[skipped - 1].is_null:
                    break  # a block is due to be freed
        else:
            stats.short += 1
            return empty
        stats.vllm += 1
        return vllm_path(request, num_new_tokens, num_new_computed_tokens, new_computed_blocks,
                         num_lookahead_tokens, num_external_computed_tokens, *args, **kwargs)

    manager.allocate_slots = allocate_slots
    return stats
