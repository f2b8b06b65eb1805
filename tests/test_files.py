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
