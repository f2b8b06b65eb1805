import numpy as np
import pytest

from bitnet_jax.data import build_token_data
from bitnet_jax.data.synthetic import MarkovSpec, entropy_rate, sample, stationary, transition_matrix, window_floor
from bitnet_jax.errors import DataError


def test_two_state_chain_matches_closed_form():
    spec = MarkovSpec(vocab=2, order=1, concentration=1.0, tokens=1000, seed=3)
    P = transition_matrix(spec)
    a, b = P[0, 1], P[1, 0]  # switching probabilities
    pi = np.array([b, a]) / (a + b)  # closed-form stationary distribution of a two-state chain
    np.testing.assert_allclose(stationary(P, spec), pi, rtol=1e-10)
    h = lambda p: -(p * np.log(p) + (1 - p) * np.log(1 - p))  # noqa: E731
    assert entropy_rate(spec) == pytest.approx(pi[0] * h(a) + pi[1] * h(b), rel=1e-10)


@pytest.mark.parametrize("order", [1, 2])
def test_samples_have_the_stated_entropy(order):
    spec = MarkovSpec(vocab=8, order=order, concentration=0.5, tokens=400_000, seed=1)
    x = sample(spec).astype(np.int64)
    assert x.min() >= 0 and x.max() < 8 and len(x) == 400_000
    P = transition_matrix(spec)
    state = x[: len(x) - order] * 0
    for j in range(order):
        state = state * 8 + x[j: len(x) - order + j]
    nll = -np.log(P[state, x[order:]]).mean()  # empirical cross-entropy under the true chain
    assert nll == pytest.approx(entropy_rate(spec), rel=0.01)
    np.testing.assert_array_equal(sample(spec), x)  # deterministic


def test_window_floor():
    one = MarkovSpec(vocab=4, order=1, tokens=1000)
    assert window_floor(one, 64) == pytest.approx(entropy_rate(one), rel=1e-9)  # x_1 is all the context needed
    two = MarkovSpec(vocab=4, order=2, tokens=1000)
    h, f = entropy_rate(two), window_floor(two, 64)
    assert h < f < h + (np.log(4) - h) / 64 + 1e-12  # only the first target lacks its full context


def test_token_data_and_errors():
    data = build_token_data("markov", seq_len=32, markov=MarkovSpec(vocab=16, tokens=10_000))
    assert data.vocab_size == 16 and data.entropy_floor == pytest.approx(window_floor(MarkovSpec(vocab=16), 32))
    assert (len(data.train), len(data.tune), len(data.val)) == (9_000, 500, 500)
    with pytest.raises(DataError, match="vocab"):
        MarkovSpec(vocab=300)
    with pytest.raises(DataError, match="unknown data source"):
        build_token_data("wikipedia")
