"""The README's code works as written: its Python blocks run top to bottom in one empty directory (each in a process
of its own, as a reader pasting them would), every `bitnet-jax` command line in it parses, and every YAML run config
and sweep spec in it validates."""

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bitnet_jax import config, sweep
from bitnet_jax.cli import build_parser

README = Path(__file__).resolve().parents[1] / "README.md"
HF_ONLY = ("import torch", "import transformers")  # blocks that need the `hf` extra


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def test_python_blocks_run_in_order(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    has_hf = importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("torch") is not None
    ran = 0
    for i, source in enumerate(blocks("python")):
        if any(s in source for s in HF_ONLY) and not has_hf:
            continue  # the hf extra is not installed here (tests/infer/test_hf.py covers the same path when it is)
        proc = subprocess.run([sys.executable, "-c", source], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"README python block {i}:\n{source}\n{proc.stderr[-3000:]}"
        ran += 1
    assert ran >= 8


def commands() -> list[str]:
    """Every `bitnet-jax ...` command of the README's bash blocks (continuations joined, comments dropped)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("bitnet-jax "):
                found.append(line)
    return found


@pytest.mark.parametrize("line", commands())
def test_cli_lines_parse(line):
    argv = shlex.split(line)[1:]
    argv = [a for a in argv if not (a.startswith("[") or a.endswith("]") or a == "...")]  # usage placeholders
    build_parser().parse_args(argv)  # argparse exits (an error) on anything it does not know


def yaml_documents() -> list[dict]:
    return [doc for block in blocks("yaml") if isinstance(doc := yaml.safe_load(block), dict)]


@pytest.mark.parametrize("doc", yaml_documents(), ids=lambda d: ",".join(d)[:40])
def test_yaml_blocks_validate(doc, tmp_path):
    if "name" in doc:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(doc))
        sweep.load(path)
    elif set(doc) <= {"recipe", *config.SECTIONS}:
        config.from_dict(doc, "README")
    else:
        assert set(doc) <= {"eval"}, f"a YAML block of unknown kind: {sorted(doc)}"
        sweep.spec.EvalSpec(**doc["eval"])
