"""A real one-node Slurm on this machine for the tests: munged, slurmctld and slurmd from Debian's `slurm-wlm`
and `munge`, with a `slurm.conf` whose state, spool, logs and munge socket live in a temp dir.

`proctrack/linuxproc` and `task/none` need no cgroups; the daemons run as root (slurmd must, to start jobs).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")


def unavailable() -> str | None:
    """Why no Slurm can run here (None when it can)."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).exists()]
    if missing:
        return f"{', '.join(missing)} not found: apt-get install slurm-wlm munge (.ci/run does)"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs, and the tests run as another user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]  # the environment that points Slurm's commands at this cluster (SLURM_CONF)
    partition: str = "debug"

    def squeue(self) -> str:
        """The ids of the jobs queued or running, one a line (no state or reason column: those change)."""
        return subprocess.run(
            ["squeue", "--noheader", "--format=%i"], env=self.env, capture_output=True, text=True, check=False
        ).stdout

    def scontrol(self, *args: str) -> None:
        subprocess.run(["scontrol", *args], env=self.env, check=True, capture_output=True, timeout=60)

    def wait_idle(self, timeout_s: float = 300) -> None:
        """Until no job is queued or running."""
        deadline = time.monotonic() + timeout_s
        while self.squeue().strip():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Slurm jobs still queued after {timeout_s:.0f} s:\n{self.squeue()}")
            time.sleep(1)


def _memory_mb() -> int:
    """Most of this machine's memory (slurmd drains a node that has less than RealMemory); datatrove asks
    for 2 GB per CPU."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.9)
    return 4000


def _conf(root: Path, host: str) -> str:
    return f"""ClusterName=llmforgetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} RealMemory={_memory_mb()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def start() -> SlurmCluster:
    # Short and world-traversable: munged refuses a socket whose directories others cannot enter.
    root = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    root.chmod(0o755)
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    (root / "slurm.conf").write_text(_conf(root, host))
    env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf")}
    munged = [_binary("munged"), f"--key-file={key}", f"--socket={root}/munge.sock"]
    munged += [
        f"--pid-file={root}/munged.pid",
        f"--log-file={root}/munged.log",
        f"--seed-file={root}/munge.seed",
    ]
    cluster = SlurmCluster(root, env)
    try:
        for argv in (munged, [_binary("slurmctld"), "-c"], [_binary("slurmd")]):
            subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)  # each daemonizes
        _wait_for_idle_node(cluster)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _wait_for_idle_node(cluster: SlurmCluster, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], env=cluster.env, capture_output=True, text=True
        ).stdout.strip()
        if out == "idle":
            return
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"{p.name}: {p.read_text(errors='replace')[-2000:]}" for p in cluster.root.glob("*.log")
            )
            raise RuntimeError(f"the Slurm node is {out!r}, not idle, after {timeout_s:.0f} s\n{logs}")
        time.sleep(0.5)


def stop(cluster: SlurmCluster) -> None:
    """Cancel what is left (and wait for it to go), stop the three daemons (by their pid files) and remove
    the temp dir."""
    subprocess.run(["scancel", "--user", "root"], env=cluster.env, capture_output=True, check=False)
    try:
        cluster.wait_idle(timeout_s=30)
    except TimeoutError:
        pass  # the daemons are stopped anyway; slurmd ends its job steps as it goes
    for name in ("slurmd", "slurmctld", "munged"):
        pid_file = cluster.root / f"{name}.pid"
        if not pid_file.is_file():
            continue
        pid = int(pid_file.read_text().split()[0])
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            continue
        for _ in range(100):  # up to 10 s each
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    shutil.rmtree(cluster.root, ignore_errors=True)
