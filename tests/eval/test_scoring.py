import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bitnet_jax.data import get_tokenizer, load_corpus, load_token_data, val_batches
from bitnet_jax.errors import DataError
from bitnet_jax.eval import Example, multiple_choice, perplexity
from bitnet_jax.train import load_run

BATCH = 8  # one batch size throughout, so the tests share compiled shapes (each costs seconds on 2 cores)
_forward = nnx.jit(lambda model, tokens: model(tokens))


@pytest.fixture(scope="module")
def loaded(trained_run):
    return load_run(trained_run())


def reference_loglikelihood(model, context: str, continuation: str, seq_len: int) -> float:
    """Independent float64 reference: the model on this one sequence (no batch, no padding), log-softmax in float64,
    summed over the continuation's bytes; the pair left-truncated to seq_len+1 tokens. As in lm-eval, trailing
    whitespace of the context is scored as part of the continuation."""
    spaces = len(context) - len(context.rstrip())
    context, continuation = context[:len(context) - spaces], context[len(context) - spaces:] + continuation
    tokens = np.frombuffer((context + continuation).encode(), np.uint8).astype(np.int64)[-(seq_len + 1):]
    n_cont = len(continuation.encode())
    logits = np.asarray(_forward(model, jnp.asarray(tokens[None, :-1], jnp.int32))[0], np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(logp[np.arange(len(tokens) - 1), tokens[1:]][-n_cont:].sum())


def corpus_text(n_bytes: int = 60000) -> str:
    return load_corpus("python_docs", n_bytes, ()).text.decode("utf-8", errors="ignore")


def test_loglikelihoods_match_an_unbatched_float64_reference(loaded):
    """Sequences of 20 tokens (padded to the 32 bucket) and of more than seq_len+1 = 33 (left-truncated)."""
    model, seq_len = loaded.model, loaded.config.model.seq_len
    long_context = corpus_text()[1000:1100]
    examples = [
        Example.from_choices("The assert s", ["tatemen", "zq#zq#z", "xyzzy!!"], 0),
        Example.from_choices(long_context, ["return", "x"], 0),
        Example(("Alice met Bob", "Alice met Ann"), (" at six", " at six"), 1, (7, 7)),  # WinoGrande-style
        Example.from_choices("def f(x):\n   ", ["return", "pass()"], 0),  # trailing whitespace joins the continuation
    ]
    result = multiple_choice(model, get_tokenizer("byte"), examples, batch_size=BATCH)
    for ex, got in zip(examples, result.loglikelihoods):
        want = [reference_loglikelihood(model, c, k, seq_len) for c, k in zip(ex.contexts, ex.continuations)]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_acc_and_acc_norm_by_hand_where_they_differ(loaded):
    """Short junk choices beat long real text on the summed log-likelihood (acc) but lose per character (acc_norm)."""
    model, seq_len = loaded.model, loaded.config.model.seq_len
    text = corpus_text()
    examples = []
    for i in range(6):
        start = 3000 + 400 * i
        context, real = text[start:start + 40], text[start + 40:start + 60]
        examples.append(Example.from_choices(context, ["\x07", real] if i % 2 else [real, "\x07"], 1 - i % 2))
    ll = [np.array([reference_loglikelihood(model, c, k, seq_len) for c, k in zip(e.contexts, e.continuations)])
          for e in examples]
    want_acc = np.mean([np.argmax(x) == e.label for x, e in zip(ll, examples)])
    want_norm = np.mean([np.argmax(x / np.array(e.norm_lengths)) == e.label for x, e in zip(ll, examples)])
    assert want_acc != want_norm  # the case is one where the two differ
    got = multiple_choice(model, get_tokenizer("byte"), examples, batch_size=BATCH)
    assert (got.acc, got.acc_norm, got.n) == (want_acc, want_norm, 6)
    assert got.acc_stderr == pytest.approx(math.sqrt(want_acc * (1 - want_acc) / 5))


def test_trained_model_beats_chance_on_real_text_vs_random_bytes(loaded):
    """Real corpus text against random printable bytes of the same length. (A 30-step model knows byte frequencies,
    not yet word order, so a permutation of the real bytes would still be a coin toss for it.)"""
    rng = np.random.default_rng(0)
    text = corpus_text()
    examples = []
    for i in range(24):
        start = 500 + 2000 * i
        context, real = text[start:start + 24], text[start + 24:start + 48]
        fake = "".join(chr(c) for c in rng.integers(33, 127, len(real)))
        label = int(rng.integers(2))
        examples.append(Example.from_choices(context, [real, fake] if label == 0 else [fake, real], label))
    result = multiple_choice(loaded.model, get_tokenizer("byte"), examples, batch_size=BATCH)
    assert result.acc >= 0.8 and result.acc_norm >= 0.8  # chance is 0.5; P(>= 20/24 by luck) < 1e-3


def test_perplexity_equals_the_training_loops_val_loss(loaded):
    cfg = loaded.config
    data = load_token_data(cfg.data, seq_len=cfg.model.seq_len)  # what the training loop evaluated on
    windows = val_batches(data.val, cfg.train.batch_size, cfg.model.seq_len, cfg.train.eval_batches)
    n_tokens = windows.shape[0] * windows.shape[1] * cfg.model.seq_len + 1
    text = bytes(data.val[:n_tokens].astype(np.uint8)).decode("utf-8")
    result = perplexity(loaded.model, get_tokenizer("byte"), text, batch_size=BATCH)  # the loop's batches are 4
    assert loaded.step == cfg.train.steps and result["tokens"] == n_tokens - 1
    assert result["loss"] == pytest.approx(loaded.summary["final_val_loss"], rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["bits_per_byte"] == pytest.approx(result["loss"] / math.log(2) * n_tokens / len(text.encode()))


def test_perplexity_scores_every_token_once_with_a_short_last_window(loaded):
    model, seq_len = loaded.model, loaded.config.model.seq_len
    text = corpus_text()[5000:5000 + 2 * seq_len + 10]  # two full windows and a tail of 9 targets
    tokens = np.frombuffer(text.encode(), np.uint8)
    want = 0.0
    for start in range(0, len(tokens) - 1, seq_len):
        piece = tokens[start:start + seq_len + 1].tobytes().decode()
        want += reference_loglikelihood(model, piece[:1], piece[1:], seq_len)
    result = perplexity(model, get_tokenizer("byte"), text, batch_size=BATCH)
    assert result["tokens"] == len(tokens) - 1
    assert result["loss"] == pytest.approx(-want / (len(tokens) - 1), rel=1e-5)


def test_task_records_as_dicts_score_like_parsed_examples(loaded):
    text = corpus_text()
    records = [{"context": text[s:s + 40], "choices": [text[s + 40:s + 52], "#~#~#~#~#~#~"], "label": 0}
               for s in (800, 1600, 2400)]
    from_dicts = multiple_choice(loaded.model, get_tokenizer("byte"), records, batch_size=BATCH)
    parsed = [Example.from_choices(r["context"], r["choices"], r["label"]) for r in records]
    from_examples = multiple_choice(loaded.model, get_tokenizer("byte"), parsed, batch_size=BATCH)
    np.testing.assert_array_equal(np.stack(from_dicts.loglikelihoods), np.stack(from_examples.loglikelihoods))
    with pytest.raises(DataError, match="^example 1: missing field"):
        multiple_choice(loaded.model, get_tokenizer("byte"), [records[0], {"context": "x"}])
