"""A candidate for the FAQ layout's cost (experiments/benchmarks/quant_cost.md), not yet measured on a GPU.

In the FAQ layout q, k and v each normalise the same block input with their own RMSNorm, and so do gate and up: five
norms over two inputs, each with its own backward pass. The RMSNorm of x with scale s is x r s, r = rsqrt(mean x^2 +
eps), and its backward, dx = r (g s - x r^2 mean(x g s)), is linear in g s. So siblings can share r in the forward
and sum their g_j s_j before one backward pass: the same function and gradients, with 2 norm passes each way instead
of 5. `install()` swaps this into `Attention._project` and `GLU.__call__` (for layers with a norm inside; others are
untouched); `uninstall()` puts the originals back. `check()` compares loss and gradients with the separate norms in
float32 on a tiny model.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax.layers import GLU, Attention, quantize_activation, quantize_weight, rope, topk_sparsify


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def shared_rms_norm(x, scales, eps, dtype):
    """(x r s_j for each scale s_j), in `dtype`, with one statistic r and one summed backward pass."""
    return _forward(x, scales, eps, dtype)[0]


def _forward(x, scales, eps, dtype):
    xf = x.astype(jnp.float32)
    r = jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return tuple((xf * (r * s.astype(jnp.float32))).astype(dtype) for s in scales), r


def _fwd(x, scales, eps, dtype):
    outs, r = _forward(x, scales, eps, dtype)
    return outs, (x, scales, r)


def _bwd(eps, dtype, residuals, grads):
    x, scales, r = residuals
    xf = x.astype(jnp.float32)
    gs = sum(g.astype(jnp.float32) * s.astype(jnp.float32) for g, s in zip(grads, scales))
    dx = r * (gs - xf * (r * r) * jnp.mean(xf * gs, axis=-1, keepdims=True))
    lead = tuple(range(x.ndim - 1))
    dscales = tuple(jnp.sum(g.astype(jnp.float32) * xf * r, axis=lead).astype(s.dtype) for g, s in zip(grads, scales))
    return dx.astype(x.dtype), dscales


shared_rms_norm.defvjp(_fwd, _bwd)


def _normed(x, layers):
    norm = layers[0].norm
    dtype = layers[0].dtype or jnp.result_type(x, norm.scale[...])
    return shared_rms_norm(x, tuple(layer.norm.scale[...] for layer in layers), norm.epsilon, dtype)


def _linear_after_norm(layer, x):
    """BitLinear.__call__ from just after its norm."""
    x = quantize_activation(topk_sparsify(x, layer.topk), layer.recipe, layer.role)
    w = quantize_weight(layer.kernel[...], layer.recipe)
    dtype = layer.dtype or jnp.result_type(x, w)
    y = jnp.dot(x.astype(dtype), w.astype(dtype))
    return y if layer.bias is None else y + layer.bias[...].astype(dtype)


ORIGINAL = {"project": Attention._project, "glu": GLU.__call__}


def _project(self, x, positions):
    if self.q_proj.norm is None:
        return ORIGINAL["project"](self, x, positions)
    b, t, _ = x.shape
    layers = (self.q_proj, self.k_proj, self.v_proj)
    q, k, v = (_linear_after_norm(layer, n) for layer, n in zip(layers, _normed(x, layers)))
    q = q.reshape(b, t, self.n_heads, self.head_dim)
    k = k.reshape(b, t, self.n_kv_heads, self.head_dim)
    v = v.reshape(b, t, self.n_kv_heads, self.head_dim)
    return rope(q, positions, self.rope_theta), rope(k, positions, self.rope_theta), v


def _glu(self, x):
    if self.gate_proj.norm is None:
        return ORIGINAL["glu"](self, x)
    layers = (self.gate_proj, self.up_proj)
    gate, up = (_linear_after_norm(layer, n) for layer, n in zip(layers, _normed(x, layers)))
    act = jax.nn.silu(gate) if self.kind == "swiglu" else jnp.square(jax.nn.relu(gate))
    h = act * up
    if self.sub_norm is not None:
        h = self.sub_norm(h)
    return self.down_proj(h)


def install() -> None:
    Attention._project, GLU.__call__ = _project, _glu


def uninstall() -> None:
    Attention._project, GLU.__call__ = ORIGINAL["project"], ORIGINAL["glu"]


def check() -> float:
    """Largest relative difference of loss and gradients, shared vs separate norms, b1.58 FAQ layout, float32."""
    from bitnet_jax import recipes
    from bitnet_jax.config import RunConfig, TrainConfig
    from bitnet_jax.train.bench import PRESETS
    from bitnet_jax.train.state import build_training
    from bitnet_jax.train.step import next_token_loss

    cfg = RunConfig(recipe=recipes.get("bitnet_b158"), model=dataclasses.replace(PRESETS["tiny"], layout="faq"),
                    train=TrainConfig(compute_dtype="float32"))
    training = build_training(cfg)
    params, rest = training.state["params"], training.state["rest"]
    # scales away from 1, so that sharing r but not s is exercised
    params = [p * (1.0 + 0.3 * np.sin(np.arange(p.size)).reshape(p.shape)) if p.ndim == 1 else p for p in params]
    batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (4, 65)), jnp.int32)
    loss_grad = jax.jit(jax.value_and_grad(lambda p: next_token_loss(training.model, p, rest, batch)))
    try:
        install()
        shared = loss_grad(params)
    finally:
        uninstall()
    separate = jax.jit(jax.value_and_grad(lambda p: next_token_loss(training.model, p, rest, batch)))(params)
    worst = abs(float(shared[0]) - float(separate[0])) / abs(float(separate[0]))
    for a, b in zip(shared[1], separate[1]):
        worst = max(worst, float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12)))
    return worst


if __name__ == "__main__":
    print(f"shared vs separate norms, largest relative difference in loss and gradients: {check():.2e}")
