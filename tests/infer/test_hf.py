"""Hugging Face export/import: transformers' own BitNetForCausalLM is the reference for the exported logits."""

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch", reason="the hf extra (torch CPU) is not installed")
transformers = pytest.importorskip("transformers", reason="the hf extra (transformers) is not installed")
pytest.importorskip("accelerate", reason="transformers needs accelerate to load packed BitNet checkpoints")

from bitnet_jax import cli, config, quant, train
from bitnet_jax.errors import CheckpointError, UserError
from bitnet_jax.infer import export_hf, import_hf, import_hf_run
from bitnet_jax.infer.hf import check_exportable

torch._dynamo.config.disable = True  # transformers' BitLinear is torch.compile'd: compiling on CPU takes minutes

TOKENS = np.array([list(b"BitNet b1.58 in transformers"), list(b"the same logits as in JAX!!!")], np.int64)
GQA = ("recipe=bitnet_b158", "model.layout=hf_bitnet", "model.n_kv_heads=1")
UNTIED = ("recipe=bitnet_b158", "model.layout=hf_bitnet", "model.tie_embeddings=false")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """exported(run overrides, packed, dtype) -> (run dir, export dir), cached for the module."""
    cache = {}

    def make(overrides=GQA, packed=True, dtype="float32"):
        key = (overrides, packed, dtype)
        if key not in cache:
            run = trained_run(*overrides)
            out = tmp_path_factory.mktemp("hf")
            export_hf(run, out, packed=packed, dtype=dtype)
            cache[key] = (run, out)
        return cache[key]

    return make


def ours(run) -> np.ndarray:
    return np.asarray(train.load_run(run).model(jnp.asarray(TOKENS)))  # the fake-quant training forward, float32


def theirs(out, dtype=torch.float32):
    model = transformers.BitNetForCausalLM.from_pretrained(out, dtype=dtype)
    with torch.no_grad():
        return model, model(torch.tensor(TOKENS)).logits.float().numpy()


@pytest.mark.parametrize("overrides", [GQA, UNTIED], ids=["gqa-tied", "untied"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "online"])
def test_transformers_logits_equal_ours(exported, overrides, packed):
    run, out = exported(overrides, packed)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "bitnet" and cfg["quantization_config"]["quant_method"] == "bitnet"
    assert 0 <= cfg["bos_token_id"] < cfg["vocab_size"] and 0 <= cfg["eos_token_id"] < cfg["vocab_size"]
    model, got = theirs(out)
    q_proj = model.model.layers[0].self_attn.q_proj
    if packed:  # transformers' packed BitLinear: uint8 weights (out/4, in), y / weight_scale
        assert type(q_proj).__name__ == "BitLinear" and q_proj.weight.dtype == torch.uint8
    else:  # AutoBitLinear quantising the float master weights at every forward
        assert type(q_proj).__name__ == "AutoBitLinear" and q_proj.online_quant
    assert type(model.lm_head).__name__ == "Linear"
    assert model.config.num_key_value_heads == (1 if overrides == GQA else 2)
    want = ours(run)
    print(f"max |logit diff| transformers vs ours ({'packed' if packed else 'online'}, {overrides[-1]}): "
          f"{np.abs(got - want).max():.2e} (logit range {np.abs(want).max():.2f})")
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_default_bfloat16_export_loads_close(exported):
    run, out = exported(GQA, True, "bfloat16")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    _, got = theirs(out)
    want = ours(run)
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())  # norms/embeddings rounded to bf16


def test_byte_tokenizer_is_exported(exported):
    _, out = exported()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = "héllo wörld\n\t ~€"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8")) and tok.decode(ids) == text


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "online"])
def test_export_import_round_trip(exported, packed):
    run, out = exported(GQA, packed)
    original = train.load_run(run).model
    imported = import_hf(out)
    m = imported.config.model
    assert (m.layout, m.n_kv_heads, m.d_ff, m.tie_embeddings) == ("hf_bitnet", 1, 64, True)
    for name in ("q_proj", "k_proj", "o_proj"):
        a = getattr(original.blocks[1].attn, name).kernel[...]
        b = getattr(imported.model.blocks[1].attn, name).kernel[...]
        if packed:  # codes exactly, the scale to float32 rounding of mean|W|
            (ca, sa), (cb, sb) = quant.ternary_codes(a), quant.ternary_codes(b)
            np.testing.assert_array_equal(ca, cb)
            np.testing.assert_allclose(sb, sa, rtol=2e-5)
        else:  # the master weights themselves
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    want = ours(run)
    got = np.asarray(imported.model(jnp.asarray(TOKENS)))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("stored", ["packed", "unpacked"])
def test_autobitlinear_offline_checkpoints_import(exported, tmp_path, stored):
    """transformers' other offline mode: AutoBitLinear multiplies by weight_scale = mean|W| (the reciprocal of
    BitLinear's) and reads ternary weights packed or as float codes."""
    from bitnet_jax.infer.pack import unpack_ternary
    from safetensors.numpy import load_file, save_file

    run, out = exported()
    target = tmp_path / stored
    shutil.copytree(out, target)
    tensors = load_file(str(target / "model.safetensors"))
    for name in [n for n in tensors if n.endswith(".weight_scale")]:
        tensors[name] = (1.0 / tensors[name]).astype(np.float32)
        weight = name.removesuffix("_scale")
        if stored == "unpacked":
            tensors[weight] = unpack_ternary(tensors[weight], 4 * tensors[weight].shape[0]).astype(np.float32)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((target / "config.json").read_text())
    cfg["quantization_config"].update(linear_class="autobitlinear", quantization_mode="offline")
    (target / "config.json").write_text(json.dumps(cfg))

    want = ours(run)
    _, reference = theirs(target)  # transformers reads this checkpoint as we do
    np.testing.assert_allclose(reference, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    got = np.asarray(import_hf(target).model(jnp.asarray(TOKENS)))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_import_cli_writes_a_run_that_evaluates_and_resumes(exported, tmp_path, capsys):
    run, out = exported()
    target = tmp_path / "imported"
    settings = ["train.steps=2", "train.batch_size=2", "train.warmup_steps=0", "train.eval_every=2",
                "train.eval_batches=1", "train.log_every=1", "data.max_bytes=60000", "tracking.progress=false"]
    assert cli.main(["import", str(out), str(target), *settings]) == 0
    assert "--resume" in capsys.readouterr().out
    loaded = train.load_run(target)
    assert loaded.step == 0 and loaded.config.train.steps == 2
    want = ours(run)
    np.testing.assert_allclose(np.asarray(loaded.model(jnp.asarray(TOKENS))), want, atol=1e-4 * np.abs(want).max())
    result = train.run(loaded.config, target, resume=True)
    assert result.status == "finished" and result.summary["step"] == 2
    with pytest.raises(CheckpointError, match="already holds a run"):
        import_hf_run(out, target)


def test_recipes_and_layouts_transformers_cannot_express():
    for overrides, match in [(["recipe=bitnet", "model.layout=hf_bitnet"], "cannot be expressed"),
                             (["recipe=bitnet_b158"], "needs model.layout=hf_bitnet"),
                             (["recipe=bitnet_b158", "model.layout=llama"], "needs model.layout=hf_bitnet"),
                             (["recipe=bitnet_a48"], "cannot be expressed"),
                             (["recipe=fp16", "model.layout=hf_bitnet"], "cannot be expressed"),
                             (["recipe=bitnet_b158", "model.layout=hf_bitnet", "recipe.quantize_lm_head=true",
                               "model.tie_embeddings=false"], "LM head")]:
        with pytest.raises(UserError, match=match):
            check_exportable(config.load(None, overrides))


def test_cli_export_errors_are_one_line(trained_run, exported, tmp_path, capsys):
    faq_run = trained_run("recipe=bitnet_b158")
    assert cli.main(["export", str(faq_run), str(tmp_path / "x"), "--format", "hf"]) == 2
    err = capsys.readouterr().err
    assert "hf_bitnet" in err and err.count("\n") == 1

    run, _ = exported()
    mismatched = tmp_path / "mismatched"
    shutil.copytree(run, mismatched)
    saved = yaml.safe_load((mismatched / "config.yaml").read_text())
    saved["model"]["d_ff"] = 96  # the checkpoint's shapes no longer match its config
    (mismatched / "config.yaml").write_text(yaml.safe_dump(saved))
    assert cli.main(["export", str(mismatched), str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and err.count("\n") == 1


def test_bad_hf_directories_are_one_line_errors(exported, tmp_path):
    _, out = exported()
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    weights = bad / "model.safetensors"
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 3])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        import_hf(bad)
    weights.write_bytes(blob)

    cfg = json.loads((bad / "config.json").read_text())
    for key, value, match in [("model_type", "llama", "model_type is 'llama'"),
                              ("intermediate_size", 96, "has shape"),
                              ("hidden_act", "silu", "hidden_act='silu' is not supported")]:
        (bad / "config.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(CheckpointError, match=match) as e:
            import_hf(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="no config.json"):
        import_hf(tmp_path)
