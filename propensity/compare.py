"""Compare finished experiments: one table and one figure set across variants, seeds and experiments.

``compare(paths, control, out)`` reads report folders (``<store>/report/<name>-<hash>``, or experiment configs
resolved to theirs) and writes ``compare.md``, ``compare.csv``, ``compare.json``, ``propensity.png``,
``pareto.png`` and a self-contained ``compare.html``. One row per experiment x variant x GPE: propensity
before/after with 95% CIs, paired differences against the control variant (paired by item id; with several
training seeds the bootstrap also resamples seeds, paired by rank when both sides have as many), held-out
loss and its difference to the control, documents/tokens removed or tagged, and the manifests behind every
number (variant, classifier, models, GPE version, seeds, code version).

Provenance names artifacts by store key (``variant/<name>-<hash>``), as the reports and manifests do; each row
says which store (``store``, its root folder) its keys resolve against, since one comparison may span stores.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError, StoreError
from core.lineage import locate, upstream_by_stage
from core.store import MANIFEST, MARKER, Store, stable_hash
from eval_gpe.compare import item_difference
from propensity.render import error_bars, interval, propensity_bars, pyplot

OUT_FILES = ("compare.md", "compare.csv", "compare.json", "propensity.png", "pareto.png", "compare.html")
KEY = re.compile(r"[a-z]+/[^/]+-[0-9a-f]{12}")
"""A store key ``<stage>/<name>-<hash>``: what provenance holds instead of paths."""
ROW_STATS = ("propensity_before", "propensity_after", "change", "control_before", "diff_before", "diff_after",
             "diff_change")


def _json(path: Path) -> dict:
    if not path.is_file():
        raise StoreError(f"missing {path}: the stage that writes it has not completed")
    return json.loads(path.read_text())


def resolve_report(path: Path, overrides: list[str] | None = None) -> Path:
    """The complete report folder of ``path``: a report folder as given, or an experiment config's."""
    path = Path(path)
    if path.is_file():
        from propensity.config import load_config
        from propensity.graph import build_graph

        cfg = load_config(path, overrides or [])
        report = Store(cfg.store).path(build_graph(cfg)[-1].key)
        if not (report / MARKER).is_file():
            sets = "".join(f" --set {shlex.quote(o)}" for o in overrides or [])
            raise StoreError(f"experiment {cfg.experiment!r} of {str(path)!r} has no finished report "
                             f"{report}: run `propensity run {shlex.quote(str(path))}{sets}` first")
        path = report
    if not (path / "results.json").is_file() or not (path / MANIFEST).is_file():
        raise ConfigError(f"compare: {str(path)!r} is neither an experiment config (YAML file) nor a "
                          "finished report folder (<store>/report/<name>-<hash> with results.json and "
                          "manifest.json)")
    return path.resolve()


def item_table(eval_dirs: list[Path], gpe: str) -> dict[tuple[str, str, str], dict[str, tuple[float, ...]]]:
    """Per-item P(misaligned) of one GPE ``{(phase, prefix, actor): {item_id: (value per seed)}}`` from the
    eval folders of a variant's seeds (``eval_gpe.summary.seed_item_values``)."""
    from eval_gpe.summary import seed_item_values
    from propensity.report import gpe_rows

    return seed_item_values(gpe_rows(eval_dirs, gpe), "p_misaligned")


def paired_difference(a: dict[str, tuple[float, ...]], b: dict[str, tuple[float, ...]], n_boot: int,
                      seed: int) -> dict:
    """``eval_gpe.compare.item_difference`` with a store error for runs that share no item."""
    try:
        return item_difference(a, b, n_boot, seed)
    except ValueError as err:
        raise StoreError(str(err)) from None


def _run_rows(report_dir: Path, n_boot: int, seed: int) -> list[dict]:
    """One row per variant x GPE of one report folder, with item tables kept for pairing (``_items``)."""
    store, report_key = locate(report_dir)
    manifest = _json(report_dir / MANIFEST)
    results = _json(report_dir / "results.json")
    inputs = {role: ref["key"] for role, ref in manifest["inputs"].items()}
    code = manifest.get("versions", {}).get("propensity")
    rows = []
    for v in manifest["config"]["variants"]:
        name, res = v["name"], results["variants"][v["name"]]
        seeds = manifest["config"]["seeds"]
        train_keys = [inputs[f"train:{name}:{s}"] for s in seeds]
        chain = upstream_by_stage(store, train_keys[0]) | upstream_by_stage(store, inputs[f"variant:{name}"])
        vres = _json(store.path(inputs[f"variant:{name}"]) / MANIFEST)["result"]
        corpus_tokens = _json(store.path(chain["tokenize"]) / MANIFEST)["result"].get("tokens")
        tags = vres.get("tags") or {}
        bad_tag = (v.get("tags") or {}).get("bad")
        eval_keys = [inputs[f"eval:{name}:{s}"] for s in seeds]
        eval_config = _json(store.path(eval_keys[0]) / MANIFEST)["config"]
        definitions = {d["name"]: d for d in [eval_config["definition"], *eval_config.get("battery", [])]}
        for gpe in manifest["config"]["gpes"]:
            g = res["gpes"][gpe]
            items = item_table([store.path(k) for k in eval_keys], gpe)
            rows.append({
                "experiment": results["experiment"], "variant": name, "kind": v["kind"],
                "threshold": v.get("threshold"), "gpe": gpe, "seeds": seeds,
                "docs_in": vres.get("documents_in"), "docs_kept": vres.get("kept"),
                "docs_removed": vres.get("dropped"),
                "docs_tagged_bad": tags.get(bad_tag) if bad_tag else None,
                "corpus_tokens": corpus_tokens, "train_tokens": results["tokens_per_variant"],
                "heldout_loss": g.get("heldout_loss"),
                **{k: g.get(k) for k in ROW_STATS[:4]},
                "store": str(store.root),
                "provenance": {
                    "report": report_key, **dict(sorted(chain.items())), "train": train_keys,
                    "eval": eval_keys,
                    "gpe_version": stable_hash(definitions.get(gpe)),
                    "seeds": seeds, "code_version": code,
                },
                "_items": items, "_bootstrap": (n_boot, seed),
            })
    return rows


def name_runs(rows: list[dict]) -> None:
    """Set each row's ``run``: its experiment name, or ``<experiment>@<report hash>`` where one experiment name
    has several reports here (e.g. two thresholds of one config), so that no two runs read alike."""
    def report_of(r: dict) -> str:
        return (r.get("provenance") or {}).get("report", "")

    reports: dict[str, set[str]] = {}
    for r in rows:
        reports.setdefault(r["experiment"], set()).add(report_of(r))
    for r in rows:
        several = len(reports[r["experiment"]]) > 1
        digest = report_of(r).rsplit("-", 1)[-1][:6]
        r["run"] = f"{r['experiment']}@{digest}" if several else r["experiment"]


def _find_control(rows: list[dict], row: dict, control: str) -> dict | None:
    """The control row for ``row``: ``run/variant`` (run = experiment, or ``experiment@hash``) anywhere, else the
    variant of ``row``'s own run. A control name that fits several runs is an error naming them."""
    exp, _, var = control.rpartition("/")
    found = [r for r in rows if r["gpe"] == row["gpe"] and r["variant"] == var
             and (exp in (r["run"], r["experiment"]) if exp else r["run"] == row["run"])]
    runs = sorted({r["run"] for r in found})
    if len(runs) > 1:
        raise ConfigError(f"compare: control {control!r} is ambiguous: experiment {exp!r} has several runs here "
                          f"({', '.join(runs)}); name one, e.g. --control {runs[0]}/{var}")
    return found[0] if found else None


def add_control_differences(rows: list[dict], control: str | None) -> None:
    """Paired differences (row - control) per GPE and the held-out loss / token differences, in place."""
    if control is None:
        return
    if any("run" not in r for r in rows):
        name_runs(rows)
    if not any(_find_control(rows, r, control) for r in rows):
        names = sorted({f"{r['run']}/{r['variant']}" for r in rows})
        raise ConfigError(f"compare: control {control!r} matches no variant; use a variant name or "
                          f"experiment/variant, one of {names}")
    for r in rows:
        c = _find_control(rows, r, control)
        r["control"] = None if c is None else f"{c['run']}/{c['variant']}"
        if c is None:
            continue
        n_boot, seed = r["_bootstrap"]
        for phase in ("before", "after"):
            key = (phase, "", "ai")
            if key in r["_items"] and key in c["_items"]:  # a GPE without finetune has no "after"
                r[f"diff_{phase}"] = paired_difference(r["_items"][key], c["_items"][key], n_boot, seed)
        if "diff_after" in r:
            change = {name: {i: tuple(np.subtract(x["after"][i], x["before"][i])) for i in x["before"]}
                      for name, x in (("r", _phases(r)), ("c", _phases(c)))}
            r["diff_change"] = paired_difference(change["r"], change["c"], n_boot, seed)
        loss, closs = r["heldout_loss"], c["heldout_loss"]
        r["heldout_loss_diff"] = None if loss is None or closs is None else loss - closs
        if r["corpus_tokens"] is not None and c["corpus_tokens"] is not None:
            r["tokens_removed_vs_control"] = c["corpus_tokens"] - r["corpus_tokens"]


def _phases(row: dict) -> dict[str, dict[str, float]]:
    before, after = row["_items"][("before", "", "ai")], row["_items"][("after", "", "ai")]
    return {"before": {i: before[i] for i in before if i in after}, "after": after}


def compare(paths: list[Path], control: str | None, out: Path, *, n_boot: int = 2000, seed: int = 0,
            overrides: list[str] | None = None) -> Path:
    """Compare report folders / experiment configs; write every output file into ``out`` and return it.

    ``control`` is a variant name (matched within each experiment) or ``experiment/variant`` (one control for
    all); ``None`` skips the paired differences.
    """
    if not paths:
        raise ConfigError("compare: give at least one report folder or experiment config")
    reports = list(dict.fromkeys(resolve_report(Path(p), overrides) for p in paths))
    rows = [r for rep in reports for r in _run_rows(rep, n_boot, seed)]
    name_runs(rows)
    add_control_differences(rows, control)
    for r in rows:
        del r["_items"], r["_bootstrap"]
    data = {"control": control, "bootstrap": n_boot, "seed": seed, "reports": [str(r) for r in reports],
            "rows": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    write_csv(rows, out / "compare.csv")
    (out / "compare.md").write_text(markdown(data))
    plot_propensity(rows, out / "propensity.png")
    plot_pareto(rows, out / "pareto.png")
    (out / "compare.html").write_text(html_page(data, out))
    return out


def flat_row(row: dict) -> dict[str, Any]:
    """A CSV row: scalars as they are, each statistic as ``<name>``, ``<name>_lo``, ``<name>_hi``."""
    flat: dict[str, Any] = {}
    for k, v in row.items():
        if k in ROW_STATS:
            flat[k], flat[f"{k}_lo"], flat[f"{k}_hi"] = (v["mean"], *v["ci95"]) if v else (None, None, None)
        elif k == "provenance":
            flat.update({f"provenance_{p}": (" ".join(x) if isinstance(x, list) and p != "seeds" else x)
                         for p, x in v.items()})
        else:
            flat[k] = " ".join(map(str, v)) if isinstance(v, list) else v
    return flat


def write_csv(rows: list[dict], path: Path) -> None:
    """``compare.csv``: one flat row per experiment x variant x GPE."""
    flat = [flat_row(r) for r in rows]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)


def _num(x: Any, fmt: str = ",") -> str:
    return "-" if x is None else format(x, fmt)


HEADER = ["experiment", "variant", "GPE", "docs kept", "docs removed", "tagged bad", "corpus tokens",
          "held-out loss", "Δ loss vs control", "propensity before [95% CI]", "after [95% CI]",
          "change [95% CI]", "Δ vs control, before", "Δ vs control, after", "Δ change vs control"]


def table_cells(row: dict) -> list[str]:
    """The human-readable cells of one row, in ``HEADER`` order."""
    return [row["run"], row["variant"], row["gpe"], _num(row["docs_kept"]), _num(row["docs_removed"]),
            _num(row["docs_tagged_bad"]), _num(row["corpus_tokens"]), _num(row["heldout_loss"], ".3f"),
            _num(row.get("heldout_loss_diff"), "+.3f"), interval(row["propensity_before"], False),
            interval(row["propensity_after"], False), interval(row["change"]), interval(row.get("diff_before")),
            interval(row.get("diff_after")), interval(row.get("diff_change"))]


def markdown(data: dict) -> str:
    """``compare.md``: what the numbers mean, the table, the figures and each row's provenance."""
    ctrl = f"control `{data['control']}`" if data["control"] else "no control"
    lines = ["# propensity comparison", "",
             f"{len(data['reports'])} experiment report(s); {ctrl}. Propensity = mean P(misaligned) over "
             "AI-actor forced-choice items, before/after the GPE's narrow finetune (items averaged over "
             f"seeds). Δ vs control = paired over shared item ids, {data['bootstrap']} bootstrap resamples "
             f"over items (seed {data['seed']}). Capability cost = held-out loss (nats/token) minus the "
             "control's.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(table_cells(r)) + " |" for r in data["rows"]]
    lines += ["", "![propensity](propensity.png)", "", "![pareto](pareto.png)", "", "## Provenance", ""]
    for r in data["rows"]:
        p = r["provenance"]
        lines.append(f"- `{r['run']}/{r['variant']}` `{r['gpe']}`: store `{r['store']}`; report "
                     f"`{p['report']}`; variant "
                     f"`{p.get('variant')}`; classifier `{p.get('classifier')}`; models "
                     + ", ".join(f"`{m}`" for m in p["train"])
                     + "; evals " + ", ".join(f"`{m}`" for m in p["eval"])
                     + f"; GPE version `{p['gpe_version']}`; seeds {p['seeds']}; code `{p['code_version']}`")
    return "\n".join(lines) + "\n"


def _label(row: dict, many_gpes: bool) -> str:
    return f"{row['run']}/{row['variant']}" + (f"\n{row['gpe']}" if many_gpes else "")


def plot_propensity(rows: list[dict], path: Path) -> None:
    """Bars of propensity before/after and the human control per row, with 95% CIs."""
    many = len({r["gpe"] for r in rows}) > 1
    propensity_bars([_label(r, many) for r in rows], rows, path, title="propensity per variant (95% CI)", dpi=110,
                    width_per_label=1.5, fontsize=7, rotation=20)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower loss and lower propensity)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((a <= x and b <= y) and (a < x or b < y) for a, b in points)]


def _pareto_panel(ax: Any, rows: list[dict], x_key: str, y_key: str, many: bool) -> None:
    """One propensity-vs-loss scatter: a point per row with its 95% CI, labelled, with the Pareto front."""
    usable = [r for r in rows if r.get(x_key) is not None and r.get(y_key)]
    for r in usable:
        (mean,), ((lo,), (hi,)) = error_bars([r[y_key]])
        ax.errorbar([r[x_key]], [mean], yerr=[[lo], [hi]], fmt="o", capsize=3)
        ax.annotate(_label(r, many).replace("\n", " "), (r[x_key], mean), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    front = sorted((r[x_key], r[y_key]["mean"]) for r in usable)
    front = [front[i] for i in pareto_front(front)]
    if len(front) > 1:
        ax.plot(*zip(*front, strict=True), "--", color="grey", lw=1, label="Pareto front")
        ax.legend(fontsize=8)


def plot_pareto(rows: list[dict], path: Path) -> None:
    """Propensity after the finetune vs held-out loss (95% CIs, Pareto front); with a control, a second panel
    of the paired differences to it (propensity) against the loss difference."""
    plt = pyplot()
    paired = any(r.get("diff_after") for r in rows)
    fig, axes = plt.subplots(1, 2 if paired else 1, figsize=(12 if paired else 6.5, 4.5), squeeze=False)
    many = len({r["gpe"] for r in rows}) > 1
    _pareto_panel(axes[0][0], rows, "heldout_loss", "propensity_after", many)
    axes[0][0].set(xlabel="held-out loss (nats/token, lower = more capable)",
                   ylabel="P(misaligned) after finetune", title="propensity vs capability (95% CI)")
    if paired:
        _pareto_panel(axes[0][1], rows, "heldout_loss_diff", "diff_after", many)
        axes[0][1].axhline(0, color="black", lw=0.5)
        axes[0][1].set(xlabel="held-out loss - control's", ylabel="P(misaligned) after - control's (paired)",
                       title="difference to the control (paired 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>propensity comparison</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #bbb;padding:3px 6px;text-align:right}}td:nth-child(-n+3){{text-align:left}}
th{{background:#eee}}img{{max-width:100%;border:1px solid #ddd;margin:8px 0}}li{{font-size:12px}}</style>
</head><body>
<h1>propensity comparison</h1>
<p>{intro}</p>
<table id="compare-table"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
{images}
<h2>Provenance</h2><ul>{prov}</ul>
<script>
window.addEventListener("load", function () {{
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) {{ return i.complete && i.naturalWidth > 0; }}).length;
  document.body.setAttribute("data-images-loaded", ok + "/" + imgs.length);
  document.body.setAttribute("data-table-rows", document.querySelectorAll("#compare-table tbody tr").length);
}});
</script>
</body></html>
"""


def manifest_path(store_root: str | Path, key: str) -> Path:
    """The ``manifest.json`` of a provenance key in the store at ``store_root`` (a row's ``store``)."""
    return Store(store_root).path(key) / MANIFEST


def _links(value: Any, store_root: str) -> str:
    """Store keys as ``file://`` links to their manifests (followed on click, never loaded by the page); the
    rest as text."""
    from html import escape

    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ", ".join(_links(v, store_root) for v in value)
    if isinstance(value, str) and KEY.fullmatch(value):
        return f'<a href="{escape(manifest_path(store_root, value).as_uri())}">{escape(value)}</a>'
    return escape(json.dumps(value))


def html_page(data: dict, out: Path) -> str:
    """``compare.html``: the table inline and the figures as base64 PNGs, nothing loaded from elsewhere."""
    import base64
    from html import escape

    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    body = "\n".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in table_cells(r)) + "</tr>"
                     for r in data["rows"])
    pngs = {name: base64.b64encode((out / f"{name}.png").read_bytes()).decode()
            for name in ("propensity", "pareto")}
    images = "\n".join(f'<h2>{name}</h2><img id="{name}-png" alt="{name}" src="data:image/png;base64,{b64}">'
                       for name, b64 in pngs.items())
    prov = "".join(
        f"<li><b>{escape(r['run'])}/{escape(r['variant'])}</b> {escape(r['gpe'])} "
        f"(store {escape(r['store'])}): "
        + "; ".join(f"{escape(k)}: {_links(v, r['store'])}" for k, v in r["provenance"].items()) + "</li>"
        for r in data["rows"])
    intro = escape(markdown(data).split("\n")[2])
    return PAGE.format(intro=intro, head=head, body=body, images=images, prov=prov)


def add_parser(sub: Any) -> None:
    """The ``propensity compare`` subcommand (``sub`` = the CLI's ``add_subparsers()`` object)."""
    p = sub.add_parser("compare", help="one table and figure set across report folders / experiment configs")
    p.add_argument("paths", nargs="+", help="report folders (<store>/report/<name>-<hash>) or configs")
    p.add_argument("--control", help="control variant: a name (per experiment) or experiment/variant")
    p.add_argument("--out", default="compare", help="output folder (default: ./compare)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for paired differences")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="config overrides for paths that are configs")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: Any) -> int:
    """Run ``compare`` and print the Markdown table and where every file went."""
    out = compare([Path(p) for p in args.paths], args.control, Path(args.out), n_boot=args.bootstrap,
                  overrides=args.overrides)
    print("\n".join(line for line in (out / "compare.md").read_text().splitlines() if line.startswith("|")))
    print("\n".join(f"{name}: {out / name}" for name in OUT_FILES))
    return 0
