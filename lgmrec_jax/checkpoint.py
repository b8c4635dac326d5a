"""Checkpoints with orbax: the training state pytree plus a small JSON record of the host-side loop state.

orbax writes each step into a temporary directory and renames it when complete, so a crash mid-write leaves the
previous checkpoint intact. Restoring needs the abstract target (shapes, dtypes, shardings) so that optax state
comes back with its own NamedTuple types.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: Path, max_to_keep: int = 2):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(Path(directory).resolve(), options=options,
                                              item_names=("state", "loop"))

    def save(self, epoch: int, state, loop: dict) -> None:
        self._manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                          loop=ocp.args.JsonSave(loop)))
        self._manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, target_state, epoch: int | None = None):
        """Returns (state, loop dict) of `epoch` (default: latest), shaped and sharded like `target_state`."""
        epoch = self._manager.latest_step() if epoch is None else epoch
        if epoch is None:
            raise FileNotFoundError(f"no checkpoint under {self._manager.directory}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target_state)
        restored = self._manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       loop=ocp.args.JsonRestore()))
        return restored.state, restored.loop

    def close(self) -> None:
        self._manager.close()
