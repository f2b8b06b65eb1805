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

# The dry run's time model (a sweep on one host). Constants from the H200 sweeps of experiments/scaling_gpu and the
# probes of experiments/sweep_throughput, fitted by experiments/sweep_throughput/calibrate.py (README part 4); fitted
# on the 0.3M-6.2M calls alone it predicted the 6.2M-21.3M calls it had not seen within -10 % to +25 % (their sweep
# time), but a sweep of 27 one-run jobs of the earlier code took 40 % less than it predicts (shorter start-ups).
# - A job starts up (process, imports, data, model, XLA compilation, first call, final evaluation and checkpoint):
#   COMPILE_S + COMPILE_PER_LAYER_S per layer, or CACHED_START_S when an earlier job of the sweep has compiled its
#   program (the persistent compilation cache); absmedian jobs took up to twice as long, which it does not model.
# - A step costs a fixed overhead (executor.est_step_overhead_s: launches and the host loop) plus device time: the
#   runs' FLOPs at executor.est_flops_per_sec (on an H200 its dense bf16 peak: at widths 96-384 the data cannot tell
#   FLOPs from elementwise work) and their memory-bound elementwise work (norms, quantisers, activations) at
#   executor.est_elementwise_s per token, unit of width and layer; the absmedian quantiser adds a median (a sort) of
#   every weight matrix each step, ABSMEDIAN_WEIGHT_COST elementwise units per weight (it doubles a 21M step).
# - Jobs training at once share the devices equally: n jobs on one GPU each step at 1/n of their speed alone, small
#   models too (the GPU time-slices between processes; several jobs per GPU gain by overlapping one job's start-up
#   with the others' training, not by running their kernels side by side).
COMPILE_S, COMPILE_PER_LAYER_S, CACHED_START_S = 19.0, 3.1, 25.0
ABSMEDIAN_WEIGHT_COST = 5.4
RUNNER_S = 24.0  # the sweep command's own start (data check) and report, around its jobs
STEP_KEYS = ("train.steps", "train.eval_every", "train.ckpt_every")  # not part of a job's compiled program
MEMORY_USE = 0.7  # of the device memory a job may plan for, shared among the jobs on one device


@dataclass(frozen=True)
class Job:
    runs: tuple[PlannedRun, ...]
    done: int = 0  # steps its runs have trained already (a resumed job); the estimate counts the rest

    @property
    def name(self) -> str:
        first = self.runs[0].run_id
        return first if len(self.runs) == 1 else f"{first}+{len(self.runs) - 1}"

    @property
    def steps(self) -> int:
        return self.runs[0].config.train.steps

    @property
    def program(self) -> tuple:
        """Jobs with equal programs compile once per sweep (the persistent compilation cache holds it for the next);
        runs of one shape and recipe but different lengths share it."""
        key = config_lib.group_key(self.runs[0].config)
        return tuple(kv for kv in key if kv[0] not in STEP_KEYS), len(self.runs)

    def start_seconds(self, cached: bool = False) -> float:
        compile_s = COMPILE_S + COMPILE_PER_LAYER_S * self.runs[0].config.model.n_layers
        return min(CACHED_START_S, compile_s) if cached else compile_s

    def step_seconds(self, executor: ExecutorSpec) -> float:
        """One step of the job alone on a device: the fixed overhead plus every run's FLOPs and elementwise work."""
        device = 0.0
        for r in self.runs:
            flops, elementwise, median_weights = step_work(r)
            device += (flops / executor.est_flops_per_sec
                       + (elementwise + ABSMEDIAN_WEIGHT_COST * median_weights) * executor.est_elementwise_s)
        return executor.est_step_overhead_s + device

    def train_seconds(self, executor: ExecutorSpec) -> float:
        """The steps left, alone on a device."""
        return max(0, self.steps - self.done) * self.step_seconds(executor)


def step_work(run: PlannedRun) -> tuple[float, float, float]:
    """Per step of one run: its FLOPs, its elementwise units (tokens x width x layers) and the weights an absmedian
    quantiser takes the median of (0 for other recipes)."""
    m, t = run.config.model, run.config.train
    median = run.config.recipe.weight_quant == "ternary_absmedian"
    return (run.flops / t.steps, t.batch_size * m.seq_len * m.d_model * m.n_layers,
            param_counts(m, run.config.recipe)["matmul"] if median else 0.0)


def schedule(queues: list[tuple[list[Job], int]], executor: ExecutorSpec, n_devices: int,
             compiled: tuple = ()) -> list[list[float]]:
    """When each job ends, simulated: each queue (its jobs, its number of slots) starts its jobs in order on free
    slots; a job starts up (compiling unless its program is in `compiled` or an earlier job finished compiling it),
    then trains; the jobs training at once, of every queue, share the `n_devices` devices equally."""
    compiled, now = set(compiled), 0.0
    waiting = [list(enumerate(jobs)) for jobs, _ in queues]
    ends = [[0.0] * len(jobs) for jobs, _ in queues]
    running: list[list] = []  # [queue, index, program, start-up seconds left, device seconds left]
    while any(waiting) or running:
        for q, (_, slots) in enumerate(queues):
            while waiting[q] and sum(r[0] == q for r in running) < slots:
                i, job = waiting[q].pop(0)
                running.append([q, i, job.program, job.start_seconds(job.program in compiled),
                                job.train_seconds(executor)])
        training = [r for r in running if r[3] <= 0]
        share = min(1.0, n_devices / len(training)) if training else 0.0
        dt = min([r[3] for r in running if r[3] > 0] + [r[4] / share for r in training])
        for r in running:
            if r[3] > 0:
                r[3] = r[3] - dt if r[3] - dt > 1e-9 else 0.0
            else:
                r[4] -= dt * share
        now += dt
        for r in running:
            if r[3] <= 0:
                compiled.add(r[2])
                if r[4] <= 1e-9:
                    ends[r[0]][r[1]] = now
        running = [r for r in running if r[3] > 0 or r[4] > 1e-9]
    return ends


def estimate_seconds(jobs: list[Job], executor: ExecutorSpec, n_slots: int, n_devices: int) -> float:
    """The sweep's wall time: its jobs on `n_slots` slots sharing `n_devices` devices (`schedule`), plus the
    runner's own start and report."""
    return RUNNER_S + max(schedule([(jobs, n_slots)], executor, n_devices)[0], default=0.0) if jobs else 0.0


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
