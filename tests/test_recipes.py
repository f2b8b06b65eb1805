import pytest

from bitnet_jax import recipes
from bitnet_jax.errors import ConfigError


def test_registry_has_the_published_recipes():
    for name in ("fp16", "bitnet", "bitnet_b158", "bitnet_b158_median", "bitnet_a48"):
        assert recipes.get(name).name == name


def test_published_semantics():
    assert recipes.get("fp16").weight_quant == "none" and not recipes.get("fp16").quantized
    b = recipes.get("bitnet")
    assert (b.weight_quant, b.act_quant, b.act_bits, b.act_per_token) == ("binary_sign", "absmax", 8, False)
    t = recipes.get("bitnet_b158")
    assert (t.weight_quant, t.act_quant, t.act_bits, t.act_per_token) == ("ternary_absmean", "absmax", 8, True)
    assert t.lr_schedule == "two_stage" and t.weight_decay_stage2 == 0.0
    assert t.lr_stage2 / t.lr == pytest.approx(1e-3 / 1.5e-3)  # the paper's 700M ratio 1.5e-3 -> 1e-3
    assert recipes.get("bitnet_b158_median").weight_quant == "ternary_absmedian"
    a = recipes.get("bitnet_a48")
    assert a.act_for("in") == ("absmean", 4) and a.act_for("out") == ("absmax", 8) and a.o_proj_topk == 0.5
    for name in recipes.names():  # embeddings and LM head stay full precision by default
        assert not recipes.get(name).quantize_lm_head


def test_unknown_recipe_lists_the_available_ones():
    with pytest.raises(ConfigError) as e:
        recipes.get("bitnet_b157")
    msg = str(e.value)
    assert "bitnet_b157" in msg and all(n in msg for n in recipes.names()) and "\n" not in msg


def test_variant_and_validation():
    v = recipes.variant("bitnet_b158", act_bits=4, ste="clipped")
    assert (v.act_bits, v.ste, v.weight_quant) == (4, "clipped", "ternary_absmean")
    assert recipes.get("bitnet_b158").act_bits == 8  # the registered recipe is untouched
    with pytest.raises(ConfigError, match="act_bitz"):
        recipes.variant("bitnet_b158", act_bitz=4)
    with pytest.raises(ConfigError, match="weight_quant"):
        recipes.variant("fp16", weight_quant="ternary")
    with pytest.raises(ConfigError, match="act_bits"):
        recipes.variant("fp16", act_bits=1)
