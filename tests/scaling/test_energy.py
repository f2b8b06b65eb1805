import pytest

from bitnet_jax.model import ModelConfig
from bitnet_jax.scaling.energy import inference_energy

# BitNet 2023's 6.7B model: d 4096, 32 layers, 32 heads, FFN 4d (two matrices). A GLU of width 8d/3 has the same
# multiply count per token (3 d 8d/3 = 8 d^2), which is all the energy model sees.
SIX_B = ModelConfig(vocab_size=16000, d_model=4096, n_layers=32, n_heads=32, d_ff=10923, seq_len=512)




def test_fp16_entries_of_bitnet_table1_for_6_7b():
    # Table 1, FP16 6.7B at 7nm: MUL 1.14 J, ADD 0.54 J for 512 tokens. Recompute from the architecture:
    e = inference_energy(SIX_B, "fp16", node="7nm")
    head_mul = 4096 * 16000 * 0.34e-12  # the table counts the Transformer layers, not the LM head
    head_add = 4095 * 16000 * 0.16e-12
    assert (e["mul"] - head_mul) * 512 == pytest.approx(1.14, rel=0.03)
    assert (e["add"] - head_add) * 512 == pytest.approx(0.54, rel=0.03)


def test_closed_form_per_token():
    cfg = ModelConfig(vocab_size=100, d_model=8, n_layers=1, n_heads=2, d_ff=16, seq_len=4)
    linear = 8 * 8 * 4 + 8 * 16 * 3  # q k v o + gate up down, n*p each
    linear_adds = 7 * 8 * 4 + 7 * 16 * 2 + 15 * 8
    head = 8 * 100
    attn_mul, attn_add = 2 * 4 * 8, 2 * 3 * 8
    e = inference_energy(cfg, "fp16", node="45nm")
    assert e["mul"] == pytest.approx((linear + head + attn_mul) * 1.1e-12)
    assert e["add"] == pytest.approx((linear_adds + 7 * 100 + attn_add) * 0.4e-12)
    q = inference_energy(cfg, "bitnet_b158", node="45nm")
    scale_muls = (8 + 8) * 4 + (8 + 16) * 2 + (16 + 8)
    assert q["add"] == pytest.approx(linear_adds * 0.03e-12 + (7 * 100 + attn_add) * 0.4e-12)
    assert q["mul"] == pytest.approx((scale_muls + head + attn_mul) * 1.1e-12)


def test_ternary_saves_the_b158_factor_on_linear_layers():
    # (FP16 add + mul) / INT8 add = (0.16 + 0.34) / 0.007 = 71.4 at 7nm (the b1.58 paper's figure)
    cfg = ModelConfig(vocab_size=2, d_model=8192, n_layers=2, n_heads=64, d_ff=28672, seq_len=1)  # ~no head
    fp = inference_energy(cfg, "fp16", include_attention=False)["total"]
    q = inference_energy(cfg, "bitnet_b158", include_attention=False)["total"]
    assert fp / q == pytest.approx(71.4, rel=0.05)


def test_unknown_node():
    with pytest.raises(ValueError, match="3nm"):
        inference_energy(SIX_B, "fp16", node="3nm")
