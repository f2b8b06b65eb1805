"""Process-wide settings of a training job: joining the run's other processes, the persistent compilation cache,
deterministic GPU ops, and stopping cleanly on SIGINT / SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import jax

from bitnet_jax.child import PARENT_ENV
from bitnet_jax.config import DistributedConfig
from bitnet_jax.errors import ConfigError, UserError

DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"
NO_COMPILE_CACHE_ENV = "BITNET_JAX_NO_COMPILE_CACHE"


def start_distributed(cfg: DistributedConfig) -> None:
    """Join the run's other processes through jax.distributed when the config names them, or when `srun` started
    this process as one task of a step of several (JAX reads the coordinator, count and id from SLURM's
    environment); a no-op otherwise and when already joined. A sweep runner's job is never joined by SLURM's
    environment alone: an allocation of several tasks around a sweep would make every job wait for peers that
    never come. Must run before anything starts JAX's backends. CPU devices of different processes use gloo."""
    slurm = (int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1) > 1 and "SLURM_PROCID" in os.environ
             and PARENT_ENV not in os.environ)
    if jax.distributed.is_initialized() or (cfg.coordinator is None and not slurm):
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if cfg.coordinator is None:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id)
    except Exception as e:  # noqa: BLE001 - JAX raises several kinds; all mean the same to the user
        where = cfg.coordinator or "the coordinator SLURM names"
        raise UserError(f"distributed: could not join the run's processes at {where} "
                        f"({str(e).splitlines()[0][:160]}); start every process with the same coordinator and "
                        f"num_processes and its own process_id") from None


def is_primary() -> bool:
    """The process that writes a run's files (metrics, summaries, reports) and holds its lock: process 0."""
    return jax.process_index() == 0


def compile_cache_dir() -> Path:
    """$BITNET_JAX_CACHE/jax_compile (default ~/.cache/bitnet_jax/jax_compile), shared by every run of a host."""
    base = os.environ.get("BITNET_JAX_CACHE") or Path.home() / ".cache" / "bitnet_jax"
    return Path(base) / "jax_compile"


def enable_compile_cache() -> None:
    """JAX's persistent compilation cache in the project's cache directory, unless the user set one or opted out
    (BITNET_JAX_NO_COMPILE_CACHE=1). The runs of a sweep share it: the second run of a shape skips XLA compilation.
    JAX writes each entry to a temporary file and renames it, so concurrent writers are safe."""
    if os.environ.get(NO_COMPILE_CACHE_ENV) or jax.config.jax_compilation_cache_dir:
        return
    path = compile_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # small models compile fast; cache all
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def request_deterministic() -> None:
    """Ask XLA for deterministic GPU ops (scatter-adds, reductions, cuDNN kernels); must run before JAX starts its
    backend, as the CLI does for a config with train.deterministic."""
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_FLAG}".strip()


def check_deterministic(wanted: bool) -> None:
    """train.deterministic on a GPU needs the XLA flag in place before the backend started."""
    if wanted and jax.default_backend() == "gpu" and DETERMINISTIC_FLAG not in os.environ.get("XLA_FLAGS", ""):
        raise ConfigError(f"train.deterministic=true needs XLA_FLAGS={DETERMINISTIC_FLAG} before JAX starts; run "
                          f"through `bitnet-jax train` (which sets it) or export it before starting Python")


class GracefulStop:
    """While active, the first SIGINT or SIGTERM only sets `requested` (the training loop saves checkpoints and
    stops at its next call boundary); a second SIGINT interrupts at once. Outside the main thread, a no-op."""

    def __init__(self):
        self.requested: int | None = None  # the signal number
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
