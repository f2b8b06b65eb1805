"""bitnet_jax: scaling-law studies of 1-bit (BitNet) and 1.58-bit (BitNet b1.58) transformers in JAX/Flax NNX.

Subpackages load on first use (`bj.train`, `bj.sweep`, ...), so `import bitnet_jax.quant` pulls in jax alone, not
orbax, TFDS or matplotlib, and a sweep's child process starts quickly.
"""

import importlib

__version__ = "0.1.0"
_SUBMODULES = ("config", "data", "eval", "infer", "layers", "model", "quant", "recipes", "scaling", "sweep", "train")
_FROM_LAYERS = ("BitLinear", "quantize")
__all__ = [*_SUBMODULES, *_FROM_LAYERS]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"bitnet_jax.{name}")
    if name in _FROM_LAYERS:
        return getattr(importlib.import_module("bitnet_jax.layers"), name)
    raise AttributeError(f"module 'bitnet_jax' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
