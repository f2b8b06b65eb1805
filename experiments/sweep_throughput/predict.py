"""What the refitted dry-run model (bitnet_jax/sweep/jobs.py, part 4 of this folder's README) predicts for issue 10's
target sweep: sweeps/gpu_small.yaml with a 3-point learning-rate grid at every size (54 runs, measure.py's `lr3`
cases), groups on and off, one or two jobs at a time on one H200, at 20 and at 2 tokens per parameter.

    PYTHONPATH=$PWD python experiments/sweep_throughput/predict.py

A model's prediction, not a measurement: part 4 gives its held-out error (-10 % to +25 % per call).
"""

import importlib.util
from pathlib import Path

from bitnet_jax.sweep import jobs as J
from bitnet_jax.sweep import spec as S

HERE = Path(__file__).parent
H200_BYTES = 140e9


def measure_module():
    found = importlib.util.spec_from_file_location("measure", HERE / "measure.py")
    module = importlib.util.module_from_spec(found)
    found.loader.exec_module(module)
    return module


def main() -> None:
    measure = measure_module()
    print(f"{'case':<12}{'runs':>5}{'jobs':>6}{'slots':>7}{'estimate':>11}")
    for case in ("lr3", "lr3:off", "lr3@2", "lr3:off@2"):
        spec = S.load(measure.spec_for(case)[1])
        runs = S.expand(spec)
        default = J.jobs_per_gpu(runs, spec.executor, on_gpu=True)
        jobs = J.plan_jobs(runs, spec.executor, H200_BYTES, default)
        for slots in sorted({1, default}):
            minutes = J.estimate_seconds(jobs, spec.executor, slots, 1) / 60
            print(f"{case:<12}{len(runs):>5}{len(jobs):>6}{slots:>7}{minutes:>9.1f} min")


if __name__ == "__main__":
    main()
