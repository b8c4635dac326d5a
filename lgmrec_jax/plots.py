"""Training-curve figure written at the end of every run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(records: list[dict], path: Path, valid_metric: str, title: str = "") -> None:
    """Loss per epoch (left) and validation metrics per epoch (right), best epoch marked."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["loss"] for r in records], label="total loss")
    if "bpr" in records[0]:
        ax_loss.plot(epochs, [r["bpr"] for r in records], label="BPR", alpha=0.7)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.legend()
    evaluated = [r for r in records if "valid" in r]
    if evaluated:
        xs = [r["epoch"] for r in evaluated]
        for name in (valid_metric, valid_metric.replace("recall", "ndcg")):
            if name in evaluated[0]["valid"]:
                ax_val.plot(xs, [r["valid"][name] for r in evaluated], label=f"valid {name}")
        scores = [r["valid"][valid_metric] for r in evaluated]
        best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # first epoch reaching the best score
        ax_val.axvline(xs[best], color="grey", linestyle=":", label=f"best epoch {xs[best]}")
        ax_val.set_xlabel("epoch")
        ax_val.set_ylabel("validation metric")
        ax_val.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
