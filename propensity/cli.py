"""The ``propensity`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from core.errors import PropensityError
from propensity import __version__

DESCRIPTION = """\
propensity: pretraining data interventions and generalization propensity evaluations.

An experiment config (YAML) names a source corpus, a classifier, data variants (baseline, filter by score,
tag with control tokens), a tokenizer, a model preset, a token budget shared by every variant, seeds and GPEs.
Every stage writes a content-addressed folder in the store; complete folders are reused, never redone.

  propensity plan configs/quickstart.yaml            # the stage graph, with reuse/run per stage
  propensity run configs/quickstart.yaml             # run what is missing, print the comparison table
  propensity run CONFIG --set train.tokens=500000    # dotted overrides, validated like the file
  propensity report runs/store/report/<name>-<hash>  # rebuild report.md, results.json and the plot
"""


STATUS_DESCRIPTION = """\
A table of the experiment's stages: store state, Slurm job id, job state, elapsed time, and the log tail of
failed jobs. Pass the same --set overrides as to `propensity run` (it prints this command with them).

exit status:
  0  every stage is complete
  1  not complete, but no job failed or was cancelled: jobs pending or running, or stages never submitted
  2  error (bad config, unreadable jobs.json)
  3  a job (or array part) of an incomplete stage failed: its log tail is printed; fix it, run again
  4  no job failed, but some were cancelled (`propensity cancel`, scancel, or their input was cancelled):
     `propensity run` submits them again
"""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment config (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value, e.g. --set train.tokens=500000 (repeatable); "
                        "--set '~KEY.PATH' removes a key of the file so its default applies")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="propensity", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"propensity {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run every incomplete stage, then print the report table")
    _add_config_args(p)
    p.add_argument("--executor", choices=["local", "slurm"], help="override executor.kind")
    p.add_argument("--workers", type=int, help="override executor.workers")
    p.add_argument("--dry-run", action="store_true", help="print the plan (slurm: write the sbatch scripts) only")
    _add_progress_arg(p)

    p = sub.add_parser("plan", help="print the stage graph with reuse/resume/run per stage, and the resolved config")
    _add_config_args(p)
    p.add_argument("--show-config", action="store_true", help="also print the resolved config")
    p.add_argument("--estimate", action="store_true", help="also print CPU-hours, GPU-hours, disk and wall time "
                   "per stage and in total, from throughputs measured in the store (or documented defaults)")
    p.add_argument("--corpus-tokens", type=float, default=None, metavar="N",
                   help="with --estimate: size the corpus at N tokens instead of the configured source")
    p.add_argument("--tokens-per-doc", type=float, default=None, metavar="N",
                   help="with --estimate: tokens per document (default: measured, else 1000)")

    p = sub.add_parser("report", help="rebuild report.md, results.json and the plot of a finished run")
    p.add_argument("path", help="a report folder (<store>/report/<name>-<hash>) or an experiment config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="config overrides when PATH is a config")

    p = sub.add_parser("stage", help="run one stage of an experiment (what Slurm jobs call)")
    _add_config_args(p)
    p.add_argument("key", help="stage key <stage>/<name>-<hash> or <stage>/<name>")
    _add_progress_arg(p)
    from propensity import compare as _compare
    from propensity import store_admin as _store_admin

    _compare.add_parser(sub)  # propensity compare PATH... [--control V|EXP/V] [--out DIR]
    from eval_gpe import cli as _gpe_cli

    _gpe_cli.add_parser(sub)  # propensity gpe list | show NAME|FILE | check NAME|FILE
    _store_admin.add_parser(sub)  # propensity store ls | gc | export

    p = sub.add_parser("status", help="a table of stages: store state, Slurm job id, job state, elapsed, failed logs",
                       description=STATUS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_config_args(p)

    p = sub.add_parser("cancel", help="cancel the Slurm jobs of an experiment that are still pending or running")
    _add_config_args(p)

    p = sub.add_parser("slurm", help="a local one-node Slurm cluster for trying things out: up | down | status",
                       add_help=False)
    p.add_argument("slurm_args", nargs=argparse.REMAINDER, help="arguments for `up`, `down` or `status`")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["slurm"]:  # the local-cluster helper has its own parser (and --help)
        from slurm.cli import main as slurm_main

        return slurm_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    for noisy in ("datatrove", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return COMMANDS[args.command](args)
    except PropensityError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are kept; rerun the same command to resume", file=sys.stderr)
        return 130


def _load(args: argparse.Namespace):
    from propensity.config import load_config

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "executor", None):
        cfg.executor.kind = args.executor
    if getattr(args, "workers", None):
        cfg.executor.workers = args.workers
    return cfg


def cmd_plan(args: argparse.Namespace) -> int:
    from core.store import Store
    from propensity.config import dump_config
    from propensity.preflight import check_inputs
    from propensity.runner import format_plan, plan

    cfg = _load(args)
    inputs = check_inputs(cfg)  # every file the config names, before any stage (ConfigError naming the field)
    store = Store(cfg.store)
    if args.show_config:
        print(dump_config(cfg))
    print(format_plan(plan(cfg, store), store))
    if inputs:
        print("\n".join(inputs))
    if args.estimate:
        from propensity.costs import estimate, format_estimate

        rows, how = estimate(cfg, store, corpus_tokens=args.corpus_tokens, tokens_per_doc=args.tokens_per_doc)
        print(format_estimate(cfg, rows, how))
    return 0


def _add_progress_arg(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` of the commands that run stages (``run``, ``stage``); read by ``_show_progress``."""
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (shown only when stderr is a terminal: in a log each redraw is a line)")


def _show_progress(args: argparse.Namespace) -> bool:
    """Bars unless ``--no-progress``, and only on a terminal: written to a log file (``make demo > log``, a Slurm
    job) every redraw becomes a line of its own, and the ``[n/N] run/done`` lines already say where a run is."""
    return not args.no_progress and sys.stderr.isatty()


def cmd_run(args: argparse.Namespace) -> int:
    from core.store import Store
    from propensity.report import print_table
    from propensity.runner import format_plan, plan, run_local

    cfg = _load(args)
    if cfg.executor.kind == "slurm" or args.dry_run:  # run_local checks the inputs itself
        from propensity.preflight import check_inputs

        check_inputs(cfg)
    if cfg.executor.kind == "slurm":
        from propensity.slurm_exec import run_slurm

        return run_slurm(cfg, dry_run=args.dry_run, follow=_status_command(args))
    if args.dry_run:
        store = Store(cfg.store)
        print(format_plan(plan(cfg, store), store))
        return 0
    report_dir = run_local(cfg, show_progress=_show_progress(args))
    print_table(report_dir)
    return 0


def _status_command(args: argparse.Namespace) -> str:
    """``propensity status CONFIG`` with the overrides of this ``run`` (``--workers`` as ``--set``: it is in
    the train stages' keys), shell-quoted to paste."""
    import shlex

    sets = [*args.overrides, *([f"executor.workers={args.workers}"] if args.workers else [])]
    return shlex.join(["propensity", "status", args.config, *(w for s in sets for w in ("--set", s))])


def cmd_report(args: argparse.Namespace) -> int:
    from propensity.report import print_table, rebuild

    path = Path(args.path)
    if path.is_file():
        from core.store import Store
        from propensity.config import load_config
        from propensity.graph import build_graph

        cfg = load_config(path, args.overrides)
        path = Store(cfg.store).path(build_graph(cfg)[-1].key)
    out = rebuild(path)
    print_table(out)
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    from core.store import Store
    from propensity.runner import find_spec

    cfg = _load(args)
    try:
        spec = find_spec(cfg, args.key)
    except KeyError as e:
        print(f"error: {e.args[0]} (did the code or config change since submission? run "
              "`propensity run CONFIG --executor slurm` again)", file=sys.stderr)
        return 2
    folder = Store(cfg.store).run(spec, workers=cfg.executor.workers, show_progress=_show_progress(args))
    print(folder)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from propensity.slurm_exec import status

    return status(_load(args))


def cmd_cancel(args: argparse.Namespace) -> int:
    from propensity.slurm_exec import cancel

    return cancel(_load(args))


def cmd_slurm(args: argparse.Namespace) -> int:
    from slurm.cli import main as slurm_main

    return slurm_main(args.slurm_args)


COMMANDS = {"run": cmd_run, "plan": cmd_plan, "report": cmd_report, "stage": cmd_stage, "status": cmd_status,
            "cancel": cmd_cancel, "slurm": cmd_slurm, "compare": lambda a: a.func(a), "store": lambda a: a.func(a),
            "gpe": lambda a: a.func(a)}

if __name__ == "__main__":
    sys.exit(main())
