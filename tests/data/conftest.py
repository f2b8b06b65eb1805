import pytest


def _prose() -> list[str]:
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)[:40]]


@pytest.fixture(autouse=True)
def token_cache(tmp_path, monkeypatch):
    """Every data test gets its own empty token cache (never ~/.cache)."""
    where = tmp_path / "token-cache"
    monkeypatch.setenv("BITNET_JAX_CACHE", str(where))
    return where


@pytest.fixture
def prose():
    """A small English + code corpus (part of the embedded Python docs) as a list of documents."""
    return _prose()


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory):
    """A SentencePiece model (up to 400 pieces) trained once per session on `prose`."""
    from bitnet_jax.data.tokenizer import train_sentencepiece

    return train_sentencepiece(_prose(), tmp_path_factory.mktemp("sp") / "tok.model", vocab_size=400)
