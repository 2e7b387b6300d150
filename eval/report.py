"""Markdown tables and the score-vs-length plot of an evaluation summary (see runner.summarize)."""

from __future__ import annotations

from pathlib import Path


def _len_label(n: int) -> str:
    """1024 -> 1K, 1536 -> 1.5K, 512 -> 512, 1000 -> 1000."""
    return f"{n / 1024:g}K" if n >= 1024 and n % 256 == 0 else str(n)


def _scores(summary: dict) -> dict[tuple[str, str, int], float]:
    return {(r["model"], r["task"], r["length"]): r["score"] for r in summary["results"]}


def markdown_report(summary: dict) -> str:
    models = [m["label"] for m in summary["models"]]
    lengths = summary["settings"]["lengths"]
    tasks = summary["settings"]["tasks"]
    recall = summary["recall_tasks"]
    scores = _scores(summary)
    s = summary["settings"]
    lines = [
        f"Settings: {s['samples']} samples per task and length, seed {s['seed']}, haystack {s['haystack']}, "
        f"chat template {s['chat']}.",
        "",
    ]
    if recall:
        lines += [f"Score (mean over {len(recall)} tasks: {', '.join(recall)}; 1 = every answer recalled)", ""]
        lines += ["| model | " + " | ".join(_len_label(n) for n in lengths) + " |",
                  "|---|" + "---:|" * len(lengths)]
        for m in models:
            avg = summary["average"][m]
            lines.append(f"| {m} | " + " | ".join(f"{avg[str(n)]:.3f}" for n in lengths) + " |")
        lines += ["", "Per task", ""]
        cols = [(m, n) for m in models for n in lengths]
        head = [f"{m} {_len_label(n)}" if len(models) > 1 else _len_label(n) for m, n in cols]
        lines += ["| task | " + " | ".join(head) + " |", "|---|" + "---:|" * len(cols)]
        for t in recall:
            lines.append(f"| {t} | " + " | ".join(f"{scores[(m, t, n)]:.3f}" for m, n in cols) + " |")
    if "ppl" in tasks:
        lines += ["", f"Perplexity on {s['ppl_text']} (first {s['ppl_tokens']} tokens; window = length, "
                      f"stride {s['ppl_stride'] or 'length/2'}; lower is better)", ""]
        lines += ["| model | " + " | ".join(_len_label(n) for n in lengths) + " |",
                  "|---|" + "---:|" * len(lengths)]
        for m in models:
            lines.append(f"| {m} | " + " | ".join(f"{scores[(m, 'ppl', n)]:.2f}" for n in lengths) + " |")
    return "\n".join(lines) + "\n"


def plot_scores(summary: dict, path: str | Path) -> Path | None:
    """Score vs length, one line per model: the average panel first, then one panel per task (and perplexity).
    Returns the path, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = [m["label"] for m in summary["models"]]
    lengths = summary["settings"]["lengths"]
    tasks = summary["settings"]["tasks"]
    recall = summary["recall_tasks"]
    scores = _scores(summary)
    panels = (["average"] if recall else []) + list(recall) + (["ppl"] if "ppl" in tasks else [])
    cols = min(4, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for m in models:
            if panel == "average":
                ys = [summary["average"][m][str(n)] for n in lengths]
            else:
                ys = [scores[(m, panel, n)] for n in lengths]
            ax.plot(lengths, ys, marker="o", label=m)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths, [_len_label(n) for n in lengths])
        ax.minorticks_off()
        if panel == "ppl":
            ax.set_title("perplexity (lower is better)", fontsize=10)
        else:
            ax.set_ylim(-0.03, 1.03)
            ax.set_title("average score" if panel == "average" else panel, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("context length (tokens)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
