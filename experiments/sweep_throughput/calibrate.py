"""Refit the dry run's time estimate (bitnet_jax/sweep/jobs.py) on the H200 sweeps' own records and check it on calls
it was not fitted on.

    python experiments/sweep_throughput/calibrate.py      # ~20 s on 2 CPU cores; writes calibration.json here

Data, all measured on one H200 on 2026-12-02/03 (nothing is invented; what a record lacks is said below):
- experiments/scaling_gpu/logs/log_*.txt: each device call of the GPU study: the dry run's estimate, the sweep's
  progress bar (when each job's runs ended, on the sweep's clock), `sweep exit ... after N s`, and a results table
  whose tokens column gives the step an interrupted run had reached;
- experiments/scaling_gpu/state/*.tar.gz: the finished runs' summary.json (first_call_s, wall_s) and metrics.jsonl,
  whose tokens_per_sec (tokens since the process's first call / seconds since its end) dates every logged step;
- experiments/sweep_throughput/h200-2026-12-02*/: single-process probes (tokens/s by shape, recipe and group size)
  and three earlier sweeps of 2-tokens-per-parameter runs (log_*.txt, on the code of that day).

Derived per job and call: its start (the runner starts jobs in plan order as slots free up: replayed from the end
times), end, start-up (everything but stepping: process, data, compilation, first call, final evaluation) and the
time of each logged step; per state (a job training while a given set of other jobs trains) its mean step time.
Fitted (jobs.py's model): a step = overhead + FLOPs at the H200's bf16 peak + elementwise seconds x tokens x width x
layers (+ absmedian's sort), on the states of one job alone; jobs training at once share the GPU equally (the other
rule tried, summed device utilisation, is scored on the shared states); start-up a + b x layers when the job compiles,
a constant when its program is cached; the runner's time around its jobs. The split fit uses the calls of FIT_CALLS
and the probes below 6M parameters, the reverse split the other calls and probes; every call is then simulated with
jobs.schedule and compared with its measured sweep time; the constants jobs.py holds are the fit on everything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bitnet_jax import config as config_lib  # noqa: E402
from bitnet_jax.model import flops_per_token, param_counts  # noqa: E402
from bitnet_jax.sweep import jobs as jobs_lib, runner, spec as spec_lib  # noqa: E402
from bitnet_jax.sweep.jobs import Job  # noqa: E402
from bitnet_jax.sweep.spec import PlannedRun  # noqa: E402

HERE = Path(__file__).resolve().parent
LOGS = ROOT / "experiments/scaling_gpu/logs"
H200_BYTES = 143771 * 2**20  # nvidia-smi's memory.total of the study's H200
K = 32  # steps per call on a GPU (the first call of a process compiles)

# (call, log file, sweep, parts, session). A session is one machine: its compilation cache and the checkpoints of
# interrupted runs survive from one call to the next; a new session starts unfinished runs afresh. The calls are in
# time order. large-1/iso-1 and large-2/iso-2 ran side by side on the GPU (experiments/scaling_gpu/README.md).
CALLS = [
    ("size-1", "log_20261202T171319.txt", "scaling_gpu", "tune,seeds", "a"),
    ("size-2", "log_20261202T172158.txt", "scaling_gpu", "tune,seeds", "a"),
    ("width", "log_20261202T175945.txt", "scaling_gpu_width", None, "a"),
    ("large-1", "log_scaling_gpu_20261203T064923.txt", "scaling_gpu", "fp16_low,large", "b"),
    ("iso-1", "log_scaling_gpu_isoflop_20261203T064943.txt", "scaling_gpu_isoflop", None, "b"),
    ("large-2", "log_scaling_gpu_20261203T065931.txt", "scaling_gpu", "fp16_low,large", "b"),
    ("iso-2", "log_scaling_gpu_isoflop_20261203T065936.txt", "scaling_gpu_isoflop", None, "b"),
    ("large-3", "log_scaling_gpu_20261203T070930.txt", "scaling_gpu", "fp16_low,large", "b"),
    ("large-4", "log_scaling_gpu_20261203T071404.txt", "scaling_gpu", "fp16_low,large", "b"),
    ("largest-1", "log_scaling_gpu_20261203T123625.txt", "scaling_gpu", "largest", "c"),
    ("largest-2", "log_scaling_gpu_20261203T124527.txt", "scaling_gpu", "largest", "c"),
    ("largest-3", "log_scaling_gpu_20261203T125447.txt", "scaling_gpu", "largest", "c"),
    ("median-1", "log_scaling_gpu_20261203T133932.txt", "scaling_gpu", "largest,median_rule", "d"),
    ("median-2", "log_scaling_gpu_20261203T134839.txt", "scaling_gpu", "largest,median_rule", "d"),
]
SIDE_BY_SIDE = {"large-1": "iso-1", "iso-1": "large-1", "large-2": "iso-2", "iso-2": "large-2"}
# the split: fitted on the size sweep's tune/seeds parts, the width check and the IsoFLOP grid (0.33M-6.2M);
# checked on the large, largest and median_rule parts (6.2M-21.3M) and on the earlier sweeps of part 2
FIT_CALLS = ("size-1", "size-2", "width", "iso-1", "iso-2")
FIT_PROBE_MAX_N = 6e6
# the earlier sweeps (README part 2): sweeps/gpu_small.yaml as measure.py changed it, on 2026-12-02's code
OLD_SWEEPS = [("lr3@2", "h200-2026-12-02/log_lr3_grouped.txt"), ("lr3_small@2", "h200-2026-12-02/log_lr3_small.txt"),
              ("lr3_small:off@2", "h200-2026-12-02/log_lr3_small.txt")]


# ---------------------------------------------------------------------------------------------------- the records


@dataclass
class Seg:
    """One job in one call."""

    call: str
    sweep: str
    session: str
    job: Job
    start: float
    end: float
    finished: bool
    s0: int | None = 0  # the step its runs started from in this call
    s1: int | None = None  # ... and reached
    records: list | None = None  # [(step, seconds since the first call's end)] of its first run
    summary: dict = field(default_factory=dict)
    times: list | None = None  # [(step, time on the call's clock)]
    train: tuple | None = None  # (first step's time, last logged step's time) on the call's clock
    cached: bool = False  # an earlier job of the session had compiled its program before it started


@dataclass
class Call:
    name: str
    sweep: str
    parts: str | None
    session: str
    head: dict
    segs: list[Seg]


def parse_log(text: str) -> tuple[dict, list]:
    """The call's header facts and [(seconds, run id or STOP, status)] from its progress bar."""
    head, events, pending = {"tokens": {}}, [], []
    for p in re.split(r"[\r\n]", text):
        if m := re.search(r"estimated wall time: (\S+)", p):
            head["estimate"] = m.group(1)
        if m := re.search(r"sweep exit (\d+) after (\d+) s", p):
            head["exit_code"], head["exit_s"] = int(m.group(1)), int(m.group(2))
        if m := re.match(r"(\d+) jobs \(executor.group=\w+\), (\d+) at a time", p.strip()):
            head["slots"] = int(m.group(2))
        if m := re.match(r"\w+ \w+ +\d+ (\d+):(\d+):(\d+) (AM|PM) UTC", p):
            head["clock"] = (int(m.group(1)) % 12 + 12 * (m.group(4) == "PM")) * 3600 + int(m.group(2)) * 60 + int(
                m.group(3))
        if m := re.match(r"(\S+)\s+(?:finished|interrupted)\s+\S+\s+\S+\s+(\S+)\s", p):
            head["tokens"][m.group(1)] = float(m.group(2))
        if "sweep stopped" in p:
            pending.append(("STOP", "stop"))
        elif (m := re.match(r"^\s*(\S+): (finished|interrupted|diverged|failed)\b", p)) and not p.strip().startswith(
                "sweep:"):
            pending.append((m.group(1), m.group(2)))
        elif p.strip().startswith("sweep:") and (m := re.search(r"\[(?:(\d+):)?(\d+):(\d+)<", p)):
            t = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
            events += [(t, rid, status) for rid, status in pending]
            pending = []
    return head, events


def planned_jobs(spec, parts: str | None) -> list[Job]:
    runs = runner._select_parts(spec_lib.expand(spec), spec, parts.split(",") if parts else None)
    return jobs_lib.plan_jobs(runs, spec.executor, H200_BYTES, jobs_lib.jobs_per_gpu(runs, spec.executor, True))


def replay(jobs: list[Job], events: list, slots: int) -> list[tuple[Job, float, float, set]]:
    """(job, start, end, statuses) of the jobs a call ran: in plan order, each on the first slot to free up."""
    ends: dict[str, tuple] = {}
    for t, rid, status in events:
        ends.setdefault(rid, (t, status))
    stop = next((t for t, rid, _ in events if rid == "STOP"), None)
    free, out = [0.0] * slots, []
    for job in jobs:
        hit = [ends[r.run_id] for r in job.runs if r.run_id in ends]
        t0 = min(free)
        if not hit or (stop is not None and t0 >= stop):
            break
        end = min(t for t, _ in hit)
        free[free.index(t0)] = end
        out.append((job, t0, end, {s for _, s in hit}))
    return out


def read_calls(runs_dir: Path) -> list[Call]:
    done: set[str] = set()
    calls = []
    for name, log, sweep, parts, session in CALLS:
        head, events = parse_log((LOGS / log).read_text())
        spec = spec_lib.load(ROOT / "sweeps" / f"{sweep}.yaml")
        todo = [j for j in planned_jobs(spec, parts) if any(r.run_id not in done for r in j.runs)]
        segs = [Seg(name, sweep, session, job, start, end, statuses == {"finished"})
                for job, start, end, statuses in replay(todo, events, head["slots"])]
        for s in segs:
            if s.finished:
                done.update(r.run_id for r in s.job.runs)
            elif s.job.runs[0].run_id in head["tokens"]:  # the step it reached, from the results table
                s.s1 = round(head["tokens"][s.job.runs[0].run_id] / (s.job.runs[0].tokens / s.job.steps))
        calls.append(Call(name, sweep, parts, session, head, segs))
    _steps_and_records(calls, runs_dir)
    _clock(calls)
    return calls


def _first_call(s0: int, t) -> int:
    nxt = lambda every: (s0 // every + 1) * every  # noqa: E731 (loop._next_boundary)
    return min(K, min(nxt(t.eval_every), nxt(t.ckpt_every), t.steps) - s0)


def _steps_and_records(calls: list[Call], runs_dir: Path) -> None:
    """Per run: the calls since its last fresh start (its records are those of these calls only), the steps each
    call trained, and the elapsed time of each logged step."""
    lives: dict[tuple, list[list[Seg]]] = {}
    for call in calls:
        for s in call.segs:
            key = (s.sweep, s.job.runs[0].run_id)
            if key not in lives or lives[key][-1][-1].session != s.session:
                lives.setdefault(key, []).append([])
            lives[key][-1].append(s)
    for (sweep, rid), life in ((key, life) for key, ls in lives.items() for life in ls):
        if not life[-1].finished:  # its records did not survive (the state keeps finished runs only)
            for i, s in enumerate(life[1:], 1):
                s.s0 = life[i - 1].s1
            continue
        d = runs_dir / sweep / rid
        summary = json.loads((d / "summary.json").read_text())
        raw = [r for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
        t = life[0].job.runs[0].config.train
        for i, s in enumerate(life):
            s.s0 = life[i - 1].s1 if i else 0
            if s.finished:
                s.s1 = t.steps
            elif s.s1 is None and s.s0 is not None:
                s.s1 = _segment_end(s, raw, t)
            s.summary = summary
            if s.s0 is None or s.s1 is None:
                continue
            c = s.s0 + _first_call(s.s0, t)
            s.records = [(r["step"], (r["step"] - c) * s.job.runs[0].tokens / t.steps / r["tokens_per_sec"])
                         for r in raw if s.s0 < r["step"] <= s.s1 and r.get("tokens_per_sec")]


def _segment_end(s: Seg, raw: list, t) -> int | None:
    """The step an interrupted segment reached, where no results table says it: just before the first record that
    belongs to the next process (one logged during its first call has no tokens_per_sec; one whose elapsed time jumps
    or exceeds the segment's length was timed from a later first call)."""
    c = s.s0 + _first_call(s.s0, t)
    later = [r for r in raw if r["step"] > s.s0 + K]
    tokens = s.job.runs[0].tokens / t.steps
    gaps = []
    for k, r in enumerate(later):
        if not r.get("tokens_per_sec"):
            return r["step"] - K // 2
        e = (r["step"] - c) * tokens / r["tokens_per_sec"]
        if e > s.end - s.start or (gaps and e - gaps[-1][1] > 10 * statistics.median(g for g, _ in gaps)):
            return (later[k - 1]["step"] + r["step"]) // 2 if k else None
        gaps.append((e - gaps[-1][1] if gaps else e, e))
    return None


TAIL_S = 2.0  # an interrupted or resumed job's time after its last logged step (a checkpoint, the exit)


def _clock(calls: list[Call]) -> None:
    """Each segment's logged steps on its call's clock, and whether its program was in the session's cache."""
    compiled: dict[tuple, tuple] = {}  # (session, program) -> (call, time) its first compilation had ended by
    order = {c.name: i for i, c in enumerate(calls)}
    for call in calls:
        for s in call.segs:
            rec = s.records
            if rec and len(rec) >= 2:
                e_last = rec[-1][1]
                if s.finished and s.s0 == 0:  # wall_s = train(); its end is the job's end (less the exit)
                    t_last = s.end - (s.summary["wall_s"] - s.summary["first_call_s"] - e_last)
                else:
                    t_last = s.end - TAIL_S
                s.times = [(step, t_last - (e_last - e)) for step, e in rec]
                rate = (rec[1][1] - rec[0][1]) / (rec[1][0] - rec[0][0])
                s.train = (s.times[0][1] - (rec[0][0] - s.s0) * rate, t_last)
            key = (s.session, s.job.program)
            s.cached = key in compiled and compiled[key] <= (order[call.name], s.start)
            ready = (order[call.name], s.train[0] if s.train else s.start + 30.0)
            compiled[key] = min(compiled.get(key, ready), ready)


# ---------------------------------------------------------------------------------------------------- the facts


@dataclass
class State:
    """A job training while a given set of other jobs trains on the same GPU (and others start up): its mean step
    time."""

    job: Job
    others: list[Job]
    step_s: float
    n: int  # logged intervals
    where: str  # call or probe
    starting: int = 0  # other jobs in their start-up meanwhile


def states(calls: list[Call]) -> list[State]:
    """Mean step times per job and set of co-training (and starting) jobs, from the intervals between logged steps
    during which no other job changed phase (evaluations and checkpoints included: they recur with the steps)."""
    bycall = {c.name: c for c in calls}
    out = []
    for call in calls:
        others = [(o, 0.0) for o in call.segs]
        if call.name in SIDE_BY_SIDE:
            pair = bycall[SIDE_BY_SIDE[call.name]]
            others += [(o, pair.head["clock"] - call.head["clock"]) for o in pair.segs]
        for s in call.segs:
            if not s.times:
                continue
            groups: dict[tuple, list] = {}
            for (a, ta), (b, tb) in zip(s.times, s.times[1:]):
                co, starting, clean = [], 0, True
                for o, shift in others:
                    if o is s:
                        continue
                    lo, hi = o.train if o.train else (o.start + 30.0, o.end - TAIL_S)
                    phases = [(o.start + shift, lo + shift), (lo + shift, hi + shift), (hi + shift, o.end + shift)]
                    inside = [p0 <= ta and tb <= p1 for p0, p1 in phases]
                    if inside[1]:
                        co.append(o)
                    elif inside[0]:
                        starting += 1
                    elif not (inside[2] or o.end + shift <= ta or tb <= o.start + shift):
                        clean = False  # it changed phase within the interval
                if clean:
                    g = groups.setdefault((tuple(id(o) for o in co), starting), [co, 0, 0.0])
                    g[1] += b - a
                    g[2] += tb - ta
            for (_, starting), (co, steps, seconds) in groups.items():
                if steps >= 300:  # at least 3 intervals
                    out.append(State(s.job, [o.job for o in co], seconds / steps, steps // 100, call.name, starting))
    return out


def probe_job(d: int, layers: int, d_ff: int, recipe: str, group: int) -> Job:
    cfg = config_lib.from_dict({"recipe": {"name": recipe}, "model": {
        "d_model": d, "n_layers": layers, "n_heads": d // 32, "d_ff": d_ff, "seq_len": 256, "vocab_size": 256},
        "train": {"batch_size": 64, "steps": 300}}, "probe")
    n = param_counts(cfg.model, cfg.recipe)
    tokens = 300 * 64 * 256
    run = PlannedRun(f"probe_{recipe}_d{d}L{layers}", recipe, cfg, n["total"], n["non_embedding"], tokens,
                     flops_per_token(cfg.model, cfg.recipe) * tokens, None)
    return Job((run,) * group)


PROBE_SHAPES = {"0.8M": (128, 4, 352), "4.3M": (224, 7, 608), "12.4M": (320, 10, 864), "21.3M": (384, 12, 1024)}


def probe_states() -> list[State]:
    """Single processes alone on the GPU (README parts 1 and 3): K = 32, unrolled layers."""
    out = []
    for line in (HERE / "h200-2026-12-02/probe_call1.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("probe") == "loop" and r["k"] == 32:
            job = probe_job(*PROBE_SHAPES[r["shape"]], r["recipe"], r["group"])
            out.append(State(job, [], 64 * 256 / r["tokens_per_sec_per_run"], 3, f"probe {r['shape']}"))
    for line in (HERE / "h200-2026-12-02b/probe.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r.get("probe") == "scan" and r["scan_layers"] == "false":
            job = probe_job(*PROBE_SHAPES[r["shape"]], r["recipe"], 1)
            out.append(State(job, [], 64 * 256 / r["tokens_per_sec"], 3, f"probe {r['shape']}"))
    return out


def start_facts(calls: list[Call]) -> list[dict]:
    """Per job that finished in its call and whose records date its steps: its start-up, all of its time in the
    call that the logged steps do not account for (the steps before the first logged one at its first interval's
    rate; a fresh job's final evaluation and exit included)."""
    out = []
    for call in calls:
        for s in call.segs:
            if s.finished and s.train:
                out.append({"call": call.name, "job": s.job.name, "layers": s.job.runs[0].config.model.n_layers,
                            "group": len(s.job.runs), "recipe": s.job.runs[0].config.recipe.name,
                            "cached": s.cached or s.s0 > 0, "resumed": s.s0 > 0,
                            "start_s": s.train[0] - s.start + (s.end - s.train[1]),
                            "first_call_s": s.summary.get("first_call_s") if s.s0 == 0 else None})
    return out


def segment_facts(calls: list[Call]) -> list[dict]:
    """Per job and call: shape, steps, when it ran, its start-up (where its records date its steps), its training
    seconds and mean step, and how many other jobs trained on the GPU meanwhile (the side-by-side call's too)."""
    bycall = {c.name: c for c in calls}
    out = []
    for call in calls:
        others = [(o, 0.0) for o in call.segs if o.train]
        if call.name in SIDE_BY_SIDE:
            pair = bycall[SIDE_BY_SIDE[call.name]]
            others += [(o, pair.head["clock"] - call.head["clock"]) for o in pair.segs if o.train]
        for s in call.segs:
            m = s.job.runs[0].config.model
            row = {"call": call.name, "job": s.job.name, "recipe": s.job.runs[0].config.recipe.name,
                   "d_model": m.d_model, "layers": m.n_layers, "group": len(s.job.runs), "steps": [s.s0, s.s1],
                   "start": s.start, "end": s.end, "finished": s.finished, "cached": s.cached}
            if s.train and s.s1 is not None:
                lo, hi = s.train
                shared = sum(max(0.0, min(hi, o.train[1] + sh) - max(lo, o.train[0] + sh))
                             for o, sh in others if o is not s)
                row.update(start_up_s=round(lo - s.start, 1), train_s=round(hi - lo, 1),
                           step_ms=round((hi - lo) / max(1, s.s1 - s.s0) * 1e3, 2),
                           mean_others_training=round(shared / max(hi - lo, 1e-9), 2),
                           first_call_s=s.summary.get("first_call_s") if s.s0 == 0 and s.finished else None)
            out.append(row)
    return out


# ---------------------------------------------------------------------------------------------------- the model


H200_PEAK_FLOPS = 989e12  # dense bf16: the FLOP rate is not identifiable from these models (below)


@dataclass
class Model:
    overhead_s: float
    elementwise_s: float
    absmedian: float  # elementwise units per weight and step
    compile_s: float
    compile_per_layer_s: float
    cached_start_s: float
    runner_s: float
    flops_per_sec: float = H200_PEAK_FLOPS

    def executor(self, spec):
        return dataclasses.replace(spec.executor, est_flops_per_sec=self.flops_per_sec,
                                   est_step_overhead_s=self.overhead_s, est_elementwise_s=self.elementwise_s)

    def install(self) -> None:
        """Into jobs.py, whose schedule then simulates with it."""
        jobs_lib.COMPILE_S, jobs_lib.COMPILE_PER_LAYER_S = self.compile_s, self.compile_per_layer_s
        jobs_lib.CACHED_START_S, jobs_lib.ABSMEDIAN_WEIGHT_COST = self.cached_start_s, self.absmedian
        jobs_lib.RUNNER_S = self.runner_s


def step_parts(job: Job, p, flops_per_sec: float = H200_PEAK_FLOPS) -> tuple[float, float]:
    """(overhead, device seconds) of a step with p = (overhead ms, elementwise / 1e-10 s, absmedian), as
    jobs.Job.step_seconds computes them."""
    device = 0.0
    for r in job.runs:
        flops, elementwise, median_weights = jobs_lib.step_work(r)
        device += flops / flops_per_sec + (elementwise + p[2] * median_weights) * p[1] * 1e-10
    return p[0] * 1e-3, device


def predict(st: State, p, rule: str = "equal") -> float:
    """A state's step time: alone, slowed by the jobs training with it: `equal` (n jobs: each at 1/n) or `util`
    (by their summed device utilisation, device time / step time, when it exceeds 1)."""
    o, d = step_parts(st.job, p)
    if rule == "equal":
        load = 1.0 + len(st.others)
    else:
        load = d / (o + d) + sum(dd / (oo + dd) for oo, dd in (step_parts(j, p) for j in st.others))
    return (o + d) * max(1.0, load)


def _weighted_rms(x, w) -> float:
    return float(np.sqrt(np.average(np.square(x), weights=w)))


def fit_device(alone: list[State]) -> tuple[np.ndarray, float]:
    """Overhead, elementwise cost and absmedian's sort from the states of one job alone on the GPU (no other job
    training or starting): least squares on log step time, each state weighted by the square root of its intervals.
    The FLOP rate stays at the peak: at these widths (96-384) a step's FLOPs and its elementwise work grow nearly
    together, and a free rate runs off to infinity."""
    w = np.sqrt([s.n for s in alone])
    res = least_squares(lambda p: w * np.log([sum(step_parts(s.job, p)) / s.step_s for s in alone]), [1.0, 1.0, 5.0],
                        bounds=([0, 0, 0], [20, 20, 200]))
    resid = np.log([sum(step_parts(s.job, res.x)) / s.step_s for s in alone])
    return res.x, _weighted_rms(resid, [s.n for s in alone])


def sharing_errors(shared: list[State], p) -> dict:
    """How well each sharing rule predicts the step times of jobs training together (weighted rms and mean of the log
    error); `equal` is the one jobs.schedule implements."""
    out = {}
    for rule in ("equal", "util"):
        resid = np.log([predict(s, p, rule) / s.step_s for s in shared])
        out[rule] = {"rms": round(_weighted_rms(resid, [s.n for s in shared]), 3),
                     "bias": round(float(np.average(resid, weights=[s.n for s in shared])), 3)}
    return out


def fit_starts(facts: list[dict]) -> tuple[float, float, float]:
    """a + b x layers by least squares over the jobs that compiled; the median of the cached ones."""
    fresh = [f for f in facts if not f["cached"]]
    b, a = np.polyfit([f["layers"] for f in fresh], [f["start_s"] for f in fresh], 1)
    return float(a), float(b), float(statistics.median(f["start_s"] for f in facts if f["cached"]))


def runner_seconds(calls: list[Call]) -> float:
    """The sweep command's time around its jobs: its exit less its last job's end, median over the calls that
    finished (it includes the device script's dry run, a few seconds)."""
    return float(statistics.median(c.head["exit_s"] - max(s.end for s in c.segs) for c in calls
                                   if c.head.get("exit_code") == 0))


def alone_states(sts: list[State]) -> list[State]:
    return [s for s in sts if not s.others and not s.starting and s.where not in SIDE_BY_SIDE]


def fit(calls: list[Call], sts: list[State]) -> tuple[Model, dict]:
    alone = alone_states(sts)
    p, rms = fit_device(alone)
    a, b, cached = fit_starts(start_facts(calls))
    model = Model(p[0] * 1e-3, p[1] * 1e-10, float(p[2]), a, b, cached, runner_seconds(calls))
    shared = [s for s in sts if s.others]
    return model, {"alone_states": len(alone), "alone_rms_log_error": round(rms, 3), "shared_states": len(shared),
                   "sharing": sharing_errors(shared, p)}


def bench_check(model: Model) -> dict:
    """The device model on a model 5x wider than any it was fitted on: `bitnet-jax bench --preset 125m` (b1.58,
    d768 L12, vocabulary 32000, batch 16 x 1024; README part 3): 35.1 ms per step measured."""
    cfg = config_lib.from_dict({"recipe": {"name": "bitnet_b158"}, "model": {
        "d_model": 768, "n_layers": 12, "n_heads": 12, "d_ff": 2048, "seq_len": 1024, "vocab_size": 32000},
        "train": {"batch_size": 16, "steps": 20}}, "bench")
    n, tokens = param_counts(cfg.model, cfg.recipe), 20 * 16 * 1024
    run = PlannedRun("bench_125m", "bitnet_b158", cfg, n["total"], n["non_embedding"], tokens,
                     flops_per_token(cfg.model, cfg.recipe) * tokens, None)
    measured = json.loads((HERE / "h200-2026-12-02b/bench_125m_scan_false.json").read_text())["rows"][0]["step_ms"]
    p = (model.overhead_s * 1e3, model.elementwise_s * 1e10, model.absmedian)
    est = sum(step_parts(Job((run,)), p, model.flops_per_sec)) * 1e3
    return {"measured_ms": round(measured, 1), "estimate_ms": round(est, 1), "error": round(est / measured - 1, 3)}


# ---------------------------------------------------------------------------------------------------- the check


def truncated(job: Job, s0: int, s1: int) -> Job:
    """The job as far as one call took it: from step s0 to s1."""
    runs = tuple(dataclasses.replace(r, config=dataclasses.replace(
        r.config, train=dataclasses.replace(r.config.train, steps=s1)), flops=r.flops / r.config.train.steps * s1)
        for r in job.runs)
    return Job(runs, done=s0)


def simulate(model: Model, calls: list[Call], names: list[str]) -> dict[str, float]:
    """Each named call's simulated sweep time (its last job's end) for the work it did: the jobs it started, from the
    step each had reached to the step it reached; calls that ran side by side share the device."""
    model.install()
    bycall = {c.name: c for c in calls}
    queues, compiled = [], set()
    for name in names:
        call = bycall[name]
        for c in calls:  # programs compiled earlier in the session stay in its cache
            if c.session == call.session and c.name != name and CALLS_ORDER[c.name] < CALLS_ORDER[name]:
                compiled.update(s.job.program for s in c.segs)
        jobs = [truncated(s.job, s.s0 or 0, s.s1 if s.s1 is not None else (s.s0 or 0) + 64) for s in call.segs]
        queues.append((jobs, call.head["slots"]))
    spec = spec_lib.load(ROOT / "sweeps" / f"{bycall[names[0]].sweep}.yaml")
    ends = jobs_lib.schedule(queues, model.executor(spec), 1, tuple(compiled))
    return {name: max(e) for name, e in zip(names, ends)}


CALLS_ORDER = {c[0]: i for i, c in enumerate(CALLS)}


def deployed() -> Model:
    """The constants jobs.py and sweeps/scaling_gpu.yaml hold now (read before any fit installs its own)."""
    ex = spec_lib.load(ROOT / "sweeps/scaling_gpu.yaml").executor
    return Model(ex.est_step_overhead_s, ex.est_elementwise_s, DEPLOYED["ABSMEDIAN_WEIGHT_COST"], DEPLOYED["COMPILE_S"],
                 DEPLOYED["COMPILE_PER_LAYER_S"], DEPLOYED["CACHED_START_S"], DEPLOYED["RUNNER_S"],
                 ex.est_flops_per_sec)


DEPLOYED = {k: getattr(jobs_lib, k) for k in ("COMPILE_S", "COMPILE_PER_LAYER_S", "CACHED_START_S",
                                              "ABSMEDIAN_WEIGHT_COST", "RUNNER_S")}


def measured(call: Call) -> float:
    """The call's sweep time: its last job's end, or the stop (with the stopped jobs' checkpoints)."""
    return float(max(s.end for s in call.segs))


def old_sweeps() -> list[dict]:
    """The earlier sweeps of README part 2: their jobs, planned as the dry run planned them, and the time from the
    sweep's start to its last job's end (progress bar)."""
    out = []
    for case, log in OLD_SWEEPS:
        text = (HERE / log).read_text()
        section = text.split(f"=== {case}\n")[1].split("\n=== ")[0]
        head, events = parse_log(section)
        name, _, tpp = case.partition("@")
        base, _, off = name.partition(":")
        raw = yaml.safe_load((ROOT / "sweeps/gpu_small.yaml").read_text())
        raw["name"] = re.sub(r"[^\w.-]", "_", case)
        raw["lr"] = {"fp16": [1e-3, 2e-3, 4e-3], "bitnet": [2e-3, 4e-3, 8e-3], "bitnet_b158": [1.5e-3, 3e-3, 6e-3]}
        raw["budget"] = {"tokens_per_param": float(tpp)}
        if base == "lr3_small":
            raw["family"]["n_sizes"], raw["family"]["n_max"] = 3, 2.75e6
        raw["executor"] = {**raw["executor"], "group": not off}
        spec = spec_lib.from_dict(raw)
        runs = spec_lib.expand(spec)
        jobs = jobs_lib.plan_jobs(runs, spec.executor, H200_BYTES, jobs_lib.jobs_per_gpu(runs, spec.executor, True))
        finished = [t for t, rid, status in events if status == "finished"]
        out.append({"case": case, "spec": spec, "jobs": jobs, "slots": head["slots"], "measured_s": max(finished),
                    "old_dry_run": head.get("estimate"), "runs": len(runs), "done": len(finished)})
    return out


def check(model: Model, calls: list[Call], old: list[dict], fitted: tuple) -> list[dict]:
    rows = []
    done = set()
    for call in calls:
        if call.name in done:
            continue
        names = [call.name] + ([SIDE_BY_SIDE[call.name]] if call.name in SIDE_BY_SIDE else [])
        done.update(names)
        sims = simulate(model, calls, names)
        for name in names:
            c = next(x for x in calls if x.name == name)
            est, meas = sims[name], measured(c)
            rows.append({"call": name, "held_out": name not in fitted, "jobs": len(c.segs),
                         "finished": all(s.finished for s in c.segs), "side_by_side": name in SIDE_BY_SIDE,
                         "measured_s": meas, "estimate_s": round(est, 1), "error": round(est / meas - 1, 3),
                         "old_dry_run": c.head.get("estimate")})
    model.install()
    for o in old:
        ex = model.executor(o["spec"])
        est = max(jobs_lib.schedule([(o["jobs"], o["slots"])], ex, 1)[0])
        rows.append({"call": f"sweep_throughput {o['case']}", "held_out": True, "jobs": len(o["jobs"]),
                     "finished": o["done"] == o["runs"], "side_by_side": False, "measured_s": o["measured_s"],
                     "estimate_s": round(est, 1), "error": round(est / o["measured_s"] - 1, 3),
                     "old_dry_run": o["old_dry_run"]})
    return rows


def sweep_totals(model: Model, calls: list[Call]) -> list[dict]:
    """Per part of the study: what the dry run says before its first call (all its jobs, a fresh machine) against
    the sum of its calls' sweep times. The sum also pays the start-ups of the jobs a deadline interrupted, covers
    only what was done (`complete`), and for the parts that shared the GPU with another sweep for some of their calls
    `joint_estimate_s` is the estimate of both sweeps' jobs sharing the device from the start."""
    model.install()
    parts: dict[tuple, list[Call]] = {}
    for c in calls:
        parts.setdefault((c.sweep, c.parts, c.session), []).append(c)
    planned = {}
    for (sweep, part, session), cs in parts.items():
        spec = spec_lib.load(ROOT / "sweeps" / f"{sweep}.yaml")
        ran = {s.job.name for c in cs for s in c.segs}
        planned[cs[0].name] = (spec, [j for j in planned_jobs(spec, part) if j.name in ran], cs)
    rows = []
    for first, (spec, jobs, cs) in planned.items():
        ex = model.executor(spec)
        row = {"part": f"{cs[0].sweep} {cs[0].parts or ''}".strip(), "calls": [c.name for c in cs], "jobs": len(jobs),
               "complete": all(s.finished for s in cs[-1].segs), "side_by_side": first in SIDE_BY_SIDE,
               "measured_s": sum(measured(c) for c in cs),
               "estimate_s": round(jobs_lib.estimate_seconds(jobs, ex, cs[0].head["slots"], 1) - model.runner_s, 1),
               "old_dry_run": cs[0].head.get("estimate")}
        row["error"] = round(row["estimate_s"] / row["measured_s"] - 1, 3)
        if first in SIDE_BY_SIDE:
            _, other, ocs = planned[SIDE_BY_SIDE[first]]
            ends = jobs_lib.schedule([(jobs, cs[0].head["slots"]), (other, ocs[0].head["slots"])], ex, 1)
            row["joint_estimate_s"] = round(max(ends[0]), 1)
            row["joint_error"] = round(row["joint_estimate_s"] / row["measured_s"] - 1, 3)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------- main


def table(rows: list[dict], keys: list[str]) -> str:
    """The first column left-aligned, the others right-aligned, each as wide as its widest cell."""
    cells = [keys] + [[_fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    return "\n".join("  " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths)))
                     for c in cells)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:+.0%}" if abs(v) < 5 and v != int(v) else f"{v:.0f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "calibration.json"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for tgz in sorted((ROOT / "experiments/scaling_gpu/state").glob("*.tar.gz")):
            with tarfile.open(tgz) as tar:
                tar.extractall(tmp, filter="data")
        calls = read_calls(Path(tmp) / "runs")
    probes = probe_states()
    all_states = states(calls)
    old = old_sweeps()
    result = {}
    small = lambda s: s.job.runs[0].n_params_non_embedding < FIT_PROBE_MAX_N  # noqa: E731
    rest = tuple(c.name for c in calls if c.name not in FIT_CALLS)
    for label, fit_calls, fit_states in [
            ("split", FIT_CALLS, [s for s in all_states if s.where in FIT_CALLS] + [s for s in probes if small(s)]),
            ("reverse split", rest, [s for s in all_states if s.where in rest] + [s for s in probes if not small(s)]),
            ("all", tuple(c.name for c in calls), all_states + probes)]:
        print(f"\n=== fitted on: {', '.join(fit_calls)} and "
              f"{sum(s.where.startswith('probe') for s in fit_states)} probes")
        model, quality = fit([c for c in calls if c.name in fit_calls], fit_states)
        print(f"  model: {json.dumps(dataclasses.asdict(model))}")
        print(f"  step times: {json.dumps(quality)}")
        bench = bench_check(model)
        print(f"  bench 125m step: {json.dumps(bench)}")
        rows = check(model, calls, old, fit_calls)
        print(table(rows, ["call", "held_out", "jobs", "finished", "side_by_side", "measured_s", "estimate_s",
                           "error", "old_dry_run"]))
        parts = sweep_totals(model, calls)
        print(table(parts, ["part", "jobs", "complete", "side_by_side", "measured_s", "estimate_s", "error",
                            "old_dry_run"]))
        result[label] = {"fitted_on": list(fit_calls), "model": dataclasses.asdict(model), "step_times": quality,
                         "bench_125m": bench, "calls": rows, "parts": parts}
    model = deployed()
    print(f"\n=== as deployed (bitnet_jax/sweep/jobs.py, sweeps/scaling_gpu.yaml): "
          f"{json.dumps(dataclasses.asdict(model))}")
    rows, parts = check(model, calls, old, tuple(c.name for c in calls)), sweep_totals(model, calls)
    print(table(rows, ["call", "jobs", "finished", "side_by_side", "measured_s", "estimate_s", "error"]))
    print(table(parts, ["part", "jobs", "complete", "side_by_side", "measured_s", "estimate_s", "error",
                        "old_dry_run"]))
    print("  side by side, estimated together: " + "; ".join(
        f"{r['part']} {r['joint_estimate_s']:.0f} s ({r['joint_error']:+.0%})" for r in parts if "joint_error" in r))
    result["deployed"] = {"model": dataclasses.asdict(model), "bench_125m": bench_check(model), "calls": rows,
                          "parts": parts}
    result["segments"] = segment_facts(calls)
    result["start_facts"] = start_facts(calls)
    result["states"] = [{"job": s.job.name, "others": [o.name for o in s.others], "step_ms": round(s.step_s * 1e3, 2),
                         "intervals": s.n, "where": s.where} for s in all_states + probes]
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
