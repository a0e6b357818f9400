"""``propensity gpe``: see what a GPE will measure before paying for it.

- ``gpe list``: the built-in GPEs, their trait and eval sets;
- ``gpe show NAME|FILE``: the resolved definition (paths absolute) and the content hash of every file it reads;
- ``gpe check NAME|FILE [--tokenizer DIR] [--show N]``: reads every eval set, prints rows in / usable /
  quarantined, counts per group, the quarantined rows with their reasons, and the first ``N`` items rendered
  exactly as the model will see them (choices, which ones show the trait, token counts with ``--tokenizer``:
  the context's, and each choice's as it is scored after that context).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError
from eval_gpe import registry
from eval_gpe.evalsets.files import content_hash
from eval_gpe.evalsets.forced import Item
from eval_gpe.evalsets.judged import render_prompt
from eval_gpe.evalsets.sets import LoadedSet, load_set
from eval_gpe.registry import GPESpec, definition
from eval_gpe.resolve import files_read, resolve
from eval_gpe.scoring import encode_pair

MAX_QUARANTINE_SHOWN = 10


def add_parser(sub: Any) -> None:
    """The ``propensity gpe`` subcommand (``sub`` = the CLI's ``add_subparsers()`` object)."""
    p = sub.add_parser("gpe", help="GPEs: list the built-in ones, show a resolved one, check its eval sets")
    gsub = p.add_subparsers(dest="gpe_command", required=True, metavar="list|show|check")
    gsub.add_parser("list", help="built-in GPEs").set_defaults(func=cmd_list)
    show = gsub.add_parser("show", help="the resolved definition of a GPE (name or YAML file)")
    show.add_argument("gpe", help="built-in name or path to a GPE YAML file")
    show.set_defaults(func=cmd_show)
    check = gsub.add_parser("check", help="read a GPE's eval sets: counts, quarantine, rendered prompts")
    check.add_argument("gpe", help="built-in name or path to a GPE YAML file")
    check.add_argument("--tokenizer", type=Path, help="HF tokenizer folder (e.g. a train artifact's model/) for "
                       "token counts, the document-start token and chat templates")
    check.add_argument("--show", type=int, default=3, help="items rendered per eval set (default 3)")
    check.set_defaults(func=cmd_check)


def _kinds(spec: GPESpec) -> str:
    kinds = (["built-in world"] if spec.eval is not None else []) + [f"{s.name} ({s.format})" for s in spec.evalsets]
    return ", ".join(kinds)


def cmd_list(args: argparse.Namespace) -> int:
    """Print every built-in GPE: name, trait, finetune, eval sets."""
    for name in registry.available():
        spec = registry.get(name)
        ft = spec.finetune
        recipe = "none" if ft is None else f"{ft.domain or 'data'} {ft.method} {ft.steps} steps"
        print(f"{name:26} trait {spec.trait:14} finetune {recipe:28} evals {_kinds(spec)}")
    print("\nAlso accepted in eval.gpes: a path to your own GPE YAML file, or an inline definition (docs/gpe.md).")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print the resolved definition as YAML, then the content hash of each file it reads."""
    spec = resolve(args.gpe)
    print(yaml.safe_dump(definition(spec), sort_keys=False, allow_unicode=True).rstrip())
    for f in files_read(spec):
        print(f"# reads {f} (sha256 {content_hash([Path(f)])})")
    return 0


def _tokenizer(folder: Path | None) -> Any:
    if folder is None:
        return None
    if not Path(folder).is_dir():
        raise ConfigError(f"--tokenizer {str(folder)!r} is not a folder: give a tokenizer folder of a store "
                          "(<store>/tokenizer/<name>-<hash>) or a model folder with tokenizer files")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--tokenizer {str(folder)!r}: no tokenizer there ({exc})") from exc


def _tokens(tok: Any, text: str) -> str:
    return "" if tok is None else f" [{len(tok(text, add_special_tokens=False)['input_ids'])} tokens]"


def _render_item(item: Item, tok: Any, lead: str) -> list[str]:
    lines = [f"  item {item.id} (group {item.group}, {item.actor}" + (f", control of {item.pair}" if item.pair
                                                                      else "") + ")"]
    for render in item.renders:
        context = lead + render.requests[0][0]
        lines.append(f"    order {render.order}: context{_tokens(tok, context)}")
        lines += [f"      | {line}" for line in context.split("\n")]
        for k, (ctx, cont) in enumerate(render.requests):
            mark = "trait" if k in render.trait else "     "
            other = "" if ctx == render.requests[0][0] else f"  (own context: {ctx[-60:]!r})"
            scored = "" if tok is None else f" [{len(encode_pair(tok, lead + ctx, cont)[1])} tokens]"
            lines.append(f"      {mark} {cont!r}{scored}{other}")
    return lines


def check_lines(loaded: LoadedSet, tok: Any, show: int) -> list[str]:
    """What ``gpe check`` prints for one eval set."""
    spec, counts = loaded.spec, loaded.counts()
    lines = [f"eval set {spec.name} ({spec.format}): {', '.join(spec.files())}",
             f"  rows in {counts['rows_in']} = usable {counts['usable']} + quarantined {counts['quarantined']}"]
    if loaded.judged:
        groups = Counter(p.group for p in loaded.prompts)
        samples = sum(p.samples or spec.samples for p in loaded.prompts)
        own = sum(p.judge_prompts is not None for p in loaded.prompts)
        lines.append(f"  prompts {len(loaded.prompts)} (questions and paraphrases), {samples} samples in all "
                     f"({spec.samples} per prompt unless the question says); per group: "
                     f"{dict(sorted(groups.items()))}")
        if own:
            lines.append(f"  {own} prompt(s) judged with their question's own judge_prompts (aligned, coherent)")
    else:
        groups = Counter((i.group, i.actor) for i in loaded.items)
        per = {g: {a: n for (gg, a), n in sorted(groups.items()) if gg == g} for g, _ in sorted(groups)}
        lines.append(f"  items per group (ai = trait items, human = matched controls): {per}")
    lines += [f"  note: {n}" for n in loaded.notes]
    for q in loaded.quarantined[:MAX_QUARANTINE_SHOWN]:
        lines.append(f"  quarantined {q['file']}:{q['row']}: {q['reason']}  {q['raw'][:80]!r}")
    if len(loaded.quarantined) > MAX_QUARANTINE_SHOWN:
        lines.append(f"  ... {len(loaded.quarantined) - MAX_QUARANTINE_SHOWN} more quarantined rows "
                     f"(reasons: {counts['reasons']})")
    lead = ""
    if tok is not None and spec.format != "lm_eval":
        from eval_gpe.scoring import document_start

        lead = document_start(tok)
    if loaded.judged:
        for p in loaded.prompts[:show]:
            text = render_prompt(p, tok) if tok is not None else render_prompt(p, _NoTemplate())
            lines.append(f"  prompt {p.id} (group {p.group}){_tokens(tok, text)}")
            lines += [f"      | {line}" for line in text.split("\n")]
    else:
        for item in loaded.items[:show]:
            lines += _render_item(item, tok, lead)
    return lines


class _NoTemplate:
    """Stands in for a tokenizer without a chat template (renders ``User: ...\\nAssistant:``)."""

    chat_template = None


def cmd_check(args: argparse.Namespace) -> int:
    """Read every eval set of a GPE and print what the model will be asked."""
    spec = resolve(args.gpe)
    tok = _tokenizer(args.tokenizer)
    print(f"GPE {spec.name}: trait {spec.trait}; finetune "
          f"{'none' if spec.finetune is None else spec.finetune.method}; evals {_kinds(spec)}")
    if tok is None:
        print("(no --tokenizer: no token counts, no document-start token, no chat template)")
    for s in spec.evalsets:
        print("\n".join(check_lines(load_set(s), tok, args.show)))
    return 0
