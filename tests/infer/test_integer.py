"""The integer inference path against the fake-quant training forward and against integer arithmetic in numpy."""

import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from flax import nnx

from bitnet_jax import infer
from bitnet_jax.errors import CheckpointError, UserError
from bitnet_jax.infer.integer import IntegerCodes, IntegerLinear, to_integer
from bitnet_jax.layers import BitLinear
from bitnet_jax.model import ModelConfig, Transformer
from bitnet_jax.recipes import variant

TOKENS = np.array([list(b"The quick brown fox jumps over"), list(b"a lazy dog; integer arithmetic")], np.int32)

CASES = [("bitnet_b158",), ("bitnet_b158", "model.layout=llama"), ("bitnet_b158", "model.layout=hf_bitnet"),
         ("bitnet",)]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_integer_path_equals_fake_quant_forward(trained_run, case):
    recipe, *layout = case
    run = trained_run(f"recipe={recipe}", *layout)
    reference = np.asarray(infer.load(run, integer=False)(TOKENS))  # the training forward (fake quantisation)
    model = infer.load(run)
    assert model.integer
    got = np.asarray(model(TOKENS))
    assert got.dtype == np.float32 and got.shape == reference.shape
    np.testing.assert_array_equal(got.argmax(-1), reference.argmax(-1))
    # int32 accumulation is exact, the fake-quant forward rounds in float32: where a later layer's activation lands on
    # a rounding boundary of its int8 code, the two paths pick neighbouring codes (seen on ~1 % of logits, < 1e-3)
    np.testing.assert_allclose(got, reference, rtol=1e-3, atol=1e-3 * np.abs(reference).max())


@pytest.mark.parametrize("recipe", [variant("bitnet_b158_median", weight_groups=2), variant("bitnet", weight_groups=4)],
                         ids=["median-groups2", "bitnet-groups4"])
def test_integer_path_of_grouped_recipes_on_an_untrained_model(recipe):
    cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, d_ff=128)
    forward = nnx.jit(lambda model, tokens: model(tokens))
    reference = np.asarray(forward(Transformer(cfg, recipe, rngs=nnx.Rngs(1)), TOKENS))
    got = np.asarray(forward(to_integer(Transformer(cfg, recipe, rngs=nnx.Rngs(1))), TOKENS))
    np.testing.assert_array_equal(got.argmax(-1), reference.argmax(-1))
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("role,topk", [("in", 1.0), ("out", 0.5)], ids=["absmean4", "topk-absmax8"])
def test_a48_layers_equal_their_fake_quant_forward(role, topk):
    # layer by layer only: in a whole a4.8 model, exact ties at the top-k threshold of the o_proj input (integer sums
    # of 4-bit codes; a token attending only to itself) are broken by float rounding in the training forward
    layer = BitLinear(64, 48, recipe="bitnet_a48", role=role, topk=topk, input_norm=True, rngs=nnx.Rngs(2))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 64)).astype(np.float32))
    np.testing.assert_allclose(np.asarray(IntegerLinear(layer)(x)), np.asarray(layer(x)), rtol=1e-5, atol=1e-6)


def test_weights_are_stored_as_int8_codes_once(trained_run):
    model = infer.load(trained_run("recipe=bitnet_b158")).model
    codes = [v for v in nnx.state(model, IntegerCodes).flat_state() if v[1][...].dtype == jnp.int8]
    assert len(codes) == 7 * model.cfg.n_layers  # q k v o gate up down per block
    for _, var in codes:
        assert set(np.unique(np.asarray(var[...]))) <= {-1, 0, 1}
    assert not any(isinstance(m, BitLinear) for _, m in nnx.iter_graph(model))


def test_integer_linear_matches_numpy_integer_arithmetic():
    layer = BitLinear(48, 24, recipe="bitnet_b158", rngs=nnx.Rngs(3))
    x = np.random.default_rng(0).normal(size=(3, 5, 48)).astype(np.float32)
    got = np.asarray(IntegerLinear(layer)(jnp.asarray(x)))
    w = np.asarray(layer.kernel[...], np.float64)
    w_scale = max(np.abs(w).mean(), 1e-5)
    w_codes = np.clip(np.round(w / w_scale), -1, 1).astype(np.int64)
    amax = np.maximum(np.abs(x).max(-1, keepdims=True).astype(np.float64), 1e-5)
    x_codes = np.clip(np.round(x / amax * 127), -128, 127).astype(np.int64)
    expected = (x_codes @ w_codes) * (amax / 127) * w_scale
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_fp16_run_falls_back_to_float(trained_run):
    run = trained_run("recipe=fp16")
    model = infer.load(run)
    assert not model.integer
    logits = np.asarray(model(TOKENS))
    assert logits.shape == (*TOKENS.shape, 256) and np.isfinite(logits).all()


def test_bad_tokens_are_one_line_errors(trained_run):
    model = infer.load(trained_run("recipe=bitnet_b158"))
    with pytest.raises(UserError, match=r"\[0, 256\)"):
        model(np.array([[1, 300]]))
    with pytest.raises(UserError, match="shape"):
        model(np.array([1, 2, 3]))


def test_not_a_run_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        infer.load(tmp_path)


def _edited_copy(run, tmp_path, **changes):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    for key, value in changes.items():
        section, name = key.split("__") if "__" in key else (None, key)
        (cfg[section] if section else cfg)[name] = value
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    return copy


def test_checkpoint_with_another_recipe(trained_run, tmp_path):
    # bitnet and bitnet_b158 share every parameter shape: only the recorded recipe can tell them apart
    copy = _edited_copy(trained_run("recipe=bitnet_b158"), tmp_path, recipe="bitnet")
    with pytest.raises(CheckpointError, match="trained with 'bitnet_b158'") as err:
        infer.load(copy)
    assert "\n" not in str(err.value)


def test_checkpoint_with_another_shape(trained_run, tmp_path):
    copy = _edited_copy(trained_run("recipe=bitnet_b158"), tmp_path, model__d_model=64)
    with pytest.raises(CheckpointError, match="does not match") as err:
        infer.load(copy)
    assert "\n" not in str(err.value)


def test_packed_weights_give_the_int8_path_exactly(trained_run):
    run = trained_run("recipe=bitnet_b158")
    int8, packed = infer.load(run), infer.load(run, packed=True)
    np.testing.assert_array_equal(np.asarray(packed(TOKENS)), np.asarray(int8(TOKENS)))  # same int32 sums and scales
    words = [v for _, v in nnx.state(packed.model, IntegerCodes).flat_state() if v[...].dtype == jnp.int32]
    assert len(words) == 7 * packed.model.cfg.n_layers
    q, d = packed.model.blocks[0].attn.q_proj, packed.model.cfg.d_model
    assert q.codes[...].shape == (-(-d // 4), -(-d // 4))  # 4 codes a byte, 4 bytes a word: 2 bits a weight


def test_packed_decode_runs_the_w2a8_kernel(trained_run, monkeypatch):
    # decode steps (a few tokens) take kernels.w2a8_gemv; on this CPU in Pallas interpret mode, against the int8 path
    from bitnet_jax.infer import kernels
    from bitnet_jax.infer.generate import generate_tokens

    calls, compiled = [], kernels.w2a8_gemv

    def interpreted(*args, **kwargs):
        calls.append(args[0].shape)
        return compiled(*args, **kwargs, interpret=True)

    run = trained_run("recipe=bitnet_b158")
    want = generate_tokens(infer.load(run), [list(b"def f(x):")], 3)
    monkeypatch.setattr(kernels, "w2a8_gemv", interpreted)
    got = generate_tokens(infer.load(run, packed=True), [list(b"def f(x):")], 3)
    np.testing.assert_array_equal(got, want)
    assert calls and all(shape[0] == 1 for shape in calls)  # one token per decode-step GEMV


@pytest.mark.parametrize("recipe", ["bitnet", "bitnet_a48", variant("bitnet_b158", weight_groups=2)],
                         ids=["binary", "a48", "groups2"])
def test_packed_refuses_what_the_kernel_cannot_compute(recipe):
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64)
    with pytest.raises(UserError, match="cannot run on packed 2-bit weights") as err:
        to_integer(Transformer(cfg, recipe, rngs=nnx.Rngs(0)), packed=True)
    assert "\n" not in str(err.value)


def test_packed_siblings_compute_q_k_v_and_gate_up_in_one_product(monkeypatch):  # (llama: the same siblings)
    from bitnet_jax import recipes
    from bitnet_jax.config import RunConfig
    from bitnet_jax.infer import kernels
    from bitnet_jax.infer.generate import generate_tokens
    from bitnet_jax.infer.integer import InferenceModel, PackedSiblings

    cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=96, seq_len=32,
                      layout="hf_bitnet")
    recipe = recipes.get("bitnet_b158")

    def model(fuse):
        net = to_integer(Transformer(cfg, recipe, rngs=nnx.Rngs(4)), packed=True, fuse=fuse)
        return InferenceModel(RunConfig(recipe=recipe, model=cfg), net, 0, True)

    fused, separate = model(True), model(False)
    attn, mlp = fused.model.blocks[0].attn, fused.model.blocks[0].mlp
    assert isinstance(attn.q_proj, PackedSiblings) and attn.k_proj is None and attn.v_proj is None
    assert isinstance(mlp.gate_proj, PackedSiblings) and mlp.up_proj is None
    assert attn.q_proj.sizes == (64, 32, 32)  # q, then the grouped k and v
    np.testing.assert_array_equal(np.asarray(fused(TOKENS)), np.asarray(separate(TOKENS)))
    calls, gemv = [], kernels.w2a8_gemv  # (test_packed_decode_runs_the_w2a8_kernel runs the kernel itself)

    def counted(*args, **kwargs):
        calls.append(args[4])
        return gemv(*args, **kwargs)

    want = generate_tokens(separate, [list(b"x = 1")], 2)
    monkeypatch.setattr(kernels, "w2a8_gemv", counted)
    np.testing.assert_array_equal(generate_tokens(fused, [list(b"x = 1")], 2), want)
    assert sorted(set(calls)) == [64, 128, 192]  # o and down, q+k+v, gate+up: 4 launches a block, not 7
    assert len(calls) == 2 * 4 * cfg.n_layers  # traced once each: the 5-token prefill and the decode step


def test_faq_layout_keeps_its_layers_apart():
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, d_ff=64, layout="faq")
    net = to_integer(Transformer(cfg, "bitnet_b158", rngs=nnx.Rngs(0)), packed=True)
    assert isinstance(net.blocks[0].attn.k_proj, IntegerLinear)  # each has its own norm inside: nothing shared
