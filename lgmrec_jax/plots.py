"""Training-curve figure written at the end of every run."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

from lgmrec_jax import atomic

matplotlib.use("Agg")  # headless: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# Loss parts the models log besides BPR (lgmrec: hcl, reg; gume: vt, bm, um, reg1, reg2), unweighted.
AUXILIARY_LOSS_PARTS = ("hcl", "reg", "vt", "bm", "um", "reg1", "reg2")


def plot_curves(records: list[dict], path: Path, valid_metric: str, title: str = "") -> None:
    """Loss per epoch (left) and validation metrics per epoch (right), best epoch marked.

    The log's loss parts other than BPR (LGMRec's hcl, reg) are stored unweighted, while `loss` is the weighted
    total; the panel shows total − BPR, i.e. the weighted sum of those other terms (for LGMRec mostly
    cl_weight · HCL), which is what the total is made of, rather than unweighted parts on another scale."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_loss.plot(epochs, [r["loss"] for r in records], label="total loss")
    if "bpr" in records[0]:
        ax_loss.plot(epochs, [r["bpr"] for r in records], label="BPR", alpha=0.7)
        extra = [name for name in records[0] if name in AUXILIARY_LOSS_PARTS]
        if extra:
            rest = [math.nan if r["loss"] is None or r["bpr"] is None else r["loss"] - r["bpr"] for r in records]
            ax_loss.plot(epochs, rest, alpha=0.7, label=f"total − BPR (weighted {' + '.join(extra)})")
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers, also on short runs
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
    try:
        with atomic.replacing(path, "wb") as f:  # the project's write rule: complete or absent
            fig.savefig(f, dpi=110, format="png")
    finally:
        plt.close(fig)
