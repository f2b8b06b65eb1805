"""ModelConfig and the LLaMA-style Transformer whose linear layers follow a recipe; parameter and FLOP counting;
size families for sweeps.

Layouts (`ModelConfig.layout`):
- `llama`: pre-norm blocks (RMSNorm before attention and MLP), SwiGLU.
- `faq`: the BitNet b1.58 FAQ: an RMSNorm inside every BitLinear and no block pre-norms; SwiGLU.
- `hf_bitnet`: transformers' BitNetForCausalLM: pre-norms plus `attn_sub_norm` before o_proj and `ffn_sub_norm`
  before down_proj; ReLU^2-GLU.
- `auto`: the layout of the recipe's paper (`Recipe.layout`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from bitnet_jax.errors import ConfigError
from bitnet_jax.layers import MLP_KINDS, Attention, BitLinear, GLU, RMSNorm
from bitnet_jax.recipes import LAYOUTS, Recipe, get as get_recipe

LAYOUT_MLP = {"llama": "swiglu", "faq": "swiglu", "hf_bitnet": "relu2"}


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None: as many as n_heads (no grouping)
    d_ff: int = 352
    seq_len: int = 128
    tie_embeddings: bool = True
    layout: str = "auto"
    mlp: str | None = None  # None: the layout's MLP (swiglu for llama/faq, relu2 for hf_bitnet)
    rope_theta: float = 10000.0

    def __post_init__(self):
        for field in ("vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "seq_len"):
            if getattr(self, field) < 1:
                raise ConfigError(f"model.{field}={getattr(self, field)}: must be a positive integer")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}; "
                              f"pick n_heads among {_divisors(self.d_model)}")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError(f"head dim d_model/n_heads = {self.d_model // self.n_heads} must be even for RoPE")
        if self.n_kv_heads is not None and (self.n_kv_heads < 1 or self.n_heads % self.n_kv_heads):
            raise ConfigError(f"model.n_kv_heads={self.n_kv_heads} must divide model.n_heads={self.n_heads}")
        if self.layout != "auto" and self.layout not in LAYOUTS:
            raise ConfigError(f"model.layout={self.layout!r} is not one of auto, {', '.join(LAYOUTS)}")
        if self.mlp is not None and self.mlp not in MLP_KINDS:
            raise ConfigError(f"model.mlp={self.mlp!r} is not one of {', '.join(MLP_KINDS)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def resolve(self, recipe: str | Recipe) -> "ModelConfig":
        """This config with `layout: auto` and `mlp: None` made explicit for the recipe."""
        layout = get_recipe(recipe).layout if self.layout == "auto" else self.layout
        return dataclasses.replace(self, layout=layout, mlp=self.mlp or LAYOUT_MLP[layout])


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, min(n, 64) + 1) if n % d == 0 and (n // d) % 2 == 0)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, recipe: Recipe, *, dtype, attention_impl, rngs: nnx.Rngs):
        linear_norm = cfg.layout == "faq"
        pre_norm = cfg.layout != "faq"
        sub_norm = cfg.layout == "hf_bitnet"
        self.attn_norm = RMSNorm(cfg.d_model, dtype=dtype, rngs=rngs) if pre_norm else nnx.data(None)
        self.attn = Attention(cfg.d_model, cfg.n_heads, cfg.kv_heads, recipe=recipe, rope_theta=cfg.rope_theta,
                              linear_norm=linear_norm, sub_norm=sub_norm, dtype=dtype,
                              attention_impl=attention_impl, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.d_model, dtype=dtype, rngs=rngs) if pre_norm else nnx.data(None)
        self.mlp = GLU(cfg.d_model, cfg.d_ff, kind=cfg.mlp, recipe=recipe, linear_norm=linear_norm,
                       sub_norm=sub_norm, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._add_mlp(x + self.attn(self._attn_input(x)))

    def decode(self, x: jax.Array, kv, positions, mask, index):
        """__call__ with the attention reading and extending a KV cache (see Attention.decode)."""
        h, kv = self.attn.decode(self._attn_input(x), kv, positions, mask, index)
        return self._add_mlp(x + h), kv

    def _attn_input(self, x: jax.Array) -> jax.Array:
        return self.attn_norm(x) if self.attn_norm is not None else x

    def _add_mlp(self, x: jax.Array) -> jax.Array:
        return x + self.mlp(self.mlp_norm(x) if self.mlp_norm is not None else x)


class Transformer(nnx.Module):
    """Decoder-only LM: tokens (batch, seq) int -> logits (batch, seq, vocab) float32.

    Parameters are float32; `dtype` (e.g. bfloat16) is the matmul/activation dtype. Embeddings and the LM head stay
    full precision unless the recipe sets `quantize_lm_head` (then the untied head is a BitLinear).
    """

    def __init__(self, cfg: ModelConfig, recipe: str | Recipe = "fp16", *, rngs: nnx.Rngs, dtype=None,
                 attention_impl: str | None = None):
        recipe = get_recipe(recipe)
        cfg = cfg.resolve(recipe)
        if recipe.quantize_lm_head and cfg.tie_embeddings:
            raise ConfigError("recipe.quantize_lm_head needs model.tie_embeddings=false (a tied head is the embedding)")
        self.cfg, self.recipe, self.dtype = cfg, recipe, dtype
        self.embed = nnx.Embed(cfg.vocab_size, cfg.d_model, dtype=dtype,
                               embedding_init=nnx.initializers.normal(stddev=0.02), rngs=rngs)
        self.blocks = nnx.List([Block(cfg, recipe, dtype=dtype, attention_impl=attention_impl, rngs=rngs)
                                for _ in range(cfg.n_layers)])
        self.final_norm = RMSNorm(cfg.d_model, dtype=dtype, rngs=rngs)
        head_recipe = recipe if recipe.quantize_lm_head else "fp16"
        self.lm_head = (nnx.data(None) if cfg.tie_embeddings
                        else BitLinear(cfg.d_model, cfg.vocab_size, recipe=head_recipe, dtype=dtype, rngs=rngs))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        x = self._embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def decode(self, tokens: jax.Array, cache: list, positions: jax.Array, mask: jax.Array, index: jax.Array):
        """Logits of new tokens given a KV cache: (logits (batch, seq, vocab), updated cache). cache: one (keys, values)
        pair per block (see `init_cache`); positions, mask, index as in Attention.decode. Used by infer.generate."""
        x, new_cache = self._embed(tokens), []
        for block, kv in zip(self.blocks, cache):
            x, kv = block.decode(x, kv, positions, mask, index)
            new_cache.append(kv)
        return self._logits(x), new_cache

    def init_cache(self, batch: int, length: int, dtype=jnp.float32) -> list:
        """An empty KV cache of `length` slots: per block (keys, values), each (batch, length, kv_heads, head_dim)."""
        shape = (batch, length, self.cfg.kv_heads, self.cfg.head_dim)
        return [(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in self.blocks]

    def _embed(self, tokens: jax.Array) -> jax.Array:
        # Look up in the float32 table, then cast: the gradient is then a float32 scatter-add. nnx.Embed casts the
        # table to bfloat16 first, and on an H100 the bfloat16 scatter-add over real text (many repeats of a few
        # frequent tokens) made a small model's train step 30x slower than on uniform random tokens.
        return jnp.take(self.embed.embedding[...], tokens, axis=0).astype(self.embed.dtype)

    def _logits(self, x: jax.Array) -> jax.Array:
        x = self.final_norm(x)
        logits = self.embed.attend(x) if self.lm_head is None else self.lm_head(x)
        return logits.astype(jnp.float32)


# ---- counting ---------------------------------------------------------------------------------------------------

def param_counts(cfg: ModelConfig, recipe: str | Recipe = "fp16") -> dict[str, int]:
    """Parameter counts from the architecture (tests check them against the built model).

    - `total`: every parameter.
    - `embedding`: the token embedding plus an untied LM head (the vocabulary parameters).
    - `non_embedding`: total - embedding (Kaplan et al.'s N).
    - `matmul`: parameters that take part in matmuls: every linear kernel plus the LM head (tied or not);
      the N of 6N FLOPs per token and of MFU.
    """
    cfg = cfg.resolve(recipe)
    d, f, hd = cfg.d_model, cfg.d_ff, cfg.head_dim
    attn = d * cfg.n_heads * hd * 2 + d * cfg.kv_heads * hd * 2
    mlp = 3 * d * f
    if cfg.layout == "faq":  # one RMSNorm inside each of the 7 BitLinears, over its input width
        norms = 3 * d + cfg.n_heads * hd + 2 * d + f
    elif cfg.layout == "hf_bitnet":  # two pre-norms + attention and MLP sub-norms
        norms = 2 * d + d + f
    else:
        norms = 2 * d
    per_layer = attn + mlp + norms
    vocab = cfg.vocab_size * d
    embedding = vocab * (1 if cfg.tie_embeddings else 2)
    total = cfg.n_layers * per_layer + d + embedding
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding,
            "matmul": cfg.n_layers * (attn + mlp) + vocab}


def flops_per_token(cfg: ModelConfig, recipe: str | Recipe = "fp16") -> float:
    """Training FLOPs per token: 6 N_matmul + 12 n_layers d_attn seq_len (the PaLM/MFU convention, causal mask not
    discounted)."""
    cfg = cfg.resolve(recipe)
    return 6.0 * param_counts(cfg)["matmul"] + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * cfg.seq_len


def count_params(model: nnx.Module) -> int:
    """Parameters of a built model (for checking `param_counts`)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ---- size families ------------------------------------------------------------------------------------------------

def size_family(n_min: float, n_max: float, n_sizes: int, *, aspect_ratio: float = 32.0, head_dim: int = 32,
                ffn_mult: float = 8 / 3, ffn_multiple: int = 32, base: ModelConfig | None = None
                ) -> list[ModelConfig]:
    """Configs spanning [n_min, n_max] non-embedding parameters, log-spaced, at a fixed aspect ratio d_model/n_layers.

    With a GLU of width ffn_mult*d, a layer has about c d^2 parameters, c = 4 + 3 ffn_mult, so with
    n_layers = d / aspect_ratio a target N needs d = (N aspect_ratio / c)^(1/3). d is rounded to a multiple of
    head_dim and n_layers = round(d / aspect_ratio): both grow with N, so the family is ordered by size. Targets that
    round to the same shape are kept once.
    """
    if not 0 < n_min <= n_max or n_sizes < 1:
        raise ConfigError(f"size_family: need 0 < n_min <= n_max and n_sizes >= 1 (got {n_min}, {n_max}, {n_sizes})")
    if aspect_ratio <= 0 or head_dim < 2 or head_dim % 2 or ffn_mult <= 0 or ffn_multiple < 1:
        raise ConfigError(f"size_family: need aspect_ratio > 0, an even head_dim >= 2, ffn_mult > 0 and "
                          f"ffn_multiple >= 1 (got {aspect_ratio}, {head_dim}, {ffn_mult}, {ffn_multiple})")
    base = base or ModelConfig()
    per_d2 = 4 + 3 * ffn_mult
    targets = [n_min] if n_sizes == 1 else [
        math.exp(math.log(n_min) + i * (math.log(n_max) - math.log(n_min)) / (n_sizes - 1)) for i in range(n_sizes)]
    family, seen = [], set()
    for n in targets:
        d = max(head_dim, round((n * aspect_ratio / per_d2) ** (1 / 3) / head_dim) * head_dim)
        layers = max(1, round(d / aspect_ratio))
        d_ff = max(ffn_multiple, round(ffn_mult * d / ffn_multiple) * ffn_multiple)
        cfg = dataclasses.replace(base, d_model=d, n_layers=layers, n_heads=d // head_dim, n_kv_heads=None,
                                  d_ff=d_ff)
        if (d, layers, d_ff) not in seen:
            seen.add((d, layers, d_ff))
            family.append(cfg)
    return family
