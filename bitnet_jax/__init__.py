"""bitnet_jax: scaling-law studies of 1-bit (BitNet) and 1.58-bit (BitNet b1.58) transformers in JAX/Flax NNX."""

from bitnet_jax import config, data, eval, infer, layers, model, quant, recipes, scaling, sweep, train
from bitnet_jax.layers import BitLinear, quantize

__version__ = "0.1.0"
__all__ = ["config", "data", "eval", "infer", "layers", "model", "quant", "recipes", "scaling", "sweep", "train", "BitLinear",
           "quantize"]
