"""What must I rent? Answered by the target's compiler before renting.

    smallest_topology("gume", data, "v5e")        → the first of v5e 1x1, 2x2, 2x4, 4x4, ... whose compiled train
                                                     step, embedding pass and evaluation batch all fit per chip
    largest_batch("gume", data, target)           → the largest train.train_batch_size (a multiple of 1024, at most
                                                     the training interactions) whose train step fits that target

Every verdict is a compile for that target (report.compile_run): nothing is extrapolated from another size. A batch
size changes only the train step (embedding and evaluation programs do not depend on it), so the batch search
compiles the train step alone.
"""

from __future__ import annotations

from lgmrec_jax.aot import report, targets
from lgmrec_jax.data.dataset import Dataset

# Single-host slices first (what one TPU VM offers), then multi-host pod slices.
TOPOLOGIES = {
    "v5e": ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"),
    "v6e": ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"),
    "v4": ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4"),
    "v5p": ("2x2x1", "2x2x2", "2x2x4", "2x4x4", "4x4x4"),
    "h100": ("1", "2", "4", "8"),
}


def smallest_topology(model: str, data: Dataset, generation: str, overrides=(), log=print) -> tuple[str | None,
                                                                                                    list[dict]]:
    """(the first topology of `generation` on which every program fits, or None; the rows compiled on the way)."""
    if generation not in TOPOLOGIES:
        raise targets.TargetError(f"--generation {generation!r}: choose one of {', '.join(TOPOLOGIES)}")
    tried = []
    for grid in TOPOLOGIES[generation]:
        target = targets.parse(f"{generation}:{grid}")
        rows = report.compile_run(model, data, target, overrides, stop_at_misfit=True)
        tried += rows
        for r in rows:
            log(one_line(r))
        if len(rows) == len(report.PROGRAMS) and all(r.get("fits") for r in rows):
            return target.name, tried
    return None, tried


def largest_batch(model: str, data: Dataset, target: targets.Target, overrides=(), start: int = 2048,
                  limit: int = 1 << 22, step: int = 1024, log=print) -> tuple[int | None, list[dict]]:
    """(the largest train batch, a multiple of `step`, whose train step fits `target`; None if `start` does not)."""
    tried = []
    # A batch beyond the epoch's interactions is one padded batch per epoch: no larger batch means anything.
    limit = min(limit, -(-len(data.train) // step) * step)

    def fits(batch: int) -> bool:
        row = report.compile_run(model, data, target, [*overrides, f"train.train_batch_size={batch}"],
                                 programs=("train_step",))[0]
        tried.append(row)
        log(one_line(row))
        return bool(row.get("fits"))

    if not fits(start):
        return None, tried
    low, high = start, None  # low fits; high (when known) does not
    while high is None:
        if low >= limit:
            return low, tried
        if fits(min(2 * low, limit)):
            low = min(2 * low, limit)
        else:
            high = min(2 * low, limit)
    while high - low > step:
        mid = (low + high) // 2 // step * step
        if mid in (low, high):
            break
        if fits(mid):
            low = mid
        else:
            high = mid
    return low, tried


def one_line(row: dict) -> str:
    what = f"{row['target']} {row['model']} {row['program']}"
    if row.get("batch") is not None and row["program"] == "train_step":
        what += f" batch {row['batch']}"
    if row.get("error"):
        return f"  {what}: does not compile: {row['error'][:200]}"
    verdict = "fits" if row["fits"] else "does NOT fit"
    return (f"  {what}: peak {row['peak_gib']:.2f} GiB of {row['usable_gib']:.2f} GiB per chip, {verdict} "
            f"(headroom {row['headroom_gib']:+.2f} GiB), compiled in {row['compile_s']:.0f} s")
