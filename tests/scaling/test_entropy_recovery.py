"""The fitted irreducible loss E of a size family trained on the synthetic Markov source recovers the source's
exact entropy (the lowest loss any model can reach on its windows)."""

import pytest

from bitnet_jax import config, train
from bitnet_jax.scaling import fit_power_law

SOURCE = ["data.source=markov", "data.markov_vocab=16", "data.markov_order=1", "data.markov_concentration=0.3",
          "data.markov_tokens=200000", "model.vocab_size=16"]


def test_fitted_E_recovers_the_markov_entropy(tmp_path):
    n, loss, floor = [], [], None
    for d in (2, 4, 8, 16, 32):  # below d=16 the logits cannot represent the 16x16 transition table
        cfg = config.load(None, SOURCE + [
            "recipe=fp16", f"model.d_model={d}", "model.n_layers=1", "model.n_heads=1", f"model.d_ff={2 * d}",
            "model.seq_len=32", "train.batch_size=16", "train.steps=400", "train.lr=1e-2", "train.warmup_steps=20",
            "train.eval_every=400", "train.eval_batches=16", "train.ckpt_every=400", "train.log_every=50",
            "tracking.progress=false"])
        s = train.run(cfg, tmp_path / f"d{d}").summary
        n.append(s["n_params"])
        loss.append(s["final_val_loss"])
        floor = s["data_entropy_floor"]
    assert min(loss) > floor * 0.995  # no model beats the source's entropy (up to evaluation noise)
    fit = fit_power_law(n, loss)
    assert fit.A > 0 and fit.alpha > 0
    assert fit.E == pytest.approx(floor, rel=0.02)
