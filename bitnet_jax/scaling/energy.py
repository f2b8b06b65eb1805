"""Inference arithmetic energy per token (BitNet 2023, Table 2; Horowitz 2014), the x-axis of the paper's
inference-optimal scaling law.

What is counted, per generated token at context length T:
- every linear layer (n inputs, p outputs): full precision -> n p FP16 multiplies and (n - 1) p FP16 adds;
  a layer with binary or ternary weights -> (n - 1) p INT8 adds and (n + p) FP16 multiplies (BitNet's scaling by
  beta and gamma/Qb; the paper's `E_mul = (m p + m n) e_mul` with m = 1);
- the LM head in its own precision (full unless the recipe quantises it);
- the attention products QK^T and AV in FP16 for every recipe: 2 T d multiplies and 2 (T - 1) d adds per layer
  (set include_attention=False to leave them out).
Not counted: norms, softmax, activation quantisation, the embedding lookup. With these rules the FP16 entries of the
paper's Table 1 for the 6.7B model are reproduced (tests/scaling/test_energy.py).
"""

from __future__ import annotations

from bitnet_jax.model import ModelConfig
from bitnet_jax.recipes import Recipe, get as get_recipe

# picojoules per operation: (add, multiply)
ENERGY_PJ = {
    "45nm": {"fp32": (0.9, 3.7), "fp16": (0.4, 1.1), "int8": (0.03, 0.2)},
    "7nm": {"fp32": (0.38, 1.31), "fp16": (0.16, 0.34), "int8": (0.007, 0.07)},
}


def linear_shapes(cfg: ModelConfig) -> list[tuple[int, int, int]]:
    """(n_in, n_out, count) of the linear layers of one forward pass, the LM head excluded."""
    d, f, hd = cfg.d_model, cfg.d_ff, cfg.head_dim
    per_layer = [(d, cfg.n_heads * hd, 1), (d, cfg.kv_heads * hd, 2), (cfg.n_heads * hd, d, 1), (d, f, 2), (f, d, 1)]
    return [(n, p, c * cfg.n_layers) for n, p, c in per_layer]


def inference_energy(cfg: ModelConfig, recipe: str | Recipe, *, node: str = "7nm", context: int | None = None,
                     include_attention: bool = True) -> dict[str, float]:
    """Arithmetic energy in joules per token: {'add', 'mul', 'total'}."""
    if node not in ENERGY_PJ:
        raise ValueError(f"unknown process node {node!r}; available: {', '.join(ENERGY_PJ)}")
    recipe = get_recipe(recipe)
    table = ENERGY_PJ[node]
    t = context or cfg.seq_len
    adds = {"fp16": 0.0, "int8": 0.0}
    muls = {"fp16": 0.0, "int8": 0.0}
    quantized = recipe.weight_quant != "none"
    layers = linear_shapes(cfg) + [(cfg.d_model, cfg.vocab_size, 1)]
    for i, (n, p, count) in enumerate(layers):
        head = i == len(layers) - 1
        if quantized and (not head or recipe.quantize_lm_head):
            adds["int8"] += count * (n - 1) * p
            muls["fp16"] += count * (n + p)
        else:
            adds["fp16"] += count * (n - 1) * p
            muls["fp16"] += count * n * p
    if include_attention:
        width = cfg.n_heads * cfg.head_dim
        muls["fp16"] += cfg.n_layers * 2 * t * width
        adds["fp16"] += cfg.n_layers * 2 * (t - 1) * width
    add_j = sum(adds[k] * table[k][0] for k in adds) * 1e-12
    mul_j = sum(muls[k] * table[k][1] for k in muls) * 1e-12
    return {"add": add_j, "mul": mul_j, "total": add_j + mul_j}
