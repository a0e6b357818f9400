"""The subcommands ``propensity compare`` and ``propensity store ls|gc|export`` (parsers the CLI mounts)."""

from __future__ import annotations

import argparse

import pytest

from propensity import compare, store_admin


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="propensity")
    sub = parser.add_subparsers(dest="command", required=True)
    compare.add_parser(sub)
    store_admin.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


def test_compare_command(two_experiments, tmp_path, capsys):
    assert _run(["compare", str(two_experiments.config_a), str(two_experiments.report_b),
                 "--control", "baseline", "--out", str(tmp_path / "c"), "--bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    assert "| tiny_b | strict | em_medicine |" in out
    assert f"compare.html: {tmp_path / 'c' / 'compare.html'}" in out


def test_store_commands(two_experiments, tmp_path, capsys):
    assert _run(["store", "ls", str(two_experiments.store)]) == 0
    assert "unused: 0 B" in capsys.readouterr().out
    assert _run(["store", "gc", str(two_experiments.store), "--dry-run"]) == 0
    assert capsys.readouterr().out.strip() == "0 artifact(s); would free 0 B"
    variant = next(p for p in two_experiments.store.glob("variant/baseline-*") if p.suffix != ".lock")
    assert _run(["store", "export", str(variant), str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "kind: files" in out and "format: parquet" in out and str(tmp_path / "ds" / "data") in out


def test_store_requires_a_subcommand():
    with pytest.raises(SystemExit):
        _run(["store"])
