"""A process started by the sweep runner dies with it. Kept apart from the runner so that a child (and every
`bitnet-jax` command) can set this up before importing JAX."""

from __future__ import annotations

import ctypes
import os
import signal

PARENT_ENV = "BITNET_JAX_SWEEP_PARENT"


def follow_parent() -> None:
    """In a run started by the runner: be killed when the runner dies, however it dies (Linux PR_SET_PDEATHSIG).

    Set in the child itself rather than in a preexec_fn, since forking a multithreaded (JAX) process and running
    Python before exec can deadlock. If the runner died before this point, exit now.
    """
    parent = os.environ.get(PARENT_ENV)
    if parent is None:
        return
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):
        os._exit(1)
