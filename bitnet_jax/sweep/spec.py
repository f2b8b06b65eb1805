"""Sweep specs: one YAML file describing model families x recipes x token budgets x learning rates x seeds.

`load(path)` validates the spec (typed, like run configs) and `expand(spec)` turns it into the list of planned runs,
each a full RunConfig with its id, N, D and C.
"""

from __future__ import annotations

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
    parallel: int | None = None  # runs at a time; None: one per GPU, or 1 on a CPU host
    est_flops_per_sec: float = 2.5e10  # for the dry run's time estimate (2-core CPU ~2.5e10; an H100 ~1e14)


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
    recipes: tuple = ("fp16", "bitnet", "bitnet_b158")  # recipe names or recipe mappings
    family: FamilySpec = field(default_factory=FamilySpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    lr: dict = field(default_factory=dict)  # recipe name -> learning rate (or a list: a grid, best kept)
    lr_grid: tuple[float, ...] = ()  # the same grid for every recipe
    seeds: tuple[int, ...] = (0,)
    data: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    tracking: dict = field(default_factory=dict)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    fit: FitSpec = field(default_factory=FitSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)  # no tasks and no text: no evaluation step
    description: str = ""


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    config: RunConfig
    n_params: int
    n_params_non_embedding: int
    tokens: int
    flops: float
    budget: float | None  # the IsoFLOP budget this run belongs to


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
    values = {}
    for key, value in raw.items():
        if key in SECTIONS:
            values[key] = config_lib.build_section(SECTIONS[key], value or {}, key)
        elif key in ("data", "train", "tracking", "lr"):
            if not isinstance(value or {}, dict):
                raise ConfigError(f"{key}: expected a mapping, got {value!r}")
            values[key] = value or {}
        elif key == "recipes":
            items = value if isinstance(value, list) else [value]
            if not items:
                raise ConfigError("recipes: list at least one recipe")
            values[key] = tuple(items)
        else:
            values[key] = config_lib.coerce(value, hints[key], key)
    spec = SweepSpec(**values)
    _check(spec)
    return spec


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


def _lrs(spec: SweepSpec, recipe_name: str) -> list[float | None]:
    if spec.lr_grid:
        return list(spec.lr_grid)
    value = spec.lr.get(recipe_name)
    if value is None:
        return [None]  # the recipe's default
    return [float(v) for v in value] if isinstance(value, list) else [float(value)]


def expand(spec: SweepSpec) -> list[PlannedRun]:
    """Every run of the sweep, smallest sizes first (so a partial sweep has every recipe at its sizes):
    size, recipe, budget, learning rate, seed."""
    runs, seen = [], set()
    budgets = list(spec.budget.compute) or [None]
    for size in _sizes(spec):
        for recipe in spec.recipes:
            name = _recipe_name(recipe)
            for budget in budgets:
                for lr in _lrs(spec, name):
                    for seed in spec.seeds:
                        raw = {"recipe": recipe, "model": {**spec.family.base, **size}, "data": dict(spec.data),
                               "train": dict(spec.train), "tracking": {**spec.tracking, "progress": False}}
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
                        run_id = _run_id(name, cfg.model, budget, steps * batch, lr, seed)
                        tracking = {"group": spec.name, **raw["tracking"], "name": run_id}  # group: unless given
                        cfg = config_lib.from_dict({**raw, "train": train, "tracking": tracking}, f"run {run_id}")
                        if run_id in seen:
                            raise ConfigError(f"two runs share the id {run_id}: sizes or budgets repeat")
                        seen.add(run_id)
                        runs.append(PlannedRun(run_id, cfg, counts["total"], counts["non_embedding"],
                                               steps * batch, fpt * steps * batch, budget))
    return runs


def _tokens(budget: BudgetSpec, compute: float | None, counts: dict, fpt: float, with_embeddings: bool) -> float:
    if budget.tokens:
        return budget.tokens
    if budget.tokens_per_param:
        return budget.tokens_per_param * counts["total" if with_embeddings else "non_embedding"]
    return compute / fpt


def _run_id(recipe: str, model: ModelConfig, budget: float | None, tokens: int, lr: float | None, seed: int) -> str:
    parts = [recipe, f"d{model.d_model}L{model.n_layers}f{model.d_ff}"]
    parts.append(f"C{budget:.2g}" if budget else f"D{tokens:.3g}")
    if lr is not None:
        parts.append(f"lr{lr:g}")
    parts.append(f"s{seed}")
    return "_".join(parts).replace("+", "")


def describe(runs: list[PlannedRun], spec: SweepSpec) -> str:
    """The dry run's table: run id, recipe, N, D, C and the estimated time."""
    lines = [f"{'run id':<52}{'recipe':<20}{'N':>10}{'N_nonemb':>10}{'D':>10}{'C':>10}{'est.':>8}"]
    total = 0.0
    for r in runs:
        est = r.flops / spec.executor.est_flops_per_sec + 5.0  # + start-up and compilation
        total += est
        lines.append(f"{r.run_id:<52}{r.config.recipe.name:<20}{r.n_params:>10.3g}{r.n_params_non_embedding:>10.3g}"
                     f"{r.tokens:>10.3g}{r.flops:>10.3g}{_duration(est):>8}")
    lines.append(f"{len(runs)} runs, about {_duration(total)} in all at {spec.executor.est_flops_per_sec:.2g} FLOP/s "
                 f"(executor.est_flops_per_sec) run one at a time")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
