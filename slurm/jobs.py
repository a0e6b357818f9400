"""Batch job specifications and their sbatch scripts, rendered so that no config value can inject shell.

Every value that comes from a config is quoted: values in the shell body with :func:`shlex.quote`, values on
``#SBATCH`` lines with sbatch's own quoting (double quotes, backslash escapes; sbatch does no shell
expansion there, but it does split on spaces and treats ``#`` as a comment). Newlines and other control
characters are rejected in every ``#SBATCH`` value. Setup lines (``module load x``,
``source venv/bin/activate``) are split into words with :func:`shlex.split` and each word is quoted again,
so ``;``, ``|``, ``$(...)`` and backticks in them stay literal words: setup lines are commands, not shell
programs.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import ConfigError

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}\Z|\d+-\d+\Z")
_MEM = re.compile(r"\d+[KMGT]?\Z")
_JOB_ID = re.compile(r"\d+(_\d+)?\Z")
_ARRAY = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*(%[1-9]\d*)?\Z")


@dataclass(frozen=True)
class Resources:
    """What one batch job asks the scheduler for; ``None`` leaves the cluster default."""

    partition: str | None = None
    """Partition (``--partition``)."""
    account: str | None = None
    """Account to charge (``--account``)."""
    qos: str | None = None
    """Quality of service (``--qos``)."""
    time: str | None = None
    """Wall-clock limit in a Slurm time format: ``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``."""
    cpus: int | None = None
    """CPUs per task (``--cpus-per-task``)."""
    mem: str | None = None
    """Memory per node, e.g. ``16G`` or ``4000`` (MB) (``--mem``)."""
    gpus: int | None = None
    """GPUs per node, requested as ``--gres=gpu:N``."""
    nodes: int | None = None
    """Number of nodes (``--nodes``)."""
    extra_sbatch: Sequence[str] = ()
    """Further sbatch options, one per entry, e.g. ``--constraint=a100`` or ``--exclusive``."""

    def __post_init__(self) -> None:
        for name in ("partition", "account", "qos"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"resources.{name}: expected a non-empty string, got {value!r}")
        if self.time is not None and not (isinstance(self.time, str) and _TIME.match(self.time)):
            raise ConfigError(f"resources.time: {self.time!r} is not a Slurm time "
                              "(allowed: MM, HH:MM:SS, D-HH, D-HH:MM:SS)")
        if self.mem is not None and not (isinstance(self.mem, str) and _MEM.match(self.mem)):
            raise ConfigError(f"resources.mem: {self.mem!r} is not a Slurm size (allowed: digits + K/M/G/T)")
        for name, low in (("cpus", 1), ("gpus", 0), ("nodes", 1)):
            value = getattr(self, name)
            if value is not None and (type(value) is not int or value < low):
                raise ConfigError(f"resources.{name}: expected an integer >= {low}, got {value!r}")
        extra = self.extra_sbatch
        if isinstance(extra, str) or not all(isinstance(e, str) for e in extra):
            raise ConfigError(f"resources.extra_sbatch: expected a list of option strings, got {extra!r}")
        object.__setattr__(self, "extra_sbatch", tuple(self.extra_sbatch))
        for option in self.extra_sbatch:
            if not option.startswith("-"):
                raise ConfigError(f"resources.extra_sbatch: {option!r} is not an sbatch option "
                                  "(must start with '-')")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        """Build from config data; unknown keys are an error that lists the allowed ones."""
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"resources: unknown key(s) {unknown}; allowed: {allowed}")
        kwargs: dict[str, Any] = dict(data)
        return cls(**kwargs)

    def sbatch_options(self) -> list[str]:
        """The options as ``--key=value`` strings (unquoted; :func:`render_sbatch` quotes them)."""
        opts = [f"--{flag}={value}" for flag, value in (
            ("partition", self.partition), ("account", self.account), ("qos", self.qos), ("time", self.time),
            ("nodes", self.nodes), ("cpus-per-task", self.cpus), ("mem", self.mem)) if value is not None]
        if self.gpus:
            opts.append(f"--gres=gpu:{self.gpus}")
        return opts + list(self.extra_sbatch)


@dataclass(frozen=True)
class TorchRun:
    """``srun`` one ``torchrun`` per node, rendezvous on the job's first node (c10d)."""

    nproc_per_node: int = 1
    """Processes per node (one per GPU)."""
    port: int = 29500
    """Rendezvous port on the first node."""
    executable: str = "torchrun"
    """The torchrun program (e.g. ``<venv>/bin/torchrun``)."""

    def __post_init__(self) -> None:
        for name, low, high in (("nproc_per_node", 1, 1024), ("port", 1, 65535)):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise ConfigError(f"torchrun.{name}: expected an integer in {low}..{high}, got {value!r}")
        if not isinstance(self.executable, str) or not self.executable or "\0" in self.executable:
            raise ConfigError(f"torchrun.executable: expected a program path, got {self.executable!r}")

    def lines(self, command: Sequence[str]) -> list[str]:
        """Shell lines starting ``command`` (argv, run with ``--no-python``) under torchrun on every node."""
        return [
            'first_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
            + shlex.join([self.executable, "--nproc_per_node", str(self.nproc_per_node)])
            + ' --nnodes "$SLURM_NNODES" --rdzv_id "$SLURM_JOB_ID"'
            + f' --rdzv_backend c10d --rdzv_endpoint "$first_node:{self.port}" --no-python '
            + shlex.join(command),
        ]


@dataclass(frozen=True)
class JobSpec:
    """One batch job of a graph: a command, the jobs it needs first (by name) and its resources."""

    name: str
    """Unique name in the graph; also the Slurm job name."""
    command: Sequence[str]
    """The program and its arguments (argv, never a shell string); run with ``exec``."""
    dependencies: Sequence[str] = ()
    """Names of jobs that must complete successfully first (``afterok``)."""
    resources: Resources = field(default_factory=Resources)
    setup: Sequence[str] = ()
    """Commands run before ``command``, e.g. ``module load cuda`` or ``source /venv/bin/activate``."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables exported before ``setup``."""
    log_dir: Path = Path("slurm-logs")
    """Folder for ``<name>-<jobid>.out`` (stdout and stderr); created at submit time."""
    workdir: Path | None = None
    """Working directory of the job (``--chdir``); default: where sbatch runs."""
    requeue: bool = False
    """Allow Slurm to requeue the job (node failure, preemption, ``scontrol requeue``)."""
    requeue_before_timeout: int | None = None
    """With ``requeue``: seconds before the time limit at which Slurm sends USR1 to the batch shell
    (``--signal=B:USR1@N``), which then requeues the job (``scontrol requeue``) so it resumes from its
    latest checkpoint instead of being killed for good. ``None``: no signal."""
    torchrun: TorchRun | None = None
    """Launch ``command`` on every node with ``srun`` + ``torchrun`` (multi-node / multi-GPU training)."""
    array: str | None = None
    """Submit as a job array (``--array``): task indices and an optional throttle, e.g. ``0-7%2`` (eight
    tasks, at most two at once) or ``1,3%2``. Each task sees ``SLURM_ARRAY_TASK_ID``; logs are
    ``<name>-<array id>_<task>.out``."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"job name: expected a non-empty string, got {self.name!r}")
        for attr in ("command", "dependencies", "setup"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"job {self.name!r}: {attr} must be a list of strings, got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        if not self.command:
            raise ConfigError(f"job {self.name!r}: command is empty "
                              "(expected argv, e.g. ['propensity', 'stage', ...])")
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key) or not isinstance(value, str):
                raise ConfigError(f"job {self.name!r}: env {key!r}={value!r} is not allowed "
                                  "(names: letters, digits, '_', not starting with a digit; values: strings)")
        object.__setattr__(self, "log_dir", Path(self.log_dir))
        if self.workdir is not None:
            object.__setattr__(self, "workdir", Path(self.workdir))
        if self.requeue_before_timeout is not None and (
                type(self.requeue_before_timeout) is not int or not 1 <= self.requeue_before_timeout <= 65535
                or not self.requeue):
            raise ConfigError(f"job {self.name!r}: requeue_before_timeout must be an integer in 1..65535 "
                              f"seconds and needs requeue=True, got {self.requeue_before_timeout!r} "
                              f"(requeue={self.requeue})")
        if self.array is not None and not (isinstance(self.array, str) and _ARRAY.match(self.array)):
            raise ConfigError(f"job {self.name!r}: array {self.array!r} is not a Slurm array spec "
                              "(allowed: indices and ranges with an optional throttle, e.g. 0-7%2 or 1,3%2)")
        if "\0" in "".join((self.name, *self.command, *self.setup, *self.env.values())):
            raise ConfigError(f"job {self.name!r}: NUL bytes are not allowed in names, commands or values")

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name (with a hash suffix when characters had to be replaced)."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._")[:60]
        if slug == self.name:
            return slug
        return f"{slug or 'job'}-{hashlib.sha256(self.name.encode()).hexdigest()[:8]}"

    @property
    def log_pattern(self) -> Path:
        """The ``--output`` path; ``%j`` becomes the job id (``%A_%a`` the array and task ids)."""
        return self.log_dir.absolute() / f"{self.slug}-{'%A_%a' if self.array else '%j'}.out"

    def log_file(self, job_id: str, task: int | None = None) -> Path:
        """The log Slurm writes for this job once it has id ``job_id`` (of array task ``task``)."""
        suffix = f"{job_id}_{task}" if self.array is not None and task is not None else job_id
        return self.log_dir.absolute() / f"{self.slug}-{suffix}.out"


def sbatch_quote(value: str, *, what: str) -> str:
    """Quote one ``#SBATCH`` argument for sbatch's own parser; reject newlines and control characters."""
    if _CONTROL.search(value):
        raise ConfigError(f"{what}: {value!r} contains a newline or control character, "
                          "which cannot appear on an #SBATCH line")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _setup_line(line: str, job: str) -> str:
    try:
        words = shlex.split(line, comments=False)
    except ValueError as exc:
        raise ConfigError(f"job {job!r}: setup line {line!r} cannot be split into words: {exc}") from exc
    if not words:
        raise ConfigError(f"job {job!r}: setup line {line!r} is empty")
    return shlex.join(words)


def render_sbatch(job: JobSpec, dependency_ids: Sequence[str] = ()) -> str:
    """The batch script for ``job``; ``dependency_ids`` (Slurm job ids) become ``afterok`` dependencies."""
    for job_id in dependency_ids:
        if not _JOB_ID.match(str(job_id)):
            raise ConfigError(f"job {job.name!r}: dependency id {job_id!r} is not a Slurm job id")
    log = str(job.log_dir.absolute()).replace("%", "%%") + "/" + job.log_pattern.name
    options = [f"--job-name={job.name}", f"--output={log}", *job.resources.sbatch_options()]
    if job.array is not None:
        options.append(f"--array={job.array}")
    if job.workdir is not None:
        options.append(f"--chdir={job.workdir.absolute()}")
    if job.requeue:
        options += ["--requeue", "--open-mode=append"]  # a requeued run appends to the same log
    if job.requeue_before_timeout is not None:
        options.append(f"--signal=B:USR1@{job.requeue_before_timeout}")
    options.append("--kill-on-invalid-dep=yes")
    if dependency_ids:
        options.append("--dependency=afterok:" + ":".join(str(i) for i in dependency_ids))
    lines = ["#!/bin/bash"]
    lines += [f"#SBATCH {sbatch_quote(opt, what=f'job {job.name!r} sbatch option')}" for opt in options]
    lines += ["", "set -eo pipefail"]
    if job.dependencies:
        lines.append("# depends on: " + shlex.join(job.dependencies).replace("\n", "\\n"))
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(job.env.items())]
    lines += [_setup_line(line, job.name) for line in job.setup]
    launch = job.torchrun.lines(job.command) if job.torchrun else [shlex.join(job.command)]
    if job.requeue_before_timeout is None:
        lines += launch[:-1] + ["exec " + launch[-1]]
    else:  # run in the background so the shell can take USR1 and requeue the job
        lines += ["trap 'echo \"USR1: time limit near, requeueing job $SLURM_JOB_ID\"; "
                  "scontrol requeue \"$SLURM_JOB_ID\"' USR1", *launch[:-1], launch[-1] + " &",
                  "child=$!", "status=0", 'wait "$child" || status=$?',
                  'while kill -0 "$child" 2>/dev/null; do status=0; wait "$child" || status=$?; done',
                  'exit "$status"']
    return "\n".join(lines) + "\n"
