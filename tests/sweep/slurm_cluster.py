"""A one-node SLURM cluster on localhost for the tests (Debian's slurm-wlm and munge; `.ci/run` installs them):
munged (if not running), slurmctld and slurmd on free ports with their own config and state directory, every SLURM
command of the test process pointed at it through SLURM_CONF. `start` returns None and a one-line reason where that
cannot be done (not installed, not root, the daemons do not come up)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

TOOLS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")

CONF = """ClusterName=bitnettest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
NodeName={host} CPUs={cpus} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    def __init__(self, directory: Path, conf: Path, started_munge: bool):
        self.directory, self.conf, self.started_munge = directory, conf, started_munge
        self.env = {**os.environ, "SLURM_CONF": str(conf)}

    def run(self, *cmd: str) -> str:
        return subprocess.run(cmd, env=self.env, check=True, capture_output=True, text=True, timeout=60).stdout

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True, timeout=60)
        for name in ("slurmd", "slurmctld"):
            pid = self.directory / f"{name}.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text()), 15)
                except (ProcessLookupError, ValueError):
                    pass
        if self.started_munge:
            subprocess.run(["pkill", "-x", "munged"], capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(directory: Path) -> tuple[Cluster | None, str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return None, f"SLURM is not installed ({', '.join(missing)} missing; .ci/run installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return None, "starting slurmd needs root"
    started_munge = False
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True)
        started_munge = True
        if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
            return None, "munged did not start (no /etc/munge/munge.key?)"
    host = socket.gethostname()
    for sub in ("state", "spool"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    conf = directory / "slurm.conf"
    conf.write_text(CONF.format(host=host, dir=directory, ctld_port=_free_port(), d_port=_free_port(),
                                cpus=os.cpu_count() or 1))
    cluster = Cluster(directory, conf, started_munge)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon], env=cluster.env, capture_output=True, timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = subprocess.run(["sinfo", "--noheader", "--format=%T"], env=cluster.env, capture_output=True,
                               text=True).stdout.strip()
        if state == "idle":
            return cluster, ""
        time.sleep(1)
    cluster.stop()
    log = (directory / "slurmctld.log").read_text()[-300:] if (directory / "slurmctld.log").exists() else ""
    return None, f"the test SLURM cluster did not come up (node state {state!r}); {log}"
