"""State packing (serve/state_packing.py): which layers share a cache page, and that the group count we plan for is
the one vLLM's own grouping makes. The served outputs with packing are checked in tests/test_serve.py."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from hybridserve.serve.state_packing import (PackLimit, StateSlot, attention_block_tokens, choose_pack, config_pack,
                                             packing_plan, vllm_grouping, vllm_pack_limit)

from .helpers import load_benchmark, needs_vllm

S, L = "full_attention", "linear_attention"


def test_plan_cuts_the_linear_layers_into_runs_owned_by_their_first_layer():
    plan = packing_plan([S, L, L, L, L, S])
    assert plan == {1: StateSlot(1, 0, 2), 2: StateSlot(1, 1, 2), 3: StateSlot(3, 0, 2), 4: StateSlot(3, 1, 2)}
    # A run may span softmax layers; the last run is short when the pack does not divide the linear count.
    assert packing_plan([L, S, L, L], setting=2) == {0: StateSlot(0, 0, 2), 2: StateSlot(0, 1, 2),
                                                     3: StateSlot(3, 0, 2)}
    assert packing_plan([L, L, S], setting=1) == {0: StateSlot(0, 0, 1), 1: StateSlot(1, 0, 1)}
    assert packing_plan([S, S]) == {}


def test_pack_gives_two_groups_where_the_layer_counts_allow():
    """30 layers (SmolLM2-135M): the budgets of the GA-S2 run. Packing stops at 8 layers per page."""
    expected = {4: 7, 8: 3, 10: 2, 15: 1, 20: 1, 30: 1}
    for softmax, pack in expected.items():
        assert choose_pack(softmax, 30 - softmax) == pack, softmax
    assert vllm_grouping([4, 26]) == (8, 2) and vllm_grouping([4, math.ceil(26 / 7)]) == (2, 0)
    assert vllm_grouping([8, 22]) == (4, 2) and vllm_grouping([8, math.ceil(22 / 3)]) == (2, 0)
    assert choose_pack(0, 30) == 1  # all linear: one kind, one group
    assert choose_pack(1, 29) == 8 and vllm_grouping([1, 4]) == (5, 0)  # capped: 5 groups instead of 30


def test_settings_and_pipeline_parallel():
    assert config_pack(SimpleNamespace(layer_types=[S, L, L, L, L, S])) == 2
    assert config_pack(SimpleNamespace(layer_types=[S, L, L, L, L, S], serve_state_pack=1)) == 1
    assert config_pack(SimpleNamespace(layer_types=[S, L, L, L, L, S], serve_state_pack="3")) == 3
    assert config_pack(SimpleNamespace(layer_types=[S, L, L, L, L, S]), pipeline_parallel=2) == 1
    for bad in ("x", 0, -2):
        with pytest.raises(ValueError, match="serve_state_pack must be 'auto' or a positive integer"):
            packing_plan([S, L], setting=bad)


def _server(mode="align", tokens=512, threshold=0, cache_dtype="auto", dtype=torch.bfloat16, kv_heads=2, head=128):
    """The parts of a VllmConfig that vllm_pack_limit reads."""
    model = SimpleNamespace(dtype=dtype, get_num_kv_heads=lambda parallel: kv_heads, get_head_size=lambda: head)
    return SimpleNamespace(cache_config=SimpleNamespace(mamba_cache_mode=mode, cache_dtype=cache_dtype),
                           scheduler_config=SimpleNamespace(max_num_batched_tokens=tokens,
                                                            long_prefill_token_threshold=threshold),
                           model_config=model, parallel_config=None)


def test_prefix_caching_keeps_the_attention_block_within_one_step():
    """The H200 failure this guards (docs/benchmarks/serving.md, run 6): serve_check_gpu.py's qwen2_gdn model
    (layers LSLL; 256 KiB of float32 state per linear layer, 1 KiB of bf16 KV per token) packed 3 to a page needed a
    768-token attention block, and vLLM 0.26 with prefix caching ("align" mode) refuses a block over
    max_num_batched_tokens (512 there)."""
    layer_bytes, kv_per_token = 8 * 128 * 128 * 2, 2 * 2 * 128 * 2
    assert attention_block_tokens(3 * layer_bytes, kv_per_token) == 768
    assert attention_block_tokens(layer_bytes + 1, kv_per_token) == 320  # rounded up to the 64-token multiple
    limit = vllm_pack_limit(_server(tokens=512), layer_bytes)
    assert limit.max_pack == 2 and "max_num_batched_tokens (512 tokens)" in limit.reason
    types = [L, S, L, L]
    assert config_pack(SimpleNamespace(layer_types=types)) == 3
    assert config_pack(SimpleNamespace(layer_types=types), limit=limit) == 2
    # No bound without prefix caching; the long-prefill threshold bounds it too; an fp8 KV cache halves the
    # bytes per token, so the same state needs twice the tokens.
    assert vllm_pack_limit(_server(mode="none"), layer_bytes) is None
    assert vllm_pack_limit(_server(tokens=8192), layer_bytes).max_pack == 8
    low = vllm_pack_limit(_server(tokens=8192, threshold=300), layer_bytes)
    assert low.max_pack == 1 and "long_prefill_token_threshold (300 tokens)" in low.reason
    assert vllm_pack_limit(_server(tokens=1024, cache_dtype="fp8_e4m3"), layer_bytes).max_pack == 2
    # A pack set in the checkpoint or by --hf-overrides that the server cannot take is one clear error.
    with pytest.raises(ValueError, match="serve_state_pack=3 is too large for this server: with prefix caching on"):
        packing_plan(types, setting=3, limit=limit)
    assert len(packing_plan(types, setting=3, pipeline_parallel=2, limit=limit)) == 3  # PP: packing off anyway
    assert packing_plan([S, L, L], limit=PackLimit(1, "test")) == {1: StateSlot(1, 0, 1), 2: StateSlot(2, 0, 1)}


@needs_vllm
@pytest.mark.parametrize("softmax", [30, 15, 10, 8, 4, 3, 1])
def test_planned_group_count_is_vllms(softmax):
    """The specs the model declares (benchmarks/scheduler_groups.py builds the same ones), grouped by vLLM's own
    get_kv_cache_configs, give the groups vllm_grouping predicts, packed and unpacked."""
    bench = load_benchmark("scheduler_groups")
    from vllm.v1.core.kv_cache_utils import get_kv_cache_configs

    args = SimpleNamespace(layers=30, requests=4, prompt=64, output=16)
    with tempfile.TemporaryDirectory() as tmp:
        config = bench.vllm_config(Path(tmp), args)
        linear = 30 - softmax
        for pack in sorted({1, choose_pack(softmax, linear)}):
            cache = get_kv_cache_configs(config, [bench.layout_specs(30, softmax, pack)], [2**30])[0]
            expected = vllm_grouping([softmax, math.ceil(linear / pack)])[0]
            assert len(cache.kv_cache_groups) == expected, (softmax, pack)


def test_info_reports_the_layout_vllm_will_use(tmp_path):
    """`hybridserve info`'s vLLM line: 1 softmax + 3 linear layers -> one page of 3 states, 2 groups instead of 4."""
    from hybridserve.export.inspect import vllm_layout

    config = SimpleNamespace(layer_types=[L, S, L, L], softmax_layers=[1], num_hidden_layers=4)
    assert vllm_layout(config) == {"state_pack": 3, "cache_groups": 2, "cache_groups_unpacked": 4}
    # With the memory summary: the block one page of 3 states needs (run 6's refused serving check: 768 tokens).
    memory = {"state_bytes_per_sequence": 3 * 262144, "kv_bytes_per_token_per_layer": 1024}
    assert vllm_layout(config, memory)["attention_block_tokens"] == 768

    # `hybridserve info` says what that block asks of a server with prefix caching on.
    from typer.testing import CliRunner

    from hybridserve.main import app
    from hybridserve.export import HybridConfig

    folder = tmp_path
    hybrid = HybridConfig(hidden_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=128,
                          num_hidden_layers=4, layer_types=[L, S, L, L], linear_num_heads=4)
    (folder / "config.json").write_text(hybrid.to_json_string())
    result = CliRunner().invoke(app, ["info", str(folder)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "attention blocks of up to 768 tokens; with prefix caching on, vLLM needs --max-num-batched-tokens" \
        in " ".join(result.output.split())

    from hybridserve.export.checkpoint import ExportError

    with pytest.raises(ExportError, match="invalid hybrid config: serve_state_pack must be"):
        vllm_layout(SimpleNamespace(layer_types=[L, S], softmax_layers=[1], num_hidden_layers=2, serve_state_pack=0))
