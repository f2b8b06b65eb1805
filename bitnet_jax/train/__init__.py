"""Training: optimiser and schedules, the pure step, the loop, checkpoints and run outputs."""

from bitnet_jax.train.loop import RunResult, run
from bitnet_jax.train.restore import LoadedRun, load_run
from bitnet_jax.train.optim import Hyperparams, lr_schedule, make_optimizer, wd_schedule

__all__ = ["RunResult", "run", "LoadedRun", "load_run", "Hyperparams", "lr_schedule", "make_optimizer", "wd_schedule"]
