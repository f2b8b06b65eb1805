"""`load_token_data(data_config, seq_len)`: a run's token streams from its DataConfig, through the token cache.

source -> text chunks (sources.py) -> tokenizer (trained first if it is a SentencePiece model not yet on disk) ->
cached token file (cache.py) -> contiguous train | tune | validation split. Pre-tokenised files and the synthetic Markov
source skip the text steps. bytes_per_token (corpus bytes / tokens) turns nats per token into bits per byte, so
losses stay comparable across tokenizers.
"""

from __future__ import annotations

import math

from bitnet_jax.data import synthetic
from bitnet_jax.data.batches import TokenData, split_tokens
from bitnet_jax.data.cache import cache_dir, cached_tokens, uncached_tokens
from bitnet_jax.data.sources import describe_source, iter_text, resolve_source
from bitnet_jax.data.tokenizer import load_tokenizer, tokenizer_path, train_sentencepiece
from bitnet_jax.data.tokens import load_token_files
from bitnet_jax.errors import CheckpointError

_EMBEDDED = ("python_docs", "python_stdlib")


def load_token_data(data_config, seq_len: int) -> TokenData:
    kind, paths = resolve_source(data_config)
    fractions = data_config.val_fraction, data_config.tune_fraction
    if kind == "markov":
        spec = data_config.markov()
        return split_tokens(synthetic.sample(spec), *fractions, seq_len, "markov", vocab_size=spec.vocab,
                            bytes_per_token=1.0, sha256=synthetic.digest(spec),
                            entropy_floor=synthetic.window_floor(spec, seq_len))
    if kind == "tokens":
        tokens, vocab, ident = load_token_files(paths, data_config.token_dtype, data_config.tokens_vocab_size)
        bpt = data_config.tokens_bytes_per_token
        return split_tokens(tokens, *fractions, seq_len, data_config.source, vocab_size=vocab,
                            bytes_per_token=math.nan if bpt is None else bpt, sha256=ident, tokenizer="pretokenized",
                            tokenizer_sha256=ident)
    tokenizer = prepare_tokenizer(data_config)
    source = describe_source(data_config)
    use_cache = data_config.cache if data_config.cache is not None else not (
        kind in _EMBEDDED and tokenizer.name == "byte")
    if use_cache:
        tokens, manifest = cached_tokens(cache_dir(data_config) / "tokens", source, lambda: iter_text(data_config),
                                         tokenizer)
    else:
        tokens, manifest = uncached_tokens(source, iter_text(data_config), tokenizer)
    return split_tokens(tokens, *fractions, seq_len, data_config.source, vocab_size=tokenizer.vocab_size,
                        bytes_per_token=manifest["bytes_per_token"], sha256=manifest["text_sha256"],
                        tokenizer=tokenizer.name, tokenizer_sha256=tokenizer.sha256,
                        empty_documents=manifest["empty_documents"])


def prepare_tokenizer(data_config):
    """The configured tokenizer; a SentencePiece model whose file does not exist yet is first trained on the corpus
    (data.tokenizer_vocab_size pieces) and saved where `load_tokenizer` looks for it."""
    if data_config.tokenizer == "sentencepiece":
        path = tokenizer_path(data_config)
        if not path.exists():
            train_sentencepiece(iter_text(data_config), path, data_config.tokenizer_vocab_size,
                                data_config.sentencepiece_type)
    return load_tokenizer(data_config)


def check_same_tokenizer(previous_summary: dict | None, data: TokenData, run_dir) -> None:
    """A resumed run must see token ids from the tokenizer its checkpoint was trained with."""
    old = (previous_summary or {}).get("tokenizer_sha256")
    if old is not None and old != data.tokenizer_sha256:
        raise CheckpointError(f"cannot resume {run_dir}: its checkpoint was trained with tokenizer "
                              f"{previous_summary.get('tokenizer')} (sha256 {old[:12]}), the config gives "
                              f"{data.tokenizer} (sha256 {data.tokenizer_sha256[:12]}); resume with the same "
                              f"data.tokenizer / data.tokenizer_path or choose another --out")
