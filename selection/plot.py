"""plot.png of a selection: importance per layer with the chosen layers marked, and score curves over tokens."""

from __future__ import annotations

import os
from pathlib import Path


def write_plot(folder: Path, data: dict) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = data["num_layers"]
    importance = data.get("scores", {}).get("importance", {})
    primary = next((b for b in data["budgets"] if b.get("primary")), data["budgets"][0] if data["budgets"] else None)
    chosen = set(primary["layers"]) if primary else set()
    history = data.get("history") or []
    fig, axes = plt.subplots(1, 2 if history else 1, figsize=(13 if history else 7, 4), squeeze=False)
    ax = axes[0][0]
    key = data.get("score_key") or "importance"
    if data["method"] in ("ga-s2", "iterative") and data.get("scores", {}).get(key):
        # GA: the KL with only that layer softmax reads more directly than its negation
        values = [data["scores"][key].get(str(i), 0.0) for i in range(n)]
        ylabel = f"{key.replace('_', ' ')} with only this layer softmax (lower = keep)"
    else:
        values = [importance.get(str(i), 0.0) for i in range(n)]
        ylabel = "importance (higher = keep softmax)"
    colors = ["tab:red" if i in chosen else "tab:gray" for i in range(n)]
    ax.bar(range(n), values, color=colors)
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(f"{data['method']}: chosen K={len(chosen)} in red")
    if history:
        ax = axes[0][1]
        for layer in range(n):
            points = [(h["tokens"], h["per_layer"][str(layer)]) for h in history if str(layer) in h.get("per_layer", {})]
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, color="tab:red" if layer in chosen else "tab:gray", alpha=0.9 if layer in chosen else 0.4,
                    linewidth=1.6 if layer in chosen else 0.8)
        stop = (data.get("early_stop") or {}).get("stopped_at_tokens")
        if stop:
            ax.axvline(stop, color="black", linestyle="--", linewidth=0.8, label="early stop")
            ax.legend()
        ax.set_xlabel("tokens per candidate")
        ax.set_ylabel("importance" if data["method"] == "avg-s2" else key.replace("_", " "))
        ax.set_title("score per candidate over tokens (chosen in red)")
    fig.tight_layout()
    path = Path(folder) / "plot.png"
    tmp = path.with_name(f".plot.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
