"""Checkpoints with orbax: the training state pytree plus a small JSON record of the host-side loop state.

orbax writes each step into a temporary directory and renames it when complete, so a crash mid-write leaves the
previous checkpoint intact. Restoring needs the abstract target (shapes, dtypes, shardings) so that optax state
comes back with its own NamedTuple types.

A checkpoint damaged afterwards (a truncated file, a disk error) is not fatal while an older one is intact:
`restore` tries the newest first and falls back, saying which step directory it could not read. For a run that goes
on (`quarantine` given) the unreadable step directories are moved out of the way, so that orbax, which only saves
steps newer than the newest it sees, writes those epochs again; nothing is deleted. The loop record is stored as
strict JSON (a -inf best score becomes null; the trainer reads it back).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Callable

import jax
import orbax.checkpoint as ocp

from lgmrec_jax import jsonio
from lgmrec_jax.errors import InputError


class CheckpointError(InputError):
    """No intact checkpoint to restore; the message names the directory and what was wrong with each step."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _silence_aborted_reads() -> None:
    """When a read of a damaged step fails, orbax closes its event loop while tensorstore still completes the other
    reads of that step; their callbacks then fail with 'Event loop is closed' (printed as tracebacks through
    sys.unraisablehook) and their futures are logged by asyncio. `restore` reports the failure itself, so these
    echoes of it are dropped; any other unraisable exception still goes to the previous hook."""
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    previous = sys.unraisablehook
    if getattr(previous, "_drops_closed_loop", False):
        return

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
            return
        previous(unraisable)

    hook._drops_closed_loop = True
    sys.unraisablehook = hook


class Checkpointer:
    def __init__(self, directory: Path, max_to_keep: int = 2):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "loop"))

    def save(self, epoch: int, state, loop: dict) -> None:
        self._manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                          loop=ocp.args.JsonSave(jsonio.to_strict(loop))))
        self._manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, target_state, epoch: int | None = None, check_loop: Callable[[dict], None] | None = None,
                quarantine: Path | None = None, warn: Callable[[str], None] = _warn):
        """Returns (state, loop dict) of `epoch` (default: the newest intact one), shaped and sharded like
        `target_state`. `check_loop` may raise on a loop record that parses but makes no sense (treated as damage).
        With `quarantine`, unreadable step directories newer than the restored one are moved there."""
        steps = [epoch] if epoch is not None else sorted(self._manager.all_steps(), reverse=True)
        if not steps:
            raise CheckpointError(f"no checkpoint under {self.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        _silence_aborted_reads()  # before reading: the echoes of a failure can precede the exception itself
        failed = []
        for step in steps:
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), loop=ocp.args.JsonRestore()))
                if check_loop is not None:
                    check_loop(restored.loop)
            except Exception as e:  # noqa: BLE001 - any failure to read a step means that step is damaged
                reason = (str(e).strip().splitlines() or [""])[0]
                reason = reason if len(reason) <= 100 else reason[:100] + "…"
                warn(f"checkpoint {self.directory / str(step)} is unreadable ({type(e).__name__}: {reason})")
                failed.append((step, reason))
                continue
            if failed:
                warn(f"using the newest intact checkpoint, epoch {step}, instead")
                if quarantine is not None:
                    self._move_aside([s for s, _ in failed], Path(quarantine), warn)
            return restored.state, restored.loop
        details = "; ".join(f"epoch {s}: {r}" for s, r in failed)
        raise CheckpointError(f"no intact checkpoint under {self.directory} ({details}); start a new run")

    def _move_aside(self, steps: list[int], quarantine: Path, warn: Callable[[str], None]) -> None:
        quarantine.mkdir(parents=True, exist_ok=True)
        for step in steps:
            target = quarantine / str(step)
            n = 1
            while target.exists():
                target, n = quarantine / f"{step}.{n}", n + 1
            (self.directory / str(step)).rename(target)
            warn(f"moved the unreadable {self.directory / str(step)} to {target}; its epochs are trained again")
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()
