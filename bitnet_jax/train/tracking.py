"""Experiment tracking: JSONL always (outputs.MetricsWriter); wandb when `tracking.wandb` is offline or online."""

from __future__ import annotations

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
        self._run = wandb.init(project=t.project, entity=t.entity, group=t.group, name=t.name, tags=list(t.tags),
                               mode=t.wandb, dir=str(out_dir), config=cfg.to_dict(), id=run_id, resume="allow")
        self.run_id = self._run.id
        self.offline = t.wandb == "offline"

    def log(self, row: dict) -> None:
        self._run.log({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])

    def finish(self, summary: dict) -> None:
        self._run.summary.update({k: v for k, v in summary.items() if v is not None})
        self._run.finish()
        if self.offline:
            print(f"wandb: offline run saved; upload it with: wandb sync {self._run.dir}/..")


def make_tracker(cfg: RunConfig, out_dir, run_id: str | None = None) -> WandbTracker | None:
    return None if cfg.tracking.wandb == "disabled" else WandbTracker(cfg, out_dir, run_id)
