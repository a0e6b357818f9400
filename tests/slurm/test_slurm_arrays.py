"""Data stages in parts (what job-array tasks run) + a finishing run give the bytes and counts of one run.

No cluster here: ``Store.run_part`` is what each array task calls, ``Store.run`` what the finishing job
calls. The Slurm end-to-end run of the same thing is in test_slurm_graph_arrays.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import ConfigError, StageError
from core.stage import part_ranks
from core.store import StageSpec, Store
from propensity.config import load_config
from propensity.graph import build_graph
from propensity.slurm_exec import experiment, stage_jobs
from slurm.graph import array_spec, make_jobs, write_graph
from slurm.jobs import render_sbatch
from slurm.limits import ClusterLimits, check_request, gres_gpus

ROOT = Path(__file__).resolve().parents[2]
DATA = ("score", "variant", "tokenize")
VOLATILE = ("manifest.json", "logs", "usage", "ranks", "stage.log", "histogram.png")
"""Files that record how a run went (timings, logs, per-part records), not what it produced."""


def tiny_cfg(store: Path, *overrides: str):  # noqa: ANN201 - ExperimentConfig
    return load_config(ROOT / "configs" / "tiny.yaml", [f"store={store}", "source.synthetic.shards=4", *overrides])


def artifact_files(folder: Path) -> dict[str, bytes]:
    """Every file of an artifact except run records (see VOLATILE), by relative path."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(p in VOLATILE or p.startswith("stage.part") for p in rel.parts):
            out[str(rel)] = path.read_bytes()
    return out


def counts(result: dict) -> dict:
    """A stage result without its timings (``*_seconds``)."""
    return {k: v for k, v in result.items() if not k.endswith("_seconds")}


def test_part_ranks_cover_every_rank_once() -> None:
    for total in (0, 1, 3, 4, 7):
        for count in (1, 2, 4, 5):
            ranks = [r for i in range(count) for r in part_ranks(total, (i, count))]
            assert ranks == list(range(total))
    with pytest.raises(ValueError, match="part index 4 is not in 0..3"):
        part_ranks(4, (4, 4))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with the tiny experiment's source, classifier and tokenizer stages complete."""
    store_dir = tmp_path_factory.mktemp("arrays") / "whole"
    store = Store(store_dir)
    for spec in build_graph(tiny_cfg(store_dir)):
        if spec.stage in ("source", "classifier", "tokenizer"):
            store.run(spec, show_progress=False)
    return store_dir


def test_stages_run_in_parts_match_one_run(upstream: Path) -> None:
    parted_dir = upstream.parent / "parted"
    shutil.copytree(upstream, parted_dir)
    whole, parted = Store(upstream), Store(parted_dir)
    specs = [s for s in build_graph(tiny_cfg(upstream)) if s.stage in DATA]
    assert len(specs) == 7  # score, 3 variants (baseline, filter, tag), 3 tokenize
    for spec in specs:
        whole.run(spec, show_progress=False)
        for index in range(3):  # 3 parts over 4 ranks: uneven shares
            work = parted.run_part(spec, index, 3)
            assert not (work / ".complete").exists() and not parted.is_complete(spec)
        parted.run(spec, show_progress=False)
        a, b = whole.manifest(spec), parted.manifest(spec)
        assert counts(a["result"]) == counts(b["result"]), spec.key
        assert artifact_files(whole.path(spec.key)) == artifact_files(parted.path(spec.key)), spec.key
        usage = b["usage"]
        assert usage["parts"] == 3 and usage["cpu_seconds"] > 0 and usage["bytes_written"] > 0
        assert a["usage"]["peak_rss_mb"] > 0 and "parts" not in a["usage"]


def test_a_stage_that_cannot_run_in_parts_says_so(tmp_path: Path) -> None:
    spec = StageSpec("report", "x", "tests.slurm.test_slurm_arrays:_whole_only", {})
    with pytest.raises(StageError, match="does not run in parts"):
        Store(tmp_path).run_part(spec, 0, 2)


def _whole_only(ctx) -> dict:  # noqa: ANN001 - a stage implementation
    return {}


def test_array_jobs_and_finishing_job(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path / "store", "executor.slurm={score: {array_tasks: 8, array_throttle: 2, gpus: 1}}")
    exp = experiment(cfg)
    score = next(s for s in exp.specs if s.stage == "score")
    graph = write_graph(exp)
    parts, finish = make_jobs(exp, score, graph, ["classifier/x"])
    assert parts.array == "0-3%2"  # 4 shards: 4 parts, not 8
    assert parts.command[-4:] == ("part", str(graph), score.key, "4")
    assert finish.dependencies == ("tiny:classifier/x", parts.name) and finish.array is None
    script = render_sbatch(parts)
    assert '#SBATCH "--array=0-3%2"' in script and '#SBATCH "--gres=gpu:1"' in script
    assert f"{parts.slug}-%A_%a.out" in script
    # a part that finished in an earlier array is not submitted again
    usage = Store(cfg.store).path(score.key).with_name(Store(cfg.store).path(score.key).name + ".partial")
    (usage / "usage").mkdir(parents=True)
    for i in (0, 2):
        (usage / "usage" / f"part-{i}.json").write_text(json.dumps({"of": 4}))
    assert make_jobs(exp, score, graph, [])[0].array == "1,3%2"
    variant = next(s for s in exp.specs if s.stage == "variant")
    assert len(make_jobs(exp, variant, graph, [])) == 1  # array_tasks set for score only


def test_array_spec_compresses_runs() -> None:
    assert array_spec([0, 1, 2, 5, 7, 8], None) == "0-2,5,7-8"
    assert array_spec([3], 2) == "3%2"


def test_array_settings_only_for_data_stages(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path / "store", "executor.slurm={train: {array_tasks: 4}}")
    with pytest.raises(ConfigError, match=r"executor\.slurm\.train\.array_tasks/array_throttle: only the data"):
        stage_jobs(cfg, "train")
    cfg = tiny_cfg(tmp_path / "store", "executor.slurm={default: {array_tasks: 4}}")
    assert stage_jobs(cfg, "train").array_tasks == 1 and stage_jobs(cfg, "tokenize").array_tasks == 4


def test_cluster_limits_refuse_big_arrays_and_missing_gpus() -> None:
    limits = ClusterLimits(max_array_size=1001, gpus_by_partition={"debug": 0, "gpu": 8}, default_partition="debug")
    check_request(limits, "executor.slurm.score", array_tasks=1001)
    with pytest.raises(ConfigError, match=r"executor\.slurm\.score\.array_tasks: 1002 tasks .* MaxArraySize is 1001"):
        check_request(limits, "executor.slurm.score", array_tasks=1002)
    with pytest.raises(ConfigError, match=r"executor\.slurm\.score\.gpus: 1 GPU\(s\) per node asked, but no node "
                                          r"of partition debug has any .*debug: 0, gpu: 8"):
        check_request(limits, "executor.slurm.score", gpus=1)
    check_request(limits, "executor.slurm.score", gpus=8, partition="gpu")
    assert [gres_gpus(g) for g in ("(null)", "gpu:4", "gpu:a100:8(S:0-1)", "gpu:2,shard:8")] == [0, 4, 8, 2]
