"""Run files: written whole (atomic) and with the permissions any new file of the user gets (the umask)."""

import os
import stat
import subprocess
import sys

import pytest


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_records_get_the_users_umask(tmp_path, umask, mode):
    path = tmp_path / "summary.json"
    code = (f"import os; os.umask({umask}); from bitnet_jax.files import write_json; "
            f"write_json({str(path)!r}, {{'status': 'finished'}})")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode  # not mkstemp's 0600
    assert path.read_text().strip().startswith("{")


def test_the_quantisers_and_the_cli_load_light():
    """`import bitnet_jax.quant` needs jax alone (no orbax, TFDS, matplotlib); `bitnet-jax --help` not even jax."""
    heavy = ("orbax", "tensorflow_datasets", "matplotlib", "optax", "flax")
    code = ("import sys, bitnet_jax.quant; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    code = "import sys; from bitnet_jax.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass\nprint('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().endswith("False")
