"""Run files: every record the framework writes (run files, reports, caches) appears whole or not at all.

write_atomic (temporary file renamed into place, with the user's umask), summary.json and other JSON records,
metrics.jsonl (one JSON object per logged step), and the directory lock a run or sweep holds while it works.
train/, sweep/, scaling/ and eval/ all read and write through this module, so none of them imports another for it.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import tempfile
from pathlib import Path

from bitnet_jax.errors import UserError

_UMASK = os.umask(0o022)  # read once at import (os.umask is the only portable reader), then set straight back
os.umask(_UMASK)


def write_atomic(path: str | Path, content: str | bytes, *, replace: bool = True) -> None:
    """Write to a temporary file and move it into place, so readers never see a partial file. With replace=False an
    existing file is kept (the first of several concurrent writers wins)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; a record gets the mode any new file of the user gets
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clean(value):
    """JSON has no NaN/Inf: write them as null so every line stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, obj: dict) -> None:
    write_atomic(path, json.dumps({k: _clean(v) for k, v in obj.items()}, indent=2) + "\n")


def read_json(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_metrics(path: str | Path) -> list[dict]:
    """Every complete line of a metrics.jsonl (a torn last line from a killed writer is skipped)."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsWriter:
    """Appends one JSON object per line to metrics.jsonl, flushed at once so other processes can follow it."""

    def __init__(self, path: str | Path, keep_through_step: int | None = None):
        self.path = Path(path)
        if keep_through_step is not None:  # a resumed run: drop rows past the restored step, they will be redone
            rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= keep_through_step]
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        self._file = open(self.path, "a")

    def write(self, row: dict) -> None:
        self._file.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class DirectoryLock:
    """An exclusive lock on a directory (flock on a file in it), released when the holder exits, even by SIGKILL."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            raise UserError(f"{self.path.parent} is in use by {self.what} (pid {holder}); wait for it to end "
                            f"or use another directory") from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)

    @staticmethod
    def held(path: str | Path) -> bool:
        """Whether a live process holds the lock at `path` (the lock dies with its holder, even by SIGKILL)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
