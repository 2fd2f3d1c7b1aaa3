"""Docs that run: every python, pycon, console and bash block of README.md and docs/ runs
here, against MODELS_ROOT.example/, a fake root or a real Triton server serving stand-ins,
and its output is compared with what the doc shows, unless a ``<!-- not run: REASON -->``
line says why not. A stale example fails with its file and line. The conventions:
docs/testing.md, "Docs that run"; the machinery: tests/docsnippets.py.

The docs run concurrently (their blocks are processes), started when the first test asks;
each test waits for its own doc."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from . import docsnippets as ds
from .docsnippets import DocError, Resources, matches, parse, run_doc

#: Docs that take longest first, so that the pool ends together.
SLOW_FIRST = ("README.md", "docs/loaders.md", "docs/manager.md", "docs/triton.md")


def _rel(path: Path) -> str:
    return path.relative_to(ds.REPO).as_posix()


class DocRuns:
    """Every doc's run, started together in threads (each block is a process of its own)."""

    def __init__(self, base: Path, docs: Collection[Path]) -> None:
        env = ds.clean_environment(os.environ)
        self.resources = Resources(base / "resources", env, sorted(docs))
        # The pytest process of every doc's test blocks, and two docs at a time beside it.
        workers = 1 + max(2, min(4, os.cpu_count() or 2))
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="docs")
        self._pool.submit(self.resources.run_pytest_docs)
        order = sorted(docs, key=lambda d: (_rel(d) not in SLOW_FIRST, _rel(d)))
        self.runs: dict[Path, Future[list[str]]] = {}
        for number, doc in enumerate(order):
            text = doc.read_text(encoding="utf-8")
            out = base / f"doc{number}"
            self.runs[doc] = self._pool.submit(run_doc, text, _rel(doc), out, self.resources)

    def close(self) -> None:
        for run in self.runs.values():
            run.cancel()
        self._pool.shutdown(wait=True)
        self.resources.close()


@pytest.fixture(scope="module")
def doc_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DocRuns]:
    """The runs of the docs this session's tests ask for (``-k manager``: that one)."""
    wanted = {
        Path(str(item.callspec.params["doc"]))
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_doc_runs_as_written"
    }
    runs = DocRuns(tmp_path_factory.mktemp("docs"), wanted)
    yield runs
    runs.close()


@pytest.mark.parametrize("doc", ds.DOCS, ids=_rel)
def test_doc_runs_as_written(doc: Path, doc_runs: DocRuns) -> None:
    problems = doc_runs.runs[doc].result()
    assert not problems, "\n\n".join(problems)


def test_every_doc_is_covered() -> None:
    assert {_rel(d) for d in ds.DOCS} >= {
        "README.md",
        "docs/manager.md",
        "docs/testing.md",
        "docs/migration/core_clip.md",
    }


# -- the machinery -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Resources]:
    made = Resources(tmp_path_factory.mktemp("resources"), ds.clean_environment(os.environ))
    yield made
    made.close()


def run(text: str, tmp_path: Path, resources: Resources) -> list[str]:
    return run_doc(text, "docs/x.md", tmp_path / "doc", resources)


def test_markers_belong_to_the_fence_right_after_them() -> None:
    text = (
        "<!-- not run: needs a GPU -->\n```python\nimport cuda\n```\n\n"
        "<!-- run: fake-root a b; continue -->\n```python\npass\n```\n\n"
        "<!-- a comment that is no marker -->\n```python\nx = 1\n```\n"
        "```text\n1\n```\n"
    )
    gpu, fake, plain = parse(text, "docs/x.md")
    assert gpu.marker is not None and gpu.marker.reason == "needs a GPU" and not gpu.runs
    assert fake.option("fake-root") == ("a", "b") and fake.option("continue") == ()
    assert fake.option("triton") is None and fake.line == 7
    assert plain.marker is None and plain.output is not None and plain.output.code == "1\n"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("<!-- not run: -->\n```python\nx\n```\n", "needs a reason"),
        ("<!-- not run: gpu -->\n\n```python\nx\n```\n", "right before a fence"),
        ("<!-- run: fake-rot a -->\n```python\nx\n```\n", "unknown run option 'fake-rot'"),
        ("<!-- run: exit -->\n```console\n$ x\n```\n", "takes 1 argument"),
        ("<!-- run: example-root\n-->\n```python\nx\n```\n", "a marker is one line"),
        ("```python\nx\n", "never closed"),
    ],
)
def test_a_malformed_marker_is_an_error_with_its_line(text: str, why: str) -> None:
    with pytest.raises(DocError, match=why) as info:
        parse(text, "docs/x.md")
    assert str(info.value).startswith("docs/x.md:1:")


def test_markers_inside_a_block_are_its_text() -> None:
    (block,) = parse("````markdown\n<!-- not run: -->\n```python\n```\n````\n", "docs/x.md")
    assert block.lang == "markdown" and "<!-- not run: -->" in block.code


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ("a\nb\n", "a\nb  \n\n", True),  # trailing spaces and blank lines
        ("a\nb\n", "a\nc\n", False),
        ("a\n...\nd\n", "a\nb\nc\nd\n", True),  # a line of ... : any lines
        ("a\n…\nd\n", "a\nd\n", True),  # ... or none
        ("a\n...\n", "b\n", False),
        ("x at http://127.0.0.1:…; ok\n", "x at http://127.0.0.1:4321; ok\n", True),
        ("sig 6365...\n", "sig 636571705f2c...\n", True),  # ... inside a line: any characters
        ("sig 6365...\n", "sig 7365...\n", False),
        ("0\n", "W0000 00:00:1796.3 11541 runner.cc:14] not aligned\n0\n", True),  # native log
    ],
)
def test_output_matching(expected: str, actual: str, same: bool) -> None:
    assert matches(expected, actual) is same


def test_a_block_that_raises_fails_with_its_file_and_line(
    tmp_path: Path, resources: Resources
) -> None:
    text = "Intro.\n\n```python\nprint('fine')\nraise KeyError('stale example')\n```\n"
    (problem,) = run(text, tmp_path, resources)
    assert problem.startswith("docs/x.md:3: the block raised:")
    assert 'File "docs/x.md", line 5' in problem and "KeyError: 'stale example'" in problem


def test_output_is_compared_and_the_namespace_carries_over_with_continue(
    tmp_path: Path, resources: Resources
) -> None:
    text = (
        "```python\nx = 41\nprint(x + 1)\n```\n\n```text\n42\n```\n\n"
        "<!-- run: continue -->\n```python\nprint(x, tmp_path.is_dir())\n```\n\n"
        "```text\n40 True\n```\n"
    )
    (problem,) = run(text, tmp_path, resources)
    assert problem.startswith("docs/x.md:11: the block printed other output than its text block")
    assert "expected:\n    40 True\n  got:\n    41 True" in problem


def test_console_commands_status_and_output(tmp_path: Path, resources: Resources) -> None:
    ok = (
        "```console\n$ echo one\none\n$ (cd /tmp/ && echo made > made.txt)\n"
        "$ cat /tmp/made.txt\nmade\n$ false\n$ echo $?\n1\n"
        "$ dp-models digest MODELS_ROOT.example/demo/tiny_color_classifier/model.onnx\n"
        "3947c79b…  MODELS_ROOT.example/demo/tiny_color_classifier/model.onnx\n```\n\n"
        "<!-- run: exit 3 -->\n```console\n$ echo $((1 + 1))\n2\n$ sh -c 'exit 3'\n```\n"
    )
    assert run(ok, tmp_path / "ok", resources) == []
    bad = "```console\n$ echo two\none\n$ false\n$ echo after\n```\n"
    wrong, failed = run(bad, tmp_path / "bad", resources)
    assert wrong.startswith("docs/x.md:2: `echo two` printed other output")
    assert failed.startswith("docs/x.md:4: `false` exited 1, not 0")


def test_a_bash_block_stops_at_its_first_failure(tmp_path: Path, resources: Resources) -> None:
    text = "```bash\necho start\nfalse\necho never\n```\n"
    (problem,) = run(text, tmp_path, resources)
    assert problem.startswith("docs/x.md:1: the script exited 1, not 0")
    assert "start" in problem and "never" not in problem


def test_no_block_reaches_the_network(tmp_path: Path, resources: Resources) -> None:
    text = (
        "```python\nimport socket\nsocket.getaddrinfo('example.com', 443)\n```\n\n"
        "```python\nimport socket\nsocket.create_connection(('192.0.2.1', 80), timeout=5)\n```\n"
    )
    lookup, connect = run(text, tmp_path, resources)
    assert "no name lookups beyond localhost (example.com)" in lookup
    assert "no network beyond loopback (192.0.2.1)" in connect


def test_conventions_a_run_would_not_show(tmp_path: Path, resources: Resources) -> None:
    text = (
        "```\n$ dp-models list\n```\n\n"
        "```python\ndef test_x():\n    assert False\n```\n\n"
        "<!-- run: continue -->\n```yaml\na: 1\n```\n\n"
        "```yaml\nname: x\nversion: 1\nruntime: inprocess\n```\n"
    )
    problems = run(text, tmp_path, resources)
    assert [p.split(":", 2)[1] for p in problems] == ["1", "5", "11", "11", "15"]
    assert "tag it ```console" in problems[0] and "run: pytest" in problems[1]
    assert "never runs" in problems[2] and "`run: continue` is for a python block" in problems[3]
    assert "not a valid spec" in problems[4]


def test_a_catalog_block_gives_the_error_its_text_block_shows(
    tmp_path: Path, resources: Resources
) -> None:
    text = (
        "<!-- run: catalog /tmp/cat -->\n```yaml\n# visual/x.yaml\nname: x\nversion: 1\n```\n\n"
        "```text\ncatalog /tmp/cat is invalid (...):\n...\n"
        "  - visual/x.yaml: version: Input should be a valid string (got 1)\n...\n```\n"
    )
    assert run(text, tmp_path / "good", resources) == []
    stale = text.replace("valid string (got 1)", "valid string (got one)")
    (problem,) = run(stale, tmp_path / "stale", resources)
    assert problem.startswith("docs/x.md:2: the block printed other output")


def test_pytest_blocks_run_as_test_modules(tmp_path: Path, resources: Resources) -> None:
    text = (
        "<!-- run: pytest -->\n```python\ndef test_passes(tmp_path):\n    assert tmp_path\n```\n\n"
        "<!-- run: pytest -->\n```python\ndef test_fails():\n    assert 1 == 2\n```\n\n"
        "<!-- run: pytest -->\n```python\nimport not_installed_anywhere\n```\n"
    )
    fails, broken = run(text, tmp_path, resources)
    assert fails.startswith("docs/x.md:8: test test_fails: failure")
    assert broken.startswith("docs/x.md:14:") and "not_installed_anywhere" in broken


def test_what_a_block_writes_stays_in_its_copy_of_the_repository(
    tmp_path: Path, resources: Resources
) -> None:
    labels = ds.REPO / "MODELS_ROOT.example/demo/tiny_color_classifier/labels.txt"
    before = labels.read_bytes()
    text = (
        "```console\n$ cp -r MODELS_ROOT.example /tmp/root\n"
        "$ printf 'x\\n' > /tmp/root/demo/tiny_color_classifier/labels.txt\n"
        "$ printf 'y\\n' > MODELS_ROOT.example/demo/tiny_color_classifier/labels.txt\n```\n"
    )
    assert run(text, tmp_path, resources) == []
    assert labels.read_bytes() == before
