"""Several linear layers' states in one vLLM cache page, so that vLLM's scheduler keeps fewer cache groups.

vLLM's hybrid cache manager splits the layers of each kind into groups of one size: the smaller kind's layer count,
or the larger's when it is under 1.5× the smaller (`_get_kv_cache_groups_uniform_page_size`). Its scheduler then
does per-request work for every group on every step (`allocate_slots`: blocks to allocate, skipped blocks to free).
A hybrid with 4 softmax and 26 linear layers gets 8 groups; with 512 requests decoding, vLLM 0.32's `schedule()`
takes 35.0 ms per step on our 2-core CI machine against 7.7 ms for the 30-layer teacher, and the 135M hybrids served
slower than their teacher on an H200 (docs/benchmarks/serving-runs-1-5.md, run 5; docs/benchmarks/scheduler-groups.md).

Packing: the linear layers are cut into runs of `pack` consecutive layers. The first layer of a run (its owner)
declares the state of the whole run, shapes `(pack, *shape)`; the others declare none, and at run time read slice
`i` of the owner's tensors and the owner's metadata. A slice keeps one slot per request with a larger slot stride,
which the state-pool kernels take. vLLM sees `ceil(linear / pack)` state layers with pages `pack` times larger (the
attention block size grows to match), and with `pack` chosen below, two groups where the ratio allows it.

The cost: pages are `pack`× larger, so the attention block size is too (more rounding waste per request, coarser
prefix-cache alignment; hence at most MAX_PACK), and the last run pads to `pack` states when `pack` does not divide
the linear layer count. `serve_state_pack` in the checkpoint's config.json, or the server's
`--hf-overrides '{"serve_state_pack": 1}'`, sets the pack (1: off).

With prefix caching on (vLLM's "align" state mode), vLLM 0.26 requires the attention block to fit one scheduler
step (block_size <= max_num_batched_tokens, and <= long_prefill_token_threshold when set); `vllm_pack_limit` keeps
the pack under that bound (an H200 run with 512-token steps and pack 3 was refused at a 768-token block).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil


def vllm_grouping(layer_counts: list[int]) -> tuple[int, int]:
    """(groups, padding layers) of vLLM's uniform-page grouping for these per-kind layer counts. A padding layer
    is a page per block that no layer uses."""
    counts = [c for c in layer_counts if c > 0]
    if not counts:
        return 0, 0
    size = min(counts)
    if max(counts) < size * 1.5:
        size = max(counts)
    return sum(ceil(c / size) for c in counts), sum(ceil(c / size) * size - c for c in counts)


def choose_pack(num_softmax: int, num_linear: int, max_pack: int = 0) -> int:
    """The pack that gives the fewest groups, then the fewest padding layers (a padded softmax group wastes a page
    per block of every sequence's KV), then the smallest pages. 1 when packing cannot help: no softmax layer (one
    kind, one group), or no more linear layers than softmax ones (the softmax count sets the group size then).
    max_pack: a lower cap than MAX_PACK (vllm_pack_limit); 0 for none."""
    if num_softmax == 0 or num_linear <= num_softmax:
        return 1
    cap = min(num_linear, MAX_PACK, max_pack or MAX_PACK)
    return min(range(1, cap + 1), key=lambda p: (*packed_grouping(num_softmax, num_linear, p), p))


def packed_grouping(num_softmax: int, num_linear: int, pack: int) -> tuple[int, int]:
    """vllm_grouping of a model whose linear layers are packed `pack` to a page."""
    return vllm_grouping([num_softmax, ceil(num_linear / pack)])


# Pages grow with the pack and the attention block with them: a block never smaller than `pack` states means a short
# request holds one that size. 8 keeps that bounded (8 states of a layer) and still takes a 4:26 hybrid from 8 groups
# to 2; only very few softmax layers (1-3 of 30) keep more than 2 groups.
MAX_PACK = 8


@dataclass(frozen=True)
class StateSlot:
    """Where one linear layer's state lives: in the tensors of layer `owner` (its index among all layers), at
    position `index` of `pack`."""

    owner: int
    index: int
    pack: int


@dataclass(frozen=True)
class PackLimit:
    """The largest pack the server admits, and why (for the error when a configured pack exceeds it)."""

    max_pack: int
    reason: str


def packing_plan(layer_types: list[str], setting="auto", pipeline_parallel: int = 1,
                 limit: PackLimit | None = None) -> dict[int, StateSlot]:
    """layer index -> StateSlot for every linear layer. setting: "auto" (choose_pack), or an int (1: off).
    Pipeline parallelism turns packing off (a run would have to stay within one stage). limit: the server's bound
    (vllm_pack_limit); "auto" stays under it, an explicit pack over it is an error."""
    linear = [i for i, t in enumerate(layer_types) if t != "full_attention"]
    max_pack = limit.max_pack if limit is not None else 0
    if setting in (None, "auto"):
        pack = choose_pack(len(layer_types) - len(linear), len(linear), max_pack)
    else:
        try:
            pack = int(setting)
        except (TypeError, ValueError):
            pack = 0
        if pack < 1:
            raise ValueError(f"serve_state_pack must be 'auto' or a positive integer, not {setting!r}")
        if max_pack and pack > max_pack and pipeline_parallel == 1:
            raise ValueError(f"serve_state_pack={pack} is too large for this server: {limit.reason}; "
                             f"use at most {max_pack}, or 'auto'")
    if pipeline_parallel > 1:
        pack = 1
    pack = max(1, min(pack, len(linear) or 1))
    plan = {}
    for start in range(0, len(linear), pack):
        run = linear[start: start + pack]
        for i, layer in enumerate(run):
            plan[layer] = StateSlot(run[0], i, pack)
    return plan


def config_packing_plan(config, pipeline_parallel: int = 1, limit: PackLimit | None = None) -> dict[int, StateSlot]:
    """The plan of an exported HybridConfig (its optional `serve_state_pack`, "auto" when absent)."""
    return packing_plan(list(config.layer_types), getattr(config, "serve_state_pack", "auto"), pipeline_parallel,
                        limit)


def config_pack(config, pipeline_parallel: int = 1, limit: PackLimit | None = None) -> int:
    """The pack of a config's plan (1 without linear layers)."""
    plan = config_packing_plan(config, pipeline_parallel, limit)
    return next(iter(plan.values())).pack if plan else 1


# vLLM rounds the attention block to its kernels' block multiple (16 for FlashAttention and Triton, up to 64 for
# FlashInfer); estimating with 64 can only overstate the block, so a pack that passes here passes vLLM's check.
BLOCK_ALIGNMENT = 64


def attention_block_tokens(page_bytes: int, kv_bytes_per_token: int, alignment: int = BLOCK_ALIGNMENT) -> int:
    """The attention block vLLM picks so that a KV page holds a state page of `page_bytes`: the smallest multiple
    of `alignment` tokens whose KV bytes reach it."""
    return alignment * ceil(page_bytes / (alignment * kv_bytes_per_token))


def vllm_pack_limit(vllm_config, layer_state_bytes: int) -> PackLimit | None:
    """The bound prefix caching puts on the pack, or None when it is off (vLLM's "align" state mode only).
    layer_state_bytes: one linear layer's state page on one rank."""
    cache, scheduler, model = vllm_config.cache_config, vllm_config.scheduler_config, vllm_config.model_config
    if getattr(cache, "mamba_cache_mode", "none") != "align":
        return None
    bound, what = scheduler.max_num_batched_tokens, "max_num_batched_tokens"
    threshold = getattr(scheduler, "long_prefill_token_threshold", 0) or 0
    if 0 < threshold < bound:
        bound, what = threshold, "long_prefill_token_threshold"
    kv_item = 1 if str(cache.cache_dtype).startswith("fp8") else model.dtype.itemsize
    kv_bytes_per_token = 2 * model.get_num_kv_heads(vllm_config.parallel_config) * model.get_head_size() * kv_item
    pack = MAX_PACK
    while pack > 1 and attention_block_tokens(pack * layer_state_bytes, kv_bytes_per_token) > bound:
        pack -= 1
    per_layer = layer_state_bytes / kv_bytes_per_token
    return PackLimit(pack, f"with prefix caching on, vLLM needs the attention block to be at most {what} ({bound} "
                           f"tokens), and each linear layer in a page adds about {per_layer:.0f} tokens to it")
