"""Sweep specs: one YAML file describing model families x recipes x token budgets x learning rates x seeds.

`load(path)` validates the spec (typed, like run configs) and `expand(spec)` turns it into the list of planned runs,
each a full RunConfig with its id, N, D and C.

A spec may list `parts`: each names a part of the study and changes some of family, budget, lr, lr_grid and seeds
(a learning-rate grid and two seeds at the small sizes, one learning rate at the large ones); the sweep is the union
of its parts' runs, in part order, and a run two parts plan alike is trained once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path


from bitnet_jax import config as config_lib
from bitnet_jax.config import RunConfig
from bitnet_jax.errors import ConfigError
from bitnet_jax.model import ModelConfig, flops_per_token, param_counts, size_family


@dataclass(frozen=True)
class FamilySpec:
    """Model sizes: explicit shapes, or log-spaced non-embedding parameter targets at a fixed aspect ratio."""

    sizes: tuple[dict, ...] = ()  # each a mapping of ModelConfig fields (d_model, n_layers, n_heads, d_ff, ...)
    n_min: float | None = None
    n_max: float | None = None
    n_sizes: int = 4
    aspect_ratio: float = 32.0  # d_model / n_layers
    head_dim: int = 32
    base: dict = field(default_factory=dict)  # ModelConfig fields shared by every size (seq_len, vocab_size, ...)


@dataclass(frozen=True)
class BudgetSpec:
    """Tokens per run: exactly one of a fixed count, a multiple of N (non-embedding), or IsoFLOP compute budgets."""

    tokens: float | None = None
    tokens_per_param: float | None = None
    compute: tuple[float, ...] = ()  # FLOPs; every size is trained at every budget (IsoFLOP grid)


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str = "local"  # local: this host's CPUs and GPUs; slurm: SLURM jobs through submitit (sweep/slurm.py)
    parallel: int | None = None  # jobs at a time; None: runs_per_gpu per GPU, or 1 on a CPU host
    group: bool = True  # runs that differ only in LR, weight decay or seed train together in one vmapped job
    max_group: int | None = None  # most runs per job; None: as many as fit the device memory estimate
    runs_per_gpu: int | None = None  # jobs sharing one GPU; None: chosen from the model sizes
    gpus_per_run: int = 1  # GPUs each job sees (CUDA_VISIBLE_DEVICES); its runs spread over them as `mesh:` says
    stall_timeout_s: float = 3600.0  # a job that writes nothing for this long is killed and its runs marked failed
    # the dry run's time estimate (bitnet_jax/sweep/jobs.py): per step, a fixed overhead plus the job's FLOPs at this
    # rate plus its elementwise work, seconds per token, unit of width and layer (2-core CPU: 2.5e10, 0 and 0, the
    # FLOPs alone; an H200: see sweeps/scaling_gpu.yaml and experiments/sweep_throughput/calibrate.py)
    est_flops_per_sec: float = 2.5e10
    est_step_overhead_s: float = 0.0
    est_elementwise_s: float = 0.0
    # kind: slurm (each job one task of a SLURM job array; gpus_per_run GPUs each, grouped for gpu_memory_gb)
    partition: str | None = None  # None: the cluster's default partition
    account: str | None = None
    time_min: int = 240  # a job's time limit; a job reaching it checkpoints its runs and is requeued
    cpus_per_run: int = 8
    mem_gb: float | None = None  # None: the partition's default
    gpu_memory_gb: float = 80.0  # one GPU of the cluster's, to size the groups
    max_running: int | None = None  # jobs of the sweep running at once (None: as the cluster allows)
    sbatch: dict = field(default_factory=dict)  # any other sbatch option, e.g. {constraint: h100, qos: high}
    poll_s: float = 30.0  # how often the runner looks at its jobs

    def __post_init__(self):
        if self.kind not in ("local", "slurm"):
            raise ConfigError(f"executor.kind={self.kind!r}: use local (this host) or slurm (a SLURM cluster)")
        if not isinstance(self.sbatch, dict):
            raise ConfigError(f"executor.sbatch: expected a mapping of sbatch options, got {self.sbatch!r}")
        for name in ("time_min", "cpus_per_run", "max_running"):
            if (getattr(self, name) or 1) < 1:
                raise ConfigError(f"executor.{name}={getattr(self, name)}: must be a positive integer")
        if self.poll_s <= 0 or self.gpu_memory_gb <= 0 or (self.mem_gb is not None and self.mem_gb <= 0):
            raise ConfigError("executor.poll_s, executor.gpu_memory_gb and executor.mem_gb must be positive")
        for name in ("parallel", "max_group", "runs_per_gpu", "gpus_per_run"):
            if (getattr(self, name) or 1) < 1:
                raise ConfigError(f"executor.{name}={getattr(self, name)}: must be a positive integer (or null)")
        if (self.stall_timeout_s <= 0 or self.est_flops_per_sec <= 0 or self.est_step_overhead_s < 0
                or self.est_elementwise_s < 0):
            raise ConfigError("executor.stall_timeout_s and executor.est_flops_per_sec must be positive, "
                              "executor.est_step_overhead_s and est_elementwise_s >= 0")


@dataclass(frozen=True)
class FitSpec:
    bootstrap: int = 200
    ci: float = 0.8
    n_with_embeddings: bool = False  # Chinchilla counts embeddings in N, Kaplan does not


@dataclass(frozen=True)
class EvalSpec:
    """Evaluation after each run (bitnet_jax.eval): multiple-choice task files and a held-out text.
    Relative paths are taken from the directory the sweep is started in."""

    tasks: dict = field(default_factory=dict)  # task name -> JSONL file
    text: str | None = None  # held-out text for perplexity / bits per byte
    limit: int | None = None  # examples per task (None: all)
    batch_size: int = 32

    def __post_init__(self):
        if not isinstance(self.tasks, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                       for k, v in self.tasks.items()):
            raise ConfigError(f"eval.tasks: expected a mapping of task name to JSONL file, got {self.tasks!r}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"eval.limit={self.limit}: must be a positive number of examples (or null for all)")
        if self.batch_size < 1:
            raise ConfigError(f"eval.batch_size={self.batch_size}: must be a positive integer")

    @property
    def active(self) -> bool:
        return bool(self.tasks) or self.text is not None

    def cli_args(self) -> list[str]:
        """The `bitnet-jax eval` arguments after the run directory (paths made absolute from the current directory)."""
        args = [a for name, path in self.tasks.items() for a in ("--task", f"{name}={Path(path).resolve()}")]
        if self.text is not None:
            args += ["--text", str(Path(self.text).resolve())]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        return [*args, "--batch", str(self.batch_size)]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    recipes: tuple = ("fp16", "bitnet", "bitnet_b158")  # recipe names or mappings {name, label?, field: value}
    baseline: str | None = None  # the label every other label is compared with; None: fp16 when present
    family: FamilySpec = field(default_factory=FamilySpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    lr: dict = field(default_factory=dict)  # label or recipe name -> learning rate (or a list: a grid, best kept)
    lr_grid: tuple[float, ...] = ()  # the same grid for every recipe
    seeds: tuple[int, ...] = (0,)
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    tracking: dict = field(default_factory=dict)
    mesh: dict = field(default_factory=dict)  # the run config's mesh section (with executor.gpus_per_run > 1)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    fit: FitSpec = field(default_factory=FitSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)  # no tasks and no text: no evaluation step
    parts: tuple[dict, ...] = ()  # each {name, and any of PART_KEYS}: the sweep is the union of the parts' runs
    description: str = ""


PART_KEYS = ("family", "budget", "lr", "lr_grid", "seeds", "labels")  # what a part may change


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    label: str  # the curve the run belongs to: a recipe name, or a variant's given or derived label
    config: RunConfig
    n_params: int
    n_params_non_embedding: int
    tokens: int
    flops: float
    budget: float | None  # the IsoFLOP budget this run belongs to
    part: str | None = None  # the spec part that planned it (None: the spec has no parts)


SECTIONS = {"family": FamilySpec, "budget": BudgetSpec, "executor": ExecutorSpec, "fit": FitSpec, "eval": EvalSpec}


def load(path: str | Path) -> SweepSpec:
    where = str(path)
    raw = config_lib.read_yaml(path, "sweep spec")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a sweep spec is a mapping (name, recipes, family, budget, ...)")
    try:
        spec = from_dict(raw)
        expand(spec)  # every run must be a valid run config
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    return spec


def from_dict(raw: dict) -> SweepSpec:
    hints = typing.get_type_hints(SweepSpec)
    unknown = set(raw) - set(hints)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown key; valid keys: {', '.join(hints)}")
    if "name" not in raw or not isinstance(raw["name"], str) or not re.fullmatch(r"[\w.-]+", raw["name"]):
        raise ConfigError("name: a sweep needs a name made of letters, digits, '_', '-' or '.'")
    spec = SweepSpec(**{key: _parse(key, value, hints) for key, value in raw.items() if key != "parts"})
    _check(spec)
    if "parts" in raw:
        spec = dataclasses.replace(spec, parts=_parse_parts(spec, raw["parts"]))
    return spec


def _parse(key: str, value, hints: dict):
    if key in SECTIONS:
        return config_lib.build_section(SECTIONS[key], value or {}, key)
    if key in ("data", "train", "tracking", "mesh", "lr"):
        if not isinstance(value or {}, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value or {}
    if key == "recipes":
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ConfigError("recipes: list at least one recipe")
        return tuple(items)
    if key == "baseline":
        return None if value is None else config_lib.coerce(value, str, key)
    return config_lib.coerce(value, hints[key], key)


def _parse_parts(spec: SweepSpec, parts) -> tuple[dict, ...]:
    """The parts as given, each checked by building the spec it makes."""
    if not isinstance(parts, list) or not parts:
        raise ConfigError("parts: expected a list of mappings, each {name, and any of family, budget, lr, lr_grid, "
                          "seeds, labels}")
    names = []
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str) \
                or not re.fullmatch(r"[\w.-]+", part["name"]):
            raise ConfigError(f"parts[{i}]: each part is a mapping with a name made of letters, digits, '_', '-', '.'")
        unknown = sorted(set(part) - {"name", *PART_KEYS})
        if unknown:
            raise ConfigError(f"parts.{part['name']}.{unknown[0]}: a part may change only {', '.join(PART_KEYS)}")
        if part["name"] in names:
            raise ConfigError(f"parts: two parts are named {part['name']!r}")
        names.append(part["name"])
        _part_spec(spec, part)
    return tuple(parts)


def part_specs(spec: SweepSpec) -> list[tuple[str | None, SweepSpec]]:
    """(part name, the spec it makes) for every part; [(None, spec)] for a spec without parts."""
    return [(p["name"], _part_spec(spec, p)) for p in spec.parts] if spec.parts else [(None, spec)]


def _part_spec(spec: SweepSpec, part: dict) -> SweepSpec:
    """The top level with the part's changes. Its family keeps the top level's base, aspect ratio and head dim unless
    it sets them (its sizes, or its n_min/n_max/n_sizes, replace the top level's); its lr adds to the top level's per
    label; its budget, lr_grid and seeds replace the top level's; its labels (a list of the top level's) keep only
    those recipe entries."""
    hints = typing.get_type_hints(SweepSpec)
    try:
        if "lr" in part and "lr_grid" in part:
            raise ConfigError("lr and lr_grid: give one (lr per recipe, or one grid for all recipes)")
        if "family" in part and not isinstance(part["family"], dict):
            raise ConfigError(f"family: expected a mapping, got {part['family']!r}")
        changes = {key: _parse(key, part[key], hints) for key in ("budget", "lr", "lr_grid", "seeds") if key in part}
        if "lr" in part:
            changes.update(lr={**spec.lr, **changes["lr"]}, lr_grid=())
        if "lr_grid" in part:
            changes["lr"] = {}
        if "family" in part:
            given = part["family"]
            family = dataclasses.asdict(spec.family)
            if "sizes" in given:
                family.update(n_min=None, n_max=None)
            elif given.keys() & {"n_min", "n_max", "n_sizes"}:
                family["sizes"] = ()
            changes["family"] = config_lib.build_section(FamilySpec, {**family, **given}, "family")
        if "labels" in part:
            changes.update(_only_labels(spec, part["labels"], changes.get("lr", spec.lr)))
        made = dataclasses.replace(spec, parts=(), **changes)
        _check(made)
    except ConfigError as e:
        raise ConfigError(f"parts.{part['name']}: {e}") from None
    return made


def _only_labels(spec: SweepSpec, wanted, lr: dict) -> dict:
    """The changes that keep only the recipe entries labelled `wanted`, with the lr entries that name them."""
    labels = [label_of(r) for r in spec.recipes]
    if not isinstance(wanted, list) or not wanted or not all(isinstance(x, str) for x in wanted):
        raise ConfigError(f"labels: expected a list of labels of this sweep ({', '.join(labels)}), got {wanted!r}")
    unknown = [x for x in wanted if x not in labels]
    if unknown:
        raise ConfigError(f"labels: {unknown[0]!r} is not a label of this sweep; labels: {', '.join(labels)}")
    recipes = tuple(r for r in spec.recipes if label_of(r) in wanted)
    names = {*wanted, *(_recipe_name(r) for r in recipes)}
    return {"recipes": recipes, "lr": {k: v for k, v in lr.items() if k in names}, "baseline": None}


def _check(spec: SweepSpec) -> None:
    fam, bud = spec.family, spec.budget
    if bool(fam.sizes) == (fam.n_min is not None):
        raise ConfigError("family: give either sizes (explicit shapes) or n_min/n_max/n_sizes (targets), not both")
    if fam.n_min is not None and fam.n_max is None:
        raise ConfigError("family: n_min needs n_max")
    chosen = [k for k in ("tokens", "tokens_per_param", "compute") if getattr(bud, k)]
    if len(chosen) != 1:
        raise ConfigError("budget: give exactly one of tokens, tokens_per_param or compute "
                          f"(got {', '.join(chosen) or 'none'})")
    if any(v <= 0 for v in (bud.tokens or 1, bud.tokens_per_param or 1, *bud.compute)):
        raise ConfigError("budget: token counts, multiples and compute budgets must be positive")
    if spec.lr and spec.lr_grid:
        raise ConfigError("lr and lr_grid: give one (lr per recipe, or one grid for all recipes)")
    for key in ("steps", "lr", "seed"):
        if key in spec.train:
            raise ConfigError(f"train.{key}: set by the sweep (budget, lr/lr_grid, seeds), not in its train section")
    if not spec.seeds:
        raise ConfigError("seeds: list at least one seed")
    labels = [label_of(r) for r in spec.recipes]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ConfigError(f"recipes: two entries share the label {repeated[0]}; give one of them a distinct `label:`")
    names = {_recipe_name(r) for r in spec.recipes}
    for key in spec.lr:
        if key not in labels and key not in names:
            raise ConfigError(f"lr.{key}: not a label or recipe name of this sweep; use one of "
                              f"{', '.join(dict.fromkeys([*labels, *sorted(names)]))}")
    if spec.baseline is not None and spec.baseline not in labels:
        raise ConfigError(f"baseline: {spec.baseline!r} is not a label of this sweep; labels: {', '.join(labels)}")


def label_of(recipe) -> str:
    """A recipe entry's label: given, or the recipe name plus the fields it changes (bitnet_b158+ste=clipped)."""
    if isinstance(recipe, str):
        return recipe
    if not isinstance(recipe, dict) or "name" not in recipe:
        raise ConfigError("recipes: each entry is a recipe name or a mapping with a 'name' key (and fields to change)")
    if recipe.get("label") is not None:
        label = recipe["label"]
        if not isinstance(label, str) or not re.fullmatch(r"[\w.+=-]+", label):
            raise ConfigError(f"recipes: label {label!r} may hold only letters, digits and _ . + = -")
        return label
    changes = [f"{k}={_format(v)}" for k, v in recipe.items() if k not in ("name", "label")]
    return "+".join([recipe["name"], *changes])


def _format(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def baseline_label(spec: SweepSpec) -> str:
    """The label comparisons are made against: the spec's `baseline`, else fp16."""
    return spec.baseline or "fp16"


def _sizes(spec: SweepSpec) -> list[dict]:
    fam = spec.family
    if fam.sizes:
        return [dict(s) for s in fam.sizes]
    base = config_lib.build_section(ModelConfig, fam.base, "family.base")
    family = size_family(fam.n_min, fam.n_max, fam.n_sizes, aspect_ratio=fam.aspect_ratio, head_dim=fam.head_dim,
                         base=base)
    return [{k: getattr(c, k) for k in ("d_model", "n_layers", "n_heads", "d_ff")} for c in family]


def _recipe_name(recipe) -> str:
    return recipe if isinstance(recipe, str) else recipe.get("name", "?")


def _recipe_config(recipe):
    """The run config's recipe section: the entry without its label."""
    return recipe if isinstance(recipe, str) else {k: v for k, v in recipe.items() if k != "label"}


def _lrs(spec: SweepSpec, label: str, recipe_name: str) -> list[float | None]:
    if spec.lr_grid:
        return list(spec.lr_grid)
    value = spec.lr.get(label, spec.lr.get(recipe_name))
    if value is None:
        return [None]  # the recipe's default
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the sweep, part by part, and within a part smallest sizes first (so a partial sweep has every
    recipe at its sizes): size, recipe entry, budget, learning rate, seed. Run ids are readable and unique for every
    distinct config; a config two parts plan is one run (of the first part)."""
    planned, seen = [], {}
    for part, part_spec in part_specs(spec):
        mine = _plan(part_spec)
        configs = [json.dumps({**p["raw"], "train": p["train"]}, sort_keys=True, default=str) for p in mine]
        repeated = [p for p, c in zip(mine, configs) if configs.count(c) > 1]
        if repeated:
            raise ConfigError(f"two runs would train the same config ({_describe_plan(repeated[0])}): sizes, budgets "
                              f"or recipe entries repeat")
        for p, c in zip(mine, configs):
            if c not in seen:
                seen[c] = p
                planned.append({**p, "part": part})
    varied = _varied_model_fields([p["model"] for p in planned])
    ids = [_run_id(p["label"], p["model"], varied, p["budget"], p["tokens"], p["lr"], p["seed"]) for p in planned]
    runs = []
    for p, run_id in zip(planned, ids):
        raw, train = p["raw"], p["train"]
        if ids.count(run_id) > 1:  # the readable parts do not tell these configs apart: add a hash of the plan
            run_id = f"{run_id}_{_plan_hash(config_lib.from_dict({**raw, 'train': train}, f'run {run_id}'))}"
        tracking = {"group": spec.name, **raw["tracking"], "name": run_id}  # group: unless the spec gives one
        cfg = config_lib.from_dict({**raw, "train": train, "tracking": tracking}, f"run {run_id}")
        runs.append(PlannedRun(run_id, p["label"], cfg, p["counts"]["total"], p["counts"]["non_embedding"],
                               p["tokens"], p["fpt"] * p["tokens"], p["budget"], p["part"]))
    return runs


def _plan(spec: SweepSpec) -> list[dict]:
    """The runs of a spec without parts, before ids: their raw configs and counts."""
    planned = []
    budgets = list(spec.budget.compute) or [None]
    for size in _sizes(spec):
        for recipe in spec.recipes:
            name, label = _recipe_name(recipe), label_of(recipe)
            for budget in budgets:
                for lr in _lrs(spec, label, name):
                    for seed in spec.seeds:
                        raw = {"recipe": _recipe_config(recipe), "model": {**spec.family.base, **size},
                               "data": dict(spec.data), "train": dict(spec.train), "mesh": dict(spec.mesh),
                               "tracking": {**spec.tracking, "progress": False}}
                        cfg = config_lib.from_dict(raw, "run")
                        counts = param_counts(cfg.model, cfg.recipe)
                        batch = cfg.train.batch_size * cfg.model.seq_len
                        fpt = flops_per_token(cfg.model, cfg.recipe)
                        tokens = _tokens(spec.budget, budget, counts, fpt, spec.fit.n_with_embeddings)
                        steps = max(1, round(tokens / batch))
                        train = {**raw["train"], "steps": steps, "seed": seed,
                                 "eval_every": min(cfg.train.eval_every, steps),
                                 "ckpt_every": min(cfg.train.ckpt_every, steps)}
                        if lr is not None:
                            train["lr"] = lr
                        planned.append({"label": label, "raw": raw, "train": train, "model": cfg.model,
                                        "counts": counts, "tokens": steps * batch, "fpt": fpt, "budget": budget,
                                        "lr": lr, "seed": seed})
    return planned


def _describe_plan(p: dict) -> str:
    m = p["model"]
    return f"{p['label']} d{m.d_model}L{m.n_layers}f{m.d_ff} lr {p['lr']} seed {p['seed']}"


def _tokens(budget: BudgetSpec, compute: float | None, counts: dict, fpt: float, with_embeddings: bool) -> float:
    if budget.tokens:
        return budget.tokens
    if budget.tokens_per_param:
        return budget.tokens_per_param * counts["total" if with_embeddings else "non_embedding"]
    return compute / fpt


_SHAPE_FIELDS = ("d_model", "n_layers", "d_ff")  # always in the id


def _varied_model_fields(models: list[ModelConfig]) -> list[str]:
    """Model fields besides the shape that take more than one value across the sweep (they go into run ids)."""
    names = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in _SHAPE_FIELDS]
    return [n for n in names if len({getattr(m, n) for m in models}) > 1]


def _run_id(label: str, model: ModelConfig, varied: list[str], budget: float | None, tokens: int,
            lr: float | None, seed: int) -> str:
    parts = [re.sub(r"[^\w.+=-]", "-", label), f"d{model.d_model}L{model.n_layers}f{model.d_ff}"]
    parts += [f"{n}={_format(getattr(model, n))}" for n in varied]
    parts.append((f"C{budget:.2g}" if budget else f"D{tokens:.3g}").replace("+", ""))
    if lr is not None:
        parts.append(f"lr{lr:g}".replace("+", ""))
    parts.append(f"s{seed}")
    return "_".join(parts)


def _plan_hash(cfg: RunConfig) -> str:
    text = json.dumps(config_lib.flat_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def describe(runs: list[PlannedRun], spec: SweepSpec) -> str:
    """The dry run's table: run id, part (when the spec has parts), label, N, D, C and the FLOPs of each run."""
    width = max([len(r.run_id) for r in runs] + [6]) + 2
    part = max([len(r.part) for r in runs if r.part] + [2]) + 2 if any(r.part for r in runs) else 0
    lines = [f"{'run id':<{width}}{'part' if part else '':<{part}}{'label':<28}{'N_nonemb':>10}{'N_total':>10}"
             f"{'D':>10}{'C':>10}"]
    for r in runs:
        lines.append(f"{r.run_id:<{width}}{r.part or '':<{part}}{r.label:<28}{r.n_params_non_embedding:>10.3g}"
                     f"{r.n_params:>10.3g}{r.tokens:>10.3g}{r.flops:>10.3g}")
    lines.append(f"{len(runs)} runs, {sum(r.flops for r in runs):.3g} training FLOPs in all")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
