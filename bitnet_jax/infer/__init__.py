"""Inference: packed ternary/binary weights, integer kernels, generation, Hugging Face export/import."""

from bitnet_jax.infer.pack import pack_binary, pack_ternary, unpack_binary, unpack_ternary

__all__ = ["pack_binary", "pack_ternary", "unpack_binary", "unpack_ternary"]
