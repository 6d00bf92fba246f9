"""A real single-node Slurm for the tests: munged, slurmctld and slurmd started as root in a
private folder, found by clients through SLURM_CONF, stopped and removed afterwards.

Nothing system-wide is read or written: the configuration, munge key and socket, state, spool,
pid and log files all live in the folder. The settings that keep requeue tests quick
(cred_expire, sched_interval, KillWait) are explained next to them.
"""

import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PR_SET_PDEATHSIG = 1
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "mungekey")


class SlurmUnavailable(Exception):
    """Slurm cannot run here; the message says why (the tests skip with it)."""


def find_daemon(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")


def ensure_installed() -> None:
    """Install the Debian packages with apt-get when a program is missing (root only)."""
    if all(find_daemon(name) for name in DAEMONS):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SlurmUnavailable("Slurm is not installed and apt-get as root is not available")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(command[:2])} failed: {result.stderr[-300:]}")
    missing = [name for name in DAEMONS if not find_daemon(name)]
    if missing:
        raise SlurmUnavailable(f"installed Slurm lacks {', '.join(missing)}")


def stop_with_parent() -> None:
    """In the daemon, before exec: get SIGTERM when the test process dies, even by SIGKILL,
    so that no daemon outlives a killed test run (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(folder: Path, node: str, cpus: int, memory_mb: int) -> str:
    return f"""\
ClusterName=templatetests
# Job ids (and so the jobs' rendezvous ports) unlike those of another test cluster on the host.
FirstJobId={random.randint(1000, 15000)}
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again only once its credential expired (120 s by default).
AuthInfo=socket={folder}/munge.socket,cred_expire=5
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
# The default intervals delay a requeued job's rerun by ~20 s more.
SchedulerParameters=sched_interval=1,bf_interval=1
# TERM -> KILL grace for a cancelled, preempted or timed-out job.
KillWait=5
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=tests Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """Start with `start()`, stop with `stop()`; `env` is what a client command needs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.node = socket.gethostname().split(".")[0]
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
        self.daemons: list[subprocess.Popen] = []

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SlurmUnavailable("the Slurm daemons need root to start")
        ensure_installed()
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
        cpus = os.cpu_count() or 1
        (self.folder / "slurm.conf").write_text(slurm_conf(self.folder, self.node, cpus, memory_mb))
        key = self.folder / "munge.key"
        self.run([find_daemon("mungekey"), "--create", f"--keyfile={key}"])
        self.spawn(
            [
                find_daemon("munged"),
                "--foreground",
                "--force",
                f"--socket={self.folder}/munge.socket",
                f"--key-file={key}",
                f"--pid-file={self.folder}/munged.pid",
                f"--log-file={self.folder}/munged.log",
                f"--seed-file={self.folder}/munge.seed",
            ],
            ready=lambda: (self.folder / "munge.socket").exists(),
        )
        conf = str(self.folder / "slurm.conf")
        self.spawn([find_daemon("slurmctld"), "-D", "-i", "-f", conf], ready=self.controller_up)
        self.spawn([find_daemon("slurmd"), "-D", "-f", conf, "-N", self.node], ready=self.node_idle)

    def spawn(self, command: list[str], ready) -> None:
        log = open(self.folder / f"{Path(command[0]).name}.out", "w")
        self.daemons.append(
            subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=stop_with_parent,
            )
        )
        deadline = time.monotonic() + 30
        while not ready():
            if self.daemons[-1].poll() is not None or time.monotonic() > deadline:
                raise SlurmUnavailable(f"{Path(command[0]).name} did not start: {self.logs()}")
            time.sleep(0.1)

    def run(self, command: list[str], check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(command, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()}")
        return result

    def controller_up(self) -> bool:
        return self.run(["scontrol", "ping"], check=False).stdout.count("UP") > 0

    def node_idle(self) -> bool:
        state = self.run(["sinfo", "-h", "-n", self.node, "-o", "%T"], check=False).stdout
        return state.strip() == "idle"

    def logs(self) -> str:
        tails = []
        for path in sorted(self.folder.glob("*.log")) + sorted(self.folder.glob("*.out")):
            lines = path.read_text(errors="replace").splitlines()[-5:]
            tails.append(f"--- {path.name}\n" + "\n".join(lines))
        return "\n".join(tails)

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.terminate()
        for daemon in reversed(self.daemons):
            try:
                daemon.wait(timeout=10)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        self.daemons.clear()

    # Jobs

    def submit(self, script: Path, *arguments: str, cwd: Path, options=(), env=None) -> str:
        command = ["sbatch", "--parsable", *options, str(script), *arguments]
        result = subprocess.run(
            command, cwd=cwd, env={**self.env, **(env or {})}, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        """`scontrol show job` as a dict (JobState, RestartCnt, ExitCode, ...)."""
        text = self.run(["scontrol", "show", "job", "-o", job_id]).stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)

    def wait_for(self, job_id: str, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if predicate(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never {what}: {job}\n{self.logs()}")
            time.sleep(0.25)

    def wait_until_finished(self, job_id: str, timeout: float = 300) -> dict:
        return self.wait_for(
            job_id, lambda job: job["JobState"] in FINAL_STATES, timeout, "finished"
        )


FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
