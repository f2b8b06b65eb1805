"""From planned runs to jobs: runs of one shape that differ only in per-run values (learning rates, weight decays,
seeds) share one process and one vmapped step; a job's size is bounded by an estimate of device memory.

Also the device facts the runner needs without starting JAX (which would take a GPU from the runs): GPU ids and
memory from nvidia-smi, host memory from the OS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from bitnet_jax import config as config_lib
from bitnet_jax.model import param_counts
from bitnet_jax.sweep.spec import ExecutorSpec, PlannedRun

# A job's start-up on an H200 host (experiments/sweep_throughput, 2026-12-02): interpreter, imports and data, then
# XLA compilation, which grows with depth (the layers are unrolled), or a few seconds when an earlier job of the
# sweep left the same program in the persistent compilation cache.
COMPILE_S, COMPILE_PER_LAYER_S, CACHED_START_S = 8.0, 7.0, 6.0
MEMORY_USE = 0.7  # of the device memory a job may plan for, shared among the jobs on one device


@dataclass(frozen=True)
class Job:
    runs: tuple[PlannedRun, ...]

    @property
    def name(self) -> str:
        first = self.runs[0].run_id
        return first if len(self.runs) == 1 else f"{first}+{len(self.runs) - 1}"

    @property
    def steps(self) -> int:
        return self.runs[0].config.train.steps

    @property
    def program(self) -> tuple:
        """Jobs with equal programs compile once per sweep (the persistent compilation cache)."""
        return config_lib.group_key(self.runs[0].config), len(self.runs)

    def start_seconds(self, cached: bool = False) -> float:
        if cached:
            return CACHED_START_S
        return COMPILE_S + COMPILE_PER_LAYER_S * self.runs[0].config.model.n_layers

    def train_seconds(self, executor: ExecutorSpec) -> float:
        """Device time: every step costs a fixed overhead (kernel launches, which dominate small models) plus the
        group's FLOPs at the executor's rate."""
        group_flops_per_step = sum(r.flops for r in self.runs) / self.steps
        return self.steps * (executor.est_step_overhead_s + group_flops_per_step / executor.est_flops_per_sec)


def estimate_seconds(jobs: list[Job], executor: ExecutorSpec, n_slots: int, n_devices: int) -> float:
    """The sweep's wall time, simulated: jobs start in order on `n_slots` slots; each first starts up (compiling,
    unless an earlier job compiled its program), then trains, the jobs training at once sharing the `n_devices`
    devices equally. Within 9 % of the three sweeps it was calibrated on (experiments/sweep_throughput)."""
    queue, compiled, now = list(jobs), set(), 0.0
    running: list[list[float]] = []  # [start-up seconds left, device seconds left]
    while queue or running:
        while queue and len(running) < n_slots:
            job = queue.pop(0)
            running.append([job.start_seconds(job.program in compiled), job.train_seconds(executor)])
            compiled.add(job.program)
        training = [r for r in running if r[0] <= 0]
        share = min(1.0, n_devices / len(training)) if training else 0.0
        step = min([r[0] for r in running if r[0] > 0] + [r[1] / share for r in training])
        for r in running:
            if r[0] > 0:
                r[0] -= step
            else:
                r[1] -= step * share
        now += step
        running = [r for r in running if r[0] > 0 or r[1] > 1e-9]
    return now


def run_bytes(run: PlannedRun) -> float:
    """Device memory one run of a group needs: float32 weights, gradients and two AdamW moments (16 bytes per
    parameter) plus the activations of a step (about 34 bytes per layer, width and token, and float32 logits)."""
    cfg = run.config
    m, t = cfg.model, cfg.train
    tokens = t.batch_size * m.seq_len
    return 16 * param_counts(m, cfg.recipe)["total"] + tokens * (34 * m.n_layers * m.d_model + 8 * m.vocab_size)


def plan_jobs(runs: list[PlannedRun], executor: ExecutorSpec, device_bytes: float, jobs_per_device: int) -> list[Job]:
    """Runs in sweep order, grouped when the executor allows it: same group key, at most max_group runs and as many
    as fit MEMORY_USE of the device memory shared by `jobs_per_device` jobs."""
    if not executor.group:
        return [Job((r,)) for r in runs]
    buckets: dict[tuple, list[PlannedRun]] = {}
    for r in runs:
        buckets.setdefault(config_lib.group_key(r.config), []).append(r)
    budget = MEMORY_USE * device_bytes / jobs_per_device
    jobs = []
    for members in buckets.values():
        size = max(1, min(len(members), executor.max_group or len(members), int(budget // run_bytes(members[0]))))
        jobs += [Job(tuple(members[i:i + size])) for i in range(0, len(members), size)]
    order = {r.run_id: i for i, r in enumerate(runs)}
    return sorted(jobs, key=lambda j: order[j.runs[0].run_id])


def jobs_per_gpu(runs: list[PlannedRun], executor: ExecutorSpec, on_gpu: bool) -> int:
    """The executor's runs_per_gpu, or from the model sizes: small models leave a GPU mostly idle, so several jobs
    share it (four below 5M non-embedding parameters, two below 50M); one job per GPU beyond, and on a CPU host."""
    if executor.runs_per_gpu is not None:
        return executor.runs_per_gpu
    if not on_gpu:
        return 1
    largest = max(r.n_params_non_embedding for r in runs)
    return 4 if largest < 5e6 else 2 if largest < 5e7 else 1


def gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    listing = _nvidia_smi("-L")
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def device_memory(on_gpu: bool) -> float:
    """Bytes of memory of one GPU (nvidia-smi), or of the host."""
    if on_gpu:
        sizes = [float(x) for x in _nvidia_smi("--query-gpu=memory.total", "--format=csv,noheader,nounits").split()
                 if x.strip().replace(".", "", 1).isdigit()]
        if sizes:
            return min(sizes) * 2**20
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _nvidia_smi(*args: str) -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
