"""Docs that run: every python, pycon, console and bash block of README.md and docs/ runs
here (against MODELS_ROOT.example/, a fake root, or a real Triton server serving stand-ins),
its output compared with what the doc shows, unless a ``<!-- not run: REASON -->`` line
says why not. A stale example fails with its file and line. The conventions: docs/testing.md,
"Docs that run"; the machinery: tests/docsnippets.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import yaml

from dp_models import Catalog, Spec
from dp_models.testing import fake_catalog_dir, fake_models_root
from dp_models.testing.triton import TritonServer, write_standin_catalog, write_standin_repository

from . import docsnippets as ds
from .docsnippets import Block, Chunk, DocError

REPO = ds.REPO
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
#: Seconds one group of blocks may take (a fresh interpreter, frameworks imported).
TIMEOUT_S = 180.0


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


class Resources:
    """What blocks run against, made once per module: fake roots, Triton servers serving
    stand-ins, and the outcome of every ``run: pytest`` block (one pytest run for all)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._roots: dict[tuple[tuple[str, ...], str], Path] = {}
        self._servers: dict[tuple[str, ...], tuple[TritonServer, Path]] = {}
        self._pytest: dict[tuple[str, int], list[str]] | None = None

    def triton(self, names: Sequence[str]) -> tuple[str, Path]:
        """(URL, catalog) of a server serving stand-ins of ``names``; the catalog copy
        expects the digests they serve."""
        key = tuple(sorted(names))
        if key not in self._servers:
            out = self.base / f"triton{len(self._servers)}"
            catalog = Catalog.load()
            digests = write_standin_repository(catalog, out / "repo", key)
            catalog_dir = write_standin_catalog(catalog, out / "catalog", digests)
            server = TritonServer(stop_timeout_s=1.0).start(out / "repo")
            self._servers[key] = (server, catalog_dir)
        server, catalog_dir = self._servers[key]
        return server.url, catalog_dir

    def fake_root(self, names: Sequence[str], catalog: Path | None) -> Path:
        key = (tuple(sorted(names)), str(catalog))
        if key not in self._roots:
            root = self.base / f"fake{len(self._roots)}"
            fake_models_root(root, key[0], catalog=catalog)
            self._roots[key] = root
        return self._roots[key]

    def pytest_outcomes(self, env: dict[str, str]) -> dict[tuple[str, int], list[str]]:
        """Problems of each ``run: pytest`` block of every doc, by (file, line)."""
        if self._pytest is None:
            self._pytest = run_pytest_blocks(
                [b for doc in DOCS for b in _blocks(doc) if b.runs and b.option("pytest")],
                self.base / "pytest",
                env,
            )
        return self._pytest

    def close(self) -> None:
        for server, _ in self._servers.values():
            server.kill()


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resources]:
    made = Resources(tmp_path_factory.mktemp("docs_resources"))
    yield made
    made.close()


def _blocks(doc: Path) -> list[Block]:
    return ds.parse(doc.read_text(encoding="utf-8"), _rel(doc))


def run_pytest_blocks(
    blocks: Sequence[Block], base: Path, env: dict[str, str]
) -> dict[tuple[str, int], list[str]]:
    """Run every block as a test module in one pytest process (the dp_models plugin
    loaded as installed); problems by (file, line)."""
    outcomes: dict[tuple[str, int], list[str]] = {(b.file, b.line): [] for b in blocks}
    if not blocks:
        return outcomes
    tests = base / "tests"
    tests.mkdir(parents=True)
    modules = {}
    for b in blocks:
        stem = "test_doc_" + b.file.replace("/", "_").replace(".", "_").replace("-", "_")
        stem = f"{stem}_l{b.line}"
        (tests / f"{stem}.py").write_text(b.code, encoding="utf-8")
        modules[stem] = b
    report = base / "junit.xml"
    run_env = {
        **env,
        "DP_MODELS_CACHE_DIR": str(base / "cache"),
        "TMPDIR": str(base),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ds.SITE), env.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers",
         "--rootdir", str(tests), f"--junitxml={report}", str(tests)],
        cwd=ds.workspace(base / "repo"),
        env=run_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    passed: dict[str, int] = dict.fromkeys(modules, 0)
    if report.is_file():
        for case in ET.parse(report).getroot().iter("testcase"):
            stem = next((s for s in modules if s in f"{case.get('classname')} {case.get('name')}"), None)
            if stem is None:
                continue
            b = modules[stem]
            bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
            if bad:
                detail = "\n".join((c.get("message") or "") + "\n" + (c.text or "") for c in bad)
                outcomes[(b.file, b.line)].append(
                    f"{b.where}: test {case.get('name')} {bad[0].tag}:\n{ds._indent(detail[-3000:])}"
                )
            else:
                passed[stem] += 1
    for stem, b in modules.items():
        if not passed[stem] and not outcomes[(b.file, b.line)]:
            outcomes[(b.file, b.line)].append(
                f"{b.where}: pytest ran no test of this block (exit {proc.returncode}):\n"
                + ds._indent((proc.stdout + proc.stderr)[-3000:])
            )
    return outcomes


def _environment(
    blocks: Sequence[Block], resources: Resources, base_env: dict[str, str], work: Path
) -> dict[str, str]:
    """The environment of a group of blocks, as their ``run:`` options ask."""
    env = dict(base_env)
    options: dict[str, tuple[str, ...]] = {}
    for b in blocks:
        options.update(b.marker.options if b.marker is not None else {})
    catalog = None
    if "example-root" in options:
        env["DP_MODELS_ROOT"] = "MODELS_ROOT.example"
        env["DP_MODELS_CATALOG"] = "examples/spec_catalog"
    if "triton" in options:
        url, catalog = resources.triton(options["triton"])
        env["DP_MODELS_TRITON_URL"] = url
        env["DP_MODELS_CATALOG"] = str(catalog)
        empty = work / "empty_root"
        empty.mkdir(exist_ok=True)
        env["DP_MODELS_ROOT"] = str(empty)
    if "fake-root" in options:
        root = resources.fake_root(options["fake-root"], catalog)
        env["DP_MODELS_ROOT"] = str(root)
        env["DP_MODELS_CATALOG"] = str(fake_catalog_dir(root))
    return env


def _groups(blocks: Sequence[Block]) -> Iterator[list[Block]]:
    """Blocks to run, in order: a python block with those marked ``continue`` after it."""
    group: list[Block] = []
    for b in blocks:
        if not b.runs or b.option("pytest") is not None:
            continue
        if b.option("continue") is not None and group and group[0].lang in ds.PYTHON | ds.PYCON:
            group.append(b)
            continue
        if group:
            yield group
        group = [b]
    if group:
        yield group


def _check_yaml(block: Block) -> list[str]:
    """A yaml block that is a whole spec (name, version, runtime) must be a valid one; one
    shown as a file of the catalog (its schema line first) must be that file's content."""
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
    if block.code.startswith("# yaml-language-server"):
        packaged = Catalog.load()
        if spec.name not in packaged:
            return [f"{block.where}: spec {spec.name!r} is shown as a catalog file, but the "
                    "catalog has no such spec"]
        shown = yaml.safe_load(packaged.files[spec.name].read_text(encoding="utf-8"))
        if shown != data:
            return [f"{block.where}: differs from {packaged.files[spec.name]}"]
    return []


def run_doc(
    text: str, file: str, tmp_path: Path, resources: Resources, base_env: dict[str, str]
) -> list[str]:
    """Every problem of one Markdown file's blocks (empty: it runs as it says)."""
    try:
        blocks = ds.parse(text, file)
    except DocError as exc:
        return [str(exc)]
    problems = ds.check_conventions(blocks)
    scratch = tmp_path / "tmp"  # what /tmp/ in a block stands for
    scratch.mkdir(parents=True)
    repo = ds.workspace(tmp_path / "repo")
    base_env = {
        **base_env,
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{base_env.get('PATH', '')}",
        "TMPDIR": str(scratch),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ds.SITE), base_env.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "DP_MODELS_CACHE_DIR": str(tmp_path / "digest_cache"),
    }

    def local(code: str) -> str:
        return code.replace("/tmp/", f"{scratch}/")

    demo_done = False
    for b in blocks:
        if b.lang == "yaml" and b.marker is None:
            problems += _check_yaml(b)
    for number, group in enumerate(_groups(blocks)):
        first = group[0]
        work = tmp_path / f"group{number}"
        work.mkdir()
        try:
            env = _environment(group, resources, base_env, work)
        except Exception as exc:  # a fake root or server that could not be made
            problems.append(f"{first.where}: its `run:` setup failed: {type(exc).__name__}: {exc}")
            continue
        if any(b.option("demo") is not None for b in group) and not demo_done:
            demo = subprocess.run(
                [sys.executable, "examples/demo.py", "--out", "demo_out"],
                cwd=repo, env=base_env, capture_output=True, text=True, timeout=TIMEOUT_S,
                check=False,
            )
            if demo.returncode != 0:
                problems.append(f"{first.where}: examples/demo.py failed:\n{demo.stdout}{demo.stderr}")
                continue
            demo_done = True
        if first.lang in ds.PYTHON | ds.PYCON:
            chunks = [
                Chunk(b, local(b.code), local(b.output.code) if b.output else None) for b in group
            ]
            problems += ds.run_python(
                chunks, cwd=repo, env=env, work=work, timeout=TIMEOUT_S
            )
        elif first.lang in ds.CONSOLE:
            try:
                problems += ds.run_console(first, local(first.code), cwd=repo, env=env,
                                           timeout=TIMEOUT_S)
            except DocError as exc:
                problems.append(str(exc))
        elif first.lang in ds.SCRIPT:
            problems += ds.run_script(first, local(first.code), cwd=repo, env=env,
                                      timeout=TIMEOUT_S)
    for b in blocks:
        if b.runs and b.option("pytest") is not None:
            problems += resources.pytest_outcomes(base_env).get((b.file, b.line), [])
        directory = b.option("catalog")
        if directory is not None:
            problems += _run_catalog_block(b, local(directory[0]), repo, base_env, tmp_path)
    return problems


def _run_catalog_block(
    b: Block, directory: str, repo: Path, env: dict[str, str], tmp_path: Path
) -> list[str]:
    """A ``run: catalog DIR`` yaml block: its files written under DIR, the catalog loaded;
    what it raises is compared with the text block after it."""
    try:
        files = ds.catalog_files(b)
    except DocError as exc:
        return [str(exc)]
    target = Path(directory)
    shutil.rmtree(target, ignore_errors=True)
    for rel, content in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(content, encoding="utf-8")
    code = ds.catalog_code(directory)
    expected = b.output.code.replace("/tmp/", f"{tmp_path / 'tmp'}/") if b.output else None
    work = tmp_path / f"catalog{b.line}"
    work.mkdir()
    return ds.run_python([Chunk(b, code, expected)], cwd=repo, env=env, work=work,
                         timeout=TIMEOUT_S)


# -- the docs ------------------------------------------------------------------------------


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_doc_runs_as_written(doc: Path, tmp_path: Path, resources: Resources) -> None:
    env = dict(os.environ)  # clean (conftest), before a fake root sets offline flags here
    problems = run_doc(doc.read_text(encoding="utf-8"), _rel(doc), tmp_path, resources, env)
    assert not problems, "\n\n".join(problems)
