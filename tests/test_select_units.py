"""Layer selection without models: budgets, early stopping on synthetic score streams, documented uniform sets,
rank aggregation, shard merging and selection-file reading."""

import pytest

from hybridserve.selection.baselines import manual_ranking, uniform, uniform_ranking
from hybridserve.selection.budgets import budget_ks, k_for_ratio, nested_sets, parse_budgets, resolve_budget
from hybridserve.selection.early_stop import StabilityTracker, first_stable_round, jaccard
from hybridserve.selection.errors import SelectionError
from hybridserve.selection.output import layers_from_selection, throughput_lines
from hybridserve.selection.rounds import PassPlan, merge_round_logs, replay
from hybridserve.selection.scoring import average_rank_importance, rank, window_mean
from hybridserve.selection.settings import SelectSettings, apply_sets, parse_shard


# ---------------------------------------------------------------------------------------------- budgets
def test_budgets_follow_method_md():
    # method.md §2: K = round-half-up(ratio * L)
    assert [k_for_ratio(28, r) for r in (0.125, 0.25, 0.33, 0.5)] == [4, 7, 9, 14]
    assert [k_for_ratio(36, r) for r in (0.125, 0.25, 0.33, 0.5)] == [5, 9, 12, 18]
    assert resolve_budget(30, ratio=0.25) == 8 and resolve_budget(30, ratio=0.25, k=3) == 3
    ranking = [14, 8, 5, 12, 15, 13, 2, 26, 24]
    sets = nested_sets(ranking, [4, 7, 9])
    assert sets[4] == [5, 8, 12, 14] and set(sets[4]) < set(sets[7]) < set(sets[9])
    ks = [b["k"] for b in budget_ks(28, 7, parse_budgets("0.25,3"))]
    assert ks == [3, 4, 7, 9, 14]


@pytest.mark.parametrize("call, message", [
    (lambda: resolve_budget(4, k=5), "only 4 layers"),
    (lambda: resolve_budget(4, ratio=0.0), "ratio must be in"),
    (lambda: resolve_budget(4, ratio=1.5), "ratio must be in"),
    (lambda: resolve_budget(4), "give a softmax budget"),
    (lambda: parse_budgets("0.25,abc"), "neither a ratio"),
    (lambda: nested_sets([1, 2], [3]), "larger than the ranking"),
    (lambda: parse_shard("3/2"), "0 <= i < N"),
    (lambda: parse_shard("1-2"), "i/N"),
    (lambda: SelectSettings(method="magic").check(), "unknown selection method"),
    (lambda: SelectSettings(score="ppl").check(), "train or heldout"),
    (lambda: SelectSettings(method="iterative", shard="0/2").check(), "cannot be sharded"),
    (lambda: apply_sets(SelectSettings(), ["select.nope=1"]), "unknown selection field"),
    (lambda: SelectSettings(measure_throughput=True, shard="0/2").check(), "cannot run in one --shard"),
    (lambda: SelectSettings(throughput_rows="1024:256").check(), "throughput_rows: row '1024:256'"),
])
def test_bad_budgets_and_settings_fail_with_one_message(call, message):
    with pytest.raises(SelectionError, match=message):
        call()


# ---------------------------------------------------------------------------------------------- early stop
def test_early_stop_triggers_on_a_synthetic_stream_and_not_before():
    # top-2 sets: {0,1}, {0,2}, {0,2}, {0,2}, {0,2}: similarities None, 1/3, 1, 1, 1
    stream = [[0, 1, 2, 3], [0, 2, 1, 3], [2, 0, 3, 1], [0, 2, 3, 1], [2, 0, 1, 3], [3, 1, 0, 2]]
    tracker = StabilityTracker(k=2, threshold=0.9, patience=3)
    decisions = [tracker.update(r) for r in stream]
    # 3 stable comparisons first hold at index 4; a changed set afterwards resets the streak
    assert decisions == [False, False, False, False, True, False]
    assert tracker.similarities[:3] == [None, pytest.approx(1 / 3), 1.0]
    assert first_stable_round(stream, 2, 0.9, 3) == 4
    assert first_stable_round(stream, 2, 0.9, 4) is None  # one more comparison needed than the stream has
    # a threshold below the one-swap similarity (2/4 for k=3 -> 1/2) lets a swap count as stable
    swaps = [[0, 1, 2, 5], [0, 1, 3, 5], [0, 1, 4, 5], [0, 1, 2, 5]]
    assert first_stable_round(swaps, 3, 0.5, 3) == 3 and first_stable_round(swaps, 3, 0.6, 1) is None
    assert jaccard([1, 2], [2, 3]) == pytest.approx(1 / 3) and jaccard([], []) == 1.0
    with pytest.raises(SelectionError):
        StabilityTracker(k=2, threshold=0.0)


def test_stability_resets_when_the_set_changes():
    stream = [[0, 1], [0, 1], [1, 0], [2, 0], [2, 0], [0, 2]]  # k=1: 0,0,1,2,2,0
    assert first_stable_round(stream, 1, 1.0, 2) is None
    assert first_stable_round(stream, 1, 1.0, 1) == 1


# ---------------------------------------------------------------------------------------------- baselines
def test_uniform_gives_the_documented_official_sets():
    # method.md §5.6 official uniform configs
    assert uniform(28, 7, "start") == [0, 4, 8, 12, 16, 20, 24]  # Qwen2.5-1.5B / 7B 25 %
    assert uniform(28, 9, "start") == [0, 3, 6, 9, 12, 15, 18, 21, 24]  # Qwen2.5-1.5B / 7B 33 %, Llama 33 %
    assert uniform(36, 5, "start", stride=8) == [0, 8, 16, 24, 32]  # Qwen2.5-3B 12.5 %
    assert uniform(36, 9, "start") == list(range(0, 33, 4))
    assert uniform(36, 12, "start") == list(range(0, 34, 3))
    assert uniform(36, 18, "start") == list(range(0, 35, 2))
    assert uniform(28, 4, "end") == [6, 13, 20, 27]  # Llama-3.2-3B 12.5 %
    assert uniform(28, 7, "end") == list(range(3, 28, 4))  # Llama-3.2-3B 25 %
    assert uniform(28, 14, "end") == list(range(1, 28, 2))  # Llama-3.2-3B 50 %
    assert uniform(28, 7) == [2, 6, 10, 14, 18, 22, 26]  # center: what `convert --ratio` uses
    assert uniform(10, 2, "start", offset=1) == [1, 6] and uniform(10, 2, "end", offset=1) == [3, 8]
    assert uniform_ranking(8, "start", k=2)[:2] == [0, 4]
    with pytest.raises(SelectionError, match="do not fit"):
        uniform(10, 3, "start", stride=5)
    with pytest.raises(SelectionError, match="anchor"):
        uniform(10, 3, "middle")
    assert manual_ranking(6, [4, 1]) == [4, 1]
    for bad, msg in (([], "give the layers"), ([1, 1], "repeat"), ([6], "out of range")):
        with pytest.raises(SelectionError, match=msg):
            manual_ranking(6, bad)


def test_rankings_and_window_scores():
    assert rank({0: -0.5, 1: -0.1, 2: -0.1, 3: float("nan")}) == [1, 2, 0, 3]  # ties by index, NaN last
    ga, gr = [2, 0, 1, 3], [1, 2, 3, 0]
    # mean positions: layer 2 (0+1)/2, layer 1 (2+0)/2, layer 0 (1+3)/2, layer 3 (3+2)/2
    assert rank(average_rank_importance(ga, gr)) == [2, 1, 0, 3]
    assert rank(average_rank_importance([0, 1], [1, 0])) == [0, 1]  # equal means: the GA rank decides
    records = [{"step": s, "kl": float(s)} for s in range(1, 11)]
    assert window_mean(records, 10, 3) == pytest.approx(9.0) and window_mean(records, 2, 5) == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------------- rounds, shards
def _plan(kind="ga"):
    return PassPlan(kind, tuple((f"ga-{i:02d}", i, "ga") for i in range(4)), k=1, round_steps=2, total_rounds=4,
                    tokens_per_step=10)


def _rounds(values_per_round):
    return [{"round": r + 1, "step": 2 * (r + 1), "tokens": 20 * (r + 1),
             "candidates": {f"ga-{i:02d}": {"train_kl": v, "heldout_kl": v + 1} for i, v in enumerate(vals)}}
            for r, vals in enumerate(values_per_round)]


def test_replay_and_merge_of_shards_equal_the_whole():
    rounds = _rounds([[3, 1, 2, 4], [3, 2, 1, 4], [3, 2, 1, 4], [3, 2, 1, 4]])
    history, stop = replay(_plan(), rounds, "train_kl", 1.0, 2, True)
    assert stop == 3 and history[-1]["ranking"] == [2, 1, 0, 3] and history[0]["ranking"] == [1, 2, 0, 3]
    base = {"format": 1, "fingerprint": "f", "kind": "ga", "k": 1, "candidates": [list(c) for c in _plan().candidates],
            "round_steps": 2, "total_rounds": 4, "tokens_per_step": 10, "stopped_at": None, "finished": True}
    shard0 = dict(base, shard="0/2", rounds=[dict(r, candidates={n: v for n, v in r["candidates"].items() if n in ("ga-00", "ga-02")})
                                              for r in rounds])
    shard1 = dict(base, shard="1/2", rounds=[dict(r, candidates={n: v for n, v in r["candidates"].items() if n in ("ga-01", "ga-03")})
                                              for r in rounds])
    merged = merge_round_logs([shard1, shard0])
    assert replay(_plan(), merged["rounds"], "train_kl", 1.0, 2, True) == (history, stop)
    with pytest.raises(SelectionError, match="every shard exactly once"):
        merge_round_logs([shard0, shard0])
    with pytest.raises(SelectionError, match="disagree on k"):
        merge_round_logs([shard0, dict(shard1, k=2)])
    with pytest.raises(SelectionError, match="not finished"):
        merge_round_logs([shard0, dict(shard1, finished=False)])


def test_layers_from_a_selection_file():
    data = {"format": "hybridserve-selection", "method": "ga-s2", "num_layers": 8, "ranking": [5, 2, 7, 0, 1, 3, 4, 6],
            "budgets": [{"k": 2, "primary": True, "layers": [2, 5]}]}
    assert layers_from_selection(data) == [2, 5]
    assert layers_from_selection(data, ratio=0.5) == [0, 2, 5, 7]
    assert layers_from_selection(data, k=3) == [2, 5, 7]
    with pytest.raises(SelectionError, match="only 8 layers"):
        layers_from_selection(data, k=9)
    with pytest.raises(SelectionError, match="ratio must be in"):
        layers_from_selection(data, ratio=0.0)
    with pytest.raises(SelectionError, match="6 layers"):
        layers_from_selection(data, num_layers=6)


# ---------------------------------------------------------------------------------------------- throughput
def test_measure_throughput_without_vllm_fails_before_scoring(monkeypatch):
    import importlib.util

    from hybridserve.selection import throughput

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    with pytest.raises(SelectionError, match="serves each chosen set in vLLM, which is not installed"):
        throughput.require_vllm()


def test_throughput_table_per_row_with_teacher_multiples_and_failures():
    """report.md's serving tables: one line per row, the teacher's rate, each budget's with its × teacher, for the
    output rate and the decode rate; then the sequences that fit; a budget whose engine failed says so in its cells
    and under the tables."""
    def row(rate, ratio=None, decode=None, decode_ratio=None):
        return {"input_len": 64, "output_len": 16, "prompts": 4, "output_tok_s": rate, "total_tok_s": 5 * rate,
                "decode_tok_s": decode, "tpot_median_s": 0.01, "vs_teacher": ratio, "decode_vs_teacher": decode_ratio}
    data = {"budgets": [{"k": 1, "throughput": {"rows": [row(1500.0, 1.5, 3000.0, 0.75)], "max_concurrency": 9.5,
                                                "scheduler": "hybridserve.serve.scheduler.HybridScheduler"}},
                        {"k": 2, "throughput": {"error": "k02 failed in vLLM (exit 1)"}}],
            "throughput": {"machine": {"vllm": "0.32.0", "device": "CPU (2 cores, x86_64)"},
                           "engine": {"dtype": "float32", "max_num_seqs": 4, "max_model_len": 80},
                           "rows": [{"input_len": 64, "output_len": 16, "num_prompts": 4}],
                           "teacher": {"rows": [row(1000.0, None, 4000.0)], "max_concurrency": 2.0}}}
    text = "\n".join(throughput_lines(data))
    assert "vLLM 0.32.0 on CPU (2 cores, x86_64)" in text and "at most 4 sequences at once" in text
    assert text.count("| in / out × prompts | teacher | K = 1 | K = 2 |") == 2
    output, decode = text.split("Decode tokens/s while every request decodes")
    assert "| 64 / 16 × 4 | 1,000 | 1,500 (1.50×) | failed |" in output
    assert "| 64 / 16 × 4 | 4,000 | 3,000 (0.75×) | failed |" in decode
    assert "Sequences of 80 tokens that fit in the cache: teacher: 2; K = 1: 10; K = 2: failed." in decode
    assert "- 2: failed in vLLM: k02 failed in vLLM (exit 1)" in text
    assert "Schedulers: teacher: vLLM's; K = 1: hybridserve's (serve/scheduler.py)." in text
    assert throughput_lines({"budgets": []}) == []
    # Repeated runs (the GPU default): the median run's rate with the range of the runs' output rates.
    data["throughput"]["engine"]["repeats"] = 3
    data["throughput"]["machine"]["host"] = "Intel Xeon (32 cores)"
    data["budgets"][0]["throughput"]["rows"][0]["output_tok_s_range"] = [1400.0, 1650.0]
    text = "\n".join(throughput_lines(data))
    assert "each row ran 3 times per model: the median run, [the lowest – the highest] output rate" in text
    assert "on CPU (2 cores, x86_64), host Intel Xeon (32 cores) (stage-0 weights" in text
    assert "| 64 / 16 × 4 | 1,000 | 1,500 [1,400 – 1,650] (1.50×) | failed |" in text
    # A budget stopped part-way (time limit) keeps its finished rows; the missing ones show – and a line says why.
    data["throughput"]["rows"].append({"input_len": 128, "output_len": 16, "num_prompts": 4})
    data["budgets"][0]["throughput"]["incomplete"] = "did not finish within 60 s after 1 of 2 rows"
    text = "\n".join(throughput_lines(data))
    assert "| 128 / 16 × 4 | – | – | failed |" in text
    assert "- K = 1: incomplete (did not finish within 60 s after 1 of 2 rows); its missing rows show –" in text


def test_throughput_summary_keeps_the_range_of_repeated_runs():
    """bench_worker's repeated runs reach the selection's summary as the range of the output rates."""
    from hybridserve.selection.throughput import _summary

    def result(rate, repeats=None):
        row = {"input_len": 64, "output_len": 16, "prompts": 4, "output_tok_s": rate, "total_tok_s": 5 * rate,
               "decode_tok_s": None, "tpot_median_s": 0.01}
        return {"rows": [dict(row, repeats=repeats) if repeats else row], "max_concurrency": 4.0}

    runs = [{"output_tok_s": r} for r in (90.0, 100.0, 130.0)]
    summary = _summary(result(100.0, runs), result(50.0))
    assert summary["rows"][0]["output_tok_s_range"] == [90.0, 130.0] and summary["rows"][0]["vs_teacher"] == 2.0
    assert "output_tok_s_range" not in _summary(result(50.0), None)["rows"][0]
    stopped = {**result(50.0), "incomplete": "failed in vLLM (exit 1) after 1 of 2 rows"}
    assert _summary(stopped, None)["incomplete"] == stopped["incomplete"]
    assert "incomplete" not in _summary(result(50.0), None)
