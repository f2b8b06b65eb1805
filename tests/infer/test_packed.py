"""Packed checkpoints: file contents against float64 numpy quantisers, round trip of the forward, memory report
against the closed form, bad files."""

import json
import math

import jax.numpy as jnp
import numpy as np
import pytest

from bitnet_jax import cli, quant, recipes
from bitnet_jax.errors import CheckpointError, UserError
from bitnet_jax.infer import load_packed, save_packed
from bitnet_jax.infer.packed import check_packable, master_from_codes
from bitnet_jax.train import load_run
from safetensors import safe_open
from safetensors.numpy import save_file

TOKENS = np.array([list(b"packed weights, exact codes!"), list(b"and scales to float rounding")], np.int32)


def reference_ternary(w):
    """REFERENCE.md section 1 in float64: codes clip(round(W / mean|W|), -1, 1) of the torch-layout weight."""
    w = np.asarray(w, np.float64)
    scale = max(np.abs(w).mean(), 1e-5)
    return np.clip(np.round(w / scale), -1, 1).T, scale


def reference_unpack(packed, out, per_byte):
    bits = 8 // per_byte
    rows = packed.shape[0]
    w = np.zeros((per_byte * rows, packed.shape[1]), np.int64)
    for i in range(per_byte):
        v = (packed.astype(np.int64) >> (bits * i)) & ((1 << bits) - 1)
        w[i * rows:(i + 1) * rows] = v - 1 if per_byte == 4 else 2 * v - 1
    return w[:out]


@pytest.fixture
def b158_packed(trained_run, tmp_path):
    run = trained_run("recipe=bitnet_b158")
    path = tmp_path / "model.safetensors"
    report = save_packed(run, path)
    return run, path, report


def test_file_holds_hf_layout_codes_and_absmean_scales(b158_packed):
    run, path, _ = b158_packed
    kernel = np.asarray(load_run(run).model.blocks[1].mlp.gate_proj.kernel[...])  # (in 32, out 64)
    codes, scale = reference_ternary(kernel)
    with safe_open(str(path), "np") as f:
        packed = f.get_tensor("blocks.1.mlp.gate_proj.kernel.codes")
        stored_scale = f.get_tensor("blocks.1.mlp.gate_proj.kernel.scale")
        assert "embed.embedding" in f.keys() and f.get_tensor("embed.embedding").dtype == np.float32
    assert packed.dtype == np.uint8 and packed.shape == (64 // 4, 32)
    np.testing.assert_array_equal(reference_unpack(packed, 64, 4), codes)
    np.testing.assert_allclose(stored_scale, [scale], rtol=1e-6)


def test_packed_round_trip_gives_the_same_codes_and_logits(b158_packed):
    run, path, _ = b158_packed
    original = load_run(run)
    loaded = load_packed(path)
    assert loaded.config == original.config and loaded.step == original.step
    for a, b in [(original.model.blocks[0].attn.q_proj, loaded.model.blocks[0].attn.q_proj),
                 (original.model.blocks[1].mlp.down_proj, loaded.model.blocks[1].mlp.down_proj)]:
        ca, sa = quant.ternary_codes(a.kernel[...])
        cb, sb = quant.ternary_codes(b.kernel[...])
        np.testing.assert_array_equal(ca, cb)
        np.testing.assert_allclose(sb, sa, rtol=2e-5)  # float32 mean|W| over 1-2K entries: ~1e-5 relative
    want = np.asarray(original.model(jnp.asarray(TOKENS)))
    got = np.asarray(loaded.model(jnp.asarray(TOKENS)))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_binary_run_packs_8_per_byte_and_round_trips(trained_run, tmp_path):
    run = trained_run("recipe=bitnet")
    path = tmp_path / "binary.safetensors"
    report = save_packed(run, path)
    original = load_run(run).model
    kernel = np.asarray(original.blocks[0].attn.k_proj.kernel[...], np.float64)
    with safe_open(str(path), "np") as f:
        packed = f.get_tensor("blocks.0.attn.k_proj.kernel.codes")
    want = np.where(kernel - kernel.mean() > 0, 1, -1).T  # Sign(W - mean W), Sign(0) = -1
    assert packed.shape == (math.ceil(32 / 8), 32)
    np.testing.assert_array_equal(reference_unpack(packed, 32, 8), want)
    assert report.linear_packed_bytes == 2 * (4 * 32 * 32 + 3 * 32 * 64) // 8 + 2 * 7 * 4
    want_logits = np.asarray(original(jnp.asarray(TOKENS)))
    got = np.asarray(load_packed(path).model(jnp.asarray(TOKENS)))
    # beta = mean|W| comes back to float32 rounding; an activation that sat on a rounding boundary may move one
    # int8 step (per-tensor absmax here), so a few logits move by ~1e-4 of their range
    np.testing.assert_allclose(got, want_logits, rtol=1e-4, atol=1e-3 * np.abs(want_logits).max())


def test_memory_report_matches_the_closed_form(b158_packed):
    _, _, report = b158_packed
    d, f, layers, vocab = 32, 64, 2, 256  # conftest TINY, faq layout (a norm inside each of the 7 BitLinears)
    weights = layers * (4 * d * d + 3 * d * f)
    assert report.linear_weights == weights
    assert report.linear_packed_bytes == weights // 4 + layers * 7 * 4  # 2 bits each + one float32 scale per layer
    assert report.linear_bf16_bytes == 2 * weights
    norms = layers * (5 * d + d + f) + d
    assert report.total_params == weights + vocab * d + norms
    assert report.model_packed_bytes == weights // 4 + layers * 7 * 4 + 2 * (vocab * d + norms)
    assert 7.5 < report.linear_bf16_bytes / report.linear_packed_bytes < 8


@pytest.mark.parametrize("groups", [1, 2])
def test_master_weights_fake_quantise_back_to_codes_times_scale(groups):
    rng = np.random.default_rng(groups)
    codes = rng.integers(-1, 2, (8, 6)).astype(np.int8)
    if groups == 2:
        codes[:4] = 0  # an all-zero group stays zero
    scale = rng.uniform(0.01, 0.1, groups).astype(np.float32)
    kernel = master_from_codes(codes, scale, "ternary_absmean")
    got = np.asarray(quant.ternary_absmean(jnp.asarray(kernel), groups=groups, axis=-1))
    want = (codes.astype(np.float64) * np.repeat(scale, 8 // groups)[:, None]).T
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)

    signs = np.where(rng.random((8, 6)) > 0.5, 1, -1).astype(np.int8)
    got = np.asarray(quant.binary_sign(jnp.asarray(master_from_codes(signs, scale, "binary_sign")), groups=groups))
    np.testing.assert_allclose(got, (signs * np.repeat(scale, 8 // groups)[:, None]).T, rtol=1e-6)


def test_bad_files_are_one_line_errors(b158_packed, tmp_path):
    _, path, _ = b158_packed
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    for bad in (truncated, garbage, tmp_path / "missing.safetensors"):
        with pytest.raises(CheckpointError, match=str(bad.name)) as e:
            load_packed(bad)
        assert "\n" not in str(e.value)

    with safe_open(str(path), "np") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    config = json.loads(meta["config"])
    config["model"]["d_ff"] = 96  # a config whose shapes the tensors do not have
    wrong = tmp_path / "wrong_shape.safetensors"
    save_file(tensors, str(wrong), metadata={**meta, "config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=r"mlp\.\w+_proj holds codes .* disagree"):
        load_packed(wrong)
    save_file(tensors, str(wrong), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a bitnet-jax packed checkpoint"):
        load_packed(wrong)
    with pytest.raises(UserError, match="packing needs"):
        check_packable(recipes.get("bitnet_b158_median"))


def test_cli_export_packed_prints_the_memory_report(trained_run, tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert cli.main(["export", str(trained_run("recipe=bitnet_b158")), str(out), "--format", "packed"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "linear layers: 20,480 weights" in printed and "whole model:" in printed
    assert cli.main(["export", str(tmp_path / "no_run"), str(out), "--format", "packed"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
