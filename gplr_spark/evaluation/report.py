"""report: markdown tables beside the paper's numbers, and PNG plots, in reports/."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

PAPER_INFERENCE = {  # F1 anchors measured with the paper's formula (docs/gplr.md, section 7)
    ("paper formula", 0.05): 0.60,
    ("paper formula", 0.20): 0.64,
    ("popularity top-5", None): 0.57,
    ("item-label vote top-5", None): 0.64,
}


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub markdown table (no tabulate dependency)."""
    cols = list(df.columns)

    def cell(v: object) -> str:
        if isinstance(v, float):
            return format(v, floatfmt) if v == v else ""
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def inference_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean (and sd) F1/P/R over seeds per rate, strategy and method."""
    g = curves.groupby(["strategy", "method", "rate"], sort=False)
    out = g.agg(
        f1=("f1", "mean"),
        f1_sd=("f1", "std"),
        precision=("precision", "mean"),
        recall=("recall", "mean"),
        prototypes=("prototypes", "first"),
        evaluated=("evaluated", "mean"),
    ).reset_index()
    return out


def plot_inference(summary: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, strategy in zip(axes, ["random", "du"], strict=True):
        sub = summary[summary.strategy == strategy]
        for method, part in sub.groupby("method", sort=False):
            ax.errorbar(
                part.rate * 100,
                part.f1,
                yerr=part.f1_sd.fillna(0),
                marker="o",
                capsize=2,
                label=method,
            )
        ax.axhline(0.70, color="grey", ls=":", lw=1)
        ax.set_title(f"{strategy} prototypes")
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 5, 10, 20], ["1", "2", "5", "10", "20"])
        ax.set_xlabel("prototypes, % of customers")
    axes[0].set_ylabel("mean per-user F1 vs GPT-4 labels")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_silhouette(sil: pd.DataFrame, paper: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for rep, part in sil.groupby("representation"):
        mean = part.groupby("clusters").silhouette.mean()
        ax.plot(mean.index, mean.values, marker="o", label=f"{rep} (ours)")
        ref = paper[rep]
        ax.plot(list(ref), list(ref.values()), ls="--", marker="x", label=f"{rep} (paper)")
    ax.set_xlabel("k-means clusters")
    ax.set_ylabel("silhouette")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(logs: Sequence, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for log in logs:
        if log.protocol != "A" or log.seed != 0:
            continue
        ax.plot(
            [c["epoch"] for c in log.curve],
            [c["ndcg@20"] for c in log.curve],
            marker=".",
            label=log.name,
        )
    ax.axhline(0.2575, color="grey", ls=":", lw=1, label="paper LightGCN .2575")
    ax.axhline(0.2617, color="black", ls=":", lw=1, label="paper A-LGCN3 .2617")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test NDCG@20 (protocol A, seed 0)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
