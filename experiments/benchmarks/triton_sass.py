"""Read the W2A8 kernel's machine code without a GPU: registers, spills and the instruction mix per configuration.

The Pallas kernel is lowered to Triton IR for CUDA on this machine (jax cross-lowering), compiled for sm_90 by a
pip-installed Triton (which bundles ptxas and cuobjdump), and the SASS is summarised: registers, stack and local
memory (spills), and the most frequent instructions (IDP.4A = dp4a, LDG.E.128 = 16-byte loads, BAR.SYNC = barriers).

    pip install --target /tmp/triton_pip --no-deps triton
    python experiments/benchmarks/triton_sass.py --triton-path /tmp/triton_pip --shape 3b --batch 1

The Triton IR comes from jax's private lowering entry point (jax._src.pallas.triton.lowering), so this is a
developer tool: if jax moves it, the tool stops with an error. The pip Triton's IR syntax can differ from the one
inside jaxlib; the known difference (evictionPolicy on loads) is stripped, which drops that cache hint only.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def triton_ir(out: int, n_in: int, batch: int, config) -> str:
    """The Triton IR (text) of the kernel for one shape and config, by cross-lowering for CUDA."""
    import jax
    import jax.numpy as jnp
    from jax import export
    from jax._src.pallas.triton import lowering, pallas_call_registration

    from bitnet_jax.infer import kernels

    captured = []
    original = lowering.lower_jaxpr_to_triton_module

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        captured.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    pallas_call_registration.lowering.lower_jaxpr_to_triton_module = spy
    try:
        fn = jax.jit(lambda x, s, w: kernels.w2a8_gemv(x, s, w, 0.5, out, interpret=False, config=config))
        args = (jax.ShapeDtypeStruct((batch, n_in), jnp.int8), jax.ShapeDtypeStruct((batch,), jnp.float32),
                jax.ShapeDtypeStruct((-(-out // 4), -(-n_in // 4)), jnp.int32))
        export.export(fn, platforms=["cuda"], disabled_checks=[
            export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")])(*args)
    finally:
        pallas_call_registration.lowering.lower_jaxpr_to_triton_module = original
    return captured[-1]


def sass_summary(ir_text: str, num_warps: int, num_stages: int, workdir: str) -> str:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import compile as triton_compile

    src = os.path.join(workdir, "kernel.ttir")
    Path(src).write_text(ir_text.replace(" evictionPolicy = evict_first", ""))
    compiled = triton_compile(src, target=GPUTarget("cuda", 90, 32),
                              options={"num_warps": num_warps, "num_stages": num_stages})
    cubin = os.path.join(workdir, "kernel.cubin")
    Path(cubin).write_bytes(compiled.asm["cubin"])
    tools = Path(sys.modules["triton"].__file__).parent / "backends" / "nvidia" / "bin"
    usage = subprocess.run([tools / "cuobjdump", "-res-usage", cubin], capture_output=True, text=True, check=True).stdout
    sass = subprocess.run([tools / "cuobjdump", "-sass", cubin], capture_output=True, text=True, check=True).stdout
    fields = {k: re.search(rf"{k}:(\d+)", usage) for k in ("REG", "STACK", "LOCAL")}
    ops = collections.Counter(m.group(1) for m in re.finditer(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_.]+)",
                                                              sass))
    head = " ".join(f"{k.lower()} {m.group(1) if m else '?'}" for k, m in fields.items())
    return head + " | " + ", ".join(f"{op} {n}" for op, n in ops.most_common(12))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--triton-path", help="directory holding a pip-installed triton package")
    p.add_argument("--shape", default="3b")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tune", action="store_true", help="every configuration of the benchmark's tune grid")
    args = p.parse_args()
    if args.triton_path:
        sys.path.insert(0, args.triton_path)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    from bitnet_jax.infer import bench_decode, kernels

    with tempfile.TemporaryDirectory() as workdir:
        for name, (out, n_in, _) in bench_decode.linear_shapes(args.shape).items():
            for config in bench_decode.tune_configs(out, n_in, args.batch, list(kernels.VARIANTS), args.tune):
                try:
                    summary = sass_summary(triton_ir(out, n_in, args.batch, config), config.num_warps,
                                           config.num_stages, workdir)
                except Exception as e:  # noqa: BLE001  (report the config that fails and go on)
                    summary = f"FAILED {type(e).__name__}: {str(e)[:200]}"
                print(f"{name} {out}x{n_in} b{args.batch} {tuple(config)}: {summary}", flush=True)


if __name__ == "__main__":
    main()
