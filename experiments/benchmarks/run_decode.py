"""Run `bitnet-jax bench decode` on a machine whose Python may lack the training dependencies (flax, optax, ...).

The decode benchmark needs only jax and numpy. If `import bitnet_jax` fails (the package __init__ imports the
training stack), the two packages are stood up as bare namespaces so that only bitnet_jax/infer/{kernels,
bench_decode}.py and bitnet_jax/errors.py load. Exit codes: 0 ok, 1 some kernel configuration failed to compile,
2 the kernel disagreed with the reference (or bad arguments).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _import_bench():
    sys.path.insert(0, str(ROOT))
    try:
        from bitnet_jax.infer import bench_decode
    except ImportError as e:
        print(f"import bitnet_jax failed ({e}); loading the decode benchmark alone", file=sys.stderr)
        for name in [m for m in sys.modules if m == "bitnet_jax" or m.startswith("bitnet_jax.")]:
            del sys.modules[name]
        for name, path in (("bitnet_jax", ROOT / "bitnet_jax"), ("bitnet_jax.infer", ROOT / "bitnet_jax" / "infer")):
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module
        from bitnet_jax.infer import bench_decode
    return bench_decode


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shape", default="3b")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--variants")
    p.add_argument("--tune", action="store_true")
    p.add_argument("--tune-budget", type=float, default=240.0, help="seconds of tile search per linear shape")
    p.add_argument("--reps", type=int)
    p.add_argument("--json", required=True)
    args = p.parse_args()
    bench_decode = _import_bench()
    from bitnet_jax.errors import UserError

    try:
        report = bench_decode.run(args.shape, args.batch, variants=args.variants.split(",") if args.variants else None,
                                  tune=args.tune, reps=args.reps, tune_budget_s=args.tune_budget,
                                  partial_json=args.json)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bench_decode.save(report, args.json)
    print(bench_decode.table(report))
    if report["config_errors"]:
        print(f"{report['config_errors']} kernel configuration(s) failed to compile or run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
