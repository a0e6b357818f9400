"""What ``eval.gpes`` may name: a built-in GPE (``em_medicine``), a GPE YAML file in the researcher's own
repository (``gpes/power_seeking.yaml``), or an inline definition (a mapping). Relative paths are resolved
against the folder of the file that holds them: the experiment config for file references and inline
definitions, the GPE file for the eval-set files it names.

:func:`fingerprint` hashes the content of every file the resolved GPEs read (for an lm-eval task, also the
data files its YAMLs name, wherever they are), and the version of the eval-set readers, so the eval stage's
key changes when an item file is edited or when what a reader makes of the same file changes; built-in GPEs
read no file and keep their keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.errors import ConfigError
from eval_gpe import registry
from eval_gpe.evalsets.files import content_hash
from eval_gpe.registry import GPESpec

READERS_VERSION = "3"
"""Version of what the eval-set readers make of a file, in every file-reading GPE's fingerprint. 2: lm-eval
few-shot contexts seeded as lm-eval seeds them, groups expanded, repeated ids and rows quarantined,
same-named model-written files kept apart, judged questions pooled per question with their paraphrases.
3: lm-eval multiple-input (winogrande) and multiple-target tasks read; tasks with their own process_results
refused."""

GPERef = str | dict[str, Any]
FILE_SUFFIXES = (".yaml", ".yml")


def is_file_ref(ref: GPERef) -> bool:
    """Whether a string reference names a GPE file (a YAML suffix or a path separator) rather than a name."""
    return isinstance(ref, str) and (ref.endswith(FILE_SUFFIXES) or "/" in ref)


def _absolute(path: str, base: Path) -> str:
    return path if path.startswith("hf:") or Path(path).is_absolute() else str((base / path).resolve())


def absolutize(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A GPE mapping with the relative paths it names (eval-set files, task folders, finetune data) made
    absolute against ``base``."""
    out = dict(data)
    sets = []
    for raw in out.get("evalsets") or []:
        s = dict(raw) if isinstance(raw, dict) else raw
        if isinstance(s, dict):
            if isinstance(s.get("path"), str | list):
                paths = [s["path"]] if isinstance(s["path"], str) else s["path"]
                s["path"] = [_absolute(p, base) if isinstance(p, str) else p for p in paths]
            if isinstance(s.get("include_path"), str):
                s["include_path"] = _absolute(s["include_path"], base)
        sets.append(s)
    if "evalsets" in out:
        out["evalsets"] = sets
    ft = out.get("finetune")
    if isinstance(ft, dict) and isinstance(ft.get("data"), dict) and isinstance(ft["data"].get("path"), str):
        out["finetune"] = {**ft, "data": {**ft["data"], "path": _absolute(ft["data"]["path"], base)}}
    return out


def absolutize_refs(refs: list[Any], base: Path) -> list[Any]:
    """``eval.gpes`` with file references and inline definitions' paths made absolute against ``base``."""
    out: list[Any] = []
    for ref in refs:
        if is_file_ref(ref):
            out.append(_absolute(ref, base))
        elif isinstance(ref, dict):
            out.append(absolutize(ref, base))
        else:
            out.append(ref)
    return out


def load_file(path: Path) -> GPESpec:
    """A GPE YAML file outside the package; its name must equal the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"GPE file {str(path)!r} does not exist (a GPE file named in a config is found "
                          "relative to the config's folder)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"GPE file {path}: cannot read YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"GPE file {path}: expected a mapping at top level, got {type(data).__name__}")
    spec = validate(absolutize(data, path.parent.resolve()), f"GPE file {path}")
    if spec.name != path.stem:
        raise ConfigError(f"GPE file {path}: name {spec.name!r} must equal the file name {path.stem!r}")
    return spec


def validate(data: dict[str, Any], where: str) -> GPESpec:
    """A GPE definition from a mapping; errors name ``where`` and every invalid field."""
    try:
        return GPESpec.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg'].removeprefix('Value error, ')}"
                 for e in exc.errors()]
        raise ConfigError(f"{where} is invalid:\n" + "\n".join(lines)) from None


def resolve(ref: GPERef | GPESpec, base: Path | None = None) -> GPESpec:
    """The GPE a reference names (see the module docstring); ``base`` resolves relative file references."""
    if isinstance(ref, GPESpec):
        return ref
    if isinstance(ref, dict):
        return validate(absolutize(ref, base or Path.cwd()), f"inline GPE {ref.get('name', '?')!r}")
    if is_file_ref(ref):
        return load_file(Path(_absolute(ref, base or Path.cwd())))
    return registry.get(ref)


def resolve_all(refs: list[Any], base: Path | None = None) -> list[GPESpec]:
    """Every reference resolved, errors naming ``eval.gpes[i]``; names must be distinct."""
    specs = []
    for k, ref in enumerate(refs):
        try:
            specs.append(resolve(ref, base))
        except ConfigError as exc:
            raise ConfigError(f"eval.gpes[{k}]: {exc}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"eval.gpes: GPE names must be distinct, got {names}")
    return specs


def files_read(spec: GPESpec) -> list[str]:
    """Every local file or folder a GPE reads (eval-set files, lm-eval task folders and the data files their
    YAMLs name, finetune data)."""
    files = [f for s in spec.evalsets for f in s.files()]
    if any(s.format == "lm_eval" for s in spec.evalsets):
        from eval_gpe.evalsets.lmeval import data_files

        files += [f for s in spec.evalsets if s.format == "lm_eval" for f in data_files(s)]
    data = spec.finetune.data if spec.finetune is not None else None
    if data is not None and not data.path.startswith("hf:"):
        files.append(data.path)
    return files


def fingerprint(specs: list[GPESpec]) -> str | None:
    """Content hash of every file the GPEs read (None when they read none, as built-in GPEs)."""
    files = sorted({f for s in specs for f in files_read(s)})
    if not files:
        return None
    return content_hash([Path(f) for f in files], salt=f"evalset-readers-{READERS_VERSION}")
