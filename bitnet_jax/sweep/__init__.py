"""Sweeps: a YAML spec -> planned runs -> a resumable runner -> results table."""

from bitnet_jax.sweep.runner import SweepResult, run
from bitnet_jax.sweep.spec import PlannedRun, SweepSpec, expand, load

__all__ = ["SweepResult", "run", "PlannedRun", "SweepSpec", "expand", "load"]
