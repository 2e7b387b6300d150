"""The selection folder's products: selection.json, report.md (and plot.png, see plot.py).

selection.json is what `hybridserve convert --layers-from` reads: method, teacher identity, per-layer scores,
per-round score history, the ranking (best first), the chosen set for every budget with its inference
memory, early-stopping statistics and the tokens spent.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from ..serve.bench import scheduler_name
from .budgets import budget_ks, nested_sets, resolve_budget
from .errors import SelectionError
from .memory_report import memory_for_set
from .rounds import write_json

FORMAT = "hybridserve-selection"
VERSION = 1


def versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {"hybridserve": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def teacher_config_from_dict(data: dict):
    from transformers import AutoConfig

    values = {k: v for k, v in data.items() if k != "model_type"}
    return AutoConfig.for_model(data["model_type"], **values)


def budget_entries(ranking: list[int], num_layers: int, primary_k: int, extra, teacher_config, mixer: str,
                   gqa_mode: str, short_conv: bool, sets_for=None) -> list[dict]:
    """Every reported budget: its layers (a prefix of the ranking, or `sets_for(k)` for uniform) and memory."""
    entries = []
    for entry in budget_ks(num_layers, primary_k, extra):
        k = entry["k"]
        if sets_for is not None:
            layers = sets_for(k)
        elif k <= len(ranking):
            layers = nested_sets(ranking, [k])[k]
        else:
            continue  # e.g. iterative greedy picked fewer layers than this budget needs
        entries.append({**entry, "layers": layers,
                        "memory": memory_for_set(teacher_config, layers, mixer, gqa_mode, short_conv)})
    return entries


def write_selection(folder: Path, data: dict) -> Path:
    data = {"format": FORMAT, "version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path = Path(folder) / "selection.json"
    write_json(path, data)
    return path


def read_selection(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "selection.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SelectionError(f"no selection file at {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise SelectionError(f"cannot read the selection file {path}: {e}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("ranking"), list):
        raise SelectionError(f"{path} is not a hybridserve selection file")
    return data


def layers_from_selection(data: dict, num_layers: int | None = None, ratio: float | None = None,
                          k: int | None = None) -> list[int]:
    """The softmax layers for a budget: the top-K prefix of the ranking (K from k, ratio, or the primary budget)."""
    n = data["num_layers"]
    if num_layers is not None and num_layers != n:
        raise SelectionError(f"the selection file is for a {n}-layer teacher, this teacher has {num_layers} layers")
    if k is None and ratio is None:
        primary = [b for b in data.get("budgets", []) if b.get("primary")]
        if not primary:
            raise SelectionError("the selection file has no primary budget; pass --ratio")
        return list(primary[0]["layers"])
    k = resolve_budget(n, ratio, k)
    if data.get("method") == "uniform":
        for b in data.get("budgets", []):
            if b["k"] == k:
                return list(b["layers"])
        raise SelectionError(f"the uniform selection file has no set of {k} layers; run select with --k {k}")
    if k > len(data["ranking"]):
        raise SelectionError(f"K = {k} but the selection ranks only {len(data['ranking'])} layers")
    return sorted(data["ranking"][:k])


def _fmt_bytes(n) -> str:
    from ..export.memory import format_bytes

    return format_bytes(n) if n is not None else "-"


def throughput_lines(data: dict) -> list[str]:
    """The serving tables of --measure-throughput, one line per row: output tokens/s over the whole run, then the
    decode rate while every request decodes (prefill excluded), the teacher's and each budget's with its multiple
    of the teacher's; last, how many sequences of the longest row fit in each model's cache."""
    run = data.get("throughput")
    if not run:
        return []
    m, budgets, teacher = run["machine"], data["budgets"], run["teacher"]
    head = ["| in / out × prompts | teacher | " + " | ".join(f"K = {b['k']}" for b in budgets) + " |",
            "|---" * (2 + len(budgets)) + "|"]
    repeats = run["engine"].get("repeats", 1)
    host = f", host {m['host']}" if m.get("host") else ""
    repeated = (f"; each row ran {repeats} times per model: the median run, [the lowest – the highest] output rate"
                if repeats > 1 else "")
    lines = [f"Serving throughput in vLLM {m.get('vllm')} on {m.get('device')}{host} (stage-0 weights, random-token "
             f"prompts, EOS ignored, {run['engine']['dtype']}, at most {run['engine'].get('max_num_seqs', '?')} "
             f"sequences at once){repeated}.", ""]
    for key, ratio, title in (("output_tok_s", "vs_teacher", "Output tokens/s over the whole run (× teacher):"),
                              ("decode_tok_s", "decode_vs_teacher",
                               "Decode tokens/s while every request decodes (× teacher):")):
        lines += [title, ""] + head
        for i, row in enumerate(run["rows"]):
            cells = [_rate(teacher, i, key, None)] + [_rate(b.get("throughput", {}), i, key, ratio) for b in budgets]
            label = f"{row['input_len']} / {row['output_len']} × {row['num_prompts']}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    fits = [_count(teacher)] + [_count(b.get("throughput", {})) for b in budgets]
    lines += [f"Sequences of {run['engine'].get('max_model_len', '?')} tokens that fit in the cache: teacher: "
              + "; ".join([fits[0]] + [f"K = {b['k']}: {n}" for b, n in zip(budgets, fits[1:])]) + ".", ""]
    served = [("teacher", teacher)] + [(f"K = {b['k']}", b.get("throughput", {})) for b in budgets]
    lines += ["Schedulers: " + "; ".join(f"{name}: {scheduler_name(summary.get('scheduler'))}"
                                         for name, summary in served if "error" not in summary) + ".", ""]
    errors = [(b["k"], b["throughput"]["error"]) for b in budgets if "error" in b.get("throughput", {})]
    errors += [("teacher", teacher["error"])] if "error" in teacher else []
    lines += [f"- {name}: failed in vLLM: {text}" for name, text in errors] + ([""] if errors else [])
    stopped = [(name, summary["incomplete"]) for name, summary in served if summary.get("incomplete")]
    lines += [f"- {name}: incomplete ({text}); its missing rows show –" for name, text in stopped]
    lines += [""] if stopped else []
    return lines


def _rate(summary: dict, i: int, key: str, ratio: str | None) -> str:
    rows = summary.get("rows") or []
    if i >= len(rows):
        return "failed" if "error" in summary else "–"
    r = rows[i]
    if r.get(key) is None:
        return "–"
    spread = r.get(f"{key}_range")
    return (f"{r[key]:,.0f}" + (f" [{spread[0]:,.0f} – {spread[1]:,.0f}]" if spread else "")
            + (f" ({r[ratio]:.2f}×)" if ratio and r.get(ratio) else ""))


def _count(summary: dict) -> str:
    n = summary.get("max_concurrency")
    return "failed" if "error" in summary else ("–" if n is None else f"{n:,.0f}")


def markdown_report(data: dict) -> str:
    lines = [f"# Layer selection: {data['method']}", ""]
    t = data["teacher"]
    lines += [f"Teacher `{t.get('source')}` ({t.get('model_type')}, {data['num_layers']} layers, digest `{t['digest']}`); "
              f"mixer {data.get('mixer')}.", ""]
    if data.get("score_key"):
        lines += [f"Score: **{data['score_key']}** (ranking: {data.get('ranking_rule', '')}).", ""]
    lines += [f"Ranking (best first): {data['ranking']}", ""]
    lines += ["| budget | K | softmax layers | KV / token | vs teacher | state / sequence | cache @ 32K |",
              "|---|---|---|---|---|---|---|"]
    for b in data["budgets"]:
        m = b["memory"]
        tag = " (requested)" if b.get("primary") else ""
        lines.append(f"| {b['ratio']:.3f}{tag} | {b['k']} | {b['layers']} | {_fmt_bytes(m['kv_bytes_per_token'])} | "
                     f"{m['kv_fraction']:.3f} | {_fmt_bytes(m['state_bytes_per_sequence'])} | "
                     f"{_fmt_bytes(m['cache_bytes_per_sequence']['32768'])} |")
    lines.append("")
    lines += throughput_lines(data)
    scores = data.get("scores", {})
    if scores.get("train_kl"):
        lines += ["| layer | train KL (window) | held-out KL | importance |", "|---|---|---|---|"]
        for layer in data["ranking"]:
            key = str(layer)
            lines.append(f"| {layer} | {scores['train_kl'].get(key, float('nan')):.5f} | "
                         f"{scores['heldout_kl'].get(key, float('nan')):.5f} | {scores['importance'].get(key, float('nan')):.5f} |")
        lines.append("")
    es = data.get("early_stop")
    if es:
        if es.get("stopped_at_round"):
            lines.append(f"Early stop: the top-{es['k']} set was stable (Jaccard ≥ {es['threshold']} for {es['patience']} "
                         f"rounds) after round {es['stopped_at_round']} of {es['total_rounds']}.")
        else:
            lines.append(f"Early stop: {'not reached' if es.get('enabled') else 'off'}; all {es['rounds_run']} rounds ran.")
        lines.append("")
    tokens = data.get("tokens")
    if tokens:
        lines.append(f"Tokens: {tokens['spent']:,} spent of a {tokens['budget']:,} budget "
                     f"({tokens['saved']:,} saved, {tokens['saved_fraction']:.0%}); "
                     f"{tokens['per_candidate']:,} per candidate.")
        lines.append("")
    if data.get("timings"):
        lines.append("Time: " + ", ".join(f"{k} {v:.1f} s" for k, v in data["timings"].items()))
        lines.append("")
    return "\n".join(lines)


def write_report(folder: Path, data: dict) -> Path:
    path = Path(folder) / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text(markdown_report(data))
    tmp.replace(path)
    return path
