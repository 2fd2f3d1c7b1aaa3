"""Docs that run: the fenced blocks of README.md and docs/, parsed, run and compared.

Used by tests/test_docs_run.py; the conventions are in docs/testing.md ("Docs that run").

- Blocks tagged ``python``/``py``, ``pycon``, ``console``, ``bash``/``sh``/``shell`` run;
  ``yaml``, ``json``, ``text``, ``toml`` and the rest are data (a ``text`` block right after
  a block that runs is that block's expected output). An untagged block that starts with
  ``$ `` or ``>>> `` is a transcript and must be tagged.
- A block that must not run carries ``<!-- not run: REASON -->`` on the line right before
  its fence; ``<!-- run: OPTION; OPTION ... -->`` there sets up what it runs against
  (:data:`OPTIONS`).
- Output is compared line by line (trailing spaces and trailing blank lines ignored): a
  line that is only ``...`` (or ``…``) stands for any number of lines, ``...`` or ``…``
  inside a line for any characters.
- ``/tmp/`` in a block (code and expected output) stands for a fresh directory per file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).resolve().parent / "docs_driver.py"
#: On PYTHONPATH of every block: its sitecustomize blocks the network beyond loopback.
SITE = Path(__file__).resolve().parent / "docs_site"

#: Languages whose blocks run, by the runner that runs them.
PYTHON = frozenset({"python", "py"})
PYCON = frozenset({"pycon"})
CONSOLE = frozenset({"console", "shell-session"})
SCRIPT = frozenset({"bash", "sh", "shell"})
RUNS = PYTHON | PYCON | CONSOLE | SCRIPT

#: ``<!-- run: ... -->`` options, each with how many arguments it takes (None: any number).
OPTIONS: dict[str, tuple[int, int | None]] = {
    # the environment
    "example-root": (0, 0),  # $DP_MODELS_ROOT=MODELS_ROOT.example, catalog examples/spec_catalog
    "fake-root": (1, None),  # a fake root for these specs (and what they require)
    "triton": (1, None),  # a real tritonserver serving stand-ins of these Triton specs
    "demo": (0, 0),  # examples/demo.py has written demo_out/ in the working directory
    # how the block runs
    "continue": (0, 0),  # python: in the process and namespace of the block before
    "pytest": (0, 0),  # python: a pytest module, run by pytest with the dp_models plugin
    "exit": (1, 1),  # console/bash: the last command exits with this status
    "catalog": (1, 1),  # yaml: '# FILE' lines start files of a catalog in DIR; its text
    # block is what Catalog.load raises
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*?)[ \t]*$")
_MARKER = re.compile(r"^[ \t]*<!--\s*(?P<kind>not run|run)\s*:(?P<body>.*?)-->[ \t]*$")
_ANY_MARKER = re.compile(r"<!--\s*(not[ \t]+)?run\b")
_TEST_FUNCTION = re.compile(r"^(?:async\s+)?def\s+test_\w*\s*\(", re.MULTILINE)


class DocError(Exception):
    """A block (or marker) that breaks the conventions: ``file:line: why``."""


@dataclass(frozen=True)
class Marker:
    """A ``<!-- run: ... -->`` or ``<!-- not run: REASON -->`` line."""

    line: int
    run: bool
    reason: str = ""
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Block:
    """One fenced block of a Markdown file."""

    file: str  #: relative to the repository, e.g. ``docs/manager.md``
    line: int  #: the opening fence's line (1-based)
    lang: str
    code: str  #: the content, without the fence's indentation
    marker: Marker | None = None
    #: The ``text`` block right after (blank lines between, nothing else): the output.
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUNS and not (self.marker is not None and not self.marker.run)

    def option(self, name: str) -> tuple[str, ...] | None:
        return None if self.marker is None else self.marker.options.get(name)


def parse_marker(text: str, line: int, where: str) -> Marker | None:
    """The marker on ``text``, or None when the line is no marker."""
    m = _MARKER.match(text)
    if m is None:
        if _ANY_MARKER.search(text):
            raise DocError(f"{where}: a marker is one line, `<!-- run: ... -->` or "
                           "`<!-- not run: REASON -->`")
        return None
    body = m["body"].strip()
    if m["kind"] == "not run":
        if not body:
            raise DocError(f"{where}: `<!-- not run: REASON -->` needs a reason")
        return Marker(line, run=False, reason=body)
    options: dict[str, tuple[str, ...]] = {}
    for clause in filter(None, (c.strip() for c in body.split(";"))):
        name, *args = clause.split()
        if name not in OPTIONS:
            known = ", ".join(OPTIONS)
            raise DocError(f"{where}: unknown run option {name!r} (known: {known})")
        least, most = OPTIONS[name]
        if len(args) < least or (most is not None and len(args) > most):
            raise DocError(f"{where}: run option {name!r} takes {least}..{most or 'n'} "
                           f"arguments, got {args}")
        options[name] = tuple(args)
    if not options:
        raise DocError(f"{where}: `<!-- run: -->` names no option")
    return Marker(line, run=True, options=options)


def parse(text: str, file: str) -> list[Block]:
    """Every fenced block of a Markdown text, with its marker and output block."""
    lines = text.splitlines()
    blocks: list[Block] = []
    markers: dict[int, Marker] = {}
    for number, line in enumerate(lines, 1):
        marker = parse_marker(line, number, f"{file}:{number}")
        if marker is not None:
            markers[number] = marker
    used: set[int] = set()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = len(m["indent"].expandtabs()), m["fence"]
        lang = (m["info"].split() or [""])[0].lower()
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            raw = lines[j]
            strip = min(indent, len(raw) - len(raw.lstrip(" ")))
            body.append(raw[strip:])
            j += 1
        if j == len(lines):
            raise DocError(f"{file}:{i + 1}: the block is never closed")
        marker = markers.get(i)  # the line right before the fence (numbered from 1)
        if marker is not None:
            used.add(i)
        blocks.append(Block(file, i + 1, lang, "\n".join(body) + "\n", marker))
        i = j + 1
    for number, marker in markers.items():
        if number not in used:
            raise DocError(f"{file}:{number}: a marker must be on the line right before a fence")
    return _with_outputs(blocks, lines)


def _with_outputs(blocks: list[Block], lines: Sequence[str]) -> list[Block]:
    """Attach each ``text`` block that directly follows a block that runs, as its output."""
    out: list[Block] = []
    skip: set[int] = set()
    for k, block in enumerate(blocks):
        if k in skip:
            continue
        after = blocks[k + 1] if k + 1 < len(blocks) else None
        if (
            after is not None
            and after.lang == "text"
            and after.marker is None
            and (block.lang in RUNS or block.option("catalog") is not None)
            and block.lang not in CONSOLE
            and _only_blank_between(lines, block, after)
        ):
            block = Block(block.file, block.line, block.lang, block.code, block.marker, after)
            skip.add(k + 1)
        out.append(block)
    return out


def _only_blank_between(lines: Sequence[str], block: Block, after: Block) -> bool:
    end = block.line + block.code.count("\n")  # the closing fence's line (1-based)
    return all(not lines[n].strip() for n in range(end, after.line - 1))


def check_conventions(blocks: Sequence[Block]) -> list[str]:
    """Problems with the markers and tags that running would not show."""
    problems = []
    for b in blocks:
        first = next((ln for ln in b.code.splitlines() if ln.strip()), "")
        if b.lang == "" and first.lstrip().startswith(("$ ", ">>> ")):
            problems.append(f"{b.where}: a transcript in an untagged block: tag it "
                            "```console (or ```pycon) so that it runs, or mark it not run")
        if b.marker is None:
            if b.lang in PYTHON and _TEST_FUNCTION.search(b.code):
                problems.append(f"{b.where}: a block with test functions does nothing when "
                                "run as a script: mark it `<!-- run: pytest -->`")
            continue
        if b.lang not in RUNS and b.option("catalog") is None:
            problems.append(f"{b.where}: a marker on a {b.lang or 'untagged'} block, which "
                            "never runs")
        if b.option("catalog") is not None and b.lang != "yaml":
            problems.append(f"{b.where}: `run: catalog` is for a yaml block")
        for name in ("continue", "pytest"):
            if b.option(name) is not None and b.lang not in PYTHON:
                problems.append(f"{b.where}: `run: {name}` is for a python block")
        if b.option("exit") is not None and b.lang not in CONSOLE | SCRIPT:
            problems.append(f"{b.where}: `run: exit` is for a console or bash block")
    return problems


# -- output matching ----------------------------------------------------------------------

_ELLIPSIS = re.compile(r"\.\.\.|…")


def _normal(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@cache
def _line_pattern(expected: str) -> re.Pattern[str]:
    parts = _ELLIPSIS.split(expected)
    return re.compile(".*?".join(re.escape(p) for p in parts), re.DOTALL)


def _is_gap(line: str) -> bool:
    return line.strip() in ("...", "…")


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` output is what ``expected`` shows (the rules in the docstring)."""
    want, got = _normal(expected), _normal(actual)
    seen: dict[tuple[int, int], bool] = {}

    def at(i: int, j: int) -> bool:
        key = (i, j)
        if key not in seen:
            if i == len(want):
                seen[key] = j == len(got)
            elif _is_gap(want[i]):
                seen[key] = any(at(i + 1, k) for k in range(j, len(got) + 1))
            else:
                seen[key] = (
                    j < len(got) and bool(_line_pattern(want[i]).fullmatch(got[j])) and at(i + 1, j + 1)
                )
        return seen[key]

    return at(0, 0)


def explain(expected: str, actual: str) -> str:
    """Both outputs, for a failure message."""
    want = "\n".join("    " + line for line in _normal(expected))
    got = "\n".join("    " + line for line in _normal(actual))
    return f"  expected:\n{want}\n  got:\n{got}"


# -- console blocks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: int  #: in the Markdown file
    text: str  #: the command, continuation lines included, without the prompt
    shown: str  #: the output the block shows after it ("" when none)


def commands(block: Block) -> list[Command]:
    """The ``$ `` commands of a console block, each with the output shown after it."""
    found: list[Command] = []
    lines = block.code.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        if not line.startswith("$ "):
            if found or not line.strip():
                k += 1
                continue
            raise DocError(f"{block.file}:{block.line + 1 + k}: a console block starts with a "
                           "`$ ` command")
        start = k
        text = [line[2:]]
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


_END = re.compile(r"\n?@@dp-models-docs-end (\d+) (\S+)@@\n")


def split_ends(output: str) -> Iterator[tuple[int, str, str]]:
    """(index, status, output before it) for each end marker the drivers print."""
    start = 0
    for m in _END.finditer(output):
        yield int(m[1]), m[2], output[start : m.start()]
        start = m.end()


def console_script(cmds: Sequence[Command]) -> str:
    """A bash script running ``cmds`` in one shell, each followed by an end marker with its
    exit status (``$?`` is kept for the next command: ``echo $?`` shows it)."""
    out = ["exec 2>&1", "__dp_end() { printf '\\n@@dp-models-docs-end %s %s@@\\n' \"$1\" \"$2\"; }"]
    for index, cmd in enumerate(cmds):
        out += [cmd.text, f"__dp_s=$?; __dp_end {index} $__dp_s; (exit $__dp_s)"]
    return "\n".join(out) + "\n"


def run_console(block: Block, code: str, *, cwd: Path, env: dict[str, str], timeout: float,
                ) -> list[str]:
    """Run a console block; its problems (empty when it ran as shown)."""
    cmds = commands(Block(block.file, block.line, block.lang, code, block.marker))
    proc = _run(["bash", "--noprofile", "--norc", "-c", console_script(cmds)], cwd, env, timeout)
    if isinstance(proc, str):
        return [f"{block.where}: {proc}"]
    ends = list(split_ends(proc.stdout))
    problems = []
    exit_code = block.option("exit")
    for index, cmd in enumerate(cmds):
        if index >= len(ends):
            problems.append(f"{cmd_where(block, cmd)}: `{cmd.text}` did not finish (the shell "
                            f"ended):\n{proc.stdout[-2000:]}")
            break
        _, status, out = ends[index]
        follows = cmds[index + 1].text.strip() if index + 1 < len(cmds) else ""
        wanted = "0"
        if index == len(cmds) - 1 and exit_code is not None:
            wanted = exit_code[0]
        if status != wanted and not (status != "0" and follows == "echo $?"):
            problems.append(f"{cmd_where(block, cmd)}: `{cmd.text}` exited {status}, not "
                            f"{wanted} (a failure the doc shows is followed by `$ echo $?`, "
                            f"or marked `<!-- run: exit N -->` when last):\n{_indent(out)}")
        elif cmd.shown.strip() and not matches(cmd.shown, out):
            problems.append(f"{cmd_where(block, cmd)}: `{cmd.text}` printed other output\n"
                            + explain(cmd.shown, out))
    return problems


def cmd_where(block: Block, cmd: Command) -> str:
    return f"{block.file}:{cmd.line}"


def run_script(block: Block, code: str, *, cwd: Path, env: dict[str, str], timeout: float,
               ) -> list[str]:
    """Run a bash block as one script (stopping at the first failing command)."""
    script = "set -e -o pipefail\nexec 2>&1\n" + code
    proc = _run(["bash", "--noprofile", "--norc", "-c", script], cwd, env, timeout)
    if isinstance(proc, str):
        return [f"{block.where}: {proc}"]
    wanted = int((block.option("exit") or ("0",))[0])
    if proc.returncode != wanted:
        return [f"{block.where}: the script exited {proc.returncode}, not {wanted}:\n"
                + _indent(proc.stdout)]
    if block.output is not None and not matches(block.output.code, proc.stdout):
        return [f"{block.where}: the script printed other output\n"
                + explain(block.output.code, proc.stdout)]
    return []


# -- python blocks -------------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    block: Block
    code: str  #: the code to run (``/tmp/`` replaced)
    expected: str | None  #: the output to compare (``/tmp/`` replaced), or None


def run_python(chunks: Sequence[Chunk], *, cwd: Path, env: dict[str, str], work: Path,
               timeout: float) -> list[str]:
    """Run ``chunks`` in one fresh interpreter and namespace, in order; each one's output
    compared with what its doc shows."""
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
    proc = _run([sys.executable, str(DRIVER), str(spec_file)], cwd, env, timeout)
    if isinstance(proc, str):
        return [f"{chunks[0].block.where}: {proc}"]
    ends = list(split_ends(proc.stdout))
    problems = []
    for index, chunk in enumerate(chunks):
        where = chunk.block.where
        if index >= len(ends):
            problems.append(f"{where}: the interpreter ended before this block finished "
                            f"(exit {proc.returncode}):\n{_indent(proc.stdout[-3000:])}")
            break
        _, status, out = ends[index]
        if status != "ok":
            problems.append(f"{where}: the block raised:\n{_indent(out)}")
            break
        if chunk.expected is not None and not matches(chunk.expected, out):
            problems.append(f"{where}: the block printed other output than its text block "
                            f"(line {chunk.block.output.line if chunk.block.output else '?'})\n"
                            + explain(chunk.expected, out))
    return problems


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float,
         ) -> subprocess.CompletedProcess[str] | str:
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            env=env,
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


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# -- yaml ----------------------------------------------------------------------------------

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
            raise DocError(f"{block.where}: a `run: catalog` block starts with a `# FILE.yaml` "
                           "line")
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


#: Not copied into a workspace: version control, caches, build outputs.
_NOT_COPIED = frozenset(
    {".git", ".hypothesis", ".mypy_cache", ".pytest_cache", ".ruff_cache", "demo_out",
     ".wheelhouse-demo", "__pycache__"}
)
#: Linked, not copied: the environments (large, and never written by a block).
_LINKED = frozenset({".venv", ".venv-triton"})


def workspace(base: Path) -> Path:
    """A copy of the repository (its working tree, without version control and caches;
    the virtual environments linked) that stands for the repository root: a block that
    writes (``demo_out/``, a ``cp -r`` of the example root it then edits) changes only it."""
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


def quote(path: Path | str) -> str:
    return shlex.quote(os.fspath(path))
