"""Building blocks: BitLinear (a drop-in for nnx.Linear that follows a recipe), RMSNorm, RoPE, attention, MLPs.

Every linear layer of the Transformer is a BitLinear; with the `fp16` recipe it is a plain matmul, so one code path
serves every recipe.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from bitnet_jax import quant
from bitnet_jax.recipes import Recipe, get as get_recipe

RMSNorm = functools.partial(nnx.RMSNorm, epsilon=1e-5)  # LLaMA/BitNet norm with the papers' eps
default_kernel_init = nnx.initializers.normal(stddev=0.02)


def quantize_weight(w: jax.Array, recipe: Recipe) -> jax.Array:
    """The recipe's weight fake-quantiser (identity for full precision); groups split the output columns."""
    if recipe.weight_quant == "none":
        return w
    fn = getattr(quant, recipe.weight_quant)
    return fn(w, groups=recipe.weight_groups, axis=-1, ste=recipe.ste)


def quantize_activation(x: jax.Array, recipe: Recipe, role: str = "in") -> jax.Array:
    """The recipe's activation fake-quantiser for the input of a linear layer of this role ('in' or 'out')."""
    kind, bits = recipe.act_for(role)
    if kind == "absmax":
        return quant.act_absmax(x, bits=bits, per_token=recipe.act_per_token, ste=recipe.ste)
    if kind == "absmean":
        return quant.act_absmean(x, bits=bits, ste=recipe.ste)
    return x


def topk_sparsify(x: jax.Array, keep: float) -> jax.Array:
    """Keep the `keep` fraction of largest-|x| entries per token, zero the rest (BitNet a4.8's o_proj input)."""
    if keep >= 1.0:
        return x
    k = max(1, int(round(keep * x.shape[-1])))
    threshold = jax.lax.top_k(jnp.abs(x), k)[0][..., -1:]
    return jnp.where(jnp.abs(x) >= threshold, x, jnp.zeros_like(x))


class BitLinear(nnx.Module):
    """y = quant_act(norm(x)) @ quant_weight(W) (+ b). Kernel shape (in, out) and no bias by default.

    `input_norm=True` puts an RMSNorm inside the layer (the b1.58 FAQ's BitLinear and BitNet's SubLN).
    `role` is 'in' for q/k/v/gate/up and 'out' for o_proj/down_proj (a recipe may quantise those differently);
    `topk` sparsifies the input first (a4.8's o_proj).
    """

    def __init__(self, in_features: int, out_features: int, *, recipe: str | Recipe = "bitnet_b158",
                 use_bias: bool = False, input_norm: bool = False, role: str = "in", topk: float = 1.0,
                 dtype=None, param_dtype=jnp.float32, kernel_init=default_kernel_init, rngs: nnx.Rngs):
        self.in_features, self.out_features = in_features, out_features
        self.recipe = get_recipe(recipe)
        self.role, self.topk, self.dtype = role, topk, dtype
        self.kernel = nnx.Param(kernel_init(rngs.params(), (in_features, out_features), param_dtype))
        self.bias = nnx.Param(jnp.zeros((out_features,), param_dtype)) if use_bias else nnx.data(None)
        self.norm = RMSNorm(in_features, dtype=dtype, rngs=rngs) if input_norm else nnx.data(None)

    @classmethod
    def from_linear(cls, linear: nnx.Linear, recipe: str | Recipe) -> "BitLinear":
        """A BitLinear carrying `linear`'s kernel and bias (the same arrays)."""
        layer = cls(linear.in_features, linear.out_features, recipe=recipe, use_bias=linear.bias is not None,
                    dtype=linear.dtype, param_dtype=linear.param_dtype,
                    kernel_init=nnx.initializers.zeros, rngs=nnx.Rngs(0))
        layer.kernel = linear.kernel
        if linear.bias is not None:
            layer.bias = linear.bias
        return layer

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.norm is not None:
            x = self.norm(x)
        x = topk_sparsify(x, self.topk)
        x = quantize_activation(x, self.recipe, self.role)
        w = quantize_weight(self.kernel[...], self.recipe)
        dtype = self.dtype or jnp.result_type(x, w)
        y = jnp.dot(x.astype(dtype), w.astype(dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(dtype)
        return y


def quantize(model: nnx.Module, recipe: str | Recipe, *, exclude: tuple[str, ...] = ()) -> nnx.Module:
    """Swap every nnx.Linear inside `model` for a BitLinear following `recipe`, carrying the same kernel, in place.

    Attributes named in `exclude` (e.g. 'lm_head', or a whole submodule) are left alone with everything inside
    them. Returns the model (a new BitLinear when the model itself is an nnx.Linear).
    """
    recipe = get_recipe(recipe)
    if isinstance(model, nnx.Linear):
        return BitLinear.from_linear(model, recipe)
    _swap_linears(model, recipe, set(exclude), set())
    return model


def _swap_linears(node, recipe: Recipe, exclude: set[str], seen: set[int]) -> None:
    if id(node) in seen:  # a module shared by two parents is converted once
        return
    seen.add(id(node))
    items = list(enumerate(node)) if isinstance(node, (list, nnx.List)) else list(vars(node).items())
    for key, value in items:
        if key in exclude:
            continue
        if isinstance(value, nnx.Linear):
            if isinstance(key, int):
                node[key] = BitLinear.from_linear(value, recipe)
            else:
                setattr(node, key, BitLinear.from_linear(value, recipe))
        elif isinstance(value, (nnx.Module, list)):
            _swap_linears(value, recipe, exclude, seen)


def rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding, rotate-half convention (LLaMA / Hugging Face). x: (batch, seq, heads, head_dim);
    positions: (seq,) shared by the batch, or (batch, seq) per row (left-padded prompts in generation)."""
    half = x.shape[-1] // 2
    freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[..., None].astype(jnp.float32) * freqs  # (seq, half) or (batch, seq, half)
    cos, sin = jnp.cos(angles)[..., None, :], jnp.sin(angles)[..., None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def siblings(x: jax.Array, *layers) -> tuple[jax.Array, ...]:
    """The outputs of linear layers that read the same input (q, k, v; gate, up). An inference model may hold them
    as one fused layer in the first place and None in the others (`infer.integer.PackedSiblings`)."""
    if layers[1] is None:
        return layers[0](x)
    return tuple(layer(x) for layer in layers)


class Attention(nnx.Module):
    """Causal self-attention with grouped-query heads and RoPE; every projection is a BitLinear."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, *, recipe: Recipe, rope_theta: float,
                 linear_norm: bool, sub_norm: bool, dtype=None, attention_impl: str | None = None, rngs: nnx.Rngs):
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.rope_theta, self.attention_impl = rope_theta, attention_impl
        lin = functools.partial(BitLinear, recipe=recipe, input_norm=linear_norm, dtype=dtype, rngs=rngs)
        self.q_proj = lin(d_model, n_heads * self.head_dim)
        self.k_proj = lin(d_model, n_kv_heads * self.head_dim)
        self.v_proj = lin(d_model, n_kv_heads * self.head_dim)
        self.sub_norm = RMSNorm(d_model, dtype=dtype, rngs=rngs) if sub_norm else nnx.data(None)
        self.o_proj = lin(n_heads * self.head_dim, d_model, role="out", topk=recipe.o_proj_topk)

    def __call__(self, x: jax.Array) -> jax.Array:
        q, k, v = self._project(x, jnp.arange(x.shape[1]))
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=self.attention_impl)
        return self._output(y)

    def decode(self, x: jax.Array, kv: tuple[jax.Array, jax.Array], positions: jax.Array, mask: jax.Array,
               index: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Attention over a fixed-size KV cache (generation). kv: (keys, values), each (batch, cache_len, kv_heads,
        head_dim); the new tokens' keys and values are written at slots index..index+seq-1. positions: (batch, seq)
        RoPE positions of the new tokens; mask: (batch, seq, cache_len) which cache slots each new token sees."""
        q, k, v = self._project(x, positions)
        keys = jax.lax.dynamic_update_slice(kv[0], k.astype(kv[0].dtype), (0, index, 0, 0))
        values = jax.lax.dynamic_update_slice(kv[1], v.astype(kv[1].dtype), (0, index, 0, 0))
        y = jax.nn.dot_product_attention(q, keys.astype(q.dtype), values.astype(q.dtype), mask=mask[:, None])
        return self._output(y), (keys, values)

    def _project(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        b, t, _ = x.shape
        q, k, v = siblings(x, self.q_proj, self.k_proj, self.v_proj)
        q = q.reshape(b, t, self.n_heads, self.head_dim)
        k = k.reshape(b, t, self.n_kv_heads, self.head_dim)
        v = v.reshape(b, t, self.n_kv_heads, self.head_dim)
        return rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta), v

    def _output(self, y: jax.Array) -> jax.Array:
        b, t = y.shape[:2]
        y = y.reshape(b, t, self.n_heads * self.head_dim)
        if self.sub_norm is not None:
            y = self.sub_norm(y)
        return self.o_proj(y)


MLP_KINDS = ("swiglu", "relu2")


class GLU(nnx.Module):
    """Gated MLP: down(act(gate(x)) * up(x)), act = SiLU (SwiGLU) or squared ReLU (ReLU^2-GLU)."""

    def __init__(self, d_model: int, d_ff: int, *, kind: str, recipe: Recipe, linear_norm: bool, sub_norm: bool,
                 dtype=None, rngs: nnx.Rngs):
        self.kind = kind
        lin = functools.partial(BitLinear, recipe=recipe, input_norm=linear_norm, dtype=dtype, rngs=rngs)
        self.gate_proj = lin(d_model, d_ff)
        self.up_proj = lin(d_model, d_ff)
        self.sub_norm = RMSNorm(d_ff, dtype=dtype, rngs=rngs) if sub_norm else nnx.data(None)
        self.down_proj = lin(d_ff, d_model, role="out")

    def __call__(self, x: jax.Array) -> jax.Array:
        gate, up = siblings(x, self.gate_proj, self.up_proj)
        act = jax.nn.silu(gate) if self.kind == "swiglu" else jnp.square(jax.nn.relu(gate))
        h = act * up
        if self.sub_norm is not None:
            h = self.sub_norm(h)
        return self.down_proj(h)
