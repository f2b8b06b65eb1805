"""The integer forward of quantised linear layers, and `load(run_dir)`: a trained run as an inference model.

A BitLinear of a quantised recipe computes `quant_act(x) @ quant_weight(W)` in floating point during training. Both
factors are integer codes times scales, so the same product is

    y = (x_codes @ W_codes) * x_scale * w_scale

with the exact integer sums of int8 x int8 codes (`kernels.code_product`: on bfloat16 matmul units with float32
accumulation, which is exact for these small integers), exact up to the final float multiply. `IntegerLinear` stores
the weight codes (int8) and per-output-column scales, computed once when the model is loaded, and quantises only the
activations per call:
- bitnet_b158 (and its absmedian / group variants): ternary codes, int8 absmax activations per token;
- bitnet: binary codes {-1, +1}, int8 absmax activations per tensor (as trained: the whole call's input shares one
  scale, so a batch or a KV-cache decode step sees a different scale than the full sequence did);
- bitnet_a48: 4-bit absmean codes (int8 storage) into q/k/v and gate/up, top-k sparsified int8 absmax into o_proj.
  Each layer equals its fake-quant forward, but a whole model can differ a little more than float rounding: the
  o_proj input holds exact ties (integer sums of 4-bit codes, e.g. a token attending only to itself) at the top-k
  threshold, which the training forward's float rounding breaks one way and the exact integer sums another;
- a recipe with weight quantisation but no activation quantisation: float activations times the weight codes.
Activations wider than 8 bits do not fit int8 codes and are refused.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bitnet_jax import quant
from bitnet_jax.config import RunConfig
from bitnet_jax.errors import CheckpointError, UserError
from bitnet_jax.infer import kernels
from bitnet_jax.infer.pack import pack_ternary
from bitnet_jax.layers import BitLinear, quantize_weight, topk_sparsify
from bitnet_jax.model import Transformer
from bitnet_jax.recipes import Recipe


class IntegerCodes(nnx.Variable):
    """Inference-only state: integer weight codes and their scales (not trained, not in nnx.Param)."""


def weight_codes(kernel: jax.Array, recipe: Recipe) -> tuple[jax.Array, jax.Array]:
    """(int8 codes (in, out), float32 scale (out,)) with codes * scale == the recipe's fake-quantised kernel.

    Derived from the fake-quant itself, so every weight quantiser and group setting is covered by one rule: each
    output column's quantised values are codes in {-1, 0, 1} times that column's scale, hence scale = max|column|
    and codes = column / scale, both exact in float32 (an all-zero column gets scale 1).
    """
    fq = quantize_weight(jnp.asarray(kernel, jnp.float32), recipe)
    scale = jnp.max(jnp.abs(fq), axis=0)
    scale = jnp.where(scale > 0, scale, 1.0)
    return jnp.round(fq / scale).astype(jnp.int8), scale


def activation_codes(x: jax.Array, recipe: Recipe, role: str) -> tuple[jax.Array, jax.Array]:
    """(int8 codes, float32 scale broadcasting against x) with codes * scale == the recipe's fake-quantised x."""
    kind, bits = recipe.act_for(role)
    if bits > 8:
        raise UserError(f"recipe {recipe.name!r} quantises activations to {bits} bits; the integer path holds at "
                        "most 8-bit codes: load with integer=False")
    if kind == "absmax":
        return quant.act_absmax_codes(x, bits, recipe.act_per_token)
    # absmean (BitNet a4.8), the same arithmetic as quant.act_absmean
    xf = x.astype(jnp.float32)
    root_q = math.sqrt(2 ** (bits - 1) - 1)
    beta = jnp.mean(jnp.abs(xf), axis=-1, keepdims=True)
    codes = jnp.clip(jnp.round(root_q * xf / (beta + quant.EPS)), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return codes.astype(jnp.int8), beta / root_q


PACKED_GEMV_ROWS = 8  # inputs of at most this many tokens (decode steps) take the W2A8 GEMV, which quantises the
# activations itself; longer ones (prefill) take its XLA reference path (quantise, unpack, `kernels.code_product`)


def check_packable(recipe: Recipe, role: str) -> None:
    """The packed path holds what the W2A8 kernel computes: ternary weights with one scale per tensor times int8
    absmax activation codes per token, nothing sparsified."""
    kind, bits = recipe.act_for(role)
    if (recipe.weight_quant not in ("ternary_absmean", "ternary_absmedian") or recipe.weight_groups != 1
            or (kind, bits) != ("absmax", 8) or not recipe.act_per_token or recipe.o_proj_topk < 1):
        raise UserError(f"recipe {recipe.name!r} cannot run on packed 2-bit weights (the W2A8 kernel takes ternary "
                        "weights with one scale per tensor and 8-bit absmax activations per token): drop --packed")


def _packed_words(codes: jax.Array) -> jax.Array:
    """(in, out) ternary codes -> the kernel's int32 words of their Hugging Face packing."""
    return kernels.packed_words(pack_ternary(np.asarray(codes).T))


def _packed_product(x, recipe: Recipe, role: str, words, w_scale, out_features: int,
                    quantise_in_kernel: bool) -> jax.Array:
    """x's int8 codes times packed ternary weights, scaled: the W2A8 GEMV for decode steps (float rows in, quantised
    inside the kernel unless quantise_in_kernel is False), its reference beyond. check_packable has made sure that
    the recipe quantises x as the kernel does (8-bit absmax per token)."""
    rows = x.reshape(-1, x.shape[-1])
    decode = rows.shape[0] <= PACKED_GEMV_ROWS
    if decode and quantise_in_kernel:
        y = kernels.w2a8_gemv(rows, None, words, w_scale, out_features)
    else:
        xi, x_scale = activation_codes(rows, recipe, role)
        gemv = kernels.w2a8_gemv if decode else kernels.w2a8_gemv_reference
        y = gemv(xi, x_scale.reshape(-1), words, w_scale, out_features)
    return y.reshape(*x.shape[:-1], -1)


class IntegerLinear(nnx.Module):
    """A quantised BitLinear for inference: weight codes and scales stored once, activations quantised per call.

    packed=True stores the ternary codes 2 bits each (Hugging Face's layout, as int32 words) with one scale, and
    multiplies with `kernels.w2a8_gemv`: the Pallas kernel on a GPU for decode steps, its XLA reference elsewhere.
    The same integer sums and scales as the int8-code path: equal on the reference path; the kernel multiplies the
    two scales together first, a rounding apart. quantise_in_kernel=False quantises decode-step activations in XLA
    before the kernel (four launches a product instead of one; kept to measure the difference)."""

    def __init__(self, layer: BitLinear, packed: bool = False, quantise_in_kernel: bool = True):
        if layer.recipe.weight_quant == "none":
            raise UserError(f"recipe {layer.recipe.name!r} does not quantise weights: keep the float BitLinear")
        self.recipe, self.role, self.topk, self.dtype = layer.recipe, layer.role, layer.topk, layer.dtype
        codes, scale = weight_codes(layer.kernel[...], layer.recipe)
        self.out_features = int(codes.shape[1])
        if packed:
            check_packable(layer.recipe, layer.role)
            codes = _packed_words(codes)
            scale = jnp.max(scale, keepdims=True)  # one scale: all-zero columns (scale 1 above) have zero codes
        self.packed, self.quantise_in_kernel = packed, quantise_in_kernel
        self.codes, self.weight_scale = IntegerCodes(codes), IntegerCodes(scale)
        self.bias = layer.bias if layer.bias is not None else nnx.data(None)
        self.norm = layer.norm if layer.norm is not None else nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm is not None:
            x = self.norm(x)
        x = topk_sparsify(x, self.topk)
        codes, w_scale = self.codes[...], self.weight_scale[...]
        dtype = self.dtype or x.dtype
        if self.packed:
            y = _packed_product(x, self.recipe, self.role, codes, w_scale, self.out_features,
                                self.quantise_in_kernel)
        elif self.recipe.act_for(self.role)[0] == "none":
            y = jnp.dot(x.astype(jnp.float32), codes.astype(jnp.float32)) * w_scale
        else:
            xi, x_scale = activation_codes(x, self.recipe, self.role)
            y = kernels.code_product(xi, codes, (((xi.ndim - 1,), (0,)), ((), ()))) * x_scale * w_scale
        y = y.astype(dtype)
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


class PackedSiblings(nnx.Module):
    """Packed layers that read the same input (q, k, v; gate, up; no norm inside) as one W2A8 product: their codes
    stacked along the output, one activation quantisation, one kernel launch; each output column then scaled by its
    own layer's weight scale. The same values as the layers one by one, up to the order of two float multiplies."""

    def __init__(self, layers: list[BitLinear], quantise_in_kernel: bool = True):
        codes, scales = [], []
        for layer in layers:
            check_packable(layer.recipe, layer.role)
            if layer.norm is not None or layer.bias is not None or layer.recipe != layers[0].recipe:
                raise UserError("PackedSiblings takes layers of one recipe without a norm or bias inside")
            c, scale = weight_codes(layer.kernel[...], layer.recipe)
            codes.append(c)
            scales.append(jnp.full((c.shape[1],), jnp.max(scale)))  # one scale a layer (as IntegerLinear packed)
        self.recipe, self.role, self.dtype = layers[0].recipe, layers[0].role, layers[0].dtype
        self.quantise_in_kernel = quantise_in_kernel
        self.sizes = tuple(c.shape[1] for c in codes)
        self.codes = IntegerCodes(_packed_words(jnp.concatenate(codes, axis=1)))
        self.weight_scale = IntegerCodes(jnp.concatenate(scales))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        y = _packed_product(x, self.recipe, self.role, self.codes[...], 1.0, sum(self.sizes),
                            self.quantise_in_kernel) * self.weight_scale[...]
        y = y.astype(self.dtype or x.dtype)
        return tuple(jnp.split(y, np.cumsum(self.sizes)[:-1], axis=-1))


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # attribute names that share an input


def to_integer(model: nnx.Module, packed: bool = False, fuse: bool = True,
               quantise_in_kernel: bool = True) -> nnx.Module:
    """Replace every weight-quantised BitLinear inside `model` by an IntegerLinear (packed: on 2-bit weights), in
    place; returns the model. packed and fuse: q/k/v and gate/up without a norm inside (the llama and hf_bitnet
    layouts) become one PackedSiblings each, one kernel launch instead of three or two. packed and
    quantise_in_kernel=False: decode steps quantise the activations in XLA before the kernel (to measure what
    quantising inside it saves)."""
    linear = functools.partial(IntegerLinear, packed=packed, quantise_in_kernel=quantise_in_kernel)
    siblings = functools.partial(PackedSiblings, quantise_in_kernel=quantise_in_kernel) if packed and fuse else None
    _swap(model, set(), linear, siblings)
    return model


def _fuse_siblings(node, siblings) -> None:
    for names in SIBLINGS:
        layers = [getattr(node, name, None) for name in names]
        if all(isinstance(layer, BitLinear) and layer.norm is None for layer in layers):
            setattr(node, names[0], siblings(layers))
            for name in names[1:]:
                setattr(node, name, nnx.data(None))


def _swap(node, seen: set[int], linear, siblings) -> None:
    if id(node) in seen:
        return
    seen.add(id(node))
    if siblings is not None and not isinstance(node, (list, nnx.List)):
        _fuse_siblings(node, siblings)
    items = list(enumerate(node)) if isinstance(node, (list, nnx.List)) else list(vars(node).items())
    for key, value in items:
        if isinstance(value, BitLinear) and value.recipe.weight_quant != "none":
            if isinstance(key, int):
                node[key] = linear(value)
            else:
                setattr(node, key, linear(value))
        elif isinstance(value, (nnx.Module, list)):
            _swap(value, seen, linear, siblings)


@dataclass
class InferenceModel:
    """A trained model ready for inference: `model(tokens)` maps int tokens (batch, seq) to float32 logits
    (batch, seq, vocab) under jax.jit. `integer` says whether its quantised layers run the integer path."""

    config: RunConfig
    model: Transformer
    step: int
    integer: bool
    _graphdef: object = field(init=False, repr=False)
    _state: object = field(init=False, repr=False)

    def __post_init__(self):
        self._graphdef, self._state = nnx.split(self.model)

    @property
    def vocab_size(self) -> int:
        return self.model.cfg.vocab_size

    def __call__(self, tokens) -> jax.Array:
        tokens = check_tokens(tokens, self.vocab_size)
        return _forward(self._graphdef, self._state, jnp.asarray(tokens))


def check_tokens(tokens, vocab_size: int) -> np.ndarray:
    """tokens as an int32 (batch, seq) array, or a UserError saying what is wrong with them."""
    arr = np.asarray(tokens)
    if arr.ndim != 2 or arr.shape[1] == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"tokens must be a non-empty integer array of shape (batch, seq), got {arr.dtype} "
                        f"{arr.shape}")
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise UserError(f"token ids must lie in [0, {vocab_size}) for this model, got [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int32)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens):
    return nnx.merge(graphdef, state)(tokens)


def load(run_dir: str | Path, step: int | None = None, *, integer: bool = True, packed: bool = False) -> InferenceModel:
    """The run in `run_dir` (checkpoint `step`, default the latest) as an InferenceModel. Quantised recipes run the
    integer path unless integer=False (packed: on 2-bit weights with the W2A8 decode kernel); weights are quantised
    here, once. fp16 runs keep the float forward."""
    from bitnet_jax.train import load_run  # the training stack loads lazily: `import bitnet_jax.infer` stays light

    run = load_run(run_dir, step)
    _check_recorded_recipe(Path(run_dir), run.config, run.summary)
    model = run.model
    integer = integer and run.config.recipe.weight_quant != "none"
    if packed and not integer:
        raise UserError(f"{run_dir}: packed weights need a quantised recipe on the integer path, this run is "
                        f"{run.config.recipe.name!r}: drop --packed")
    if integer:
        to_integer(model, packed)
    return InferenceModel(run.config, model, run.step, integer)


def _check_recorded_recipe(run_dir: Path, cfg: RunConfig, summary: dict | None) -> None:
    """The recipe and layout summary.json recorded at training time must be those config.yaml now names."""
    if not summary:
        return
    layout = cfg.model.resolve(cfg.recipe).layout
    for what, recorded, now in (("recipe", summary.get("recipe"), cfg.recipe.name),
                                ("layout", summary.get("layout"), layout)):
        if recorded is not None and recorded != now:
            raise CheckpointError(f"{run_dir}: config.yaml says {what} {now!r} but the checkpoint was trained with "
                                  f"{recorded!r} (summary.json); restore the run's own config.yaml")
