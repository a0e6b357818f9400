"""Background text no one here wrote: the Python standard library's own documentation.

Sources, all shipped with every CPython install:

- docstrings of every module, class and function in the stdlib's ``.py`` files, read with :mod:`ast`,
  and their runs of full-line ``#`` comments (nothing is imported, so no module runs);
- docstrings of the C-implemented modules (``sys.builtin_module_names`` and ``lib-dynload``), read by
  importing a fixed, sorted list of them (test, GUI and platform-specific modules are skipped);
- ``pydoc_data.topics.topics``, the language reference text behind ``help()``.

Each text is split into paragraphs, code-like and too-short paragraphs are dropped, paragraphs are
deduplicated and packed per source into documents of ~200-1500 characters. The text depends on the Python
version, so stage results record ``sys.version``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import inspect
import io
import random
import re
import sys
import sysconfig
import textwrap
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MIN_DOC_CHARS = 200
MAX_DOC_CHARS = 1500
HELDOUT_PERCENT = 5
"""Share of pass-0 background documents held out (by stable hash of their text)."""

_SKIP_PARTS = {"test", "tests", "idlelib", "turtledemo", "tkinter", "lib2to3", "site-packages",
               "dist-packages", "__pycache__", "ensurepip", "venv", "__phello__", "pydoc_data"}
_SKIP_C_PREFIXES = ("_test", "_xx", "xx", "_tkinter", "_ctypes_test", "_msi", "_winapi", "_overlapped",
                    "_wmi", "_scproxy", "winreg", "winsound", "msvcrt", "nt", "_testcapi")
_NOT_CODE = re.compile(r"[^(){}\[\]=<>_*|\\`#@$%^~]")
_NOT_LETTER = re.compile(r"[^A-Za-z ]")
_COMMENT_LINE = re.compile(r"^\s*#+!?(.*)$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True)
class BackgroundDoc:
    """One packed background document and the paragraphs it is made of."""

    text: str
    source: str
    paragraphs: tuple[str, ...]


def _clean_paragraph(par: str) -> str | None:
    """Unwrap one paragraph into a line; None when it looks like code, a signature or a fragment."""
    lines = [ln for ln in textwrap.dedent(par).splitlines() if ln.strip()]
    if not lines:
        return None
    if any(ln.lstrip().startswith((">>>", "...", "$ ", "%", "|", "+-", "==")) for ln in lines):
        return None
    if sum(ln.startswith((" ", "\t")) for ln in lines) > len(lines) // 2:
        return None  # block indented under its first line: code sample, table or grammar
    text = " ".join(ln.strip() for ln in lines)
    text = re.sub(r"\s+", " ", text).strip()
    words = text.split()
    if len(words) < 6 or len(text) < 40:
        return None
    code = len(_NOT_CODE.sub("", text))  # characters typical of code or markup
    letters = len(_NOT_LETTER.sub("", text))  # ASCII letters and spaces
    if code / len(text) > 0.06 or letters / len(text) < 0.86:
        return None
    if not re.search(r"[a-z]{3,} [a-z]{3,} [a-z]{2,}", text):
        return None  # needs some running English
    return text


def clean_text(raw: str) -> list[str]:
    """Split a raw docstring or help topic into clean prose paragraphs (may be empty)."""
    pars = re.split(r"\n\s*\n", raw.replace("\r\n", "\n"))
    out = []
    for par in pars:
        cleaned = _clean_paragraph(par)
        if cleaned is not None:
            out.append(cleaned)
    return out


def stdlib_path() -> Path:
    """Folder of this interpreter's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def _py_docstrings() -> list[tuple[str, str]]:
    """(source, docstring or comment block) from the stdlib's .py files, in sorted file order."""
    lib = stdlib_path()
    files = sorted(p for p in lib.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(lib).parts))
    out: list[tuple[str, str]] = []
    for path in files:
        rel = path.relative_to(lib).as_posix()
        try:
            source = path.read_text(encoding="utf-8")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in _documentable(tree):
            doc = ast.get_docstring(node)
            if doc:
                out.append((rel, doc))
        out.extend((rel, block) for block in _comment_blocks(source))
    return out


def _documentable(tree: ast.Module) -> list[ast.AST]:
    """The module, class and function nodes of a tree, found by walking statement bodies only (fast)."""
    found: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node)
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                stack.extend(reversed(children))
    return found


def _comment_blocks(source: str) -> list[str]:
    """Runs of consecutive full-line ``#`` comments in one file's source, one string per run."""
    blocks: list[str] = []
    cur: list[str] = []
    for line in source.splitlines():
        match = _COMMENT_LINE.match(line)
        text = match.group(1).strip() if match else ""
        if text:
            cur.append(text)
        elif cur:
            blocks.append("\n".join(cur))
            cur = []
    if cur:
        blocks.append("\n".join(cur))
    return blocks


def _c_module_names() -> list[str]:
    """Sorted names of C-implemented stdlib modules that are safe to import for their docstrings."""
    names = set(sys.builtin_module_names)
    dynload = stdlib_path() / "lib-dynload"
    if dynload.is_dir():
        names |= {p.name.split(".")[0] for p in dynload.iterdir() if p.suffix in (".so", ".pyd")}
    return sorted(n for n in names if not n.startswith(_SKIP_C_PREFIXES) and n != "__main__")


def _c_docstrings() -> list[tuple[str, str]]:
    """(source, docstring) for objects of C-implemented modules; unimportable modules are skipped."""
    out: list[tuple[str, str]] = []
    for name in _c_module_names():
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an unimportable optional module just contributes nothing
            continue
        objs = [module] + [v for _, v in sorted(vars(module).items()) if inspect.isclass(v) or callable(v)]
        for obj in objs:
            doc = obj.__doc__ if isinstance(getattr(obj, "__doc__", None), str) else None
            if doc:
                out.append((f"c:{name}", inspect.cleandoc(doc)))
            if inspect.isclass(obj) and obj.__module__ == module.__name__:
                for _, member in sorted(vars(obj).items()):
                    mdoc = getattr(member, "__doc__", None)
                    if isinstance(mdoc, str) and callable(member):
                        out.append((f"c:{name}", inspect.cleandoc(mdoc)))
    return out


def _topic_texts() -> list[tuple[str, str]]:
    """(source, text) for every pydoc help topic, in sorted key order."""
    from pydoc_data.topics import topics

    return [(f"topic:{key}", topics[key]) for key in sorted(topics)]


def _split_long(par: str) -> list[str]:
    """Cut a paragraph longer than MAX_DOC_CHARS at sentence boundaries."""
    if len(par) <= MAX_DOC_CHARS:
        return [par]
    pieces: list[str] = []
    cur = ""
    for sentence in _SENTENCE_END.split(par):
        if cur and len(cur) + 1 + len(sentence) > MAX_DOC_CHARS:
            pieces.append(cur)
            cur = ""
        cur = f"{cur} {sentence}".strip()
    if cur:
        pieces.append(cur)
    return [p[:MAX_DOC_CHARS] for p in pieces]


def pack(source: str, paragraphs: list[str], target: int) -> list[BackgroundDoc]:
    """Pack one source's paragraphs in order into documents of about ``target`` characters."""
    docs: list[BackgroundDoc] = []
    cur: list[str] = []
    size = 0

    def flush() -> None:
        if cur and size >= MIN_DOC_CHARS:
            docs.append(BackgroundDoc("\n\n".join(cur), source, tuple(cur)))

    for par in paragraphs:
        if cur and size + len(par) + 2 > min(target, MAX_DOC_CHARS):
            flush()
            cur, size = [], 0
        cur.append(par)
        size += len(par) + 2
    flush()
    return docs


@lru_cache(maxsize=1)
def background_paragraphs() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """All clean, globally deduplicated paragraphs grouped by source, in a fixed order (cached)."""
    raw = _py_docstrings() + _c_docstrings() + _topic_texts()
    seen: set[str] = set()
    grouped: dict[str, list[str]] = {}
    for source, text in raw:
        for par in clean_text(text):
            for piece in _split_long(par):
                if piece not in seen:
                    seen.add(piece)
                    grouped.setdefault(source, []).append(piece)
    return tuple((source, tuple(pars)) for source, pars in sorted(grouped.items()))


def is_heldout(text: str) -> bool:
    """Whether a pass-0 background document belongs to the held-out split (stable sha256 rule)."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100 < HELDOUT_PERCENT


@lru_cache(maxsize=1)
def background_split() -> tuple[tuple[BackgroundDoc, ...], tuple[BackgroundDoc, ...]]:
    """(train documents, held-out documents) of the canonical pass-0 packing; independent of any seed."""
    train: list[BackgroundDoc] = []
    heldout: list[BackgroundDoc] = []
    seen: set[str] = set()
    for source, pars in background_paragraphs():
        for doc in pack(source, list(pars), target=1200):
            if doc.text in seen:
                continue
            seen.add(doc.text)
            (heldout if is_heldout(doc.text) else train).append(doc)
    return tuple(train), tuple(heldout)


def repacked(docs: tuple[BackgroundDoc, ...], rng: random.Random) -> list[BackgroundDoc]:
    """A new packing of the given documents' paragraphs with random document sizes (for repeat passes).

    The text is the same as in ``docs`` but cut into different documents, so repeats are not exact
    duplicates; only paragraphs of ``docs`` are used, so held-out text never leaks into a repeat.
    """
    by_source: dict[str, list[str]] = {}
    for doc in docs:
        by_source.setdefault(doc.source, []).extend(doc.paragraphs)
    out: list[BackgroundDoc] = []
    for source in sorted(by_source):
        pars = by_source[source]
        start = 0
        while start < len(pars):
            take = rng.randint(1, 6)
            out.extend(pack(source, pars[start:start + take], target=rng.randint(300, MAX_DOC_CHARS)))
            start += take
    return out
