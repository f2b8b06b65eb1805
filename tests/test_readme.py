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


RUN_BLOCKS = """
import sys, traceback
for i, source in enumerate(sys.argv[1:]):
    try:
        exec(compile(source, f"<README python block {i}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"README python block {i} failed:\\n{source}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
"""


def test_python_blocks_run_in_order(tmp_path):
    """One process runs the blocks in README order, each in a fresh namespace (imports and compilations are
    shared, which keeps this test short; what one block defines is not visible to the next)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    has_hf = importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("torch") is not None
    # without the hf extra, the blocks that need torch / transformers are left out (tests/infer/test_hf.py covers them)
    sources = [s for s in blocks("python") if has_hf or not any(h in s for h in HF_ONLY)]
    assert len(sources) >= 8
    proc = subprocess.run([sys.executable, "-c", RUN_BLOCKS, *sources], cwd=tmp_path, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]


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
