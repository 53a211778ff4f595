"""PNG figures of a comparison (matplotlib, Agg backend: no display needed).

>>> plot_metrics(comparison.summary(), path=Path("docs/comparison-metrics.png"))
>>> plot_size_sweep(comparison.summary(), path=Path("docs/comparison-size-sweep.png"))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.extras import require

METRIC_LABELS = {
    "mean_auc": "mean AUC",
    "mean_average_precision": "mAP",
    "recall_at_10": "recall@10",
    "ndcg_at_10": "nDCG@10",
}


def _pyplot():
    matplotlib = require("matplotlib", extra="train")
    matplotlib.use("Agg")  # files only; must be chosen before pyplot is imported
    return require("matplotlib.pyplot", extra="train")


def plot_metrics(summary: list[dict[str, Any]], *, path: Path) -> Path:
    """One panel per metric: each configuration's mean over seeds, +- one std, at full size."""
    plt = _pyplot()
    rows = [r for r in summary if r["train_artists"] == "all"] or summary
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, len(METRIC_LABELS), figsize=(4 * len(METRIC_LABELS), 4.5))
    for ax, (metric, label) in zip(axes, METRIC_LABELS.items(), strict=True):
        means = np.array([r[f"{metric}_mean"] for r in rows])
        stds = np.array([r[f"{metric}_std"] for r in rows])
        ax.bar(np.arange(len(rows)), means, yerr=stds, capsize=3, color="tab:blue")
        ax.set_xticks(np.arange(len(rows)), names, rotation=45, ha="right")
        ax.set_title(f"{label} (mean ± std over {rows[0]['n_seeds']} seeds)", fontsize=9)
        low = float((means - stds).min())
        ax.set_ylim(max(0.0, low - 0.1 * (1 - low)), min(1.0, float((means + stds).max()) + 0.02))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_size_sweep(summary: list[dict[str, Any]], *, path: Path, metric: str = "mean_auc") -> Path:
    """A metric against the number of training artists, one line (+- std band) per config."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r["name"] for r in summary):
        rows = sorted((r for r in summary if r["name"] == name), key=lambda r: r["n_train_artists"])
        if len(rows) < 2:
            continue
        x = np.array([r["n_train_artists"] for r in rows], dtype=float)
        mean = np.array([r[f"{metric}_mean"] for r in rows])
        std = np.array([r[f"{metric}_std"] for r in rows])
        (line,) = ax.plot(x, mean, marker="o", label=name)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("training artists")
    ax.set_ylabel(METRIC_LABELS[metric])
    ax.set_title(f"{METRIC_LABELS[metric]} on the same evaluation artists (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
