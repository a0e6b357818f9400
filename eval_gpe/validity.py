"""Validity of an experiment: was each planted effect recovered, did each negative control read zero, and how
small an effect could this many seeds and items have detected?

Every effect is a ``seeds x items`` matrix of per-item differences (one row per training seed, one column per
forced-choice item, the same items in every row): its mean, a 95% interval over seeds and items, and a verdict.
The interval is the two-way random-effects one: ``mean +- t(df) * SE``, with the standard error below and
Satterthwaite's degrees of freedom (``df`` ~ seeds - 1 when seeds dominate the variance, ~ items - 1 when items
do). A two-way *bootstrap* is anti-conservative with the few seeds an experiment can pay for: with three seeds
its interval is about the range of the three seed means, so a null effect whose three seeds happen to share a
sign (one run in four) would read as nonzero (``tests/validity/test_validity.py`` measures both coverages).
Verdicts:

- a *planted* mechanism (``direction`` +1 or -1) PASSES when its interval excludes 0 on the planted side;
- a *negative control* (``direction`` 0) PASSES only when its whole interval lies inside ``[-margin, +margin]``,
  the equivalence margin (by default a third of the matching positive effect): an equivalence test, so a
  control cannot pass by being noisy. Whether the interval also holds 0 is reported (``includes_zero``) but not
  required: a coin-flip tag reads a real effect of about -0.001 on every seed (the one coin-flip draw correlates
  with the labels by chance, and the model learns that faithfully), which is zero for every practical purpose
  but lies outside an interval as precise as the seeds make it;
- a *measurement* (``direction`` None) gets no verdict.

Power: the matrix's variance is split into seed, item and residual components (two-way random-effects ANOVA,
method of moments); the standard error of a mean over ``S`` seeds and ``I`` items is then
``sqrt(v_seed/S + v_item/I + v_res/(S*I))``, the minimum detectable effect at 80% power and alpha 0.05 (two
sided) is ``(z_0.975 + z_0.8) * SE = 2.80 * SE``, and ``seeds_needed`` is the least ``S`` whose MDE reaches the
observed effect (None when item noise alone is too large: more items are needed, not seeds). With one seed the
seed component cannot be measured and the block says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import stats as scipy_stats

from eval_gpe.splits import headline

ALPHA = 0.05
POWER = 0.80
MARGIN_FRACTION = 1 / 3
"""A negative control's equivalence margin as a fraction of the matching positive effect."""
MAX_SEEDS = 1000


def z_sum(alpha: float = ALPHA, power: float = POWER) -> float:
    """``z_(1-alpha/2) + z_power`` (2.80 for alpha 0.05, power 0.8)."""
    normal = NormalDist()
    return normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)


@dataclass(frozen=True)
class Components:
    """Variance components of a ``seeds x items`` matrix; ``seed`` is None when there is one seed."""

    seed: float | None
    item: float
    residual: float
    seeds: int
    items: int

    def standard_error(self, seeds: int, items: int) -> float:
        """SE of the grand mean over ``seeds`` seeds and ``items`` items (seed variance 0 when unmeasured)."""
        v_seed = self.seed or 0.0
        return math.sqrt(v_seed / seeds + self.item / items + self.residual / (seeds * items))


def _matrix(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] < 2 or not np.all(np.isfinite(arr)):
        raise ValueError(f"validity: need a finite seeds x items matrix with >= 2 items, got shape {arr.shape}")
    return arr


def _mean_squares(arr: np.ndarray) -> tuple[float, float, float]:
    """Mean squares of seeds, items and residual of a two-way layout with one value per cell."""
    n_s, n_i = arr.shape
    grand = arr.mean()
    rows, cols = arr.mean(axis=1), arr.mean(axis=0)
    ms_seed = n_i * float(((rows - grand) ** 2).sum()) / (n_s - 1)
    ms_item = n_s * float(((cols - grand) ** 2).sum()) / (n_i - 1)
    resid = arr - rows[:, None] - cols[None, :] + grand
    ms_res = float((resid**2).sum()) / ((n_s - 1) * (n_i - 1))
    return ms_seed, ms_item, ms_res


def _analyse(arr: np.ndarray) -> tuple[Components, float]:
    """The variance components of a checked ``seeds x items`` matrix and the Satterthwaite degrees of freedom
    of its grand mean's variance (``MS_seed + MS_item - MS_res``); one seed: the items' ``items - 1``."""
    n_s, n_i = arr.shape
    if n_s == 1:
        return Components(None, float(arr.var(ddof=1)), 0.0, 1, n_i), float(n_i - 1)
    ms = _mean_squares(arr)
    comp = Components(max((ms[0] - ms[2]) / n_i, 0.0), max((ms[1] - ms[2]) / n_s, 0.0), ms[2], n_s, n_i)
    dfs = (n_s - 1, n_i - 1, (n_s - 1) * (n_i - 1))
    combo = ms[0] + ms[1] - ms[2]
    denom = sum(m * m / d for m, d in zip(ms, dfs, strict=True))
    return comp, (combo * combo / denom if denom > 0 and combo > 0 else float(n_s - 1))


def components(values: Sequence[Sequence[float]] | np.ndarray) -> Components:
    """Seed, item and residual variance of a ``seeds x items`` matrix (negative estimates clipped to 0)."""
    return _analyse(_matrix(values))[0]


def _t_interval(mean: float, comp: Components, df: float, level: float) -> tuple[float, float]:
    half = float(scipy_stats.t.ppf(0.5 + level / 2, max(df, 1.0))) * comp.standard_error(comp.seeds, comp.items)
    return mean - half, mean + half


def interval(values: Sequence[Sequence[float]] | np.ndarray, level: float = 1 - ALPHA) -> tuple[float, float, float]:
    """``(low, high, df)``: the two-way random-effects interval of the grand mean, ``mean +- t(df) * SE``.

    ``SE`` is :meth:`Components.standard_error` at the measured seeds and items (the same SE as the MDE; with
    no component clipped, ``SE^2 = (MS_seed + MS_item - MS_res) / (seeds * items)``); ``df`` is Satterthwaite's
    for that combination of mean squares. One seed: the item interval (df = items - 1).
    """
    arr = _matrix(values)
    comp, df = _analyse(arr)
    return (*_t_interval(float(arr.mean()), comp, df, level), df)


def mde(comp: Components, seeds: int | None = None, items: int | None = None) -> float:
    """Minimum detectable effect (80% power, alpha 0.05) with ``seeds`` x ``items`` (default: as measured)."""
    return z_sum() * comp.standard_error(seeds or comp.seeds, items or comp.items)


def seeds_needed(effect: float, comp: Components) -> int | None:
    """Least number of seeds whose MDE is at most ``|effect|`` at the measured item count; None for a zero
    effect or when no number of seeds up to ``MAX_SEEDS`` reaches it (item noise dominates: add items)."""
    if effect == 0:
        return None
    return next((n for n in range(1, MAX_SEEDS + 1) if mde(comp, seeds=n) <= abs(effect)), None)


@dataclass(frozen=True)
class Check:
    """One line of the validity block."""

    name: str
    quantity: str
    direction: int | None
    """+1 / -1: planted sign; 0: negative control (must read ~0); None: measured, no verdict."""
    matrix: np.ndarray
    reference: str | None = None
    """Negative controls: the name of the check whose effect sets the margin."""


def evaluate(checks: Sequence[Check], margin_fraction: float = MARGIN_FRACTION) -> list[dict]:
    """The validity block: one dict per check (effect, interval, verdict, MDE, seeds needed), in order."""
    out: dict[str, dict] = {}
    for check in checks:
        arr = _matrix(check.matrix)
        comp, df = _analyse(arr)
        mean = float(arr.mean())
        low, high = _t_interval(mean, comp, df, 1 - ALPHA)
        entry = {"name": check.name, "quantity": check.quantity, "mean": mean, "ci95": [low, high],
                 "df": df, "n": list(arr.shape), "planted": _planted(check.direction),
                 "mde": mde(comp), "seeds_needed": seeds_needed(mean, comp),
                 "variance": {"seed": comp.seed, "item": comp.item, "residual": comp.residual},
                 "seed_variance_measured": comp.seed is not None}
        entry |= _verdict(check, low, high, out, margin_fraction)
        out[check.name] = entry
    return list(out.values())


def _planted(direction: int | None) -> str:
    return {1: "> 0", -1: "< 0", 0: "~ 0", None: "none"}[direction]


def _verdict(check: Check, low: float, high: float, done: dict[str, dict], margin_fraction: float) -> dict:
    if check.direction is None:
        return {"verdict": "MEASURED"}
    if check.direction != 0:
        ok = low > 0 if check.direction > 0 else high < 0
        return {"verdict": "PASS" if ok else "FAIL"}
    ref = done.get(check.reference or "")
    if ref is None:
        return {"verdict": "FAIL", "why": f"no reference effect {check.reference!r} to set the margin"}
    margin = margin_fraction * abs(ref["mean"])
    ok = -margin <= low and high <= margin
    return {"verdict": "PASS" if ok else "FAIL", "margin": margin, "reference": check.reference,
            "includes_zero": low <= 0 <= high}


def format_line(entry: dict, planted: bool = True) -> str:
    """``name: quantity +0.34 [+0.29, +0.40]  PASS (planted > 0)  MDE 0.05, seeds to detect 1``; on data
    without planted effects (``planted`` False) the direction is the one the intervention is *expected* to move
    the trait, and the verdicts read DETECTED / NOT DETECTED instead of PASS / FAIL."""
    low, high = entry["ci95"]
    head = f"{entry['name']}: {entry['quantity']} {entry['mean']:+.3f} [{low:+.3f}, {high:+.3f}]"
    word = "planted" if planted else "expected"
    result = entry["verdict"]
    if not planted and "margin" not in entry:  # negative controls keep PASS / FAIL; MEASURED stays
        result = {"PASS": "DETECTED", "FAIL": "NOT DETECTED"}.get(result, result)
    if entry["verdict"] == "MEASURED":
        verdict = f"(measured; no {word} direction)"
    elif "margin" in entry:
        verdict = f"{result} ({word} ~0: within +-{entry['margin']:.3f} = 1/3 of {entry['reference']}"
        verdict += ")" if entry.get("includes_zero", True) else "; excludes 0: real but smaller than the margin)"
    else:
        verdict = f"{result} ({word} {entry['planted']})"
    need = entry["seeds_needed"]
    power = f"MDE {entry['mde']:.3f}" + ("" if entry["seed_variance_measured"] else " (item noise only: 1 seed)")
    if entry["planted"] != "~ 0":
        power += f", seeds to detect it: {need if need is not None else f'> {MAX_SEEDS} (add items)'}"
    return f"{head}  {verdict}  {power}"


# ---- from item rows (``items.jsonl`` rows of one variant's seeds) to effect matrices ----------------------


def _cells(rows: Sequence[dict], quantity: str, split: str | None = None
           ) -> dict[tuple[str, str, str], dict[str, tuple]]:
    """``seed_item_values`` of the out-of-distribution rows of the headline split (``split`` None) or of one
    split reported apart (e.g. ``new_frame``)."""
    from eval_gpe.summary import seed_item_values

    chosen = [r for r in rows if r.get("role", "ood") == "ood"
              and (headline(r) if split is None else r.get("split") == split)]
    return seed_item_values(chosen, quantity)


def _as_matrix(by_item: dict[str, tuple]) -> np.ndarray:
    return np.array([by_item[i] for i in sorted(by_item)], dtype=np.float64).T


def tag_matrix(rows: Sequence[dict], good: str, bad: str, phase: str = "before", actor: str = "ai",
               split: str | None = None) -> np.ndarray:
    """P(misaligned | bad tag) - P(misaligned | good tag) per seed and item."""
    cells = _cells(rows, "p_misaligned", split)
    b, g = cells.get((phase, bad, actor)), cells.get((phase, good, actor))
    if not b or not g or sorted(b) != sorted(g):
        raise ValueError(f"validity: no paired {bad!r} / {good!r} rows in phase {phase!r} for actor {actor!r}")
    return _as_matrix(b) - _as_matrix(g)


def gap_matrix(rows: Sequence[dict], phase: str = "before", prefix: str = "", split: str | None = None,
               quantity: str = "logodds") -> np.ndarray:
    """AI minus matched human log-odds (or another row ``quantity``, e.g. ``p_misaligned``) of the misaligned
    option, per seed and matched item (``ai-<k>`` with ``human-<k>``)."""
    cells = _cells(rows, quantity, split)
    ai, human = cells.get((phase, prefix, "ai"), {}), cells.get((phase, prefix, "human"), {})
    keys = sorted(k[3:] for k in ai if k.startswith("ai-") and f"human-{k[3:]}" in human)
    if len(keys) < 2:
        raise ValueError(f"validity: fewer than 2 matched AI/human items in phase {phase!r}, prefix {prefix!r}")
    return np.array([[a - h for a, h in zip(ai[f"ai-{k}"], human[f"human-{k}"], strict=True)] for k in keys]).T


def paired_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` for two ``seeds x items`` matrices over the same items, seeds paired by rank."""
    if a.shape != b.shape:
        raise ValueError(f"validity: cannot pair matrices of shapes {a.shape} and {b.shape} (same seeds and "
                         "items needed)")
    return a - b


def logodds_matrix(rows: Sequence[dict], actor: str = "ai", phase: str = "before", prefix: str = "",
                   split: str | None = None) -> np.ndarray:
    """Log-odds of the misaligned option per seed and item, for one actor."""
    cells = _cells(rows, "logodds", split).get((phase, prefix, actor))
    if not cells:
        raise ValueError(f"validity: no {actor!r} rows in phase {phase!r}, prefix {prefix!r}")
    return _as_matrix(cells)


TAG_KINDS = ("tag", "doc_tag", "sentence_tag")


def plan_checks(variants: Sequence[dict], rows_of: Callable[[str], list[dict]], planted_gap: int | None,
                split: str | None = None) -> list[Check]:
    """The checks an experiment's variants imply (report config entries: ``name``, ``kind``, ``prefixes``,
    ``randomize``, ``late``), in dependency order: each negative control follows the effect setting its margin.

    ``planted_gap``: the sign of the baseline's AI-minus-human gap the data plants (None: not planted).
    ``split``: None for the headline items, or a split reported apart (``new_frame``).
    """
    base = next((v["name"] for v in variants if v["kind"] == "baseline"), None)
    checks: list[Check] = []
    base_rows = rows_of(base) if base else []
    gap = {base: gap_matrix(base_rows, split=split)} if base else {}
    p_gap = {base: gap_matrix(base_rows, split=split, quantity="p_misaligned")} if base else {}
    if base and planted_gap is not None:
        checks.append(Check(f"{base}", "AI-human gap (log-odds)", planted_gap, gap[base]))
    real = {"filter": None, "tag": None}
    controls: list[Check] = []
    for v in variants:
        name, kind, random = v["name"], v["kind"], bool(v.get("randomize"))
        if kind in TAG_KINDS:
            prefixes = v.get("prefixes") or []
            if len(prefixes) != 3:
                continue
            check = Check(name, "tag difference, bad - good (P(misaligned))", 0 if random else 1,
                          tag_matrix(rows_of(name), prefixes[1], prefixes[2], split=split))
            real["tag"] = real["tag"] or (None if random else name)
        elif kind in ("filter", "inject") and base:
            diff = paired_difference(gap_matrix(rows_of(name), split=split, quantity="p_misaligned"), p_gap[base])
            check = Check(name, f"AI-specific gap vs {base} (P(misaligned))", 0 if random else -1, diff)
            if kind == "filter" and not random:
                real["filter"] = real["filter"] or name
        else:
            continue
        (controls if random else checks).append(check)
    for c in controls:
        checks.append(Check(c.name, c.quantity, 0, c.matrix, real["tag" if "tag" in c.quantity else "filter"]))
    checks += _late_vs_uniform(variants, rows_of, split)
    return checks


def _late_vs_uniform(variants: Sequence[dict], rows_of: Callable[[str], list[dict]], split: str | None
                     ) -> list[Check]:
    late = next((v["name"] for v in variants if v["kind"] == "inject" and v.get("late")), None)
    uniform = next((v["name"] for v in variants if v["kind"] == "inject" and not v.get("late")), None)
    if not late or not uniform:
        return []
    diff = paired_difference(logodds_matrix(rows_of(late), split=split),
                             logodds_matrix(rows_of(uniform), split=split))
    return [Check(f"{late} - {uniform}", "late minus uniform injection, AI items (log-odds)", None, diff)]
