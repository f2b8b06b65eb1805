"""Named quantisation recipes: a recipe is data (a frozen dataclass), not a class of its own.

One code path trains every recipe: `BitLinear` reads the recipe's fields and calls the pure quantisers of
`quant.py`. The registry holds the published recipes; `get(name)` looks one up, `variant(name, **changes)` derives
a new one (e.g. from a YAML `recipe:` mapping).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bitnet_jax.errors import ConfigError

WEIGHT_QUANTS = ("none", "ternary_absmean", "ternary_absmedian", "binary_sign")
ACT_QUANTS = ("none", "absmax", "absmean")
STE_KINDS = ("identity", "clipped")
LAYOUTS = ("llama", "faq", "hf_bitnet")
SCHEDULES = ("cosine", "linear", "two_stage")


@dataclass(frozen=True)
class Recipe:
    """How the linear layers of a model are quantised, and the training defaults the recipe's paper used.

    Activation quantisers apply to the inputs of every quantised linear layer. `out_act_*` override them for the
    inputs of the output projections (attention `o_proj`, MLP `down_proj`), as BitNet a4.8 does.
    """

    name: str
    description: str = ""
    weight_quant: str = "none"
    weight_groups: int = 1  # BitNet's model-parallel group quantisation: statistics per group of output columns
    act_quant: str = "none"
    act_bits: int = 8
    act_per_token: bool = True
    out_act_quant: str | None = None  # None: same as act_quant
    out_act_bits: int | None = None  # None: same as act_bits
    o_proj_topk: float = 1.0  # fraction of |x| kept per token at the o_proj input before quantising (a4.8: 0.5)
    ste: str = "identity"
    layout: str = "llama"  # the block layout of the recipe's paper; model.layout=auto takes it
    quantize_lm_head: bool = False  # embeddings and LM head stay full precision unless asked
    lr: float = 2e-3
    lr_schedule: str = "cosine"
    lr_stage2: float | None = None  # two_stage: peak of the second stage
    weight_decay: float = 0.1
    weight_decay_stage2: float | None = None  # two_stage: weight decay of the second stage

    def __post_init__(self):
        _check_choice(self, "weight_quant", WEIGHT_QUANTS)
        _check_choice(self, "act_quant", ACT_QUANTS)
        if self.out_act_quant is not None:
            _check_choice(self, "out_act_quant", ACT_QUANTS)
        _check_choice(self, "ste", STE_KINDS)
        _check_choice(self, "layout", LAYOUTS)
        _check_choice(self, "lr_schedule", SCHEDULES)
        for field in ("act_bits", "out_act_bits"):
            bits = getattr(self, field)
            if bits is not None and not 2 <= bits <= 16:
                raise ConfigError(f"recipe.{field}={bits}: activation bits must be between 2 and 16")
        if self.weight_groups < 1:
            raise ConfigError(f"recipe.weight_groups={self.weight_groups}: must be >= 1")
        if not 0.0 < self.o_proj_topk <= 1.0:
            raise ConfigError(f"recipe.o_proj_topk={self.o_proj_topk}: must be in (0, 1]")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"recipe {self.name!r}: lr must be > 0 and weight_decay >= 0")

    @property
    def quantized(self) -> bool:
        return self.weight_quant != "none" or self.act_quant != "none"

    def for_inference(self) -> "Recipe":
        """The form used for validation, evaluation and generation: activation scales per token.

        BitNet (2023) quantises activations per tensor in training and per token at inference; a per-tensor scale
        over a batch lets a token's output depend on later tokens (and on the other sequences of the batch), so a
        validation loss would not be causal. Recipes already per token are returned unchanged."""
        return self if self.act_per_token else dataclasses.replace(self, act_per_token=True)

    def act_for(self, role: str) -> tuple[str, int]:
        """(quantiser, bits) for the input of a linear layer of the given role: 'in' or 'out' (o_proj, down_proj)."""
        if role == "out":
            quant = self.out_act_quant if self.out_act_quant is not None else self.act_quant
            bits = self.out_act_bits if self.out_act_bits is not None else self.act_bits
            return quant, bits
        return self.act_quant, self.act_bits


def _check_choice(recipe: Recipe, field: str, choices: tuple[str, ...]) -> None:
    value = getattr(recipe, field)
    if value not in choices:
        raise ConfigError(f"recipe.{field}={value!r} is not one of {', '.join(choices)}")


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    _REGISTRY[recipe.name] = recipe
    return recipe


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str | Recipe) -> Recipe:
    """The registered recipe called `name` (a Recipe passes through)."""
    if isinstance(name, Recipe):
        return name
    if name not in _REGISTRY:
        raise ConfigError(f"unknown recipe {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def variant(name: str, **changes) -> Recipe:
    """A registered recipe with some fields changed (the name is kept: it names the base recipe)."""
    base = get(name)
    unknown = set(changes) - {f.name for f in dataclasses.fields(Recipe)}
    if unknown:
        raise ConfigError(f"unknown recipe field(s) {', '.join(sorted(unknown))}; "
                          f"valid: {', '.join(f.name for f in dataclasses.fields(Recipe))}")
    return dataclasses.replace(base, **changes)


register(Recipe(
    name="fp16",
    description="full-precision baseline (LLaMA-style); matmuls in bf16 on GPU, fp32 on CPU",
    layout="llama", lr=2e-3, lr_schedule="cosine", weight_decay=0.1,
))
register(Recipe(
    name="bitnet",
    description="BitNet (Wang et al. 2023): binary weights sign(W - mean W) * mean|W|, 8-bit absmax activations "
                "per tensor in training, norm inside every BitLinear (SubLN)",
    weight_quant="binary_sign", act_quant="absmax", act_bits=8, act_per_token=False,
    layout="faq", lr=4e-3, lr_schedule="linear", weight_decay=0.01,
))
register(Recipe(
    name="bitnet_b158",
    description="BitNet b1.58 (Ma et al. 2024): ternary absmean weights, 8-bit absmax activations per token, "
                "RMSNorm inside every BitLinear (the FAQ's layout), two-stage LR and weight decay",
    weight_quant="ternary_absmean", act_quant="absmax", act_bits=8, act_per_token=True,
    layout="faq", lr=3e-3, lr_schedule="two_stage", lr_stage2=2e-3, weight_decay=0.1, weight_decay_stage2=0.0,
))
register(dataclasses.replace(
    get("bitnet_b158"),
    name="bitnet_b158_median",
    description="BitNet b1.58 Reloaded (Nielsen et al. 2024): ternary weights scaled by median|W| instead of mean|W|",
    weight_quant="ternary_absmedian",
))
register(Recipe(
    name="bitnet_a48",
    description="BitNet a4.8 (Wang et al. 2024): ternary weights; 4-bit absmean inputs to q/k/v and gate/up; "
                "o_proj input top-50% sparsified then 8-bit; down_proj input 8-bit; ReLU^2-GLU with sub-norms",
    weight_quant="ternary_absmean", act_quant="absmean", act_bits=4,
    out_act_quant="absmax", out_act_bits=8, o_proj_topk=0.5,
    layout="hf_bitnet", lr=3e-3, lr_schedule="two_stage", lr_stage2=2e-3, weight_decay=0.1, weight_decay_stage2=0.0,
))
