"""GPU kernels of one decode step, counted without a GPU: XLA compiles `generate_tokens`' step for an NVIDIA H200
(sm_90) from a target description ("deviceless" compilation), and its kernel sequence is read from the dump.

    python3.11 -m venv /tmp/aot && /tmp/aot/bin/pip install -q "jax[cuda12]==$(python -c 'import jax; print(jax.__version__)')" \
        flax optax orbax-checkpoint ml_dtypes safetensors pyyaml tqdm sentencepiece
    JAX_PLATFORMS=cpu PYTHONPATH=$PWD /tmp/aot/bin/python experiments/benchmarks/kernel_count.py [SHAPE ...] [--out DIR]

The CUDA plugin registers its compiler even with JAX_PLATFORMS=cpu (it then skips the driver check), so no GPU or
driver is needed; the CUDA wheels (ptxas) come with the plugin. Per shape (default 3b and 700m, `bench generate`'s
models with random weights: batch 1, a 96-slot cache) and variant (bf16, packed, packed_xla_quant), it prints the
kernels a step launches, how many of them XLA puts in command buffers (CUDA graphs), and the kernels of one
transformer block (the whole model's count minus a 1-block model's, over the other blocks). DIR (default /tmp/kernel_count) gets each
step's kernel sequence and counts.json.

What this cannot tell: time. XLA cannot autotune without a GPU, so its GEMM choices (Triton or cuBLAS, split-K) may
differ from a compile on the device; the Pallas W2A8 kernels and XLA's fusions are what the device would run.
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402
from jax.experimental import topologies  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from bitnet_jax.infer import bench_generate, generate, integer, kernels  # noqa: E402

# stream_executor's GpuTargetConfigProto of an H200 (an H100's with 141 GB and 4.8 TB/s): what XLA would query
# from the device
H200 = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 4800000000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 150754820096 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 } registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 9 }
device_description_str: "NVIDIA H200"
"""
VARIANTS = ("bf16", "packed", "packed_xla_quant")


def abstract_packed_words(codes):
    """integer._packed_words packs concrete codes with numpy; under nnx.eval_shape only the shape is wanted."""
    n_in, out = codes.shape
    return jnp.zeros((-(-out // 4), -(-n_in // 4)), jnp.int32)


def lower_step(variant: str, shape: str, n_layers: int | None, sharding):
    """The jitted decode step of `generate_tokens` (greedy, batch 1, one new token) for abstract weights."""
    cfg = bench_generate.model_config(shape, 96)
    if n_layers is not None:
        cfg = type(cfg)(**{**cfg.__dict__, "n_layers": n_layers})
    model = nnx.eval_shape(lambda: bench_generate.build(variant, cfg).model)
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)
    spec = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)  # noqa: E731
    cache = jax.tree.map(spec, jax.eval_shape(lambda: model.init_cache(1, 96, model.dtype or jnp.float32)))
    key = spec(jax.eval_shape(lambda: jax.random.key(0)))
    i32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.int32, sharding=sharding)  # noqa: E731
    step = generate._jitted_step(graphdef, treedef, generate.Sampling())
    return step.lower([spec(x) for x in leaves], i32(1, 1), cache, i32(1), i32(), key, i32())


def kernel_sequence(lowered, dump: Path) -> list[str]:
    """Compile with a dump and return XLA's thunk sequence after its passes (one line per thunk; kernels inside a
    command buffer are indented under it)."""
    shutil.rmtree(dump, ignore_errors=True)
    lowered.compile(compiler_options={"xla_dump_to": str(dump)})
    [path] = dump.glob("*thunk_sequence_after_thunk_passes.txt")
    return [line.rstrip() for line in path.read_text().splitlines() if re.match(r"^\s*\d+: k\w+", line)]


def summarise(sequence: list[str]) -> dict:
    kinds = collections.Counter(re.match(r"^\s*\d+: (k\w+)", line).group(1) for line in sequence)
    graphs = kinds.pop("kCommandBuffer", 0)
    launches = sum(kinds.values())
    in_graphs = sum(1 for line in sequence if line.startswith(" ") and "kCommandBuffer" not in line)
    return {"launches": launches, "command_buffers": graphs, "launches_in_command_buffers": in_graphs,
            "by_kind": dict(kinds)}


def kernel_names(sequence: list[str]) -> list[str]:
    """`name grid [x, y, z]` of each launch, fusion numbers dropped."""
    out = []
    for line in sequence:
        m = re.match(r"^\s*\d+: (k\w+) \[[^]]*\] (\S+)(?: grid: (\[[^]]*\]))?", line)
        if m and m.group(1) != "kCommandBuffer":
            name = re.sub(r"(_\d+)+$", "", m.group(2))
            out.append(f"{name} {m.group(3) or ''}".strip())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shapes", nargs="*", default=["3b", "700m"])
    parser.add_argument("--out", default="/tmp/kernel_count")
    args = parser.parse_args()
    integer._packed_words = abstract_packed_words
    kernels.w2a8_gemv = functools.partial(kernels.w2a8_gemv, interpret=False)  # the GPU path, as on a GPU
    topology = topologies.get_topology_desc(platform="cuda", topology="1x1x1", target_config=H200)
    sharding = NamedSharding(topologies.make_mesh(topology, (1,), ("x",)), PartitionSpec())
    out, rows = Path(args.out), []
    for shape in args.shapes:
        for variant in VARIANTS:
            seqs = {n: kernel_sequence(lower_step(variant, shape, n, sharding), out / f"dump_{shape}_{variant}_{n}")
                    for n in (None, 1)}
            blocks = bench_generate.model_config(shape, 96).n_layers
            row = {"shape": shape, "variant": variant, "blocks": blocks, **summarise(seqs[None])}
            row["per_block"] = (row["launches"] - summarise(seqs[1])["launches"]) / (blocks - 1)
            row["one_block_model"] = kernel_names(seqs[1])
            (out / f"{shape}_{variant}_sequence.txt").write_text("\n".join(seqs[None]) + "\n")
            rows.append(row)
            print(f"{shape} {variant}: {row['launches']} launches a step ({row['per_block']:.1f} a block), "
                  f"{row['launches_in_command_buffers']} of them in {row['command_buffers']} command buffer(s); "
                  f"{row['by_kind']}", flush=True)
    (out / "counts.json").write_text(json.dumps(rows, indent=1))
    print(f"kernel sequences and counts.json in {out}")


if __name__ == "__main__":
    main()
