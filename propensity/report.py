"""The comparison report: one table (variant x docs, tokens, held-out loss, propensity before/after, change,
CI), ``report.md``, ``results.json`` and a PNG plot, built from the eval, variant and train artifacts.

Several seeds: the summary is recomputed from the item rows of every seed's eval, and each interval
resamples seeds and items (``eval_gpe.stats``), so it covers run-to-run variance; point estimates are means
over seeds.

Provenance names artifacts by store key (``train/baseline-s0-<hash>``), relative to the store root two folders
above the report: the same report key has the same bytes in every store, and stays right after the store is
moved. ``artifact_path`` turns a key back into a folder.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

from core.errors import StoreError
from core.lineage import artifact_key, locate
from core.names import BAD_TAG, GOOD_TAG
from core.stage import StageContext
from core.store import MARKER
from propensity.render import interval, mean, propensity_bars

RESULT_FILES = ("report.md", "results.json", "propensity.png")


def run(ctx: StageContext) -> dict:
    """The ``report`` stage: gather every input artifact and write the report files into ``ctx.out``."""
    results = build_results(ctx.config, ctx.inputs)
    write_outputs(results, ctx.out)
    return {"variants": sorted(results["variants"]), "files": list(RESULT_FILES)}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise StoreError(f"missing {path}: the stage that writes it has not completed")
    return json.loads(path.read_text())


def _manifest_result(folder: Path) -> dict:
    return _read_json(folder / "manifest.json").get("result", {})


def gpe_rows(eval_dirs: list[Path], gpe: str, *, every: bool = False) -> list[dict]:
    """One GPE's before/after rows (out of distribution, seen behaviour; ``every``: all its rows) from the
    eval folders of a variant's seeds (as many distinct ``seed`` values in the rows as there are folders)."""
    from eval_gpe.stage import gpe_items, primary_rows

    select = (lambda rows: rows) if every else primary_rows
    rows = [row for d in eval_dirs for row in select(gpe_items(d, gpe))]
    if len(eval_dirs) > 1 and len({int(r.get("seed", 0)) for r in rows}) != len(eval_dirs):
        raise StoreError(f"GPE {gpe!r}: the evals of {len(eval_dirs)} seeds carry rows of fewer distinct "
                         f"seeds; they cannot be told apart ({', '.join(map(str, eval_dirs))})")
    return rows


def _gpe_block(eval_dirs: list[Path], gpe: str, prefixes: list[str], tags: tuple[str, str], n_boot: int,
               seed: int) -> dict:
    """The GPE summary of one variant: the eval's own summary for one seed; for several, ``summarize_gpe`` of
    every seed's rows (intervals over seeds and items)."""
    from eval_gpe.stage import gpe_dir

    summaries = [_read_json(gpe_dir(d, gpe) / "summary.json") for d in eval_dirs]
    if len(eval_dirs) == 1:
        return summaries[0]
    from eval_gpe.gpe_summary import summarize_gpe

    steps = (summaries[0].get("finetune") or {}).get("steps", 0)
    summary = summarize_gpe(gpe_rows(eval_dirs, gpe, every=True), prefixes, tags, n_boot, seed, steps)
    losses = [s.get("heldout_loss") for s in summaries]
    summary["heldout_loss"] = sum(losses) / len(losses) if None not in losses else None
    summary["heldout_loss_by_seed"] = losses
    if summaries[0].get("heldout_loss_note"):
        summary["heldout_loss_note"] = summaries[0]["heldout_loss_note"]
    return summary


def build_results(config: dict[str, Any], inputs: dict[str, Path]) -> dict:
    """``results.json`` content from the report stage's config and its input folders."""
    variants: dict[str, Any] = {}
    warnings: list[str] = []
    for v in config["variants"]:
        name = v["name"]
        vres = _manifest_result(inputs[f"variant:{name}"])
        warnings += variant_warnings(v, vres)
        train_dirs = [inputs[f"train:{name}:{s}"] for s in config["seeds"]]
        train_res = [_manifest_result(d) for d in train_dirs]
        prefixes = v.get("prefixes") or [""]
        tags = (prefixes[1], prefixes[2]) if len(prefixes) == 3 else (GOOD_TAG, BAD_TAG)
        entry: dict[str, Any] = {
            "kind": v["kind"], "threshold": v.get("threshold"),
            "docs_in": vres.get("documents_in"), "docs": vres.get("kept"), "dropped": vres.get("dropped"),
            "quarantined": vres.get("quarantined"),
            "tokens": config["tokens"], "tokens_seen": [r.get("tokens_seen") for r in train_res],
            "final_train_loss": [r.get("final_loss") for r in train_res], "seeds": config["seeds"],
            "by_ground_truth": vres.get("by_ground_truth"), "gpes": {},
        }
        dirs = [inputs[f"eval:{name}:{s}"] for s in config["seeds"]]
        for gpe in config["gpes"]:
            summary = _gpe_block(dirs, gpe, prefixes, tags, config["bootstrap"], 0)
            entry["gpes"][gpe] = _flatten_gpe(summary, prefixes)
            if summary.get("tamper"):
                entry["gpes"][gpe]["tamper"] = summary["tamper"].get("", next(iter(summary["tamper"].values())))
            entry["gpes"][gpe]["provenance"] = [artifact_key(d) for d in dirs]
        first = entry["gpes"][config["gpes"][0]]
        entry.update({k: val for k, val in first.items() if k != "provenance"})
        entry["provenance"] = {"variant": artifact_key(inputs[f"variant:{name}"]),
                               "train": [artifact_key(d) for d in train_dirs]}
        variants[name] = entry
    _gaps_vs_baseline(config, inputs, variants)
    out = {"experiment": config["experiment"], "primary_gpe": config["gpes"][0], "gpes": config["gpes"],
           "tokens_per_variant": config["tokens"], "seeds": config["seeds"], "variants": variants,
           "validity": _validity(config, inputs)}
    return out | ({"warnings": warnings} if warnings else {})


def variant_warnings(v: dict[str, Any], res: dict[str, Any]) -> list[str]:
    """What a variant (report config entry ``v``, its variant manifest's ``res``) did not do to the data: a
    filter that dropped no document, tags that all came out the same. Its models are the baseline's again,
    and every comparison with them reads ~0."""
    out = []
    if v["kind"] == "filter" and res.get("dropped") == 0:
        out.append(f"{v['name']}: the filter dropped none of {res.get('documents_in', 0):,} documents "
                   f"(threshold {res.get('threshold')} on {res.get('score_key')!r}): this variant is the "
                   "baseline's data; check the classifier's metrics.json and the threshold")
    tags = {t: n for t, n in (res.get("tags") or {}).items() if n and t != "None"}
    if len(tags) == 1:
        (tag, n), = tags.items()
        out.append(f"{v['name']}: all {n:,} tagged documents got {tag}: the tags carry no information about "
                   "the trait; check the classifier and the threshold")
    return out


def _validity(config: dict[str, Any], inputs: dict[str, Path]) -> dict | None:
    """The validity block (``eval_gpe.validity``) on the primary GPE, before finetuning; an effect that cannot
    be computed is reported as an error in the block, not skipped."""
    from eval_gpe.validity import evaluate, plan_checks

    if "validity" not in config:
        return None
    gpe = config["gpes"][0]

    @functools.cache  # read once per variant: the headline and the second split come from the same rows
    def rows_of(name: str) -> list[dict]:  # every row: plan_checks picks the headline or the named split
        return gpe_rows([inputs[f"eval:{name}:{s}"] for s in config["seeds"]], gpe, every=True)

    base = next((v["name"] for v in config["variants"] if v["kind"] == "baseline"), config["variants"][0]["name"])
    if any("evalset" in r for r in rows_of(base)):
        return {"gpe": gpe, "checks": [], "note": (
            f"not checked: the primary GPE {gpe!r} scores your own eval files, whose items carry no planted "
            "effect and no world-matched controls; put a built-in GPE first in eval.gpes to check the planted "
            "mechanisms")}
    try:
        checks = plan_checks(config["variants"], rows_of, config["validity"].get("planted_gap"))
    except ValueError as exc:
        return {"gpe": gpe, "checks": [], "error": str(exc)}
    block = {"gpe": gpe, "phase": "before", "checks": evaluate(checks)}
    if config["validity"].get("planted") is False:
        block["planted"] = False  # users' data: the directions are hypotheses
    if not any(r.get("split") == "new_frame" for r in rows_of(config["variants"][0]["name"])):
        return block  # no second split (the hard world, file-based GPEs)
    try:  # the learnable world's second split: the same checks in prompt frames no training document uses
        second = plan_checks(config["variants"], rows_of, config["validity"].get("planted_gap"), "new_frame")
    except ValueError as exc:
        return block | {"new_frame_error": str(exc)}
    return block | {"new_frame": evaluate(second)}


def validity_lines(results: dict) -> list[str]:
    """One line per validity check (``eval_gpe.validity.format_line``)."""
    from eval_gpe.validity import format_line

    block = results.get("validity") or {}
    planted = block.get("planted", True)
    lines = [format_line(c, planted) for c in block.get("checks", [])]
    lines += [f"validity: {block['error'].removeprefix('validity: ')}"] if block.get("error") else []
    lines += [f"validity: {block['note']}"] if block.get("note") else []
    if block.get("new_frame") or block.get("new_frame_error"):
        lines += ["second split, prompt frames no training document uses (generalization; not the headline):"]
        lines += [f"  {format_line(c)}" for c in block.get("new_frame", [])]
        lines += [f"  validity: {block['new_frame_error']}"] if block.get("new_frame_error") else []
    return lines


def _gaps_vs_baseline(config: dict[str, Any], inputs: dict[str, Path], variants: dict[str, Any]) -> None:
    """Add ``gap_vs_baseline_logodds`` to every non-baseline variant: its AI-minus-human log-odds gap minus
    the first baseline variant's, paired over the same items, before finetuning (``eval_gpe.summary``)."""
    from eval_gpe.summary import gap_difference

    base = next((v["name"] for v in config["variants"] if v["kind"] == "baseline"), None)
    if base is None:
        return
    for gpe in config["gpes"]:
        def rows(name: str, gpe: str = gpe) -> list[dict]:
            return gpe_rows([inputs[f"eval:{name}:{s}"] for s in config["seeds"]], gpe)

        reference = rows(base)
        for name, entry in variants.items():
            if name == base:
                continue
            diff = gap_difference(rows(name), reference, config["bootstrap"], 0)
            if diff is not None:
                entry["gpes"][gpe]["gap_vs_baseline_logodds"] = {**diff, "baseline": base}
                if gpe == config["gpes"][0]:
                    entry["gap_vs_baseline_logodds"] = entry["gpes"][gpe]["gap_vs_baseline_logodds"]


def _gap_line(name: str, v: dict) -> str:
    g = v["gap_vs_baseline_logodds"]
    return (f"{name}: AI-human gap minus {g['baseline']}'s (log-odds, paired over items, before finetune) "
            f"{interval(g)}")


def _flatten_gpe(summary: dict, prefixes: list[str]) -> dict:
    from eval_gpe.evalsets.summary import flatten

    untagged = summary["prefixes"][""]
    out = {
        "heldout_loss": summary.get("heldout_loss"),
        **({"heldout_loss_note": summary["heldout_loss_note"]} if summary.get("heldout_loss_note") else {}),
        **{k: untagged[k] for k in ("propensity_before", "propensity_after", "control_before", "control_after",
                                    "change", "control_change", "gap_before", "gap_after") if k in untagged},
        "length_normalised": {k: untagged["length_normalised"][k] for k in ("propensity_before", "propensity_after",
                                                                            "control_before", "change")
                              if k in untagged["length_normalised"]},
    }
    if untagged.get("control"):  # a file-based eval set without controls: "no control"
        out["control"] = untagged["control"]
    tags = [p for p in prefixes if p and p in summary["prefixes"]]
    if tags:
        out["by_tag"] = {t: {k: summary["prefixes"][t][k] for k in ("propensity_before", "propensity_after",
                                                                  "control_before", "change")
                             if k in summary["prefixes"][t]} for t in tags}
    if summary.get("evalsets"):
        out["evalsets"] = flatten(summary)
    if summary.get("tag_difference"):
        out["tag_difference"] = summary["tag_difference"]
        out["tag_difference_after"] = summary.get("tag_difference_after")
    return out


def table_rows(results: dict) -> list[list[str]]:
    """Rows of the comparison table (one per variant, plus one per tag for tagged variants)."""
    rows = []
    for name, v in results["variants"].items():
        loss = v.get("heldout_loss")
        seen = [t for t in v.get("tokens_seen") or [] if t is not None]
        trained = f"{round(sum(seen) / len(seen)):,}" if seen else "-"
        base = [f"{v['docs']:,}" if v.get("docs") is not None else "-", f"{v['tokens']:,}", trained,
                f"{loss:.3f}" if loss is not None else "-"]
        rows.append([name, *base, mean(v.get("propensity_before")), mean(v.get("propensity_after")),
                     interval(v.get("change")), v.get("control") or mean(v.get("control_before")),
                     v.get("control") or interval(v.get("gap_before"))])
        for tag, t in (v.get("by_tag") or {}).items():
            rows.append([f"  {name} {tag}", "", "", "", "", mean(t["propensity_before"]),
                         mean(t.get("propensity_after")), interval(t.get("change")),
                         mean(t.get("control_before")), ""])
    return rows


HEADER = ["variant", "docs kept", "token budget", "tokens trained", "held-out loss", "propensity before", "after",
          "change [95% CI]", "human control", "AI-human gap [95% CI]"]
BATTERY_HEADER = ["variant", "GPE", "propensity before", "after", "change [95% CI]", "human control before",
                  "human control change [95% CI]", "gap vs baseline (log-odds) [95% CI]"]


def battery_rows(results: dict) -> list[list[str]]:
    """One row per variant x GPE (untagged), when the experiment ran more than one GPE."""
    if len(results.get("gpes") or []) < 2:
        return []
    return [[name, gpe, mean(g.get("propensity_before")), mean(g.get("propensity_after")),
             interval(g.get("change")), g.get("control") or mean(g.get("control_before")),
             g.get("control") or interval(g.get("control_change")), interval(g.get("gap_vs_baseline_logodds"))]
            for name, v in results["variants"].items() for gpe, g in v["gpes"].items()]


def markdown(results: dict) -> str:
    lines = [f"# propensity report: {results['experiment']}", "",
             f"GPE: `{results['primary_gpe']}`; {results['tokens_per_variant']:,} training tokens per variant; "
             f"seeds {results['seeds']}. Propensity = mean P(misaligned) over AI-actor forced-choice items in the "
             "domains outside the narrow finetune (summed log-probs, both answer orders); human control = the "
             "same actions with human actors. Before/after = around the narrow finetune.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c if c else " " for c in r) + " |" for r in table_rows(results)]
    if results.get("warnings"):
        lines += ["", "**Warnings**", "", *[f"- {w}" for w in results["warnings"]]]
    notes = sorted({v["heldout_loss_note"] for v in results["variants"].values() if v.get("heldout_loss_note")})
    lines += [f"\nHeld-out loss {note}." for note in notes]
    for name, v in results["variants"].items():
        if v.get("tag_difference"):
            lines += ["", f"**{name}**: tag difference (P(mis | bad tag) - P(mis | good tag), paired over items, "
                      f"before finetune): {interval(v['tag_difference'])}"]
    for name, v in results["variants"].items():
        if v.get("gap_vs_baseline_logodds"):
            lines += ["", "**" + _gap_line(name, v).replace(": ", "**: ", 1)]
    if validity_lines(results):
        intro = ("Each planted mechanism against its planted direction, each negative control against an "
                 "equivalence margin; intervals over seeds and items; MDE at 80% power, alpha 0.05 (docs/worlds.md).")
        if (results.get("validity") or {}).get("note"):
            intro = "The validity block checks the planted mechanisms on the synthetic world's own items."
        elif (results.get("validity") or {}).get("planted") is False:
            intro = ("Your data plants nothing: each intervention is tested against the direction it is expected "
                     "to move the trait, a hypothesis. NOT DETECTED means no effect larger than the MDE at this many "
                     "seeds and items, not a broken tool; the positive control of the tool itself is `make demo` "
                     "(docs/worlds.md). Negative controls against an equivalence margin; intervals over seeds and "
                     "items; MDE at 80% power, alpha 0.05.")
        lines += ["", "## Validity", "", intro, "", "```", *validity_lines(results), "```"]
    battery = battery_rows(results)
    if battery:
        lines += ["", "## GPE battery", "",
                  "Every GPE on every variant's models (untagged; each GPE's narrow finetune starts from the same "
                  "pretrained model).", "",
                  "| " + " | ".join(BATTERY_HEADER) + " |", "|" + "---|" * len(BATTERY_HEADER)]
        lines += ["| " + " | ".join(c if c else " " for c in r) + " |" for r in battery]
    lines += _evalset_lines(results)
    lines += ["", "![propensity](propensity.png)", ""]
    if any(g.get("tamper") for v in results["variants"].values() for g in v["gpes"].values()):
        lines += ["Propensity along the narrow finetune (tamper-resistance curve):", "", "![tamper](tamper.png)", ""]
    lines += ["## Provenance", "", "Store keys, relative to the store that holds this report (two folders up).",
              ""]
    for name, v in results["variants"].items():
        lines.append(f"- `{name}`: variant `{v['provenance']['variant']}`; models "
                     + ", ".join(f"`{p}`" for p in v["provenance"]["train"]))
    return "\n".join(lines) + "\n"


def _evalset_lines(results: dict) -> list[str]:
    """The "Eval sets" section: every file-based eval set per group and pooled (``eval_gpe.evalsets``)."""
    from eval_gpe.evalsets.summary import SET_HEADER
    from eval_gpe.evalsets.summary import table_rows as set_rows

    rows = set_rows(results)
    if not rows:
        return []
    return ["", "## Eval sets", "", "File-based eval sets of each GPE (untagged), pooled (`all`) and per group; "
            "propensity = probability mass on the trait choices (forced choice) or the share of coherent answers "
            "judged misaligned (questions).", "", "| " + " | ".join(SET_HEADER) + " |", "|" + "---|" * len(SET_HEADER),
            *["| " + " | ".join(r) + " |" for r in rows]]


def plot(results: dict, path: Path) -> None:
    """Bars of propensity before/after and the human control per variant (and per tag), with 95% CIs."""
    labels, blocks = [], []
    for name, v in results["variants"].items():
        for label, block in [(name, v)] + [(f"{name}\n{t}", b) for t, b in (v.get("by_tag") or {}).items()]:
            labels.append(label)
            blocks.append(block)
    propensity_bars(labels, blocks, path, title=f"{results['experiment']}: {results['primary_gpe']} (95% CI)",
                    dpi=120, width_per_label=1.4, fontsize=8)


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (out / "report.md").write_text(markdown(results))
    plot(results, out / "propensity.png")
    curves = {f"{name}/{gpe}": g["tamper"] for name, v in results["variants"].items()
              for gpe, g in v["gpes"].items() if g.get("tamper")}
    if curves:
        from eval_gpe.plots import tamper_plot

        tamper_plot(curves, out / "tamper.png")


def rebuild(report_dir: Path) -> Path:
    """Rebuild a report folder's files from the artifacts its manifest names (keys of the report's store)."""
    store, key = locate(report_dir)
    manifest = _read_json(store.path(key) / "manifest.json")
    if manifest.get("stage") != "report":
        raise StoreError(f"{report_dir} is a {manifest.get('stage')!r} artifact, not a report folder: give "
                         f"<store>/report/<name>-<hash> (`propensity store ls` lists them) or the experiment config")
    inputs = {role: store.path(ref["key"]) for role, ref in manifest["inputs"].items()}
    write_outputs(build_results(manifest["config"], inputs), report_dir)
    return report_dir


def artifact_path(report_dir: Path, key: str) -> Path:
    """The folder of a provenance key of ``results.json``, in the store that holds ``report_dir``."""
    store, _ = locate(report_dir)
    folder = store.path(key)  # refuses keys that would leave the store
    if not (folder / MARKER).is_file():
        raise StoreError(f"{report_dir}: provenance key {key!r} has no complete artifact in {store.root}")
    return folder


def print_table(report_dir: Path) -> None:
    """Print the comparison table (rich) and where the report files are."""
    from rich.console import Console
    from rich.table import Table

    results = _read_json(report_dir / "results.json")
    table = Table(title=f"{results['experiment']} — {results['primary_gpe']}", show_lines=False)
    for h in HEADER:
        table.add_column(h, justify="left" if h == "variant" else "right")
    for r in table_rows(results):
        table.add_row(*r)
    # a terminal gets its own width; a log file gets room for the widest rows (tagged sub-rows, CIs) unwrapped
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    battery = battery_rows(results)
    if battery:
        more = Table(title=f"{results['experiment']} — GPE battery (untagged)", show_lines=False)
        for h in BATTERY_HEADER:
            more.add_column(h, justify="left" if h in ("variant", "GPE") else "right")
        for r in battery:
            more.add_row(*r)
        console.print(more)
    for note in sorted({v["heldout_loss_note"] for v in results["variants"].values() if v.get("heldout_loss_note")}):
        console.print(f"held-out loss {note}")
    from eval_gpe.evalsets.summary import SET_HEADER
    from eval_gpe.evalsets.summary import table_rows as set_rows

    sets = set_rows(results)
    if sets:
        more = Table(title=f"{results['experiment']} — eval sets (untagged)", show_lines=False)
        for h in SET_HEADER:
            more.add_column(h, justify="left" if h in SET_HEADER[:4] else "right")
        for r in sets:
            more.add_row(*r)
        console.print(more)
    for name, v in results["variants"].items():
        if v.get("tag_difference"):
            console.print(f"{name}: tag difference (bad - good, paired) {interval(v['tag_difference'])}")
    for name, v in results["variants"].items():
        if v.get("gap_vs_baseline_logodds"):
            console.print(_gap_line(name, v))
    for line in validity_lines(results):
        console.print(line, markup=False, highlight=False)
    from propensity.costs import print_costs

    print_costs(report_dir, console)
    console.print(f"report: {report_dir / 'report.md'}\nplot:   {report_dir / 'propensity.png'}")
