"""Where does the training loop's time go on a GPU? Times the train step of the gpu_small smallest shape in the
ways the bench and the loop call it, then profiles a real `bitnet-jax train` with cProfile.

H100, 2026-11-23: a fixed batch of uniform random tokens 2.37 ms/step; batches of real text drawn per step 72.7 ms
(train_batch alone 0.12 ms); loop.run 89 ms/step. Cause found afterwards (not yet re-timed on a GPU): nnx.Embed cast
the table to bfloat16 before the lookup, so the gradient was a bfloat16 scatter-add, and real text repeats a few
tokens thousands of times per batch. The model now looks up in float32. The variants below separate the two factors
(token distribution, where the batch is drawn).
"""

import cProfile
import os
import functools
import json
import pstats
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bitnet_jax import config as config_lib
from bitnet_jax.data import build_token_data, train_batch
from bitnet_jax.train import loop
from bitnet_jax.train.state import build_training
from bitnet_jax.train.step import init_state, make_train_step

OVERRIDES = ["recipe=fp16", "model.d_model=128", "model.n_layers=4", "model.n_heads=4", "model.d_ff=352",
             "model.vocab_size=256", "model.seq_len=256", "train.batch_size=64", "data.source=python_stdlib",
             "data.max_bytes=30000000", "tracking.progress=false", "train.log_every=100"]
N = int(os.environ.get("DIAG_STEPS", 200))


def timed(label, fn, n, block_each):
    out = fn()
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(n):
        out = fn()
        if block_each:
            jax.block_until_ready(out)
    jax.block_until_ready(out)
    print(f"{label:<44} {(time.perf_counter() - t0) / n * 1e3:8.2f} ms/step", flush=True)


def main():
    cfg = config_lib.load(None, OVERRIDES + [f"train.steps={3 * N}", f"train.eval_every={3 * N}"])
    t0 = time.perf_counter()
    data = build_token_data(cfg.data.source, cfg.data.tokenizer, cfg.data.val_fraction, cfg.data.max_bytes,
                            seq_len=cfg.model.seq_len, paths=cfg.data.paths)
    print(f"data: {len(data.train):,} tokens dtype {data.train.dtype} in {time.perf_counter() - t0:.1f} s")
    tokens = jnp.asarray(data.train)
    print("tokens on", tokens.devices(), tokens.dtype)
    batch_of = functools.partial(train_batch, seed=0, batch_size=64, seq_len=256)
    timed("train_batch alone", lambda: batch_of(tokens, step=3), N, False)

    training = build_training(cfg)
    flat, hp, tx = training.model, training.hyperparams, training.optimizer
    params, rest = training.state["params"], training.state["rest"]
    random_batch = jnp.asarray(np.random.default_rng(0).integers(0, 256, (64, 257), dtype=np.int32))
    text_batch = batch_of(tokens, step=0)
    step_fn = make_train_step(flat, tx, hp)
    for label, draw in (("fixed batch of random tokens", lambda state: random_batch),
                        ("fixed batch of text", lambda state: text_batch),
                        ("text batch drawn per step (as the loop)", lambda state: batch_of(tokens, step=state["step"]))):
        holder = {"state": init_state(jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, rest), tx, hp)}

        def call():
            holder["state"], m = step_fn(holder["state"], draw(holder["state"]))
            return m

        timed(label + ", block each step", call, N, True)
        timed(label + ", async", call, N, False)

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(loop.run, cfg, "/tmp/diag_run", resume=True)
    s = json.load(open("/tmp/diag_run/summary.json"))
    tps = s["tokens_per_sec"] or float("nan")
    print(f"loop.run: {time.perf_counter() - t0:.1f} s, {tps:,.0f} tokens/s ({64 * 256 / tps * 1e3:.2f} ms/step)")
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(18)


if __name__ == "__main__":
    main()
