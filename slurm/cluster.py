"""A real one-node Slurm cluster (munged + slurmctld + slurmd) in a throw-away directory.

Used by the tests and by ``propensity slurm up|down`` so that the Slurm executor can be exercised on a
laptop or CI machine. Everything the cluster needs (munge key, slurm.conf, state, spool, logs, pid files)
lives under ``root``; clients only need the environment from :meth:`LocalCluster.env`.
Facts behind the settings are in the project's reference notes (``local-slurm.md``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from core.errors import ConfigError
from slurm.errors import SlurmError, SlurmTimeoutError

DAEMONS = ("munged", "slurmctld", "slurmd")
"""Daemons in start order (stopped in reverse)."""
MAX_SOCKET_PATH = 107
"""Longest unix socket path in bytes (``sun_path`` holds 108 including the terminating NUL)."""
READY_STATES = frozenset({"idle", "mixed", "allocated", "completing"})
"""Node states (from ``sinfo -h -o %T``) that mean the node accepts jobs."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie (PID 1 here reaps late, so ``kill -0`` is not enough)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state letter follows the parenthesised command name, which may itself contain spaces
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X", "")


def node_resources() -> tuple[int, int]:
    """CPUs and RealMemory (MB) of this machine as ``slurmd -C`` reports them."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    cpus = re.search(r"\bCPUs=(\d+)", out)
    mem = re.search(r"\bRealMemory=(\d+)", out)
    if not cpus or not mem:
        raise SlurmError(f"`slurmd -C` printed no CPUs=/RealMemory=: {out!r}")
    return int(cpus.group(1)), int(mem.group(1))


class LocalCluster:
    """A one-node cluster under ``root``; ``up()`` is idempotent and ``down()`` stops it by pid files."""

    def __init__(self, root: Path, *, cpus: int | None = None, ready_timeout: float = 30.0) -> None:
        self.root = Path(root).absolute()
        self.cpus = cpus
        """CPUs to declare (more than the machine has is allowed); default from ``slurmd -C``."""
        self.ready_timeout = ready_timeout

    # ---- paths ---------------------------------------------------------------------------------------
    @property
    def conf(self) -> Path:
        """The cluster's slurm.conf (what ``SLURM_CONF`` points at)."""
        return self.root / "slurm.conf"

    @property
    def jobcomp_log(self) -> Path:
        """One line per finished job (``JobCompType=jobcomp/filetxt``)."""
        return self.root / "log" / "jobcomp.log"

    def pid_file(self, daemon: str) -> Path:
        """Where ``daemon`` (one of :data:`DAEMONS`) writes its pid."""
        return self.root / "run" / f"{daemon}.pid"

    @classmethod
    def from_conf(cls, conf: str | os.PathLike[str]) -> LocalCluster | None:
        """The local cluster whose slurm.conf is ``conf`` (what ``SLURM_CONF`` holds), or None when that file
        is not one :meth:`render_conf` wrote (a site's cluster, a missing file)."""
        path = Path(conf).absolute()
        cluster = cls(path.parent)
        try:
            text = path.read_text()
        except OSError:
            return None
        ours = path.name == "slurm.conf" and "ClusterName=propensity" in text.splitlines()
        return cluster if ours and f"StateSaveLocation={cluster.root / 'state'}" in text else None

    def env(self) -> dict[str, str]:
        """Environment variables a client (sbatch, squeue, datatrove) needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    # ---- state ---------------------------------------------------------------------------------------
    def _pid(self, daemon: str) -> int | None:
        try:
            return int(self.pid_file(daemon).read_text().strip())
        except (OSError, ValueError):
            return None

    def is_up(self) -> bool:
        """True when all three daemons named in the pid files are alive (zombies count as dead)."""
        pids = [self._pid(d) for d in DAEMONS]
        return all(p is not None and pid_alive(p) for p in pids)

    def running(self) -> list[str]:
        """The daemons of :data:`DAEMONS` whose pid file names a live process (all three when up)."""
        return [d for d in DAEMONS if (pid := self._pid(d)) is not None and pid_alive(pid)]

    # ---- bring-up ------------------------------------------------------------------------------------
    def up(self) -> float:
        """Start the cluster (no-op when already up); return the seconds until the node was ready."""
        if self.is_up():
            return 0.0
        self._prepare_dirs()
        for tool in ("munged", "slurmctld", "slurmd", "sinfo", "sbatch"):
            if shutil.which(tool) is None:
                raise SlurmError(f"`{tool}` not found on PATH: install the Debian packages "
                                 "slurmctld slurmd slurm-client munge (scripts/slurm-ci-setup.sh)")
        self.down()  # leftovers of a half-started or crashed cluster
        t0 = time.monotonic()
        self._write_munge_key()
        if not self.conf.exists():
            self.conf.write_text(self.render_conf())
        env = {**os.environ, **self.env()}
        munge = self.root / "munge"
        self._start(["munged", f"--socket={munge / 'munge.socket.2'}", f"--key-file={munge / 'munge.key'}",
                     f"--pid-file={self.pid_file('munged')}",
                     f"--log-file={self.root / 'log' / 'munged.log'}",
                     f"--seed-file={munge / 'munged.seed'}"], env)
        self._start(["slurmctld", "-f", str(self.conf)], env)
        self._start(["slurmd", "-f", str(self.conf), "-N", "localhost"], env)
        self._wait_ready(env)
        return time.monotonic() - t0

    def _prepare_dirs(self) -> None:
        socket_path = self.root / "munge" / "munge.socket.2"
        if len(str(socket_path).encode()) > MAX_SOCKET_PATH:
            raise ConfigError(f"slurm cluster root {self.root}: the munge socket path {socket_path} is "
                              f"{len(str(socket_path).encode())} bytes; at most {MAX_SOCKET_PATH} fit in a "
                              "unix socket address: use a shorter root such as /tmp/propensity-slurm")
        for parent in self.root.parents:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise ConfigError(f"slurm cluster root {self.root}: parent directory {parent} is not "
                                  "world-executable, so munged refuses its socket; use a directory such as "
                                  "/tmp/propensity-slurm (not under /root or pytest's tmp_path)")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for sub in ("munge", "state", "spool", "log", "run"):
            (self.root / sub).mkdir(exist_ok=True)
            os.chmod(self.root / sub, 0o755)

    def _write_munge_key(self) -> None:
        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(secrets.token_bytes(1024))
        os.chmod(key, 0o400)

    def render_conf(self) -> str:
        """The slurm.conf for this root: root daemons, fast scheduling, no accounting, jobcomp file."""
        cpus, mem = node_resources()
        cpus = self.cpus or cpus
        r = self.root
        lines = [
            "ClusterName=propensity",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge' / 'munge.socket.2'},cred_expire=10",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={self.pid_file('slurmctld')}",
            f"SlurmdPidFile={self.pid_file('slurmd')}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp_log}",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            f"DefMemPerCPU={max(1, mem // cpus)}",
            "SchedulerParameters=sched_interval=1,bf_interval=1,batch_sched_delay=0,sched_min_interval=0",
            "DependencyParameters=kill_invalid_depend",
            "MinJobAge=3600",
            "EnforcePartLimits=ALL",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            "MailProg=/bin/true",
            "KillWait=2",
            "MpiDefault=none",
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN",
            "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def _start(self, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise SlurmError(f"`{' '.join(argv)}` exited {proc.returncode}: {proc.stderr.strip()} "
                             f"(logs in {self.root / 'log'})")

    def _wait_ready(self, env: dict[str, str]) -> None:
        deadline = time.monotonic() + self.ready_timeout
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
            state = proc.stdout.strip() or proc.stderr.strip()
            if state.rstrip("*~#") in READY_STATES:
                return
            time.sleep(0.1)
        raise SlurmTimeoutError(f"local slurm node not ready after {self.ready_timeout:.0f} s "
                                f"(last `sinfo -h -o %T`: {state!r}); logs in {self.root / 'log'}")

    # ---- teardown ------------------------------------------------------------------------------------
    def down(self, timeout: float = 10.0) -> None:
        """Cancel the cluster's jobs, then stop the daemons named in the pid files (SIGTERM, then SIGKILL
        after ``timeout``).

        Jobs are cancelled first because stopping slurmd does not stop them: their ``slurmstepd`` and the
        job's processes would keep running (and ignore SIGTERM) with no daemon left to end them.
        """
        if self.is_up():
            self._cancel_all_jobs(timeout)
        for daemon in reversed(DAEMONS):
            pid = self._pid(daemon)
            if pid is not None and pid_alive(pid):
                _stop(pid, timeout)
            self.pid_file(daemon).unlink(missing_ok=True)
        # slurmd leaves job step sockets behind; a stale munge socket blocks the next munged
        (self.root / "munge" / "munge.socket.2").unlink(missing_ok=True)


    def _cancel_all_jobs(self, timeout: float) -> None:
        """``scancel`` every job of this (throw-away) cluster and wait until none is left running."""
        env = {**os.environ, **self.env()}

        def job_ids() -> list[str]:
            proc = subprocess.run(["squeue", "-h", "-o", "%A"], env=env, capture_output=True, text=True,
                                  timeout=30)
            return proc.stdout.split() if proc.returncode == 0 else []

        ids = job_ids()
        if not ids:
            return
        subprocess.run(["scancel", *ids], env=env, capture_output=True, timeout=30)
        deadline = time.monotonic() + timeout
        while job_ids() and time.monotonic() < deadline:  # CANCELLED jobs leave squeue once they are dead
            time.sleep(0.2)


def _stop(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
