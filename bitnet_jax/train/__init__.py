"""Training: optimiser and schedules, the pure step, the loop (one run or a vmapped group), checkpoints."""

from bitnet_jax.train.loop import RunResult, run, run_group
from bitnet_jax.train.optim import Hyperparams, lr_schedule, make_optimizer, wd_schedule
from bitnet_jax.train.restore import LoadedRun, load_run

__all__ = ["RunResult", "run", "run_group", "LoadedRun", "load_run", "Hyperparams", "lr_schedule", "make_optimizer",
           "wd_schedule"]
