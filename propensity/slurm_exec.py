"""The experiment's side of the Slurm executor: config -> built stages and per-kind job settings.

The executor itself lives in :mod:`slurm.graph` (submission, graph file, job arrays), :mod:`slurm.graph_status`
(status, wait, cancel) and :mod:`slurm.stage_job` (what each job runs); it knows only ``core`` and Slurm.
This module writes the resolved config into the store, builds the stage graph, turns ``executor.slurm``
into :class:`slurm.graph.StageJobs` per stage kind, counts the ranks of the data stages (the source's shard
count, known before anything runs) and hands the token-budget check to the executor.
"""

from __future__ import annotations

import difflib
import glob
import os
import sys
from pathlib import Path

import yaml

from core.errors import ConfigError
from core.store import Store, stable_hash
from propensity.config import ExperimentConfig, SlurmResources
from propensity.graph import STAGE_ORDER, build_graph
from slurm.graph import Experiment, StageJobs, submit
from slurm.graph_status import cancel as cancel_graph
from slurm.graph_status import status as graph_status
from slurm.jobs import Resources, TorchRun

ARRAY_STAGES = ("score", "variant", "tokenize")
"""Stage kinds that run in parts (one rank per input shard) when ``array_tasks > 1``."""


def resolved_config(cfg: ExperimentConfig) -> tuple[Path, str]:
    """``(path, text)`` of the resolved config (store made absolute): ``<store>/experiments/<experiment>-<hash>
    .yaml``, where :func:`write_config` writes it (a dry run keeps the text in its own folder instead)."""
    data = cfg.model_dump(mode="json")
    data["store"] = str(Store(cfg.store).root)
    path = Store(cfg.store).root / "experiments" / f"{cfg.experiment}-{stable_hash(data)}.yaml"
    return path, yaml.safe_dump(data, sort_keys=False)


def write_config(cfg: ExperimentConfig) -> Path:
    """Write the resolved config to ``<store>/experiments/<experiment>-<hash>.yaml`` (:func:`resolved_config`).

    The file name carries a hash of the content, so a job always reads the config it was submitted with;
    writing is atomic (tmp + rename) and rewriting identical content is harmless.
    """
    path, text = resolved_config(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def stage_resources(cfg: ExperimentConfig, stage: str) -> SlurmResources:
    """``executor.slurm['default']`` with the fields set in ``executor.slurm[stage]`` on top."""
    allowed = ["default", *STAGE_ORDER]
    for key in cfg.executor.slurm:
        if key not in allowed:
            hint = difflib.get_close_matches(key, allowed, n=1)
            did = f" did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(f"executor.slurm.{key}: unknown stage kind.{did} allowed: {', '.join(allowed)}")
    own = cfg.executor.slurm.get(stage)
    if own is not None and stage not in ARRAY_STAGES and {"array_tasks", "array_throttle"} & own.model_fields_set:
        raise ConfigError(f"executor.slurm.{stage}.array_tasks/array_throttle: only the data stages "
                          f"({', '.join(ARRAY_STAGES)}) run as job arrays")
    merged = cfg.executor.slurm.get("default", SlurmResources()).model_dump()
    if own is not None:
        merged.update(own.model_dump(include=own.model_fields_set))
    return SlurmResources.model_validate(merged)


def stage_jobs(cfg: ExperimentConfig, stage: str) -> StageJobs:
    """How stages of kind ``stage`` are submitted (resources, setup, array size; requeue for training)."""
    res = stage_resources(cfg, stage)
    train = stage == "train"
    torchrun = None
    if train and (res.nodes > 1 or res.gpus > 0):
        exe = Path(sys.executable).parent / "torchrun"
        torchrun = TorchRun(nproc_per_node=max(res.gpus, 1), executable=str(exe) if exe.is_file() else "torchrun")
    return StageJobs(
        resources=Resources(partition=res.partition, account=res.account, qos=res.qos, time=res.time,
                            cpus=res.cpus, mem=res.mem, gpus=res.gpus or None, nodes=res.nodes,
                            extra_sbatch=tuple(res.extra_sbatch)),
        setup=tuple(res.setup),
        array_tasks=res.array_tasks if stage in ARRAY_STAGES else 1,
        array_throttle=res.array_throttle if stage in ARRAY_STAGES else None,
        requeue=train, torchrun=torchrun,
        field=f"executor.slurm.{stage if stage in cfg.executor.slurm else 'default'}",
    )


def source_shards(cfg: ExperimentConfig) -> int | None:
    """The source's shard count before anything runs: the synthetic generator's setting or the files that
    ``source.paths`` matches now (None for a Hugging Face source, whose shards exist only once it ran)."""
    if cfg.source.kind == "synthetic":
        from synth.config import SyntheticSourceConfig

        return int(SyntheticSourceConfig.model_validate(cfg.source.synthetic).shards)
    if cfg.source.kind == "files":
        return sum(len(glob.glob(p)) if any(c in p for c in "*?[") else 1 for p in cfg.source.paths) or None
    return None


def experiment(cfg: ExperimentConfig, config_path: Path | None = None) -> Experiment:
    """The executor's view of ``cfg``: built stages, job settings per kind, ranks, the budget check."""
    from propensity.runner import check_budgets

    specs = build_graph(cfg)
    store = Store(cfg.store)
    shards = source_shards(cfg)

    def budget_check() -> None:  # when every tokenize stage feeding a train stage is complete
        trains = [s for s in specs if s.stage == "train" and not store.is_complete(s)]
        if trains and all(store.is_complete(s.inputs["tokenize"]) for s in trains):
            check_budgets(cfg, trains, store)

    return Experiment(
        name=cfg.experiment, store=store.root, specs=specs, workers=cfg.executor.workers,
        jobs={kind: stage_jobs(cfg, kind) for kind in STAGE_ORDER}, config_path=config_path,
        ranks={s.key: shards for s in specs if s.stage in ARRAY_STAGES and shards},
        budget_check=budget_check,
    )


def run_slurm(cfg: ExperimentConfig, dry_run: bool = False, follow: str | None = None) -> int:
    """Submit every incomplete stage of ``cfg`` (``--dry-run``: write the scripts only, and register nothing
    in ``<store>/experiments/``, which ``propensity store gc`` keeps); ``follow``: the status command to print."""
    if dry_run:
        path, text = resolved_config(cfg)
        return submit(experiment(cfg, path), dry_run=True, config_text=text)
    return submit(experiment(cfg, write_config(cfg)), follow=follow)


def status(cfg: ExperimentConfig) -> int:
    """``propensity status``: the table of stages, their jobs and array parts; 0 when all are complete."""
    return graph_status(experiment(cfg))


def cancel(cfg: ExperimentConfig) -> int:
    """``propensity cancel``: cancel the experiment's pending and running jobs."""
    return cancel_graph(experiment(cfg))
