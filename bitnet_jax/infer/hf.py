"""Hugging Face interop: export a b1.58 `hf_bitnet` run as a transformers `BitNetForCausalLM` checkpoint directory,
and import such a directory (packed or master weights) back into our Transformer or into a run directory.

Our `hf_bitnet` layout is transformers' BitNet architecture parameter for parameter (kernels are (in, out), torch
weights (out, in)); rotate-half RoPE, 1/sqrt(head_dim) attention scaling, query head h reading key/value head
h // (n_heads / n_kv_heads), RMSNorm eps 1e-5 and per-tensor absmean ternary weights with per-token int8 absmax
activations are the same on both sides. Checkpoint modes (`quantization_config`):
- packed (default): `linear_class: bitlinear`, `quantization_mode: offline`; uint8 weights (out/4, in) in the 2-bit
  layout of `infer.pack` and `weight_scale` = 1 / mean|W| (transformers divides by it);
- online (`packed=False`): `linear_class: autobitlinear`, `quantization_mode: online`; the float master weights,
  quantised by transformers at every forward exactly as we train them.
Import also reads `autobitlinear` offline checkpoints (ternary weights, packed or not, and `weight_scale` = mean|W|).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from bitnet_jax import config as config_lib
from bitnet_jax.config import RunConfig
from bitnet_jax.errors import CheckpointError, ConfigError, UserError
from bitnet_jax.infer.pack import pack_ternary, unpack_ternary
from bitnet_jax.infer.packed import (
    STORE_DTYPES,
    MemoryReport,
    master_from_codes,
    memory_report,
    params,
    read_safetensors,
    weight_codes,
    write_safetensors,
)
from bitnet_jax.layers import RMSNorm
from bitnet_jax.model import ModelConfig, Transformer
from bitnet_jax.recipes import get as get_recipe

RMS_EPS = RMSNorm.keywords["epsilon"]
BYTE_SPECIAL_ID = 0  # the byte tokenizer has no special tokens; NUL never occurs in text, so it serves as bos/eos
_LINEARS = {"attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
_HF_MODULE = {"attn": "self_attn", "mlp": "mlp"}
_TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}


# ---- the parameter map ----------------------------------------------------------------------------------------------

def _parameter_map(cfg: ModelConfig) -> list[tuple[str, str, bool]]:
    """(our parameter path, transformers tensor name, is a quantised linear kernel) for every parameter."""
    rows = [("embed.embedding", "model.embed_tokens.weight", False), ("final_norm.scale", "model.norm.weight", False)]
    for i in range(cfg.n_layers):
        ours, theirs = f"blocks.{i}", f"model.layers.{i}"
        rows += [(f"{ours}.attn_norm.scale", f"{theirs}.input_layernorm.weight", False),
                 (f"{ours}.mlp_norm.scale", f"{theirs}.post_attention_layernorm.weight", False),
                 (f"{ours}.attn.sub_norm.scale", f"{theirs}.self_attn.attn_sub_norm.weight", False),
                 (f"{ours}.mlp.sub_norm.scale", f"{theirs}.mlp.ffn_sub_norm.weight", False)]
        for part, names in _LINEARS.items():
            rows += [(f"{ours}.{part}.{n}.kernel", f"{theirs}.{_HF_MODULE[part]}.{n}.weight", True) for n in names]
    if not cfg.tie_embeddings:
        rows.append(("lm_head.kernel", "lm_head.weight", False))
    return rows


# ---- export ---------------------------------------------------------------------------------------------------------

def check_exportable(cfg: RunConfig) -> None:
    """A one-line UserError unless transformers' BitNetForCausalLM can express the run's model and recipe."""
    r, m = cfg.recipe, cfg.model.resolve(cfg.recipe)
    if m.layout != "hf_bitnet" or m.mlp != "relu2":
        raise UserError(f"Hugging Face BitNet export needs model.layout=hf_bitnet with the relu2 MLP; this run has "
                        f"layout {m.layout!r}, mlp {m.mlp!r} (train with recipe=bitnet_b158 model.layout=hf_bitnet)")
    kind, bits = r.act_for("in")
    out_kind, out_bits = r.act_for("out")
    matches = (r.weight_quant == "ternary_absmean" and r.weight_groups == 1 and r.act_per_token
               and (kind, bits) == (out_kind, out_bits) == ("absmax", 8) and r.o_proj_topk == 1.0)
    if not matches:
        raise UserError(f"recipe {r.name!r} cannot be expressed by transformers' BitNet (it quantises with per-tensor "
                        f"absmean ternary weights and per-token int8 absmax activations only); export a "
                        f"recipe=bitnet_b158 run")
    if r.quantize_lm_head:
        raise UserError("transformers' BitNet keeps the LM head full precision; export a run without "
                        "recipe.quantize_lm_head")


def hf_config(cfg: RunConfig, *, packed: bool, dtype: str) -> dict:
    """config.json of the exported BitNetForCausalLM."""
    m = cfg.model.resolve(cfg.recipe)
    quant = {"quant_method": "bitnet", "linear_class": "bitlinear" if packed else "autobitlinear",
             "quantization_mode": "offline" if packed else "online", "use_rms_norm": False,
             "rms_norm_eps": RMS_EPS}
    return {
        "architectures": ["BitNetForCausalLM"], "model_type": "bitnet",
        "vocab_size": m.vocab_size, "hidden_size": m.d_model, "intermediate_size": m.d_ff,
        "num_hidden_layers": m.n_layers, "num_attention_heads": m.n_heads, "num_key_value_heads": m.kv_heads,
        "hidden_act": "relu2", "max_position_embeddings": m.seq_len, "rms_norm_eps": RMS_EPS,
        "tie_word_embeddings": m.tie_embeddings, "attention_bias": False, "attention_dropout": 0.0,
        "rope_parameters": {"rope_type": "default", "rope_theta": m.rope_theta}, "rope_theta": m.rope_theta,
        "bos_token_id": BYTE_SPECIAL_ID, "eos_token_id": BYTE_SPECIAL_ID, "pad_token_id": None,
        "initializer_range": 0.02, "use_cache": True, "dtype": dtype,
        "quantization_config": quant,
    }


@dataclass(frozen=True)
class HFExport:
    out_dir: Path
    memory: MemoryReport
    tokenizer: str  # what was written for the tokenizer, in words


def export_hf(run_dir: str | Path, out_dir: str | Path, packed: bool = True, *, dtype: str = "bfloat16",
              step: int | None = None) -> HFExport:
    """Write OUT/config.json, OUT/model.safetensors and the run's tokenizer, which
    `transformers.BitNetForCausalLM.from_pretrained(OUT)` (and AutoTokenizer) load. `dtype` stores the float tensors
    (bfloat16 or float32: the norms, the embeddings, and the master weights with packed=False)."""
    from bitnet_jax.train import load_run

    if dtype not in STORE_DTYPES:
        raise UserError(f"dtype {dtype!r} is not one of {', '.join(STORE_DTYPES)}")
    loaded = load_run(run_dir, step)
    check_exportable(loaded.config)
    m = loaded.config.model.resolve(loaded.config.recipe)
    if packed and (m.d_model % 4 or m.d_ff % 4 or m.kv_heads * m.head_dim % 4):
        raise UserError(f"transformers' packed BitLinear needs every output width divisible by 4 (d_model "
                        f"{m.d_model}, d_ff {m.d_ff}, kv width {m.kv_heads * m.head_dim}); export with --online")
    store = STORE_DTYPES[dtype]
    ours = params(loaded.model)
    tensors = {}
    for path, name, linear in _parameter_map(m):
        value = np.asarray(ours[path][...], np.float32)
        if linear and packed:
            codes, scale = weight_codes(value, loaded.config.recipe)
            tensors[name] = pack_ternary(codes)
            tensors[name.removesuffix("weight") + "weight_scale"] = (1.0 / scale).astype(store)
        else:
            tensors[name] = (value.T if path.endswith(".kernel") else value).astype(store)
    out = Path(out_dir)
    write_safetensors(out / "model.safetensors", tensors, {"format": "pt"})
    _write(out / "config.json", hf_config(loaded.config, packed=packed, dtype=dtype))
    return HFExport(out, memory_report(loaded.model), export_tokenizer(loaded.config.data, out))


def export_tokenizer(data, out_dir: Path) -> str:
    """Write the run's tokenizer next to the model; returns what was written, in words."""
    if data.tokenizer == "byte":
        if write_byte_tokenizer(out_dir):
            return "tokenizer.json: the byte tokenizer (id = UTF-8 byte value; byte 0 doubles as bos/eos)"
        return "no tokenizer file (install `tokenizers` to write one); ids are UTF-8 byte values"
    from bitnet_jax.data.tokenizer import tokenizer_path

    source = tokenizer_path(data)
    if source is None or not source.is_file():
        return f"no tokenizer file: the run's {data.tokenizer} model {source} is missing"
    if data.tokenizer == "hf":
        shutil.copyfile(source, out_dir / "tokenizer.json")
        _write(out_dir / "tokenizer_config.json", _TOKENIZER_CONFIG)
        return f"tokenizer.json copied from {source}"
    shutil.copyfile(source, out_dir / "tokenizer.model")
    return f"tokenizer.model copied from {source} (a SentencePiece model: load it with sentencepiece)"


def _write(path: Path, obj: dict) -> None:
    from bitnet_jax.files import write_atomic

    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_byte_tokenizer(out_dir: str | Path) -> bool:
    """tokenizer.json + tokenizer_config.json mapping byte b to id b (our `byte` tokenizer), for
    AutoTokenizer.from_pretrained. Skipped (False) when the `tokenizers` package is missing."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    except ImportError:
        return False
    stand_in = _bytes_to_unicode()
    tok = Tokenizer(models.BPE(vocab={stand_in[b]: b for b in range(256)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    out = Path(out_dir)
    tok.save(str(out / "tokenizer.json"))
    _write(out / "tokenizer_config.json", _TOKENIZER_CONFIG)
    return True


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (the one tokenizers' ByteLevel uses)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# ---- import ---------------------------------------------------------------------------------------------------------

def _read_hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{hf_dir} is not a Hugging Face model directory (no config.json)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); fix or re-export the checkpoint") from None
    if cfg.get("model_type") != "bitnet":
        raise CheckpointError(f"{path}: model_type is {cfg.get('model_type')!r}, not 'bitnet'; only transformers "
                              f"BitNetForCausalLM checkpoints can be imported")
    return cfg


def model_config_from_hf(hf: dict, where: str = "config.json") -> ModelConfig:
    """Our ModelConfig (layout hf_bitnet) for a transformers BitNet config; unsupported options are an error."""
    def need(key, value, default):
        got = hf.get(key, default)
        if got != value:
            raise CheckpointError(f"{where}: {key}={got!r} is not supported (bitnet-jax's hf_bitnet layout has "
                                  f"{value!r}); this checkpoint cannot be imported")

    need("hidden_act", "relu2", "relu2")
    need("attention_bias", False, False)
    need("rms_norm_eps", RMS_EPS, RMS_EPS)
    rope = hf.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise CheckpointError(f"{where}: rope_type {rope.get('rope_type')!r} is not supported (only default RoPE)")
    heads, hidden = hf.get("num_attention_heads", 20), hf.get("hidden_size", 2560)
    if hf.get("head_dim") not in (None, hidden // max(heads, 1)):
        raise CheckpointError(f"{where}: head_dim={hf['head_dim']} differs from hidden_size/num_attention_heads; "
                              f"not supported")
    quant = hf.get("quantization_config")
    if not quant or quant.get("quant_method") != "bitnet" or quant.get("use_rms_norm"):
        raise CheckpointError(f"{where}: quantization_config {quant!r} is not BitNet b1.58 quantisation without "
                              f"use_rms_norm; only such checkpoints can be imported")
    try:
        return ModelConfig(
            vocab_size=hf.get("vocab_size", 128256), d_model=hidden, n_layers=hf.get("num_hidden_layers", 30),
            n_heads=heads, n_kv_heads=hf.get("num_key_value_heads") or heads,
            d_ff=hf.get("intermediate_size", 6912), seq_len=hf.get("max_position_embeddings", 2048),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)), layout="hf_bitnet",
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 500000.0))))
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def _linear_kernel(tensors: dict, name: str, out: int, n_in: int, quant: dict, where: str) -> np.ndarray:
    """Our (in, out) float32 kernel for the transformers linear `name` in the checkpoint's quantisation mode."""
    weight = _tensor(tensors, f"{name}.weight", where)
    if quant.get("linear_class", "bitlinear") == "autobitlinear" and quant.get("quantization_mode") == "online":
        _shape(weight, (out, n_in), f"{name}.weight", where)
        return np.asarray(weight, np.float32).T.copy()
    if weight.dtype == np.uint8:
        _shape(weight, (out // 4, n_in), f"{name}.weight", where)
        codes = unpack_ternary(weight, out)
    else:
        _shape(weight, (out, n_in), f"{name}.weight", where)
        codes = np.asarray(weight, np.float32)
        if not np.isin(codes, (-1.0, 0.0, 1.0)).all():
            raise CheckpointError(f"{where}: {name}.weight of an offline checkpoint holds values outside "
                                  f"{{-1, 0, 1}}; the quantization_config does not match the weights")
        codes = codes.astype(np.int8)
    ws = np.asarray(_tensor(tensors, f"{name}.weight_scale", where), np.float32).reshape(-1)
    if ws.size != 1 or not np.isfinite(ws).all() or ws[0] <= 0:
        raise CheckpointError(f"{where}: {name}.weight_scale must be one positive number, got {ws[:4]}")
    # bitlinear divides its output by weight_scale (= 1/mean|W|); autobitlinear offline multiplies by it (= mean|W|)
    scale = 1.0 / ws if quant.get("linear_class", "bitlinear") == "bitlinear" else ws
    return master_from_codes(codes, scale.astype(np.float32), "ternary_absmean")


def _tensor(tensors: dict, name: str, where: str) -> np.ndarray:
    if name not in tensors:
        raise CheckpointError(f"{where}: tensor {name} is missing; the weights do not match config.json")
    return tensors[name]


def _shape(value: np.ndarray, want: tuple, name: str, where: str) -> None:
    if tuple(value.shape) != tuple(want):
        raise CheckpointError(f"{where}: {name} has shape {tuple(value.shape)}, config.json implies {tuple(want)}; "
                              f"the weights do not match the config")


def import_hf(hf_dir: str | Path):
    """A transformers BitNet checkpoint directory -> LoadedRun(config, model, step=0, summary=None): a RunConfig
    with recipe bitnet_b158 and model.layout hf_bitnet, and our float32 Transformer whose fake-quant forward is the
    checkpoint's forward (packed weights: codes exact, scales to float32 rounding)."""
    from bitnet_jax.train import LoadedRun

    hf_dir = Path(hf_dir)
    hf = _read_hf_config(hf_dir)
    mc = model_config_from_hf(hf, str(hf_dir / "config.json"))
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{hf_dir} holds no *.safetensors weights; save the model with safe_serialization")
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(f)[0])
    cfg = RunConfig(recipe=get_recipe("bitnet_b158"), model=mc)
    model = Transformer(mc, cfg.recipe, rngs=nnx.Rngs(0))
    ours = params(model)
    quant = hf["quantization_config"]
    where = str(hf_dir)
    used = set()
    for path, name, linear in _parameter_map(mc):
        param = ours[path]
        if linear:
            n_in, out = param.shape
            value = _linear_kernel(tensors, name.removesuffix(".weight"), out, n_in, quant, where)
            used |= {name, name.removesuffix("weight") + "weight_scale"}
        else:
            raw = _tensor(tensors, name, where)
            value = np.asarray(raw, np.float32)
            value = value.T if path.endswith(".kernel") else value
            _shape(value, param.shape, name, where)
            used.add(name)
        param[...] = jnp.asarray(value)
    extra = sorted(set(tensors) - used - {"lm_head.weight"})
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor(s) {', '.join(extra[:3])}; the weights do not match "
                              f"config.json")
    return LoadedRun(cfg, model, 0, None)


def import_hf_run(hf_dir: str | Path, out_dir: str | Path, overrides: tuple[str, ...] = ()) -> RunConfig:
    """Import a transformers BitNet checkpoint as a run directory (config.yaml + a step-0 checkpoint with a fresh
    optimiser state) that `bitnet-jax train --out OUT --resume` continues training and eval/inference load.
    `overrides` (data.*, train.*, tracking.*) set how it will train; the model section comes from the checkpoint."""
    from bitnet_jax.train.checkpoint import Checkpoints
    from bitnet_jax.train.state import build_training

    out = Path(out_dir)
    if (out / "config.yaml").exists() or (out / "ckpt").exists():
        raise CheckpointError(f"{out} already holds a run; import into a new directory")
    loaded = import_hf(hf_dir)
    raw = loaded.config.to_dict()
    for item in overrides:
        config_lib.apply_override(raw, item)
    cfg = config_lib.from_dict(raw, "import overrides")
    if cfg.recipe != loaded.config.recipe or cfg.model != loaded.config.model:
        raise ConfigError("import overrides may set data.*, train.* and tracking.* only; the recipe and model come "
                          "from the checkpoint")
    state = build_training(cfg, loaded.model).state
    ckpts = Checkpoints(out / "ckpt", keep=cfg.train.keep_checkpoints)
    try:
        ckpts.save(0, state, {"step": 0, "tokens": 0, "wandb_id": None, "imported_from": str(hf_dir)})
    finally:
        ckpts.close()
    config_lib.dump(cfg, out / "config.yaml")
    return cfg
