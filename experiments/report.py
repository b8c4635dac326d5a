"""Writers for result tables and figures: one Table → markdown + CSV, and the few plot shapes the drivers need.

A Table holds rows as dicts of raw values. A column of kind "mean_std" holds (mean, std) pairs: the markdown shows
"mean ± std", the CSV gets two numeric columns `<key>_mean`, `<key>_std` so nobody has to parse strings back.

Outputs follow the project's write rule (lgmrec_jax/atomic.py): each file is written to a temporary sibling and
renamed, and a table's files (<stem>.md, .csv, .json, .png) replace only a table a driver wrote before: one whose
.md starts with a markdown title and carries the provenance line of `run_table.header_notes` ("Table written at
git ..."). Anything else at those names is refused before any run starts (`check_outputs`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np

from lgmrec_jax import atomic, jsonio
from lgmrec_jax.errors import InputError

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value). NaN for no values."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Column:
    header: str  # markdown header
    key: str  # row dict key; CSV column name (or its prefix for mean_std)
    kind: str = "text"  # text | float | int | mean_std
    digits: int = 4


@dataclasses.dataclass
class Table:
    title: str
    notes: list[str]  # lines printed under the title: protocol, selection rule, caps
    columns: list[Column]
    rows: list[dict] = dataclasses.field(default_factory=list)

    def add(self, **row) -> None:
        self.rows.append(row)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        lines += [f"{note}  " if i < len(self.notes) - 1 else note for i, note in enumerate(self.notes)]
        lines += ["", "| " + " | ".join(c.header for c in self.columns) + " |",
                  "|" + "|".join("---" if c.kind == "text" else "---:" for c in self.columns) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(_cell(c, row.get(c.key)) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"

    def csv_rows(self) -> tuple[list[str], list[dict]]:
        names = []
        for c in self.columns:
            names += [f"{c.key}_mean", f"{c.key}_std"] if c.kind == "mean_std" else [c.key]
        out = []
        for row in self.rows:
            flat = {}
            for c in self.columns:
                value = row.get(c.key)
                if c.kind == "mean_std":
                    mean, std = value if value is not None else (None, None)
                    flat[f"{c.key}_mean"], flat[f"{c.key}_std"] = _num(mean), _num(std)
                else:
                    flat[c.key] = _num(value) if c.kind in ("float", "int") else ("" if value is None else value)
            out.append(flat)
        return names, out

    def write(self, stem: Path, payload: dict | None = None, **json_kwargs) -> tuple[Path, Path]:
        """Writes <stem>.md and <stem>.csv, and `payload` (the full per-seed provenance behind the table) as
        <stem>.json when given (jsonio.write_json; `json_kwargs` go to json.dumps); returns the .md and .csv paths.
        A table without rows is refused: it would replace a real one with nothing."""
        stem = Path(stem)
        if not self.rows:
            raise InputError(f"{stem}: nothing ran, so there is no table to write (the files there are unchanged)")
        check_outputs(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        md, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
        atomic.write_text(md, self.markdown())
        names, rows = self.csv_rows()
        with atomic.replacing(csv_path, "w") as f:
            writer = csv.DictWriter(f, fieldnames=names)
            writer.writeheader()
            writer.writerows(rows)
        if payload is not None:
            jsonio.write_json(stem.with_suffix(".json"), payload, indent=1, **json_kwargs)
        return md, csv_path


OUTPUT_SUFFIXES = (".md", ".csv", ".json", ".png")
PROVENANCE_MARK = "Table written at git "  # the last note of run_table.header_notes, in every driver's table


def is_own_table(stem: Path) -> bool:
    """True when <stem>.md is a table a driver wrote (module docstring): then its sibling outputs are too."""
    md = Path(stem).with_suffix(".md")
    if not md.is_file() or not atomic.first_line(md).startswith("# "):
        return False
    try:
        return any(line.startswith(PROVENANCE_MARK) for line in md.read_text(encoding="utf-8").splitlines()[:40])
    except (OSError, UnicodeDecodeError):
        return False


def check_outputs(stem: Path) -> None:
    """Refuses, before anything runs, output names that hold something a driver did not write."""
    stem = Path(stem)
    own = is_own_table(stem)
    for suffix in OUTPUT_SUFFIXES:
        atomic.refuse_foreign(stem.with_suffix(suffix), "output", lambda _: own)


def _num(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def _cell(column: Column, value) -> str:
    if value is None:
        return "—"
    if column.kind == "mean_std":
        mean, std = value
        if mean is None or math.isnan(mean):
            return "—"
        if std is None:  # a deterministic value (e.g. the popularity baseline): no spread to show
            return f"{mean:.{column.digits}f}"
        return f"{mean:.{column.digits}f} ± {std:.{column.digits}f}"
    if column.kind == "float":
        return "—" if math.isnan(value) else f"{value:.{column.digits}f}"
    return str(value).replace("|", "\\|")  # a pipe inside a cell would split the markdown column


# ----------------------------------------------------------------------------------------------------------------
# Figures


def bar_plot(path: Path, labels: Sequence[str], means: Sequence[float], stds: Sequence[float], ylabel: str,
             title: str, reference: float | None = None, reference_label: str = "") -> None:
    """One bar per label with ±std error bars; an optional horizontal reference line (e.g. the full model)."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.6))
    xs = np.arange(len(labels))
    ax.bar(xs, means, yerr=stds, capsize=4, color="#4c72b0")
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle=":", label=reference_label or None)
        if reference_label:
            ax.legend(loc="lower right")
    ax.set_xticks(xs, labels, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    _zoom(ax, np.asarray(means) - np.asarray(stds), np.asarray(means) + np.asarray(stds))
    _save(fig, path)


def line_plot(path: Path, xs: Sequence[float], series: dict[str, tuple[Sequence[float], Sequence[float]]],
              xlabel: str, ylabel: str, title: str, log_x: bool = False) -> None:
    """One line per series with a ±std band; `series` maps a name to (means, stds) aligned with xs."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, (means, stds) in series.items():
        means, stds = np.asarray(means, float), np.asarray(stds, float)
        ax.plot(xs, means, marker="o", label=name)
        ax.fill_between(xs, means - stds, means + stds, alpha=0.2)
    if log_x:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def grouped_bar_plot(path: Path, groups: Sequence[str], series: dict[str, tuple[Sequence[float], Sequence[float]]],
                     xlabel: str, ylabel: str, title: str) -> None:
    """Bars grouped by `groups` (x axis), one colour per series (e.g. per model)."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 2), 3.8))
    width = 0.8 / max(1, len(series))
    xs = np.arange(len(groups))
    for index, (name, (means, stds)) in enumerate(series.items()):
        ax.bar(xs + (index - (len(series) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=name)
    ax.set_xticks(xs, groups)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # beside the axes: never over a bar
    _save(fig, path)


def _zoom(ax, lows, highs) -> None:
    # Ablation differences are small next to the metric's absolute value; start the axis near the data so they
    # are visible, but say so by not starting at 0 only when the spread is narrow.
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if lows.size and highs.size:
        lo, hi = float(lows.min()), float(highs.max())
        span = max(hi - lo, 1e-4)
        if lo - span > 0:
            ax.set_ylim(lo - span, hi + 0.5 * span)


def _save(fig, path: Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:
        with atomic.replacing(path, "wb") as f:
            fig.savefig(f, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
