"""`bitnet-jax bench generate` on the CPU smoke shape: the models, their tokens and the report."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from bitnet_jax import cli
from bitnet_jax.errors import UserError
from bitnet_jax.infer import bench_generate
from bitnet_jax.infer.generate import generate_tokens
from bitnet_jax.infer.integer import PackedSiblings


def test_bench_generate_cli_reports_every_model(tmp_path, capsys):
    out = tmp_path / "gen.json"
    assert cli.main(["bench", "generate", "--shape", "tiny", "--new-tokens", "5", "--prompt-len", "2",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["variants"]
    assert list(rows) == ["bf16", "int8", "packed", "packed_unfused", "packed_xla_quant"]
    for r in rows.values():
        assert 0 < r["decode_step_s"] < r["compile_s"] and r["tokens_per_s"] == pytest.approx(1 / r["decode_step_s"])
    assert rows["bf16"]["speedup_vs_bf16"] == 1.0
    for name in ("packed", "packed_unfused", "packed_xla_quant"):  # one ternary model, stored and multiplied 4 ways
        assert rows[name]["first_tokens"] == rows["int8"]["first_tokens"]
    assert "packed" in capsys.readouterr().out


def test_bench_models_store_what_they_claim():
    cfg = bench_generate.model_config("tiny", 16)
    bf16, packed = bench_generate.build("bf16", cfg), bench_generate.build("packed", cfg)
    assert {str(x.dtype) for x in jax.tree.leaves(nnx.state(bf16.model, nnx.Param))} == {"bfloat16"}
    qkv, o = packed.model.blocks[0].attn.q_proj, packed.model.blocks[0].attn.o_proj
    assert isinstance(qkv, PackedSiblings) and str(qkv.codes[...].dtype) == "int32"
    assert o.packed and str(o.codes[...].dtype) == "int32"
    prompts = np.random.default_rng(0).integers(0, 256, (2, 5)).tolist()
    assert generate_tokens(packed, prompts, 4).shape == (2, 4)


def test_bench_generate_bad_requests():
    with pytest.raises(UserError, match="unknown generate bench shape"):
        bench_generate.run("7b")
    with pytest.raises(UserError, match="variant 'fp32'"):
        bench_generate.run("tiny", variants=["fp32"])
    with pytest.raises(UserError, match=">= 4"):
        bench_generate.run("tiny", new_tokens=2)
