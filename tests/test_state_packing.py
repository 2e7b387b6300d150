"""State packing (serve/state_packing.py): which layers share a cache page, and that the group count we plan for is
the one vLLM's own grouping makes. The served outputs with packing are checked in tests/test_serve.py."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from hybridserve.serve.state_packing import StateSlot, choose_pack, config_pack, packing_plan, vllm_grouping

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


def test_info_reports_the_layout_vllm_will_use():
    """`hybridserve info`'s vLLM line: 1 softmax + 3 linear layers -> one page of 3 states, 2 groups instead of 4."""
    from hybridserve.export.inspect import vllm_layout

    config = SimpleNamespace(layer_types=[L, S, L, L], softmax_layers=[1], num_hidden_layers=4)
    assert vllm_layout(config) == {"state_pack": 3, "cache_groups": 2, "cache_groups_unpacked": 4}

    from hybridserve.export.checkpoint import ExportError

    with pytest.raises(ExportError, match="invalid hybrid config: serve_state_pack must be"):
        vllm_layout(SimpleNamespace(layer_types=[L, S], softmax_layers=[1], num_hidden_layers=2, serve_state_pack=0))
