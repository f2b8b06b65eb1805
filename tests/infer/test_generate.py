"""Generation with a KV cache against step-by-step full recomputation; sampling rules against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bitnet_jax import infer
from bitnet_jax.errors import UserError
from bitnet_jax.infer.generate import Sampling, generate, generate_tokens, sample_next
from bitnet_jax.model import ModelConfig, Transformer

PROMPTS = [list(b"The "), list(b"Once upon a time, "), list(b"and then")]


@pytest.fixture(scope="module")
def model(trained_run):
    return infer.load(trained_run("recipe=bitnet_b158", "model.layout=hf_bitnet"))


def _greedy_by_recomputation(model, prompts, n):
    """Argmax of the full forward (no cache) over each growing sequence. The sequences sit right-padded in one
    fixed-width buffer (one compilation); by causality position i's logits ignore everything after it."""
    seqs = [list(p) for p in prompts]
    for _ in range(n):
        buffer = np.zeros((len(seqs), max(map(len, prompts)) + n), np.int32)
        for row, seq in enumerate(seqs):
            buffer[row, :len(seq)] = seq
        logits = np.asarray(model(buffer))
        for row, seq in enumerate(seqs):
            seq.append(int(logits[row, len(seq) - 1].argmax()))
    return [seq[len(p):] for seq, p in zip(seqs, prompts)]


def test_greedy_generation_equals_full_recomputation(model):
    got = generate_tokens(model, PROMPTS, 10)
    assert got.shape == (3, 10)
    assert got.tolist() == _greedy_by_recomputation(model, PROMPTS, 10)


def test_top_k_1_is_greedy_and_the_seed_fixes_the_sample(model):
    greedy = generate_tokens(model, PROMPTS, 6)
    np.testing.assert_array_equal(generate_tokens(model, PROMPTS, 6, Sampling(temperature=1.0, top_k=1), seed=5),
                                  greedy)
    hot = Sampling(temperature=2.0)
    a, b = generate_tokens(model, PROMPTS, 12, hot, seed=1), generate_tokens(model, PROMPTS, 12, hot, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, generate_tokens(model, PROMPTS, 12, hot, seed=2))


def test_a_second_generation_reuses_the_compiled_steps(model):
    """The decode step is traced once per model structure and sampling (a prefill and a one-token shape), not per
    call: the structure is bound into the jitted step, never passed (and hashed) on every token."""
    from bitnet_jax.infer.generate import _jitted_step

    seen = []
    generate_tokens(model, PROMPTS, 4, Sampling(temperature=0.5), on_step=lambda i, t: seen.append(i))
    step = _jitted_step(*_structure(model), Sampling(temperature=0.5))
    traced = step._cache_size()
    generate_tokens(model, PROMPTS, 4, Sampling(temperature=0.5), on_step=lambda i, t: seen.append(i))
    assert traced == 2 and step._cache_size() == 2 and seen == [0, 1, 2, 3] * 2


def _structure(model):
    graphdef, state = nnx.split(model.model)
    return graphdef, jax.tree.structure(state)


def test_streamed_text_is_the_returned_text(model):
    pieces = {0: [], 1: []}
    texts = generate(model, ["Hello", "A"], max_new_tokens=8, sampling=Sampling(temperature=1.0), seed=3,
                     on_text=lambda row, piece: pieces[row].append(piece))
    assert ["".join(pieces[0]), "".join(pieces[1])] == texts


def test_cache_decode_equals_full_forward_with_grouped_kv_heads():
    cfg = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, seq_len=16)
    m = Transformer(cfg, "fp16", rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 50, (2, 9)))
    full = np.asarray(nnx.jit(lambda model, t: model(t))(m, tokens))
    decode = nnx.jit(lambda model, *args: model.decode(*args))
    cache = m.init_cache(2, 12)
    slots = jnp.arange(12)
    logits = []
    for lo, hi in [(0, 5), (5, 6), (6, 7), (7, 8), (8, 9)]:
        q = jnp.arange(lo, hi)
        mask = jnp.broadcast_to(slots[None, :] <= q[:, None], (2, hi - lo, 12))
        out, cache = decode(m, tokens[:, lo:hi], cache, jnp.broadcast_to(q, (2, hi - lo)), mask, lo)
        logits.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(logits, axis=1), full, rtol=1e-5, atol=1e-5)


def test_top_k_and_top_p_keep_the_right_tokens():
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    keys = jax.random.split(jax.random.key(0), 400)
    draw = jax.vmap(lambda k, s: sample_next(logits, k, s)[0], in_axes=(0, None))
    top2 = set(np.asarray(draw(keys, Sampling(temperature=1.0, top_k=2))).tolist())
    assert top2 == {1, 3}
    # nucleus 0.75: 0.4 + 0.3 = 0.7 < 0.75, so the third most likely (0.15) joins; 0.1 and 0.05 never appear
    nucleus = np.asarray(draw(keys, Sampling(temperature=1.0, top_p=0.75)))
    assert set(nucleus.tolist()) == {1, 3, 4}
    freq = np.bincount(nucleus, minlength=5)[[1, 3, 4]] / len(nucleus)
    np.testing.assert_allclose(freq, np.array([0.4, 0.3, 0.15]) / 0.85, atol=0.08)


def test_bad_generation_requests(model):
    with pytest.raises(UserError, match="empty"):
        generate_tokens(model, [[1, 2], []], 3)
    with pytest.raises(UserError, match="top_p"):
        Sampling(temperature=1.0, top_p=0.0)
    with pytest.raises(UserError, match="temperature"):
        Sampling(temperature=-1.0)


def test_cli_streams_the_greedy_continuation(model, trained_run, capsys):
    from bitnet_jax import cli

    run = trained_run("recipe=bitnet_b158", "model.layout=hf_bitnet")
    assert cli.main(["generate", str(run), "--prompt", "Once upon", "--max-new-tokens", "6"]) == 0
    expected = bytes(_greedy_by_recomputation(model, [list(b"Once upon")], 6)[0]).decode("utf-8", errors="replace")
    out, err = capsys.readouterr()
    assert out == "Once upon" + expected + "\n"
    assert err.startswith("6 new tokens x 1 prompt(s) in ") and " tokens/s" in err and err.count("\n") == 1
    assert cli.main(["generate", str(run), "--prompt", "Once upon", "--max-new-tokens", "6", "--packed"]) == 0
    assert capsys.readouterr().out == "Once upon" + expected + "\n"  # 2-bit weights, the same tokens


def test_cli_bad_run_dir_is_one_line(tmp_path, capsys):
    from bitnet_jax import cli

    assert cli.main(["generate", str(tmp_path), "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a run directory" in err and err.count("\n") == 1
