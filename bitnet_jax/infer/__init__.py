"""Inference: packed ternary/binary weights, integer kernels, generation, Hugging Face export/import."""

from bitnet_jax.infer.hf import export_hf, import_hf, import_hf_run
from bitnet_jax.infer.integer import InferenceModel, IntegerLinear, load, to_integer
from bitnet_jax.infer.pack import pack_binary, pack_ternary, unpack_binary, unpack_ternary
from bitnet_jax.infer.packed import MemoryReport, load_packed, memory_report, save_packed

__all__ = ["pack_binary", "pack_ternary", "unpack_binary", "unpack_ternary", "InferenceModel", "IntegerLinear",
           "load", "to_integer", "export_hf", "import_hf", "import_hf_run", "MemoryReport", "load_packed",
           "memory_report", "save_packed"]
