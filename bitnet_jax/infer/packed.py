"""Packed checkpoints: a finished run as one safetensors file with 2-bit ternary (or 1-bit binary) linear weights.

File layout (tensor names are the model's parameter paths):
- `<layer>.kernel.codes`: uint8, the layer's codes packed by `infer.pack` in Hugging Face's layout, torch orientation
  (codes of the (out, in) weight, 4 per byte for ternary, 8 per byte for binary, along the output dimension);
- `<layer>.kernel.scale`: float32 (groups,), the recipe's weight scale (mean|W| per group of output columns);
- every other parameter (embeddings, norms, a full-precision LM head) as is, in float32 or bfloat16;
- metadata: `format`, the run's config (JSON) and the checkpoint step.

Loading builds the run's Transformer with master weights chosen so that the recipe's own fake-quantiser gives back
exactly codes * scale (see `master_from_codes`): the loaded model can be evaluated, used for inference or trained on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from bitnet_jax import config as config_lib
from bitnet_jax import quant
from bitnet_jax.errors import CheckpointError, UserError
from bitnet_jax.infer.pack import pack_binary, pack_ternary, unpack_binary, unpack_ternary
from bitnet_jax.layers import BitLinear
from bitnet_jax.recipes import Recipe

FORMAT = "bitnet_jax.packed/1"
PACKABLE = {"ternary_absmean": 4, "binary_sign": 8}  # weight quantiser -> codes per byte
STORE_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16}


# ---- codes and scales <-> master weights --------------------------------------------------------------------------

def check_packable(recipe: Recipe) -> None:
    if recipe.weight_quant not in PACKABLE:
        raise UserError(f"recipe {recipe.name!r} quantises weights with {recipe.weight_quant!r}; packing needs "
                        f"{' or '.join(PACKABLE)} (export a ternary b1.58 or binary BitNet run)")


def weight_codes(kernel, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """(codes (out, in) int8, scale (groups,) float32) of an (in, out) kernel under the recipe's weight quantiser."""
    fn = quant.ternary_codes if recipe.weight_quant == "ternary_absmean" else quant.binary_codes
    codes, scale = fn(jnp.asarray(kernel, jnp.float32), groups=recipe.weight_groups, axis=-1)
    scale = np.broadcast_to(np.asarray(scale, np.float32), codes.shape)[0]  # one value per output column
    width = codes.shape[1] // recipe.weight_groups
    return np.asarray(codes).T.copy(), scale[::width].copy()


def master_from_codes(codes: np.ndarray, scale: np.ndarray, weight_quant: str) -> np.ndarray:
    """An (in, out) float32 kernel whose fake-quantised value is codes * scale, from (out, in) codes and per-group
    scales.

    codes * scale itself would not do for ternary weights: its mean|W| is scale times the fraction of non-zero
    codes, not scale. Scaling the non-zero entries of each group by n / (number of non-zero) makes mean|W| = scale,
    and every non-zero entry then lies at |W| / scale >= 1, so it rounds and clips back to its code. Binary weights
    (codes +-1) already have mean|W| = scale and sign(W - mean W) = codes (unless a whole group shares one sign).
    """
    out = codes.shape[0]
    groups = np.asarray(scale, np.float32).reshape(-1)
    if out % groups.size:
        raise CheckpointError(f"{groups.size} weight scales cannot split {out} output rows into equal groups")
    c = codes.astype(np.float32).reshape(groups.size, out // groups.size, -1)
    if weight_quant == "ternary_absmean":
        nonzero = np.count_nonzero(c, axis=(1, 2)).astype(np.float32)
        stretch = np.where(nonzero > 0, c[0].size / np.maximum(nonzero, 1), 1.0).astype(np.float32)
        c = c * stretch[:, None, None]
    w = (c * groups[:, None, None]).reshape(out, -1)
    return np.ascontiguousarray(w.T)


def pack_codes(codes: np.ndarray, weight_quant: str) -> np.ndarray:
    return pack_ternary(codes) if weight_quant == "ternary_absmean" else pack_binary(codes)


def unpack_codes(packed: np.ndarray, out: int, weight_quant: str) -> np.ndarray:
    return unpack_ternary(packed, out) if weight_quant == "ternary_absmean" else unpack_binary(packed, out)


# ---- model traversal ------------------------------------------------------------------------------------------------

def _name(path) -> str:
    return ".".join(str(p) for p in path)


def quantized_linears(model) -> dict[str, BitLinear]:
    """The model's BitLinears whose weights the recipe quantises, by parameter path (e.g. blocks.0.attn.q_proj)."""
    return {_name(path): node for path, node in nnx.iter_graph(model)
            if isinstance(node, BitLinear) and node.recipe.weight_quant != "none"}


def params(model) -> dict[str, nnx.Param]:
    """Every parameter of the model by path (e.g. blocks.0.attn_norm.scale)."""
    return {_name(path): node for path, node in nnx.iter_graph(model) if isinstance(node, nnx.Param)}


# ---- memory report -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryReport:
    linear_weights: int  # quantised linear weights (elements)
    linear_packed_bytes: int  # their packed codes plus float32 scales
    other_params: int  # embeddings, norms, a full-precision head
    total_params: int

    @property
    def linear_bf16_bytes(self) -> int:
        return 2 * self.linear_weights

    @property
    def model_packed_bytes(self) -> int:
        """Packed linear layers plus every other parameter in bfloat16."""
        return self.linear_packed_bytes + 2 * self.other_params

    @property
    def model_bf16_bytes(self) -> int:
        return 2 * self.total_params

    def lines(self) -> list[str]:
        return [(f"linear layers: {self.linear_weights:,} weights, packed {_mb(self.linear_packed_bytes)} vs bf16 "
                 f"{_mb(self.linear_bf16_bytes)} ({self.linear_bf16_bytes / self.linear_packed_bytes:.2f}x smaller)"),
                (f"whole model:   {self.total_params:,} params, packed + bf16 rest {_mb(self.model_packed_bytes)} vs "
                 f"bf16 {_mb(self.model_bf16_bytes)} ({self.model_bf16_bytes / self.model_packed_bytes:.2f}x smaller)")]


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def memory_report(model) -> MemoryReport:
    """Bytes of the model's weights packed (2-bit ternary or 1-bit binary codes + float32 scales, the rest bf16)
    against all of them in bfloat16."""
    linears = quantized_linears(model)
    linear_weights = packed = 0
    for layer in linears.values():
        check_packable(layer.recipe)
        per_byte = PACKABLE[layer.recipe.weight_quant]
        linear_weights += layer.in_features * layer.out_features
        packed += math.ceil(layer.out_features / per_byte) * layer.in_features + 4 * layer.recipe.weight_groups
    total = sum(p.size for p in params(model).values())
    return MemoryReport(linear_weights, packed, total - linear_weights, total)


# ---- safetensors files ----------------------------------------------------------------------------------------------

def write_safetensors(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Write atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp), metadata=metadata)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors as numpy arrays, metadata); a missing, truncated or corrupt file is a one-line CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such safetensors file")
    try:
        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 -- safetensors raises its own error types (and OSError) for bad files
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CheckpointError(f"{path}: not a readable safetensors file ({reason}); the file is corrupt or "
                              f"truncated: write it again") from None
    return tensors, metadata


# ---- save / load ----------------------------------------------------------------------------------------------------

def save_packed(run_dir: str | Path, out_file: str | Path, *, step: int | None = None,
                dtype: str = "float32") -> MemoryReport:
    """Write the run's model (checkpoint `step`, default the latest) as a packed safetensors file; returns the memory
    report. `dtype` is the storage type of the full-precision parameters (float32 keeps them exact)."""
    from bitnet_jax.train import load_run

    if dtype not in STORE_DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of {', '.join(STORE_DTYPES)}")
    loaded = load_run(run_dir, step)
    check_packable(loaded.config.recipe)
    model = loaded.model
    linears = quantized_linears(model)
    tensors: dict[str, np.ndarray] = {}
    for name, layer in linears.items():
        codes, scale = weight_codes(layer.kernel[...], layer.recipe)
        tensors[f"{name}.kernel.codes"] = pack_codes(codes, layer.recipe.weight_quant)
        tensors[f"{name}.kernel.scale"] = scale
    for name, param in params(model).items():
        if name.removesuffix(".kernel") not in linears:
            tensors[name] = np.asarray(param[...], np.float32).astype(STORE_DTYPES[dtype])
    metadata = {"format": FORMAT, "config": json.dumps(loaded.config.to_dict()), "step": str(loaded.step)}
    write_safetensors(out_file, tensors, metadata)
    return memory_report(model)


def load_packed(path: str | Path):
    """A packed checkpoint -> LoadedRun(config, model, step, summary=None); the model's fake-quant forward equals
    the packed codes times their scales."""
    from bitnet_jax.train import LoadedRun
    from bitnet_jax.train.state import build_model

    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a bitnet-jax packed checkpoint (metadata format "
                              f"{metadata.get('format')!r}, expected {FORMAT!r}); write it with save_packed")
    try:
        cfg = config_lib.from_dict(json.loads(metadata["config"]), f"{path} (config)")
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: its metadata holds no readable run config; write it again") from None
    model = build_model(cfg, inference=True)
    linears = quantized_linears(model)
    expected = set()
    for name, layer in linears.items():
        expected |= {f"{name}.kernel.codes", f"{name}.kernel.scale"}
        packed, scale = _get(tensors, f"{name}.kernel.codes", path), _get(tensors, f"{name}.kernel.scale", path)
        per_byte = PACKABLE[layer.recipe.weight_quant]
        want = (math.ceil(layer.out_features / per_byte), layer.in_features)
        if packed.shape != want or scale.shape != (layer.recipe.weight_groups,):
            raise CheckpointError(f"{path}: {name} holds codes {packed.shape} and scales {scale.shape}, the config's "
                                  f"model needs {want} and ({layer.recipe.weight_groups},); the file and its config "
                                  f"disagree: write it again")
        codes = unpack_codes(packed, layer.out_features, layer.recipe.weight_quant)
        layer.kernel[...] = jnp.asarray(master_from_codes(codes, scale, layer.recipe.weight_quant))
    for name, param in params(model).items():
        if name.removesuffix(".kernel") in linears:
            continue
        expected.add(name)
        value = _get(tensors, name, path)
        if value.shape != param.shape:
            raise CheckpointError(f"{path}: {name} has shape {value.shape}, the config's model needs {param.shape}; "
                                  f"the file and its config disagree: write it again")
        param[...] = jnp.asarray(np.asarray(value, np.float32))
    extra = sorted(set(tensors) - expected)
    if extra:
        raise CheckpointError(f"{path}: unexpected tensor(s) {', '.join(extra[:3])} for the config's model; "
                              f"the file and its config disagree: write it again")
    return LoadedRun(cfg, model, int(metadata.get("step", 0)), None)


def _get(tensors: dict[str, np.ndarray], name: str, path) -> np.ndarray:
    if name not in tensors:
        raise CheckpointError(f"{path}: tensor {name} is missing for the config's model; the file is incomplete or "
                              f"from another model: write it again")
    return tensors[name]
