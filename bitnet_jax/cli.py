"""The `bitnet-jax` command: train | sweep | results | fit | report | bench. Bad input ends with one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bitnet_jax.errors import UserError

MAIN_HELP = """BitNet / BitNet b1.58 quantisation-aware training and scaling-law studies in JAX.

examples:
  bitnet-jax train                                   # small bitnet_b158 model on the embedded default corpus
  bitnet-jax train recipe=fp16 train.steps=500 --out runs/fp16
  bitnet-jax train --out runs/fp16 --resume          # continue a killed run from its last checkpoint
  bitnet-jax sweep sweeps/quickstart.yaml            # 3 recipes x 4 sizes, scaling-law fits, plots, report
  bitnet-jax results runs/quickstart                 # the results table of a sweep
  bitnet-jax bench --preset 125m                     # GPU step time, tokens/s and MFU, fp16 vs bitnet_b158
"""


def _split_args(items: list[str], parser: argparse.ArgumentParser) -> tuple[str | None, list[str]]:
    """Positional arguments: at most one CONFIG.yaml, the rest section.key=value overrides."""
    paths = [a for a in items if "=" not in a]
    if len(paths) > 1:
        parser.error(f"expected at most one CONFIG.yaml, got {' '.join(paths)} (overrides look like train.steps=30)")
    return (paths[0] if paths else None), [a for a in items if "=" in a]


def cmd_train(args, parser) -> int:
    from bitnet_jax import config, train

    path, overrides = _split_args(args.args, parser)
    out = args.out
    if path is None and args.resume and out and (Path(out) / "config.yaml").exists():
        path = str(Path(out) / "config.yaml")  # `--resume` alone continues the run as it was configured
    cfg = config.load(path, overrides)
    if out is None:
        if args.resume:
            parser.error("--resume needs --out DIR naming the run to continue")
        out = f"runs/{cfg.recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = train.run(cfg, out, resume=args.resume)
    s = result.summary
    print(f"{s['status']}: {out}  step {s['step']}/{s['steps']}  train loss {_fmt(s['final_train_loss'])}  "
          f"val loss {_fmt(s['final_val_loss'])}  val bits/byte {_fmt(s['val_bits_per_byte'])} "
          f"(unigram {_fmt(s['unigram_bits_per_byte'])})  {_fmt(s['tokens_per_sec'], '.0f')} tokens/s  "
          f"{_fmt(s['wall_s'], '.1f')} s")
    return 0 if result.status == "finished" else 1


def cmd_bench(args, parser) -> int:
    from bitnet_jax.train import bench

    rows = bench.run(preset=args.preset, recipe_names=args.recipes.split(","), batch_size=args.batch,
                     seq_len=args.seq, steps=args.steps, warmup=args.warmup, attention=args.attention,
                     compute_dtype=args.dtype, overrides=args.overrides, peak_tflops=args.peak_tflops,
                     tokens=args.tokens)
    print(bench.table(rows))
    if args.json:
        bench.save(rows, args.json)
    return 0


def cmd_sweep(args, parser) -> int:
    from bitnet_jax import sweep

    result = sweep.run(args.spec, args.out, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    finished = sum(s == "finished" for s in result.statuses.values())
    print(f"{finished}/{len(result.runs)} runs finished; report: {result.out_dir / 'report' / 'report.md'}")
    return 0 if finished == len(result.runs) else 1


def cmd_results(args, parser) -> int:
    from bitnet_jax.sweep.results import collect, format_table

    print(format_table(collect(args.out)))
    return 0


def cmd_fit(args, parser) -> int:
    from bitnet_jax.scaling.report import build_fits

    build_fits(args.out)
    print(f"wrote {Path(args.out) / 'report' / 'results.csv'} and {Path(args.out) / 'report' / 'fits.json'}")
    return 0


def cmd_report(args, parser) -> int:
    from bitnet_jax.scaling.report import build_report

    print(f"wrote {build_report(args.out)}")
    return 0


def _fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitnet-jax", description=MAIN_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one model", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Train one model. Sections: recipe, model, data, train, tracking.\n"
                                   "e.g. bitnet-jax train recipe=bitnet_b158 model.layout=hf_bitnet train.steps=30")
    p.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [section.key=value ...]",
                   help="an optional YAML config, then overrides such as train.steps=30 or recipe=fp16")
    p.add_argument("--out", help="run directory (default: runs/<recipe>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.set_defaults(func=cmd_train, parser=p)

    w = sub.add_parser("sweep", help="train a family of models x recipes, then fit scaling laws and write a report",
                       description="Run every run of a sweep spec (each resumable, one subprocess each), then write "
                                   "OUT/report/{results.csv, fits.json, plots, report.md}. Restart the same command "
                                   "after a crash: finished runs are skipped and interrupted ones resume.")
    w.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    w.add_argument("--out", help="sweep directory (default: runs/<sweep name>)")
    w.add_argument("--dry-run", action="store_true", help="print the run table (id, recipe, N, D, C, time) only")
    w.set_defaults(func=cmd_sweep, parser=w)
    for name, func, text in (("results", cmd_results, "print the results table of a sweep directory"),
                             ("fit", cmd_fit, "refit the scaling laws of a sweep directory from its run files"),
                             ("report", cmd_report, "rebuild fits, plots and report.md of a sweep directory")):
        c = sub.add_parser(name, help=text, description=text)
        c.add_argument("out", help="the sweep directory (the --out of bitnet-jax sweep)")
        c.set_defaults(func=func, parser=c)

    b = sub.add_parser("bench", help="time training steps (tokens/s, step ms, MFU) per recipe at one shape",
                       description="Time the jitted train step of each recipe at one model shape on random tokens "
                                   "and report step ms, tokens/s, MFU and the step-time ratio to fp16.")
    b.add_argument("--preset", default="125m", help="model shape: 125m (d768 L12 vocab 32000) or tiny")
    b.add_argument("--recipes", default="fp16,bitnet_b158", help="comma-separated recipe names")
    b.add_argument("--batch", type=int, default=16, help="sequences per step")
    b.add_argument("--seq", type=int, help="sequence length (default: the preset's, 1024 for 125m)")
    b.add_argument("--steps", type=int, default=20, help="timed steps per recipe")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    b.add_argument("--attention", default="auto", help="auto | xla | cudnn")
    b.add_argument("--dtype", default="auto", help="compute dtype: auto | float32 | bfloat16")
    b.add_argument("--peak-tflops", type=float, default=989.0, help="peak for MFU (H100 dense bf16: 989)")
    b.add_argument("--tokens", default="text", choices=("text", "random"),
                   help="batch contents: embedded English text (byte ids; realistic repeats) or uniform random ids")
    b.add_argument("--json", help="also write the rows to this JSON file")
    b.add_argument("overrides", nargs="*", help="model.key=value changes to the preset shape")
    b.set_defaults(func=cmd_bench, parser=b)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bitnet_jax.sweep.runner import follow_parent

    follow_parent()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, args.parser)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
