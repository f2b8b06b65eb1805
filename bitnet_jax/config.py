"""RunConfig: the five sections of a run (recipe, model, data, train, tracking), typed and validated.

YAML is read with `yaml.safe_load`; `key.sub=value` overrides apply on top. An unknown key, a wrong type or an
impossible value is a ConfigError naming the file, the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import decimal
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bitnet_jax import recipes
from bitnet_jax.data.synthetic import MarkovSpec
from bitnet_jax.errors import ConfigError, DataError
from bitnet_jax.model import ModelConfig
from bitnet_jax.recipes import Recipe

DTYPES = ("auto", "float32", "bfloat16")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")
WANDB_MODES = ("disabled", "offline", "online")


@dataclass(frozen=True)
class DataConfig:
    # python_docs | python_stdlib | files | tfds | tokens | markov, or a file path / glob (.txt, .jsonl: files;
    # .npy, .bin: tokens)
    source: str = "python_docs"
    paths: tuple[str, ...] = ()  # source: files / tokens -- glob patterns of files ('**' recurses)
    text_field: str = "text"  # .jsonl files: the field of each line that holds the document
    text_errors: str = "strict"  # non-UTF-8 files: strict (stop, naming file and offset) | skip | replace
    tfds_name: str | None = None  # source: tfds -- a prepared dataset, e.g. lm1b, c4/en, or one `data build` made
    tfds_data_dir: str | None = None  # default ~/tensorflow_datasets
    tfds_split: str = "train"  # TFDS split syntax, e.g. train or train[:10%]
    tfds_feature: str = "text"
    tokenizer: str = "byte"  # byte | sentencepiece | hf
    tokenizer_path: str | None = None  # .model / tokenizer.json; sentencepiece: trained and saved here if missing
    tokenizer_vocab_size: int = 8192  # sentencepiece training
    sentencepiece_type: str = "unigram"  # unigram | bpe
    token_dtype: str = "uint16"  # source: tokens, raw .bin files
    tokens_vocab_size: int | None = None  # source: tokens -- None: largest id + 1
    tokens_bytes_per_token: float | None = None  # source: tokens -- text bytes per token, for bits per byte
    cache: bool | None = None  # token cache; None: on unless an embedded corpus with the byte tokenizer
    cache_dir: str | None = None  # None: $BITNET_JAX_CACHE or ~/.cache/bitnet_jax
    on_device: bool | None = None  # training stream on the accelerator; None: when <= device_max_tokens
    device_max_tokens: int = 1 << 28
    val_fraction: float = 0.05  # the last val_fraction of the stream: the split whose loss is reported
    tune_fraction: float = 0.05  # the tune_fraction just before it: for choosing learning rates; 0: no tuning split
    max_bytes: int | None = None
    seed: int = 0  # the batch of step s is a pure function of (seed, s)
    # source: markov -- a random order-k Markov chain whose entropy rate is known exactly
    markov_vocab: int = 16
    markov_order: int = 2
    markov_concentration: float = 0.5
    markov_tokens: int = 2_000_000
    markov_seed: int = 0

    def markov(self) -> MarkovSpec:
        return MarkovSpec(self.markov_vocab, self.markov_order, self.markov_concentration, self.markov_tokens,
                          self.markov_seed)

    def __post_init__(self):
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={self.val_fraction}: must be strictly between 0 and 1")
        if not 0.0 <= self.tune_fraction < 1.0:
            raise ConfigError(f"data.tune_fraction={self.tune_fraction}: must be in [0, 1) (0: no tuning split)")
        if self.tune_fraction + self.val_fraction >= 1.0:
            raise ConfigError(f"data.tune_fraction={self.tune_fraction} + data.val_fraction={self.val_fraction} "
                              f"leave nothing to train on; lower one of them so that their sum is below 1")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ConfigError(f"data.max_bytes={self.max_bytes}: must be positive (or null for the whole corpus)")
        if self.source == "markov":
            try:
                self.markov()
            except DataError as e:
                raise ConfigError(f"data.{e}") from None
        self._check_sources_and_tokenizer()

    def _check_sources_and_tokenizer(self):
        from bitnet_jax.data.sources import TEXT_ERRORS, resolve_source
        from bitnet_jax.data.tokenizer import TOKENIZERS
        from bitnet_jax.data.tokens import BIN_DTYPES

        try:
            kind, paths = resolve_source(self)
        except DataError as e:
            raise ConfigError(str(e)) from None
        choices = (("tokenizer", TOKENIZERS), ("text_errors", TEXT_ERRORS), ("token_dtype", BIN_DTYPES),
                   ("sentencepiece_type", ("unigram", "bpe")))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ConfigError(f"data.{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.tokenizer == "hf" and not self.tokenizer_path:
            raise ConfigError("data.tokenizer=hf needs data.tokenizer_path (a Hugging Face tokenizer.json)")
        if kind == "tfds" and not self.tfds_name:
            raise ConfigError("data.source=tfds needs data.tfds_name (e.g. lm1b, c4/en, or a `data build` name)")
        if kind in ("files", "tokens") and not paths:
            raise ConfigError(f"data.source={kind} needs data.paths (files or globs such as corpus/*.jsonl)")
        for name in ("tokenizer_vocab_size", "device_max_tokens", "tokens_vocab_size"):
            if (getattr(self, name) or 1) < 1:
                raise ConfigError(f"data.{name}={getattr(self, name)}: must be a positive integer")
        if self.tokens_bytes_per_token is not None and self.tokens_bytes_per_token <= 0:
            raise ConfigError(f"data.tokens_bytes_per_token={self.tokens_bytes_per_token}: must be > 0")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 200
    batch_size: int = 16
    lr: float | None = None  # None: the recipe's
    lr_schedule: str | None = None  # cosine | linear | two_stage; None: the recipe's
    lr_stage2: float | None = None  # two_stage peak of the second stage; None: the recipe's
    lr_final_ratio: float = 0.1  # cosine/linear decay to this fraction of the peak
    warmup_steps: int = 20
    weight_decay: float | None = None  # None: the recipe's
    weight_decay_stage2: float | None = None  # None: the recipe's
    b1: float = 0.9
    b2: float = 0.95
    grad_clip: float | None = 1.0  # global-norm clipping; null turns it off
    seed: int = 0  # parameter initialisation
    eval_every: int = 50
    eval_batches: int = 8
    log_every: int = 10
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    compute_dtype: str = "auto"  # auto: bfloat16 on GPU/TPU, float32 on CPU
    attention: str = "auto"  # jax.nn.dot_product_attention implementation: auto | xla | cudnn
    steps_per_call: int | None = None  # steps per jitted call (one dispatch, one metrics fetch); None: per device
    deterministic: bool = False  # GPU: XLA's deterministic ops (same config + seed = the same losses, bit for bit)

    def __post_init__(self):
        for name in ("steps", "batch_size", "eval_every", "eval_batches", "log_every", "ckpt_every",
                     "keep_checkpoints", "steps_per_call"):
            if (getattr(self, name) or 1) < 1:
                raise ConfigError(f"train.{name}={getattr(self, name)}: must be a positive integer")
        if self.warmup_steps < 0:
            raise ConfigError(f"train.warmup_steps={self.warmup_steps}: must be >= 0")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"train.lr={self.lr}: must be > 0")
        if self.lr_schedule is not None and self.lr_schedule not in recipes.SCHEDULES:
            raise ConfigError(f"train.lr_schedule={self.lr_schedule!r} is not one of {', '.join(recipes.SCHEDULES)}")
        if not 0.0 <= self.lr_final_ratio <= 1.0:
            raise ConfigError(f"train.lr_final_ratio={self.lr_final_ratio}: must be in [0, 1]")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"train.grad_clip={self.grad_clip}: must be > 0 (or null for no clipping)")
        if self.compute_dtype not in DTYPES:
            raise ConfigError(f"train.compute_dtype={self.compute_dtype!r} is not one of {', '.join(DTYPES)}")
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"train.attention={self.attention!r} is not one of {', '.join(ATTENTION_IMPLS)}")


@dataclass(frozen=True)
class TrackingConfig:
    """metrics.jsonl is always written; wandb is extra (offline needs no account: `wandb sync` uploads later)."""

    wandb: str = "disabled"  # disabled | offline | online
    project: str = "bitnet-jax"  # wandb project
    entity: str | None = None  # wandb user or team; None: the logged-in user's default
    group: str | None = None  # wandb group; a sweep sets its name here unless the spec gives one
    name: str | None = None  # wandb run name; a sweep sets the run id
    tags: tuple[str, ...] = ()  # wandb tags
    progress: bool = True  # a progress bar with loss and tokens/s

    def __post_init__(self):
        if self.wandb not in WANDB_MODES:
            raise ConfigError(f"tracking.wandb={self.wandb!r} is not one of {', '.join(WANDB_MODES)}")


@dataclass(frozen=True)
class MeshConfig:
    """How one run spreads over the devices it sees: a jax.sharding mesh with axes data (batch), fsdp (batch, and
    parameters and AdamW state sharded) and tensor (attention heads and MLP width); -1 = the devices left over."""

    data: int = -1
    fsdp: int = 1
    tensor: int = 1

    def __post_init__(self):
        sizes = (self.data, self.fsdp, self.tensor)
        if any(v == 0 or v < -1 for v in sizes) or sizes.count(-1) > 1:
            raise ConfigError(f"mesh: data={self.data}, fsdp={self.fsdp}, tensor={self.tensor}: each must be a "
                              f"positive number of devices, and at most one -1 (the devices left over)")

    def shape(self, n_devices: int) -> tuple[int, int, int]:
        """(data, fsdp, tensor) on `n_devices` devices, -1 resolved; a one-line error when they do not fit."""
        sizes = [self.data, self.fsdp, self.tensor]
        fixed = math.prod(v for v in sizes if v != -1)
        if -1 in sizes:
            if n_devices % fixed:
                raise ConfigError(f"mesh: {n_devices} device(s) cannot be split into data x fsdp x tensor with "
                                  f"{fixed} device(s) fixed; set sizes whose product divides {n_devices}")
            sizes[sizes.index(-1)] = n_devices // fixed
        elif fixed > n_devices:
            raise ConfigError(f"mesh: data x fsdp x tensor = {fixed} device(s), but this process sees {n_devices}; "
                              f"lower the mesh sizes")
        return tuple(sizes)


@dataclass(frozen=True)
class DistributedConfig:
    """One run over several processes (one per host, or per GPU) through jax.distributed: the coordinator's
    "host:port", the number of processes and this one's id (0 writes the run's files). Left unset, a process that
    srun started as one task of a step of several joins the step's other tasks, JAX reading the rest from SLURM's
    environment; otherwise the run is one process."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def __post_init__(self):
        given = [v is not None for v in (self.coordinator, self.num_processes, self.process_id)]
        if any(given) and not all(given):
            raise ConfigError("distributed: give coordinator, num_processes and process_id together (or none of "
                              "them, to let SLURM's environment say)")
        if all(given):
            if not re.fullmatch(r"[\w.\-\[\]:]+:\d+", self.coordinator):
                raise ConfigError(f"distributed.coordinator={self.coordinator!r}: expected host:port, e.g. "
                                  f"10.0.0.1:12345")
            if self.num_processes < 1 or not 0 <= self.process_id < self.num_processes:
                raise ConfigError(f"distributed: process_id={self.process_id} must lie in [0, num_processes="
                                  f"{self.num_processes})")


@dataclass(frozen=True)
class RunConfig:
    recipe: Recipe = field(default_factory=lambda: recipes.get("bitnet_b158"))
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["tracking"]["tags"] = list(self.tracking.tags)
        return out


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "tracking": TrackingConfig,
            "mesh": MeshConfig, "distributed": DistributedConfig}

# What a resumed run may change: its length (the schedule follows the new train.steps), how it is tracked, logged,
# evaluated and checkpointed, how batches reach the devices and how the devices share the run (the batches
# themselves stay the same).
RESUMABLE_CHANGES = ("train.steps", "train.eval_every", "train.eval_batches", "train.log_every", "train.ckpt_every",
                     "train.keep_checkpoints", "train.steps_per_call", "tracking.*", "data.cache", "data.cache_dir",
                     "data.on_device", "data.device_max_tokens", "mesh.*", "distributed.*")
# The per-run values of runs that can train together in one vmapped group (they live in the train state or select
# the batches and initial weights); everything else must be equal.
PER_RUN_VALUES = ("train.lr", "train.lr_stage2", "train.weight_decay", "train.weight_decay_stage2", "train.seed",
                  "data.seed")


def flat_dict(cfg: RunConfig) -> dict[str, object]:
    """Every setting as `section.key` -> value, with the model's layout and MLP resolved for its recipe."""
    raw = dataclasses.replace(cfg, model=cfg.model.resolve(cfg.recipe)).to_dict()
    return {f"{section}.{key}": value for section, values in raw.items() for key, value in values.items()}


def _matches(key: str, patterns: typing.Iterable[str]) -> bool:
    return any(key == p or (p.endswith(".*") and key.startswith(p[:-1])) for p in patterns)


def changed_keys(old: RunConfig, new: RunConfig, allowed: typing.Iterable[str] = RESUMABLE_CHANGES) -> list[str]:
    """The settings that differ between two configs, leaving out the `allowed` ones (default: what a resume may
    change)."""
    a, b = flat_dict(old), flat_dict(new)
    return [k for k in a if a[k] != b.get(k) and not _matches(k, allowed)]


def group_key(cfg: RunConfig) -> tuple:
    """Runs with equal keys differ only in PER_RUN_VALUES (and tracking) and can share one compiled step."""
    return tuple(sorted((k, repr(v)) for k, v in flat_dict(cfg).items()
                        if not _matches(k, (*PER_RUN_VALUES, "tracking.*"))))


def load(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> RunConfig:
    """RunConfig from a YAML file (or the defaults when `path` is None) with `section.key=value` overrides."""
    raw: dict = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        raw = read_yaml(path, "config file") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (recipe, model, data, train, tracking), "
                              f"got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw, where)


def read_yaml(path: str | Path, what: str):
    """The parsed YAML file, or a one-line ConfigError naming the file and the line that does not parse."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {what} ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{at}: {getattr(e, 'problem', e)}") from None


def apply_override(raw: dict, item: str) -> None:
    """Set `section.key=value` (or `recipe=name`) in a raw config mapping; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected section.key=value, e.g. train.steps=30 or recipe=bitnet")
    try:
        parsed = yaml.safe_load(value) if value else None
    except yaml.YAMLError:
        parsed = value
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            node[part] = {"name": node[part]} if part == "recipe" else {}
        node = node.setdefault(part, {})
    if parts == ["recipe"] and isinstance(raw.get("recipe"), dict):
        raw["recipe"]["name"] = parsed
    else:
        node[parts[-1]] = parsed


def from_dict(raw: dict, where: str = "config") -> RunConfig:
    unknown = set(raw) - {"recipe", *SECTIONS}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; "
                          f"valid: recipe, {', '.join(SECTIONS)}")
    try:
        sections = {name: build_section(cls, raw.get(name) or {}, name) for name, cls in SECTIONS.items()}
        return RunConfig(recipe=_build_recipe(raw.get("recipe", "bitnet_b158")), **sections)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _build_recipe(value) -> Recipe:
    if isinstance(value, str):
        return recipes.get(value)
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError("recipe: expected a recipe name (e.g. bitnet_b158) or a mapping with a 'name' key")
    changes = {k: v for k, v in value.items() if k != "name"}
    base = recipes.get(value["name"])
    hints = typing.get_type_hints(Recipe)
    return recipes.variant(base.name, **{k: coerce(v, hints[k], f"recipe.{k}") if k in hints else v
                                         for k, v in changes.items()})


def build_section(cls, values, section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise ConfigError(f"{section}.{sorted(unknown)[0]}: unknown key; valid keys: {', '.join(hints)}")
    return cls(**{k: coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()})


def coerce(value, hint, key: str):
    """`value` checked (and losslessly converted) against a type hint: int, float, str, bool, X | None, tuple[str]."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return tuple(coerce(v, args[0], key) for v in items)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if (number := _integral(value)) is not None:
            return number
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _integral(value) -> int | None:
    """An integral float or numeric string as the int it equals exactly, else None: YAML 1.1 reads 1e4 and 1.0e4 as
    strings, 1.0e+4 as a float, and a step count written that way is still a whole number."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if not isinstance(value, str):
        return None
    try:
        number = decimal.Decimal(value)  # exact: float("1e30") is not 10**30
    except decimal.InvalidOperation:
        return None
    # the float check first: int() of a huge exponent (a typo such as 1e999999999) would build a giant integer
    return int(number) if math.isfinite(float(number)) and number == number.to_integral_value() else None


def dump(cfg: RunConfig, path: str | Path) -> None:
    """Write the config as YAML (atomically)."""
    from bitnet_jax.files import write_atomic

    write_atomic(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
