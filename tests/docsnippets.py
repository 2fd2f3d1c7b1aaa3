"""Docs that run: the fenced blocks of README.md and docs/, parsed, run and compared.

tests/test_docs_run.py runs every doc through :func:`run_doc`; the conventions, for the
people who write docs, are in docs/testing.md ("Docs that run"):

- Blocks tagged ``python``/``py``, ``pycon``, ``console``, ``bash``/``sh``/``shell`` run;
  ``yaml``, ``json``, ``text``, ``toml`` and the rest are data. A ``text`` block right
  after a python, pycon or bash block (blank lines between, nothing else) is its expected
  output; a console block shows its output after each ``$ `` command. An untagged block
  that starts with ``$ `` or ``>>> `` is a transcript and must be tagged. A yaml block that
  is a whole spec is validated; one shown as a catalog file must be that file.
- ``<!-- not run: REASON -->`` on the line right before a fence: the block does not run
  (the reason is required). ``<!-- run: OPTION ARGS; OPTION ... -->`` there: what it runs
  against (:data:`OPTIONS`).
- Output is compared line by line, trailing spaces and trailing blank lines ignored: a line
  that is only ``...`` (or ``…``) stands for any number of lines, ``...`` or ``…`` inside a
  line for any characters. Native log lines (MediaPipe's absl) are dropped first.
- A console command must exit 0, unless the next command is ``echo $?`` (which shows its
  status) or it is the last and the block is marked ``run: exit N``.
- Each doc runs in a copy of the repository (the working directory; ``.venv`` linked, so
  ``.venv/bin`` is first on PATH), with a clean environment, a digest cache of its own, and
  ``/tmp/`` in its blocks (code and expected output) standing for a fresh directory. Every
  interpreter a block starts refuses network access beyond loopback (``docs_site/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "docs_driver.py"
#: On PYTHONPATH of every block: its sitecustomize blocks the network beyond loopback.
SITE = Path(__file__).resolve().parent / "docs_site"
#: The Markdown files whose blocks run.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: Seconds one group of blocks may take (a fresh interpreter, frameworks imported).
TIMEOUT_S = 180.0

#: Languages whose blocks run, by the runner that runs them.
PYTHON = frozenset({"python", "py"})
PYCON = frozenset({"pycon"})
CONSOLE = frozenset({"console", "shell-session"})
SCRIPT = frozenset({"bash", "sh", "shell"})
RUNS = PYTHON | PYCON | CONSOLE | SCRIPT

#: ``<!-- run: ... -->`` options and how many arguments each takes (None: any number).
OPTIONS: dict[str, tuple[int, int | None]] = {
    # what the block runs against (for a python group: the first block's)
    "example-root": (0, 0),  # $DP_MODELS_ROOT=MODELS_ROOT.example, catalog examples/spec_catalog
    "fake-root": (1, None),  # a fake root for these specs (and what they require)
    "triton": (1, None),  # a real tritonserver serving stand-ins of these Triton specs
    "demo": (0, 0),  # examples/demo.py has written demo_out/ in the working directory
    # how the block runs
    "continue": (0, 0),  # python: in the interpreter and namespace of the block before
    "pytest": (0, 0),  # python: a test module, run by pytest with the dp_models plugin
    "exit": (1, 1),  # console or bash: the last command exits with this status
    "catalog": (1, 1),  # yaml: its '# FILE.yaml' parts written as a catalog in DIR; the text
    # block after it is what Catalog.load raises
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_MARKER = re.compile(r"^[ \t]*<!--\s*(?P<kind>not run|run)\s*:(?P<body>.*?)-->[ \t]*$")
_LOOKS_LIKE_MARKER = re.compile(r"^[ \t]*<!--\s*(not\s+)?run\b")
_TEST_FUNCTION = re.compile(r"^(?:async\s+)?def\s+test_\w*\s*\(", re.MULTILINE)


class DocError(Exception):
    """A block or marker that breaks the conventions; its message is ``file:line: why``."""


@dataclass(frozen=True)
class Marker:
    """A ``<!-- run: ... -->`` or ``<!-- not run: REASON -->`` line."""

    line: int
    run: bool
    reason: str = ""
    options: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    file: str  #: relative to the repository, e.g. ``docs/manager.md``
    line: int  #: the opening fence's line (1-based)
    lang: str  #: the info string's first word, lowercased ("" untagged)
    code: str  #: the content, without the fence's indentation
    end: int  #: the closing fence's line
    marker: Marker | None = None
    #: The ``text`` block right after (blank lines between, nothing else): the output.
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the runner runs it (its language runs, and it is not marked not run)."""
        return self.lang in RUNS and (self.marker is None or self.marker.run)

    def option(self, name: str) -> tuple[str, ...] | None:
        """The arguments of a ``run:`` option (``()`` for one without), None when absent."""
        return None if self.marker is None else self.marker.options.get(name)


def parse_marker(text: str, where: str) -> Marker | None:
    """The marker on the line ``text`` (at ``where``, ``file:line``), None for no marker."""
    m = _MARKER.match(text)
    if m is None:
        if _LOOKS_LIKE_MARKER.match(text):
            raise DocError(
                f"{where}: a marker is one line: `<!-- run: OPTION -->` or "
                "`<!-- not run: REASON -->`"
            )
        return None
    line = int(where.rsplit(":", 1)[1])
    body = m["body"].strip()
    if m["kind"] == "not run":
        if not body:
            raise DocError(f"{where}: `<!-- not run: REASON -->` needs a reason")
        return Marker(line, run=False, reason=body)
    options: dict[str, tuple[str, ...]] = {}
    for clause in filter(None, (c.strip() for c in body.split(";"))):
        name, *args = clause.split()
        if name not in OPTIONS:
            raise DocError(f"{where}: unknown run option {name!r} (known: {', '.join(OPTIONS)})")
        least, most = OPTIONS[name]
        if len(args) < least or (most is not None and len(args) > most):
            wanted = f"{least}" if least == most else f"at least {least}"
            raise DocError(f"{where}: run option {name!r} takes {wanted} argument(s): {args}")
        options[name] = tuple(args)
    if not options:
        raise DocError(f"{where}: `<!-- run: -->` names no option")
    return Marker(line, run=True, options=options)


def parse(text: str, file: str) -> list[Block]:
    """Every fenced block of a Markdown text, with its marker and its output block.
    Raises :class:`DocError` for a marker that is malformed or not right before a fence,
    and for a block that is never closed."""
    lines = text.splitlines()
    blocks: list[Block] = []
    pending: Marker | None = None  # a marker on the line before this one
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            if pending is not None:
                raise DocError(
                    f"{file}:{pending.line}: a marker must be on the line right before a fence"
                )
            pending = parse_marker(lines[i], f"{file}:{i + 1}")
            i += 1
            continue
        indent, fence = len(m["indent"].expandtabs()), m["fence"]
        lang = (m["info"].split() or [""])[0].lower()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            raw = lines[j]
            body.append(raw[min(indent, len(raw) - len(raw.lstrip(" "))) :])
            j += 1
        if j == len(lines):
            raise DocError(f"{file}:{i + 1}: the block is never closed")
        blocks.append(Block(file, i + 1, lang, "\n".join(body) + "\n", j + 1, pending))
        pending = None
        i = j + 1
    if pending is not None:
        raise DocError(f"{file}:{pending.line}: a marker must be on the line right before a fence")
    return _with_outputs(blocks, lines)


def _with_outputs(blocks: list[Block], lines: Sequence[str]) -> list[Block]:
    """Attach each unmarked ``text`` block right after a block that prints as its output."""
    out: list[Block] = []
    taken = False
    for k, block in enumerate(blocks):
        if taken:
            taken = False
            continue
        after = blocks[k + 1] if k + 1 < len(blocks) else None
        prints = block.lang in PYTHON | PYCON | SCRIPT or block.option("catalog") is not None
        if (
            after is not None
            and prints
            and after.lang == "text"
            and after.marker is None
            and all(not lines[n].strip() for n in range(block.end, after.line - 1))
        ):
            block = Block(
                block.file, block.line, block.lang, block.code, block.end, block.marker, after
            )
            taken = True
        out.append(block)
    return out


def check_conventions(blocks: Sequence[Block]) -> list[str]:
    """Problems with tags and markers that running the blocks would not show."""
    problems = []
    for b in blocks:
        first = next((ln for ln in b.code.splitlines() if ln.strip()), "")
        if b.lang == "" and first.lstrip().startswith(("$ ", ">>> ")):
            problems.append(
                f"{b.where}: a transcript in an untagged block: tag it ```console "
                "(or ```pycon) so that it runs, or mark it not run"
            )
        if b.marker is None:
            if b.lang in PYTHON and _TEST_FUNCTION.search(b.code):
                problems.append(
                    f"{b.where}: test functions do nothing when the block runs as "
                    "a script: mark it `<!-- run: pytest -->`"
                )
            continue
        if b.lang not in RUNS and b.option("catalog") is None:
            problems.append(
                f"{b.where}: a marker on a {b.lang or 'untagged'} block, which never runs"
            )
        if b.option("catalog") is not None and b.lang != "yaml":
            problems.append(f"{b.where}: `run: catalog` is for a yaml block")
        for name in ("continue", "pytest"):
            if b.option(name) is not None and b.lang not in PYTHON | PYCON:
                problems.append(f"{b.where}: `run: {name}` is for a python block")
        if b.option("exit") is not None and b.lang not in CONSOLE | SCRIPT:
            problems.append(f"{b.where}: `run: exit` is for a console or bash block")
    return problems


# -- output --------------------------------------------------------------------------------

_ELLIPSIS = re.compile(r"\.\.\.|…")
#: What native code (MediaPipe's absl) writes to stderr on its own, now and then (a memory
#: alignment notice): not output a doc shows; dropped before comparing.
_NATIVE_LOG = re.compile(
    r"WARNING: Logging before InitGoogle\(\) is written to STDERR"
    r"|[IWEF]\d{4} [\d:.]+ +\d+ [\w.+-]+:\d+\] .*"
)


def _normal(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines() if not _NATIVE_LOG.fullmatch(line)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@cache
def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(p) for p in _ELLIPSIS.split(expected)), re.DOTALL)


def _is_gap(line: str) -> bool:
    return line.strip() in ("...", "…")


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` output is what ``expected`` shows (the rules in the docstring)."""
    want, got = _normal(expected), _normal(actual)
    seen: dict[tuple[int, int], bool] = {}

    def at(i: int, j: int) -> bool:
        if (i, j) not in seen:
            if i == len(want):
                found = j == len(got)
            elif _is_gap(want[i]):
                found = any(at(i + 1, k) for k in range(j, len(got) + 1))
            else:
                found = (
                    j < len(got)
                    and _line_pattern(want[i]).fullmatch(got[j]) is not None
                    and at(i + 1, j + 1)
                )
            seen[(i, j)] = found
        return seen[(i, j)]

    return at(0, 0)


def explain(expected: str, actual: str) -> str:
    """Both outputs, for a failure message."""
    return f"  expected:\n{_indent(expected)}\n  got:\n{_indent(actual)}"


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# -- running -------------------------------------------------------------------------------


def _run(
    argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = TIMEOUT_S
) -> subprocess.CompletedProcess[str] | str:
    """The finished process (stdout and stderr together), or why it did not finish."""
    try:
        return subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return f"did not finish within {timeout:.0f} s:\n{_indent(out[-2000:])}"


_END = re.compile(r"\n?@@dp-models-docs-end (\d+) (\S+)@@\n")


def split_ends(output: str) -> list[tuple[str, str]]:
    """(status, output before it) for each end mark the drivers print, in order."""
    found, start = [], 0
    for m in _END.finditer(output):
        found.append((m[2], output[start : m.start()]))
        start = m.end()
    return found


@dataclass(frozen=True)
class Chunk:
    """A python block as it runs: ``/tmp/`` replaced in its code and expected output."""

    block: Block
    code: str
    expected: str | None


def run_python(
    chunks: Sequence[Chunk], *, cwd: Path, env: Mapping[str, str], work: Path
) -> list[str]:
    """Run ``chunks`` in order in one fresh interpreter and namespace (tests/docs_driver.py,
    ``tmp_path`` predefined), each one's output compared with its text block."""
    spec = {
        "tmp_path": str(work / "tmp_path"),
        "chunks": [
            {
                "file": c.block.file,
                "line": c.block.line + 1,
                "kind": "pycon" if c.block.lang in PYCON else "python",
                "code": c.code,
            }
            for c in chunks
        ],
    }
    spec_file = work / "chunks.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    proc = _run([sys.executable, str(DRIVER), str(spec_file)], cwd, env)
    if isinstance(proc, str):
        return [f"{chunks[0].block.where}: {proc}"]
    ends = split_ends(proc.stdout)
    problems = []
    for index, chunk in enumerate(chunks):
        where = chunk.block.where
        if index >= len(ends):
            problems.append(
                f"{where}: the interpreter ended before the block did (exit "
                f"{proc.returncode}):\n{_indent(proc.stdout[-3000:])}"
            )
            break
        status, out = ends[index]
        if status != "ok":
            problems.append(f"{where}: the block raised:\n{_indent(out)}")
            break
        if chunk.expected is not None and not matches(chunk.expected, out):
            problems.append(
                f"{where}: the block printed other output than its text block\n"
                + explain(chunk.expected, out)
            )
    return problems


@dataclass(frozen=True)
class Command:
    line: int  #: in the Markdown file
    text: str  #: the command without its prompt, continuation lines included
    shown: str  #: the output the block shows after it ("" when none)


def commands(block: Block, code: str) -> list[Command]:
    """The ``$ `` commands of a console block (its ``code``), each with the output shown."""
    found: list[Command] = []
    lines = code.splitlines()
    k = 0
    while k < len(lines):
        if not lines[k].startswith("$ "):
            if lines[k].strip() and not found:
                raise DocError(
                    f"{block.file}:{block.line + 1 + k}: a console block starts with a `$ ` command"
                )
            k += 1
            continue
        start, text = k, [lines[k][2:]]
        while text[-1].endswith("\\") and k + 1 < len(lines):
            k += 1
            text.append(lines[k])
        k += 1
        shown = []
        while k < len(lines) and not lines[k].startswith("$ "):
            shown.append(lines[k])
            k += 1
        found.append(Command(block.line + 1 + start, "\n".join(text), "\n".join(shown)))
    if not found:
        raise DocError(f"{block.where}: a console block without a `$ ` command")
    return found


def console_script(cmds: Sequence[Command]) -> str:
    """A bash script running ``cmds`` in one shell, each followed by an end mark with its
    exit status (``$?`` is kept for the next command, so that ``echo $?`` shows it)."""
    out = ["exec 2>&1", '__dp_end() { printf \'\\n@@dp-models-docs-end %s %s@@\\n\' "$1" "$2"; }']
    for index, cmd in enumerate(cmds):
        out += [cmd.text, f"__dp_s=$?; __dp_end {index} $__dp_s; (exit $__dp_s)"]
    return "\n".join(out) + "\n"


def run_console(block: Block, code: str, *, cwd: Path, env: Mapping[str, str]) -> list[str]:
    """Run a console block's commands in one shell; each one's status and output checked."""
    try:
        cmds = commands(block, code)
    except DocError as exc:
        return [str(exc)]
    proc = _run(["bash", "--noprofile", "--norc", "-c", console_script(cmds)], cwd, env)
    if isinstance(proc, str):
        return [f"{block.where}: {proc}"]
    ends = split_ends(proc.stdout)
    last = block.option("exit")
    problems = []
    for index, cmd in enumerate(cmds):
        where = f"{block.file}:{cmd.line}"
        if index >= len(ends):
            problems.append(
                f"{where}: `{cmd.text}` did not finish (the shell ended):\n"
                + _indent(proc.stdout[-2000:])
            )
            break
        status, out = ends[index]
        wanted = last[0] if last is not None and index == len(cmds) - 1 else "0"
        shown_next = index + 1 < len(cmds) and cmds[index + 1].text.strip() == "echo $?"
        if status != wanted and not (wanted == "0" and shown_next):
            problems.append(
                f"{where}: `{cmd.text}` exited {status}, not {wanted} (a failure a "
                "doc shows is followed by `$ echo $?`, or is the last command of a "
                f"block marked `<!-- run: exit N -->`):\n{_indent(out)}"
            )
        elif cmd.shown.strip() and not matches(cmd.shown, out):
            problems.append(
                f"{where}: `{cmd.text}` printed other output\n" + explain(cmd.shown, out)
            )
    return problems


def run_script(
    block: Block, code: str, expected: str | None, *, cwd: Path, env: Mapping[str, str]
) -> list[str]:
    """Run a bash block as one script, stopping at the first command that fails."""
    proc = _run(
        ["bash", "--noprofile", "--norc", "-c", "set -e -o pipefail\nexec 2>&1\n" + code], cwd, env
    )
    if isinstance(proc, str):
        return [f"{block.where}: {proc}"]
    wanted = int((block.option("exit") or ("0",))[0])
    if proc.returncode != wanted:
        return [
            f"{block.where}: the script exited {proc.returncode}, not {wanted}:\n"
            + _indent(proc.stdout)
        ]
    if expected is not None and not matches(expected, proc.stdout):
        return [
            f"{block.where}: the script printed other output than its text block\n"
            + explain(expected, proc.stdout)
        ]
    return []


_FILE_LINE = re.compile(r"^# (?P<path>[\w./-]+\.ya?ml)\s*$")


def catalog_files(block: Block) -> dict[str, str]:
    """The files of a ``run: catalog`` yaml block: each starts at a ``# PATH.yaml`` line."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in block.code.splitlines():
        m = _FILE_LINE.match(line)
        if m is not None:
            current = files.setdefault(m["path"], [])
        elif current is not None:
            current.append(line)
        elif line.strip():
            raise DocError(
                f"{block.where}: a `run: catalog` block starts with a `# FILE.yaml` line"
            )
    return {path: "\n".join(lines).strip() + "\n" for path, lines in files.items()}


def catalog_code(directory: str) -> str:
    """Python that loads the catalog at ``directory`` and prints its CatalogError."""
    return (
        "from dp_models import Catalog, CatalogError\n"
        "try:\n"
        f"    Catalog.load({directory!r})\n"
        "except CatalogError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    print('the catalog is valid')\n"
    )


def check_yaml(block: Block) -> list[str]:
    """A yaml block that is a whole spec (``name``, ``version``, ``runtime``) must be a
    valid one; one shown as a catalog file (its schema line first) must be that file."""
    from dp_models import Catalog, Spec

    try:
        data = yaml.safe_load(block.code)
    except yaml.YAMLError as exc:
        return [f"{block.where}: not valid YAML: {exc}"]
    if not isinstance(data, dict) or not {"name", "version", "runtime"} <= data.keys():
        return []
    try:
        spec = Spec.model_validate(data)
    except ValueError as exc:
        return [f"{block.where}: not a valid spec: {exc}"]
    if not block.code.startswith("# yaml-language-server"):
        return []
    packaged = Catalog.load()
    if spec.name not in packaged:
        return [
            f"{block.where}: spec {spec.name!r} is shown as a file of the catalog, which "
            "has no such spec"
        ]
    path = packaged.files[spec.name]
    if yaml.safe_load(path.read_text(encoding="utf-8")) != data:
        return [
            f"{block.where}: differs from {path.relative_to(path.parents[2])} (the file it shows)"
        ]
    return []


# -- what blocks run against ---------------------------------------------------------------

#: Not copied into a workspace: version control, caches, outputs.
_NOT_COPIED = frozenset(
    {
        ".git",
        ".hypothesis",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "__pycache__",
        "demo_out",
        ".wheelhouse-demo",
    }
)
#: Linked, not copied: the environments (large, and never written by a block).
_LINKED = frozenset({".venv", ".venv-triton"})


def workspace(base: Path) -> Path:
    """A copy of the repository's working tree (the environments linked, caches left out)
    that stands for the repository root: what a block writes (``demo_out/``, the example
    root it copies with ``cp -r`` and edits) changes only the copy."""
    base.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*_NOT_COPIED)
    for entry in REPO.iterdir():
        if entry.name in _NOT_COPIED:
            continue
        if entry.name in _LINKED:
            (base / entry.name).symlink_to(entry)
        elif entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, base / entry.name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(entry, base / entry.name, follow_symlinks=False)
    return base


def clean_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without any variable dp_models reads or sets (a caller's root, catalog,
    endpoints, offline flags and caches)."""
    from dp_models._offline import LEGACY_CACHE_VARS, OFFLINE_FLAGS, cache_dirs
    from dp_models._settings import (
        ENV_TRITON_REPLICAS,
        ENV_TRITON_TIMEOUT,
        ENV_TRITON_URL,
        ENV_VARS,
    )

    dropped = {*ENV_VARS, *OFFLINE_FLAGS, *cache_dirs(Path("/")), *LEGACY_CACHE_VARS}
    prefixes = (ENV_TRITON_URL, ENV_TRITON_TIMEOUT, ENV_TRITON_REPLICAS, "DP_MODELS_")
    return {k: v for k, v in environ.items() if k not in dropped and not k.startswith(prefixes)}


def block_environment(base: Mapping[str, str], cache_dir: Path, tmp: Path) -> dict[str, str]:
    """The environment every block of a doc starts from."""
    return {
        **base,
        "PATH": os.pathsep.join([str(REPO / ".venv" / "bin"), base.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE), base.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TMPDIR": str(tmp),
        "DP_MODELS_CACHE_DIR": str(cache_dir),
    }


class Resources:
    """What blocks run against, made once and shared (thread-safe): fake roots, Triton
    servers serving stand-ins, and the outcome of every ``run: pytest`` block (one pytest
    process for all of them)."""

    def __init__(self, base: Path, env: Mapping[str, str], docs: Sequence[Path] = ()) -> None:
        self.base = base
        self.env = dict(env)  # clean: what the processes made here start from
        self.docs = tuple(docs)  # whose pytest blocks the first pytest process runs too
        self._lock = threading.Lock()
        self._locks: dict[Any, threading.Lock] = {}
        self._roots: dict[tuple[tuple[str, ...], str], Path] = {}
        self._servers: dict[tuple[str, ...], tuple[Any, Path]] = {}
        self._pytest: dict[tuple[str, int], list[str]] = {}
        self._batches = 0

    def _once(self, key: Any) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _mkdir(self, stem: str) -> Path:
        with self._lock:
            self._batches += 1
            path = self.base / f"{stem}{self._batches}"
        path.mkdir(parents=True)
        return path

    def triton(self, names: Sequence[str]) -> tuple[str, Path]:
        """(URL, catalog) of a real server serving stand-ins of ``names``; the catalog copy
        expects the digests they serve."""
        from dp_models import Catalog
        from dp_models.testing.triton import (
            TritonServer,
            write_standin_catalog,
            write_standin_repository,
        )

        key = tuple(sorted(names))
        with self._once(("triton", key)):
            if key not in self._servers:
                out = self._mkdir("triton")
                catalog = Catalog.load()
                digests = write_standin_repository(catalog, out / "repo", key)
                catalog_dir = write_standin_catalog(catalog, out / "catalog", digests)
                server = TritonServer(stop_timeout_s=1.0).start(out / "repo")
                self._servers[key] = (server, catalog_dir)
        server, catalog_dir = self._servers[key]
        return str(server.url), catalog_dir

    def fake_root(self, names: Sequence[str], catalog: Path | None) -> Path:
        """A fake root for ``names`` (from ``catalog``, else the packaged one), made by
        ``fake_models_root`` in an interpreter of its own (it sets offline flags)."""
        key = (tuple(sorted(names)), str(catalog))
        with self._once(("root", key)):
            if key not in self._roots:
                root = self._mkdir("fake_root")
                code = (
                    "import json, sys\n"
                    "from dp_models.testing import fake_models_root\n"
                    "fake_models_root(sys.argv[1], json.loads(sys.argv[2]), "
                    "catalog=sys.argv[3] or None)\n"
                )
                argv = [
                    sys.executable,
                    "-c",
                    code,
                    str(root),
                    json.dumps(key[0]),
                    str(catalog or ""),
                ]
                env = block_environment(self.env, root.parent / f"{root.name}_cache", root.parent)
                proc = _run(argv, REPO, env)
                if isinstance(proc, str) or proc.returncode != 0:
                    why = proc if isinstance(proc, str) else _indent(proc.stdout)
                    raise RuntimeError(f"fake_models_root({list(key[0])}) failed: {why}")
                self._roots[key] = root
        return self._roots[key]

    def pytest_outcomes(self, blocks: Sequence[Block]) -> dict[tuple[str, int], list[str]]:
        """Problems of each ``run: pytest`` block of ``blocks``, by (file, line). The first
        call runs those of :attr:`docs` too, in one pytest process (one start-up for all)."""
        with self._once("pytest"):
            missing = [b for b in blocks if (b.file, b.line) not in self._pytest]
            if missing or not self._pytest:
                if not self._pytest:
                    every = [
                        b
                        for doc in self.docs
                        for b in _doc_blocks(doc)
                        if b.runs and b.option("pytest") is not None
                    ]
                    have = {(b.file, b.line) for b in missing}
                    missing += [b for b in every if (b.file, b.line) not in have]
                if missing:
                    self._pytest.update(run_pytest_blocks(missing, self._mkdir("pytest"), self.env))
        return {(b.file, b.line): self._pytest[(b.file, b.line)] for b in blocks}

    def run_pytest_docs(self) -> None:
        """Run the ``run: pytest`` blocks of :attr:`docs` now (ahead of the docs that ask)."""
        self.pytest_outcomes([])

    def close(self) -> None:
        for server, _ in self._servers.values():
            server.kill()


def _doc_blocks(doc: Path) -> list[Block]:
    try:
        return parse(doc.read_text(encoding="utf-8"), doc.relative_to(REPO).as_posix())
    except DocError:
        return []  # reported by that doc's own run


def run_pytest_blocks(
    blocks: Sequence[Block], base: Path, env: Mapping[str, str]
) -> dict[tuple[str, int], list[str]]:
    """Run each block as a test module, all in one pytest process (the dp_models plugin
    loaded as installed); problems by (file, line)."""
    outcomes: dict[tuple[str, int], list[str]] = {(b.file, b.line): [] for b in blocks}
    tests = base / "tests"
    tests.mkdir()
    modules: dict[str, Block] = {}
    for b in blocks:
        stem = re.sub(r"\W", "_", f"test_doc_{b.file}_l{b.line}")
        (tests / f"{stem}.py").write_text(b.code, encoding="utf-8")
        modules[stem] = b
    report = base / "junit.xml"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--strict-markers",
        "--continue-on-collection-errors",
        "--rootdir",
        str(tests),
        f"--junitxml={report}",
        str(tests),
    ]
    proc = _run(
        argv, workspace(base / "repo"), block_environment(env, base / "cache", base), timeout=600
    )
    passed = dict.fromkeys(modules, 0)
    if report.is_file():
        for case in ET.parse(report).getroot().iter("testcase"):
            named = {str(case.get(k) or "").split(".")[0] for k in ("classname", "name")}
            module = next((s for s in modules if s in named), None)
            if module is None:
                continue
            b = modules[module]
            bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
            if bad:
                detail = "\n".join(f"{c.get('message') or ''}\n{c.text or ''}" for c in bad)
                outcomes[(b.file, b.line)].append(
                    f"{b.where}: test {case.get('name')}: {bad[0].tag}\n{_indent(detail[-3000:])}"
                )
            else:
                passed[module] += 1
    for stem, b in modules.items():
        if not passed[stem] and not outcomes[(b.file, b.line)]:
            out = proc if isinstance(proc, str) else proc.stdout
            outcomes[(b.file, b.line)].append(
                f"{b.where}: pytest ran no test of this block:\n{_indent(out[-3000:])}"
            )
    return outcomes


def _group_environment(
    group: Sequence[Block], resources: Resources, env: Mapping[str, str], work: Path
) -> dict[str, str]:
    """The environment of a group of blocks, as its first block's ``run:`` options ask."""
    out = dict(env)
    first = group[0]
    catalog = None
    if first.option("example-root") is not None:
        out["DP_MODELS_ROOT"] = "MODELS_ROOT.example"
        out["DP_MODELS_CATALOG"] = "examples/spec_catalog"
    served = first.option("triton")
    if served is not None:
        url, catalog = resources.triton(served)
        empty = work / "empty_root"
        empty.mkdir()
        out.update(
            DP_MODELS_TRITON_URL=url, DP_MODELS_CATALOG=str(catalog), DP_MODELS_ROOT=str(empty)
        )
    names = first.option("fake-root")
    if names is not None:
        root = resources.fake_root(names, catalog)
        out.update(DP_MODELS_ROOT=str(root), DP_MODELS_CATALOG=str(root / ".dp_models" / "catalog"))
    return out


def _groups(blocks: Sequence[Block]) -> Iterator[list[Block]]:
    """The blocks to run, in order: a python block with the ``continue`` ones after it."""
    group: list[Block] = []
    for b in blocks:
        if not b.runs or b.option("pytest") is not None:
            continue
        if b.option("continue") is not None and group and group[0].lang in PYTHON | PYCON:
            group.append(b)
            continue
        if group:
            yield group
        group = [b]
    if group:
        yield group


def run_doc(text: str, file: str, base: Path, resources: Resources) -> list[str]:
    """Run every block of one Markdown file as the conventions say; its problems (none:
    it runs as it is written), each starting with ``file:line``. ``base``: an empty
    directory of this doc's own."""
    try:
        blocks = parse(text, file)
    except DocError as exc:
        return [str(exc)]
    problems = check_conventions(blocks)
    problems += [p for b in blocks if b.lang == "yaml" and b.marker is None for p in check_yaml(b)]
    scratch = base / "tmp"  # what /tmp/ in a block stands for
    scratch.mkdir(parents=True)

    def local(code: str) -> str:
        return code.replace("/tmp/", f"{scratch}/")

    repo = workspace(base / "repo")
    env = block_environment(resources.env, base / "digest_cache", scratch)
    demo_done = False
    for number, group in enumerate(_groups(blocks)):
        first = group[0]
        work = base / f"group{number}"
        work.mkdir()
        try:
            group_env = _group_environment(group, resources, env, work)
        except Exception as exc:  # a fake root or server that could not be made
            problems.append(f"{first.where}: its `run:` setup failed: {type(exc).__name__}: {exc}")
            continue
        if first.option("demo") is not None and not demo_done:
            demo = _run([sys.executable, "examples/demo.py", "--out", "demo_out"], repo, env)
            if isinstance(demo, str) or demo.returncode != 0:
                why = demo if isinstance(demo, str) else demo.stdout
                problems.append(f"{first.where}: examples/demo.py failed:\n{_indent(why)}")
                continue
            demo_done = True
        expected = local(first.output.code) if first.output is not None else None
        if first.lang in PYTHON | PYCON:
            chunks = [
                Chunk(b, local(b.code), local(b.output.code) if b.output else None) for b in group
            ]
            problems += run_python(chunks, cwd=repo, env=group_env, work=work)
        elif first.lang in CONSOLE:
            problems += run_console(first, local(first.code), cwd=repo, env=group_env)
        else:
            problems += run_script(first, local(first.code), expected, cwd=repo, env=group_env)
    tests = [b for b in blocks if b.runs and b.option("pytest") is not None]
    if tests:
        problems += [p for found in resources.pytest_outcomes(tests).values() for p in found]
    for b in blocks:
        directory = b.option("catalog")
        if directory is None:
            continue
        if b.output is None:
            problems.append(
                f"{b.where}: a `run: catalog` block is followed by the text block "
                "of the error it gives"
            )
            continue
        try:
            files = catalog_files(b)
        except DocError as exc:
            problems.append(str(exc))
            continue
        target = Path(local(directory[0]))
        for rel, content in files.items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(content, encoding="utf-8")
        work = base / f"catalog{b.line}"
        work.mkdir()
        chunk = Chunk(b, catalog_code(str(target)), local(b.output.code))
        problems += run_python([chunk], cwd=repo, env=env, work=work)
    return problems
