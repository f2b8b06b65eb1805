"""Checkpoints through orbax's CheckpointManager: keep the last K, written atomically (a killed save leaves no
half checkpoint that a restore would pick up)."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from bitnet_jax.errors import CheckpointError


class Checkpoints:
    def __init__(self, directory: str | Path, keep: int):
        self.directory = Path(directory).resolve()
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                         meta=ocp.args.JsonSave(meta)))

    def restore(self, step: int, like) -> tuple[object, dict]:
        """The state saved at `step`, shaped like the pytree `like` (arrays or ShapeDtypeStructs)."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            got = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                                       meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{self.directory}: checkpoint {step} does not match this model and optimiser "
                                  f"({str(e).splitlines()[0][:200]}); resume with the run's own config.yaml") from None
        return got["state"], got["meta"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
