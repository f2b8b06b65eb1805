"""The `bitnet-jax` command: train | train-group | sweep | results | fit | report | bench | data | export | import |
generate | eval.

Bad input ends with one line on stderr and exit code 2."""

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
  bitnet-jax bench --preset 125m                     # GPU step time, tokens/s and MFU, fp16 vs bitnet_b158 (or 350m)
  bitnet-jax train data.source='corpus/*.jsonl' data.tokenizer=sentencepiece model.vocab_size=8192
  bitnet-jax data build my_corpus 'corpus/**/*.txt'  # local text -> ArrayRecord TFDS dataset (data.source=tfds)
  bitnet-jax bench decode --shape 3b                 # W2A8 packed-ternary decode GEMV vs bf16 per layer
  bitnet-jax bench generate --shape 3b               # whole generation steps: bf16 vs int8 vs 2-bit packed
  bitnet-jax export runs/b158 out/hf --format hf     # transformers BitNetForCausalLM (packed 2-bit weights)
  bitnet-jax import out/hf runs/imported             # a transformers BitNet checkpoint as a run directory
  bitnet-jax generate runs/b158 --prompt "Once upon"  # stream a continuation (integer path, KV cache)
  bitnet-jax eval runs/b158 --task piqa=piqa.jsonl --text heldout.txt   # zero-shot accuracy and perplexity
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
    args.interrupt_hint = f"continue it with: bitnet-jax train --out {out} --resume"
    _prepare_runtime([cfg])
    result = train.run(cfg, out, resume=args.resume)
    _print_result(result)
    return 0 if result.status == "finished" else 1


def cmd_train_group(args, parser) -> int:
    """`bitnet-jax train-group DIR...`: the runs planned in DIR/plan.yaml, trained together in one process (the
    sweep runner's jobs); each continues from its own checkpoint if it has one."""
    from bitnet_jax import config, train

    configs = [config.load(Path(d) / "plan.yaml") for d in args.run_dirs]
    _prepare_runtime(configs)
    results = train.run_group(list(zip(configs, args.run_dirs)))
    for result in results:
        _print_result(result)
    return 0 if all(r.status == "finished" for r in results) else 1


def _prepare_runtime(configs) -> None:
    """Settings that must be in place before JAX starts its backend."""
    if any(c.train.deterministic for c in configs):
        from bitnet_jax.train.runtime import request_deterministic

        request_deterministic()


def _print_result(result) -> None:
    s = result.summary
    print(f"{s['status']}: {result.out_dir}  step {s['step']}/{s['steps']}  train loss {_fmt(s['final_train_loss'])}"
          f"  val loss {_fmt(s['final_val_loss'])}  val bits/byte {_fmt(s['val_bits_per_byte'])} "
          f"(unigram {_fmt(s['unigram_bits_per_byte'])})  {_fmt(s['tokens_per_sec'], '.0f')} tokens/s  "
          f"{_fmt(s['wall_s'], '.1f')} s")


def cmd_bench(args, parser) -> int:
    if args.overrides[:1] == ["decode"]:
        return cmd_bench_decode(args, parser)
    if args.overrides[:1] == ["generate"]:
        return cmd_bench_generate(args, parser)
    from bitnet_jax.train import bench

    rows = bench.run(preset=args.preset, recipe_names=args.recipes.split(","), batch_size=args.batch or 16,
                     seq_len=args.seq, steps=args.steps, warmup=args.warmup, attention=args.attention,
                     compute_dtype=args.dtype, overrides=args.overrides, peak_tflops=args.peak_tflops,
                     tokens=args.tokens)
    print(bench.table(rows))
    if args.json:
        bench.save(rows, args.json)
    return 0


def cmd_bench_generate(args, parser) -> int:
    """`bitnet-jax bench generate`: whole generation steps, bf16 vs int8 codes vs 2-bit packed weights
    (bitnet_jax.infer.bench_generate)."""
    if len(args.overrides) > 1:
        parser.error(f"bench generate takes no overrides, got {' '.join(args.overrides[1:])}")
    from bitnet_jax.infer import bench_generate

    variants = args.variants.split(",") if args.variants else None
    report = bench_generate.run(args.shape, args.batch or 1, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
                                variants=variants)
    print(bench_generate.table(report))
    if args.json:
        bench_generate.save(report, args.json)
    return 0


def cmd_bench_decode(args, parser) -> int:
    """`bitnet-jax bench decode`: W2A8 packed-ternary GEMV vs bf16 per linear shape (bitnet_jax.infer.bench_decode)."""
    if len(args.overrides) > 1:
        parser.error(f"bench decode takes no overrides, got {' '.join(args.overrides[1:])}")
    from bitnet_jax.infer import bench_decode

    variants = args.variants.split(",") if args.variants else None
    report = bench_decode.run(args.shape, args.batch or 1, variants=variants, tune=args.tune, reps=args.reps)
    print(bench_decode.table(report))
    if args.json:
        bench_decode.save(report, args.json)
    if report["config_errors"]:
        print(f"{report['config_errors']} kernel configuration(s) failed to compile or run (see above)", file=sys.stderr)
        return 1
    return 0


def _host_only() -> None:
    """The runner and the fits stay on the CPU: the GPUs belong to the training jobs (a JAX GPU client in the runner
    would take most of a GPU's memory), and scaling fits are small float64 problems."""
    import jax

    jax.config.update("jax_platforms", "cpu")


def cmd_sweep(args, parser) -> int:
    from bitnet_jax import sweep

    _host_only()

    parts = [p for p in args.parts.split(",") if p] if args.parts is not None else None
    result = sweep.run(args.spec, args.out, dry_run=args.dry_run, restart_changed=args.restart_changed, parts=parts)
    if args.dry_run:
        return 0
    finished = sum(s == "finished" for s in result.statuses.values())
    print(f"{finished}/{len(result.runs)} runs finished; report: {result.out_dir / 'report' / 'report.md'}")
    return 0 if finished == len(result.runs) else 1


def cmd_results(args, parser) -> int:
    from bitnet_jax.sweep.results import collect, format_eval_table, format_table

    rows = collect(args.out)
    print(format_table(rows))
    evaluated = format_eval_table(rows)
    if evaluated:
        print("\n" + evaluated)
    return 0


def cmd_fit(args, parser) -> int:
    from bitnet_jax.sweep.report import write_tables

    _host_only()
    write_tables(args.out)
    print(f"wrote {Path(args.out) / 'report' / 'results.csv'} and {Path(args.out) / 'report' / 'fits.json'}")
    return 0


def cmd_report(args, parser) -> int:
    from bitnet_jax.sweep.report import write_reports

    _host_only()
    print(f"wrote {write_reports(args.out)}")
    return 0


def cmd_eval(args, parser) -> int:
    """`bitnet-jax eval RUN`: zero-shot multiple choice and held-out perplexity, saved to RUN/eval.json and summary."""
    import json

    from bitnet_jax import eval as evaluation
    from bitnet_jax.files import write_atomic

    results = evaluation.evaluate_run(args.run_dir, args.task, args.text, limit=args.limit, batch_size=args.batch,
                                      step=args.step)
    print(evaluation.format_results(results))
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=2) + "\n")
    print(f"saved to {Path(args.run_dir) / 'eval.json'} and {Path(args.run_dir) / 'summary.json'} (key eval)")
    return 0


def cmd_data_build(args, parser) -> int:
    from bitnet_jax.data.tfds_source import build_dataset

    where = build_dataset(args.name, tuple(args.files), args.data_dir, args.text_field, args.text_errors,
                          overwrite=args.overwrite)
    print(f"built TFDS dataset {args.name} (ArrayRecord) at {where}; train on it with data.source=tfds "
          f"data.tfds_name={args.name} data.tfds_data_dir={where.parent.parent}")
    return 0


def cmd_data_prepare(args, parser) -> int:
    from bitnet_jax import config
    from bitnet_jax.data import load_token_data

    path, overrides = _split_args(args.args, parser)
    cfg = config.load(path, overrides)
    data = load_token_data(cfg.data, seq_len=cfg.model.seq_len)
    total = len(data.train) + len(data.tune) + len(data.val)
    print(f"{data.source}: {total} tokens ({len(data.train)} train, {len(data.tune)} tune, {len(data.val)} val), "
          f"tokenizer {data.tokenizer} (vocab {data.vocab_size}), {data.bytes_per_token:.3f} bytes/token")
    return 0


def cmd_export(args, parser) -> int:
    """`bitnet-jax export RUN OUT --format hf|packed`: a transformers BitNet directory or a packed safetensors file."""
    from bitnet_jax import infer

    if args.format == "packed":
        if args.online:
            parser.error("--online applies to --format hf only")
        report = infer.save_packed(args.run_dir, args.out, step=args.step, dtype=args.dtype or "float32")
        print(f"wrote {args.out} (packed {args.run_dir})")
    else:
        result = infer.export_hf(args.run_dir, args.out, packed=not args.online, dtype=args.dtype or "bfloat16",
                                 step=args.step)
        report = result.memory
        mode = "online (master weights)" if args.online else "offline (packed 2-bit weights)"
        print(f"wrote {args.out}/config.json and model.safetensors: transformers BitNetForCausalLM, {mode}; "
              f"{result.tokenizer}")
    for line in report.lines():
        print(line)
    return 0


def cmd_import(args, parser) -> int:
    """`bitnet-jax import HF_DIR OUT`: a transformers BitNet checkpoint as a run directory (step 0)."""
    from bitnet_jax import infer

    cfg = infer.import_hf_run(args.hf_dir, args.out, tuple(args.overrides))
    m = cfg.model
    print(f"imported {args.hf_dir} into {args.out}: recipe {cfg.recipe.name}, layout hf_bitnet, d_model {m.d_model}, "
          f"{m.n_layers} layers, vocab {m.vocab_size}; continue training with "
          f"`bitnet-jax train --out {args.out} --resume [train.steps=N ...]`")
    return 0


def cmd_generate(args, parser) -> int:
    """`bitnet-jax generate RUN --prompt TEXT ...`: one prompt streams to stdout; several print once finished."""
    from bitnet_jax import infer
    from bitnet_jax.infer.generate import Sampling, generate

    sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    model = infer.load(args.run_dir, args.step, packed=args.packed)
    single = len(args.prompt) == 1
    if single:
        print(args.prompt[0], end="", flush=True)
    first: list[float] = []

    def on_text(row: int, piece: str) -> None:
        if not first:  # the time the first tokens reached the host
            first.append(time.perf_counter())
        if single:
            print(piece, end="", flush=True)

    start = time.perf_counter()
    texts = generate(model, args.prompt, args.max_new_tokens, sampling, args.seed, on_text=on_text)
    elapsed = time.perf_counter() - start
    if single:
        print()
    else:
        for prompt, text in zip(args.prompt, texts):
            print(f"{prompt}{text}\n")
    _report_speed(len(args.prompt), args.max_new_tokens, (first[0] if first else start + elapsed) - start, elapsed)
    return 0


def _report_speed(prompts: int, new_tokens: int, first_s: float, total_s: float) -> None:
    """One stderr line: the time to the first tokens (prefill, and compilation on a first call) and the rate after."""
    after = total_s - first_s
    rate = f", then {prompts * (new_tokens - 1) / after:.1f} tokens/s" if new_tokens > 1 and after > 0 else ""
    print(f"{new_tokens} new tokens x {prompts} prompt(s) in {total_s:.2f} s: first after {first_s:.2f} s (prefill "
          f"and compilation){rate}", file=sys.stderr)


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
    tg = sub.add_parser("train-group", help="train runs planned by a sweep (DIR/plan.yaml) together in one process",
                        description="Train the runs planned in each RUN_DIR/plan.yaml as one vmapped group (they may "
                                    "differ only in learning rates, weight decays and seeds). The sweep runner starts "
                                    "these jobs; each run continues from its own last checkpoint if it has one.")
    tg.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories holding plan.yaml")
    tg.set_defaults(func=cmd_train_group, parser=tg, interrupt_hint="run the sweep command again to resume")

    w = sub.add_parser("sweep", help="train a family of models x recipes, then fit scaling laws and write a report",
                       description="Run every run of a sweep spec (runs that differ only in learning rate, weight "
                                   "decay or seed train together as one vmapped job), then write OUT/report/"
                                   "{results.csv, fits.json, plots, report.md}. Ctrl-C stops it cleanly; restart the "
                                   "same command after a stop or crash: finished runs are skipped and the others "
                                   "resume from their checkpoints.")
    w.add_argument("spec", help="sweep spec YAML, e.g. sweeps/quickstart.yaml")
    w.add_argument("--out", help="sweep directory (default: runs/<sweep name>)")
    w.add_argument("--dry-run", action="store_true",
                   help="print the runs (id, label, N, D, C), the jobs they group into and the estimated time")
    w.add_argument("--parts", metavar="NAME[,NAME...]",
                   help="train only the runs of these parts of the spec (the report still covers every run in --out)")
    w.add_argument("--restart-changed", action="store_true",
                   help="start afresh the runs whose plan differs from the run already in --out (their files are "
                        "deleted); without it such a spec is refused")
    w.set_defaults(func=cmd_sweep, parser=w, interrupt_hint="run the same sweep command again to resume")
    for name, func, text in (("results", cmd_results, "print the results table of a sweep directory"),
                             ("fit", cmd_fit, "refit the scaling laws of a sweep directory from its run files"),
                             ("report", cmd_report, "rebuild fits, plots and report.md of a sweep directory")):
        c = sub.add_parser(name, help=text, description=text)
        c.add_argument("out", help="the sweep directory (the --out of bitnet-jax sweep)")
        c.set_defaults(func=func, parser=c)

    b = sub.add_parser("bench", help="time training steps (tokens/s, step ms, MFU) per recipe at one shape",
                       description="Time the jitted train step of each recipe at one model shape on random tokens "
                                   "and report step ms, tokens/s, MFU and the step-time ratio to fp16.")
    b.add_argument("--preset", default="125m",
                   help="model shape: 125m (d768 L12 vocab 32000), 350m (d1024 L24 vocab 32000) or tiny")
    b.add_argument("--recipes", default="fp16,bitnet_b158", help="comma-separated recipe names")
    b.add_argument("--batch", type=int, help="sequences per step (default 16; decode: tokens per GEMV, generate: "
                                              "sequences, default 1)")
    b.add_argument("--seq", type=int, help="sequence length (default: the preset's, 1024 for 125m)")
    b.add_argument("--steps", type=int, default=20, help="timed steps per recipe")
    b.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
    b.add_argument("--attention", default="auto", help="auto | xla | cudnn")
    b.add_argument("--dtype", default="auto", help="compute dtype: auto | float32 | bfloat16")
    b.add_argument("--peak-tflops", type=float, default=989.0, help="peak for MFU (H100 dense bf16: 989)")
    b.add_argument("--tokens", default="text", choices=("text", "random"),
                   help="batch contents: embedded English text (byte ids; realistic repeats) or uniform random ids")
    b.add_argument("--json", help="also write the rows to this JSON file")
    b.add_argument("--shape", default="3b",
                   help="decode, generate: b1.58 paper model shape 700m | 3b (tiny: CPU smoke test)")
    b.add_argument("--variants", help="decode: kernel variants to time (default all: dp4a,int,f32,bf16); generate: "
                                      "models to time (default all: bf16,int8,packed,packed_unfused,packed_xla_quant)")
    b.add_argument("--tune", action="store_true", help="decode: also time a grid of dp4a tile sizes (GPU)")
    b.add_argument("--reps", type=int, help="decode: timed calls per measurement (default 50 on GPU, 2 on CPU)")
    b.add_argument("--prompt-len", type=int, default=32, help="generate: prompt tokens per sequence")
    b.add_argument("--new-tokens", type=int, default=64, help="generate: tokens generated per sequence")
    b.add_argument("overrides", nargs="*", help="model.key=value changes to the preset shape, train.key=value to the "
                                                 "step (e.g. train.attention=xla), mesh.key=value to the devices "
                                                 "(e.g. mesh.fsdp=2)")
    b.set_defaults(func=cmd_bench, parser=b)
    d = sub.add_parser("data", help="prepare corpora: build a TFDS dataset from local text, fill the token cache",
                       description="bitnet-jax data build NAME FILES...: local text as an ArrayRecord TFDS dataset "
                                   "(no TensorFlow needed). bitnet-jax data prepare [CONFIG] [data.key=value ...]: "
                                   "tokenise a run's corpus into the token cache once, before a sweep.")
    dsub = d.add_subparsers(dest="data_command", required=True)
    db = dsub.add_parser("build", help="local .txt/.jsonl files -> a prepared ArrayRecord TFDS dataset")
    db.add_argument("name", help="dataset name (lower case, digits, underscores), e.g. my_corpus")
    db.add_argument("files", nargs="+", help="text files or globs ('**' recurses); .jsonl: one document per line")
    db.add_argument("--data-dir", help="TFDS data directory (default: $TFDS_DATA_DIR, else ~/tensorflow_datasets)")
    db.add_argument("--text-field", default="text", help=".jsonl field holding the text (default: text)")
    db.add_argument("--text-errors", default="strict", choices=("strict", "skip", "replace"),
                    help="empty or non-UTF-8 files: stop (strict), leave out (skip), or U+FFFD (replace)")
    db.add_argument("--overwrite", action="store_true", help="rebuild a dataset that already exists")
    db.set_defaults(func=cmd_data_build, parser=db)
    dp = dsub.add_parser("prepare", help="tokenise a config's corpus into the token cache (train a tokenizer first "
                                         "if needed) and print the token counts")
    dp.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [section.key=value ...]")
    dp.set_defaults(func=cmd_data_prepare, parser=dp)

    e = sub.add_parser("export", help="export a run: Hugging Face BitNet directory or packed safetensors file",
                       description="--format hf (default): OUT/config.json + model.safetensors for transformers' "
                                   "BitNetForCausalLM (needs recipe bitnet_b158 with model.layout=hf_bitnet); packed "
                                   "2-bit weights, or the float master weights with --online. --format packed: one "
                                   "safetensors file of packed ternary/binary weights (bitnet_jax.infer.load_packed). "
                                   "Both print the memory report (packed bytes vs bf16).")
    e.add_argument("run_dir", help="a finished run directory (the --out of bitnet-jax train)")
    e.add_argument("out", help="output directory (hf) or file (packed)")
    e.add_argument("--format", default="hf", choices=("hf", "packed"))
    e.add_argument("--online", action="store_true", help="hf: float master weights, quantised online by transformers")
    e.add_argument("--dtype", choices=("bfloat16", "float32"),
                   help="float tensors' storage type (default: bfloat16 for hf, float32 for packed)")
    e.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    e.set_defaults(func=cmd_export, parser=e)
    i = sub.add_parser("import", help="import a transformers BitNet checkpoint directory as a run directory",
                       description="Read HF_DIR (config.json with model_type bitnet + *.safetensors, packed or master "
                                   "weights) into a run directory OUT (config.yaml + a step-0 checkpoint) that "
                                   "`bitnet-jax train --out OUT --resume` continues and inference loads.")
    i.add_argument("hf_dir", help="a Hugging Face BitNet model directory")
    i.add_argument("out", help="the new run directory")
    i.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="data.*, train.* or tracking.* settings for continued training")
    i.set_defaults(func=cmd_import, parser=i)
    g = sub.add_parser("generate", help="continue text prompts with a trained run (KV cache, streaming)",
                       description="Continue each --prompt with the run's model: the integer path for quantised "
                                   "recipes, a KV cache, prompts of different lengths batched. Greedy by default "
                                   "(--temperature 0); sampling is reproducible from --seed.")
    g.add_argument("run_dir", help="a finished run directory (the --out of bitnet-jax train)")
    g.add_argument("--prompt", action="append", required=True, help="text to continue (repeat for a batch)")
    g.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate per prompt")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy; > 0 samples")
    g.add_argument("--top-k", type=int, default=0, help="sample among the K most likely tokens (0 = all)")
    g.add_argument("--top-p", type=float, default=1.0, help="sample within the top-P probability mass (1 = all)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed")
    g.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    g.add_argument("--packed", action="store_true",
                   help="ternary recipes: 2-bit packed weights and the W2A8 decode kernel (GPU; elsewhere its XLA "
                        "reference); same tokens as the default int8 codes")
    g.set_defaults(func=cmd_generate, parser=g)
    v = sub.add_parser("eval", help="zero-shot multiple choice (JSONL tasks) and held-out perplexity of a run",
                       description="Score a run's latest checkpoint on multiple-choice task files by log-likelihood "
                                   "(lm-eval-harness convention: acc and length-normalised acc_norm) and on a held-out "
                                   "text (perplexity, bits per byte). Task files are JSONL in the shape of HellaSwag "
                                   "{ctx, endings, label}, PIQA {goal, sol1, sol2, label}, WinoGrande {sentence, "
                                   "option1, option2, answer}, ARC {question, choices{text,label}, answerKey} or "
                                   "{context, choices, label}. Results go to RUN_DIR/eval.json and "
                                   "RUN_DIR/summary.json (key eval).")
    v.add_argument("run_dir", help="a run directory (the --out of bitnet-jax train)")
    v.add_argument("--task", action="append", default=[], metavar="NAME=FILE.jsonl",
                   help="a multiple-choice task file (repeatable), e.g. --task piqa=data/piqa_valid.jsonl")
    v.add_argument("--text", help="a held-out UTF-8 text file for perplexity and bits per byte")
    v.add_argument("--limit", type=int, help="score only the first N examples of each task")
    v.add_argument("--batch", type=int, default=32, help="sequences per forward pass (default 32)")
    v.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    v.add_argument("--json", help="also write the results to this JSON file")
    v.set_defaults(func=cmd_eval, parser=v)
    return parser


def main(argv: list[str] | None = None) -> int:
    from bitnet_jax.child import follow_parent

    follow_parent()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args, args.parser)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {getattr(args, 'interrupt_hint', 'run the same command again to continue')}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
