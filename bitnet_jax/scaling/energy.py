"""Inference arithmetic energy (BitNet 2023, Table 2; Horowitz 2014), the x-axis of the paper's inference-optimal
scaling law, and the weight memory of a model packed vs in bfloat16.

Operations counted per token at context length T (`op_counts`):
- every linear layer (n inputs, p outputs): full precision -> n p multiplies and (n - 1) p adds in the float
  precision (fp16, or fp32 for the papers' 32-bit rows); a layer with binary or ternary weights -> (n - 1) p INT8 adds
  and (n + p) float multiplies: the scaling of the n inputs (quantisation, gamma/Qb) and of the p outputs (beta),
  the paper's `E_mul = (m p + m n) e_mul` with m = 1;
- the LM head in its own precision (full unless the recipe quantises it);
- the attention products QK^T and AV in float for every recipe: 2 T d_attn multiplies and 2 (T - 1) d_attn adds per
  layer, every token attending over the whole context T (no causal discount), as the paper's numbers imply.
Not counted: norms, softmax, rotary embeddings, activation functions, the absmax searches, the embedding lookup.

Agreement with the BitNet paper's Table 1 (J to process 512 tokens = 512 x the per-token energy at T = 512, LM head
excluded; `sequence_energy`): the FP16 and FP32 rows at 7nm and 45nm for 6.7B, 13B and 30B are reproduced to their
printed precision (tests/scaling/test_energy.py). The paper does not state what its BitNet rows count; with the rules
above (INT8 adds, scaling multiplies, float attention products) they come out within one unit of the last printed
digit: 6.7B 7nm MUL 0.024 vs 0.02, ADD 0.034 vs 0.04; 45nm MUL 0.077 vs 0.08, ADD 0.127 vs 0.13. Nearly all of a
BitNet model's multiply energy is the attention products here, which the paper's per-layer formula leaves implicit.
The b1.58 paper's "71.4x less matmul arithmetic energy at 7nm" is the per-multiply-accumulate ratio
(FP16 add + FP16 mul) / INT8 add = (0.16 + 0.34) / 0.007 of the linear layers alone, without the scaling multiplies.
"""

from __future__ import annotations

from bitnet_jax.model import ModelConfig, param_counts
from bitnet_jax.recipes import Recipe
from bitnet_jax.recipes import get as get_recipe

# picojoules per operation: (add, multiply)
ENERGY_PJ = {
    "45nm": {"fp32": (0.9, 3.7), "fp16": (0.4, 1.1), "int8": (0.03, 0.2)},
    "7nm": {"fp32": (0.38, 1.31), "fp16": (0.16, 0.34), "int8": (0.007, 0.07)},
}
FLOAT_PRECISIONS = ("fp16", "fp32")
COMPONENTS = ("linear", "lm_head", "attention")


def linear_shapes(cfg: ModelConfig) -> list[tuple[int, int, int]]:
    """(n_in, n_out, count) of the linear layers of one forward pass, the LM head excluded."""
    d, f, hd = cfg.d_model, cfg.d_ff, cfg.head_dim
    per_layer = [(d, cfg.n_heads * hd, 1), (d, cfg.kv_heads * hd, 2), (cfg.n_heads * hd, d, 1), (d, f, 2), (f, d, 1)]
    return [(n, p, c * cfg.n_layers) for n, p, c in per_layer]


def op_counts(cfg: ModelConfig, recipe: str | Recipe, *, context: int | None = None) -> dict[str, dict[str, float]]:
    """Arithmetic operations per token at context length `context` (default cfg.seq_len), per component
    ('linear', 'lm_head', 'attention'), each {'float_add', 'float_mul', 'int8_add'}; see the module docstring."""
    recipe = get_recipe(recipe)
    cfg = cfg.resolve(recipe)
    t = context or cfg.seq_len
    counts = {c: {"float_add": 0.0, "float_mul": 0.0, "int8_add": 0.0} for c in COMPONENTS}

    def add_linear(component: str, n: int, p: int, count: int, quantized: bool) -> None:
        if quantized:
            counts[component]["int8_add"] += count * (n - 1) * p
            counts[component]["float_mul"] += count * (n + p)
        else:
            counts[component]["float_add"] += count * (n - 1) * p
            counts[component]["float_mul"] += count * n * p

    quantized = recipe.weight_quant != "none"
    for n, p, count in linear_shapes(cfg):
        add_linear("linear", n, p, count, quantized)
    add_linear("lm_head", cfg.d_model, cfg.vocab_size, 1, quantized and recipe.quantize_lm_head)
    width = cfg.n_heads * cfg.head_dim
    counts["attention"]["float_mul"] = cfg.n_layers * 2 * t * width
    counts["attention"]["float_add"] = cfg.n_layers * 2 * (t - 1) * width
    return counts


def energy_of(counts: dict[str, float], *, node: str = "7nm", precision: str = "fp16") -> dict[str, float]:
    """Joules {'add', 'mul', 'total'} of one component's op counts at a process node, floats in `precision`."""
    if node not in ENERGY_PJ:
        raise ValueError(f"unknown process node {node!r}; available: {', '.join(ENERGY_PJ)}")
    if precision not in FLOAT_PRECISIONS:
        raise ValueError(f"unknown float precision {precision!r}; available: {', '.join(FLOAT_PRECISIONS)}")
    table = ENERGY_PJ[node]
    add = (counts["float_add"] * table[precision][0] + counts["int8_add"] * table["int8"][0]) * 1e-12
    mul = counts["float_mul"] * table[precision][1] * 1e-12
    return {"add": add, "mul": mul, "total": add + mul}


def inference_energy(cfg: ModelConfig, recipe: str | Recipe, *, node: str = "7nm", context: int | None = None,
                     include_attention: bool = True, include_lm_head: bool = True,
                     precision: str = "fp16") -> dict[str, float]:
    """Arithmetic energy in joules per token at context length `context`: {'add', 'mul', 'total'}."""
    components = [c for c, keep in zip(COMPONENTS, (True, include_lm_head, include_attention)) if keep]
    counts = op_counts(cfg, recipe, context=context)
    parts = [energy_of(counts[c], node=node, precision=precision) for c in components]
    return {k: sum(p[k] for p in parts) for k in ("add", "mul", "total")}


def sequence_energy(cfg: ModelConfig, recipe: str | Recipe, tokens: int = 512, *, node: str = "7nm",
                    precision: str = "fp16", include_lm_head: bool = False) -> dict[str, float]:
    """Joules to process `tokens` input tokens, the BitNet paper's Table 1 quantity: tokens x the per-token energy at
    context `tokens`, the Transformer layers only (the table leaves the LM head out; include_lm_head adds it)."""
    per_token = inference_energy(cfg, recipe, node=node, context=tokens, include_lm_head=include_lm_head,
                                 precision=precision)
    return {k: tokens * v for k, v in per_token.items()}


def memory_footprint(cfg: ModelConfig, recipe: str | Recipe):
    """Weight memory from the architecture alone (any size, nothing built): an infer.packed.MemoryReport of the
    quantised linear layers packed (2-bit ternary / 1-bit binary codes in Hugging Face's layout, sized by
    bitnet_jax.infer.pack, plus one float32 scale per group) vs bfloat16, and the whole model with every other
    parameter in bfloat16."""
    import numpy as np

    from bitnet_jax.infer.pack import pack_binary, pack_ternary
    from bitnet_jax.infer.packed import MemoryReport, check_packable

    recipe = get_recipe(recipe)
    check_packable(recipe)
    cfg = cfg.resolve(recipe)
    pack = pack_binary if recipe.weight_quant == "binary_sign" else pack_ternary
    code = 1 if recipe.weight_quant == "binary_sign" else 0
    layers = linear_shapes(cfg) + ([(cfg.d_model, cfg.vocab_size, 1)] if recipe.quantize_lm_head else [])
    weights = packed = 0
    for n, p, count in layers:
        packed_rows = pack(np.full((p, 1), code, np.int8)).shape[0]  # the packed layout of one input column
        weights += count * n * p
        packed += count * (packed_rows * n + 4 * recipe.weight_groups)
    total = param_counts(cfg, recipe)["total"]
    return MemoryReport(weights, packed, total - weights, total)
