"""Experiment tracking: JSONL always (files.MetricsWriter); wandb when `tracking.wandb` is offline or online.

One wandb run per training run: its config (the whole RunConfig), the same rows as metrics.jsonl (logged at their
step) and the final summary.json. A resumed run continues the same wandb run (its id is kept in the checkpoints).
Offline mode needs no account or key; the run is written under OUT/wandb/ and `wandb sync` uploads it later.
"""

from __future__ import annotations

from pathlib import Path

from bitnet_jax.config import RunConfig
from bitnet_jax.errors import ConfigError


class WandbTracker:
    """One wandb run per training run, fed the same rows as metrics.jsonl and the final summary."""

    def __init__(self, cfg: RunConfig, out_dir, run_id: str | None):
        try:
            import wandb
        except ImportError:
            raise ConfigError("tracking.wandb is enabled but wandb is not installed; "
                              "pip install 'bitnet-jax[wandb]' or set tracking.wandb=disabled") from None
        t = cfg.tracking
        try:
            # create_new: the runs of a vmapped group are live wandb runs side by side in one process
            self._run = wandb.init(project=t.project, entity=t.entity, group=t.group, name=t.name, tags=list(t.tags),
                                   mode=t.wandb, dir=str(out_dir), config=cfg.to_dict(), id=run_id, resume="allow",
                                   reinit="create_new")
        except Exception as e:  # wandb raises many types (no key, no network, bad entity): one line for people
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"wandb could not start a run ({reason}); for tracking.wandb=online log in with "
                              f"`wandb login` or set WANDB_API_KEY, or use tracking.wandb=offline "
                              f"(no account needed) or disabled") from None
        self.run_id = self._run.id
        self.offline = t.wandb == "offline"

    def log(self, row: dict) -> None:
        self._run.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])

    def finish(self, summary: dict) -> None:
        self._run.summary.update({k: v for k, v in summary.items() if v is not None})
        run_dir = Path(self._run.dir).parent  # .../wandb/offline-run-<time>-<id>/files -> the run folder
        self._run.finish()
        if self.offline:
            print(f"wandb: offline run saved in {run_dir}; upload it with: wandb sync {run_dir}")


def make_tracker(cfg: RunConfig, out_dir, run_id: str | None = None) -> WandbTracker | None:
    return None if cfg.tracking.wandb == "disabled" else WandbTracker(cfg, out_dir, run_id)
