"""Load a trained model back from a run directory (config.yaml + ckpt/), for evaluation, inference and export.

The model comes back in its recipe's inference form (`Recipe.for_inference`: per-token activation scales), so no
token's output depends on later tokens or on the rest of a batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from bitnet_jax import config as config_lib
from bitnet_jax.config import RunConfig
from bitnet_jax.errors import CheckpointError, ConfigError
from bitnet_jax.model import Transformer
from bitnet_jax.files import read_json
from bitnet_jax.train.checkpoint import Checkpoints
from bitnet_jax.train.state import build_model, build_training


@dataclass
class LoadedRun:
    config: RunConfig
    model: Transformer  # float32 master weights; the recipe's quantisers (inference form) apply in the forward pass
    step: int
    summary: dict | None


def load_run(run_dir: str | Path, step: int | None = None) -> LoadedRun:
    """The model of the run in `run_dir` at checkpoint `step` (default: the latest), in its config's compute dtype."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); pass the --out of `bitnet-jax train`")
    try:
        cfg = config_lib.from_dict(yaml.safe_load(config_path.read_text()) or {}, str(config_path))
    except yaml.YAMLError as e:
        raise ConfigError(f"{config_path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not (run_dir / "ckpt").is_dir():
        raise CheckpointError(f"{run_dir} has no checkpoints (ckpt/); train it first or resume it with --resume")
    ckpts = Checkpoints(run_dir / "ckpt", keep=cfg.train.keep_checkpoints)
    try:
        available = ckpts.all_steps()
        if not available:
            raise CheckpointError(f"{run_dir}/ckpt holds no finished checkpoint; train or resume the run first")
        if step is None:
            step = max(available)
        elif step not in available:
            raise CheckpointError(f"{run_dir}: no checkpoint at step {step}; available: "
                                  f"{', '.join(map(str, sorted(available)))}")
        training = build_training(cfg, build_model(cfg, inference=True, abstract=True), abstract=True)
        state, _ = ckpts.restore(step, training.state)
    finally:
        ckpts.close()
    return LoadedRun(cfg, training.model.merge(state["params"], state["rest"]), step,
                     read_json(run_dir / "summary.json"))
