import pytest

from bitnet_jax import config
from bitnet_jax.errors import ConfigError


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_defaults_and_overrides():
    cfg = config.load(None, ["recipe=fp16", "model.d_model=64", "train.lr=1e-3", "tracking.tags=[a, b]"])
    assert cfg.recipe.name == "fp16" and cfg.model.d_model == 64
    assert cfg.train.lr == 1e-3 and isinstance(cfg.train.lr, float)  # YAML 1.1 reads 1e-3 as a string
    assert cfg.tracking.tags == ("a", "b")
    assert config.load().recipe.name == "bitnet_b158"


def test_yaml_file_round_trip(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("recipe: {name: bitnet_b158, act_bits: 4}\nmodel: {d_model: 64, n_heads: 2}\n"
                    "train: {steps: 7}\n")
    cfg = config.load(path, ["train.batch_size=3"])
    assert (cfg.recipe.name, cfg.recipe.act_bits, cfg.model.d_model, cfg.train.steps, cfg.train.batch_size) == \
        ("bitnet_b158", 4, 64, 7, 3)
    config.dump(cfg, tmp_path / "out.yaml")
    assert config.load(tmp_path / "out.yaml") == cfg


def test_recipe_override_on_a_mapping(tmp_path):
    cfg = config.load(None, ["recipe.name=bitnet", "recipe.ste=clipped"])
    assert (cfg.recipe.name, cfg.recipe.ste, cfg.recipe.weight_quant) == ("bitnet", "clipped", "binary_sign")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_model: [64\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    msg = one_line(e)
    assert str(path) in msg and "malformed YAML" in msg and "line" in msg


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  d_modl: 64\n")
    with pytest.raises(ConfigError) as e:
        config.load(path)
    msg = one_line(e)
    assert str(path) in msg and "model.d_modl" in msg and "d_model" in msg
    with pytest.raises(ConfigError, match="unknown section"):
        config.load(None, ["modle.d_model=3"])


def test_wrong_type():
    with pytest.raises(ConfigError) as e:
        config.load(None, ["train.steps=many"])
    assert "train.steps" in one_line(e) and "integer" in str(e.value)
    with pytest.raises(ConfigError, match="tracking.progress: expected true or false"):
        config.load(None, ["tracking.progress=3"])
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        config.load(None, ["train.lr=fast"])


@pytest.mark.parametrize("written, expected", [("1e4", 10_000), ("1.0e4", 10_000), ("1.0e+4", 10_000), ("3.0", 3)])
def test_integral_floats_are_integers(tmp_path, written, expected):
    assert config.load(None, [f"train.steps={written}"]).train.steps == expected
    path = tmp_path / "run.yaml"
    path.write_text(f"train:\n  steps: {written}\ndata:\n  max_bytes: {written}\n")
    cfg = config.load(path)
    assert cfg.train.steps == cfg.data.max_bytes == expected and type(cfg.train.steps) is int


@pytest.mark.parametrize("written", ["1.5", "1e-3", "2.5e0", "1e999999999", "nan", ".inf"])
def test_non_integral_numbers_are_not_integers(written):
    with pytest.raises(ConfigError) as e:
        config.load(None, [f"train.steps={written}"])
    assert "train.steps: expected an integer" in one_line(e)


def test_tune_fraction_bounds():
    assert config.load(None, []).data.tune_fraction == 0.05
    assert config.load(None, ["data.tune_fraction=0"]).data.tune_fraction == 0.0
    with pytest.raises(ConfigError, match=r"data.tune_fraction=-0.1: must be in \[0, 1\)"):
        config.load(None, ["data.tune_fraction=-0.1"])
    with pytest.raises(ConfigError) as e:
        config.load(None, ["data.tune_fraction=0.6", "data.val_fraction=0.4"])
    assert "data.tune_fraction=0.6" in one_line(e) and "data.val_fraction=0.4" in str(e.value)


def test_impossible_values():
    with pytest.raises(ConfigError) as e:
        config.load(None, ["model.d_model=100", "model.n_heads=3"])
    assert "model.d_model=100" in one_line(e) and "n_heads" in str(e.value)
    with pytest.raises(ConfigError, match="train.steps"):
        config.load(None, ["train.steps=-5"])
    with pytest.raises(ConfigError, match="data.val_fraction"):
        config.load(None, ["data.val_fraction=1.5"])
    with pytest.raises(ConfigError, match="tracking.wandb"):
        config.load(None, ["tracking.wandb=maybe"])


def test_unknown_recipe():
    with pytest.raises(ConfigError) as e:
        config.load(None, ["recipe=bitnet_b2"])
    assert "bitnet_b2" in one_line(e) and "bitnet_b158" in str(e.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="section.key=value"):
        config.load(None, ["=3"])
