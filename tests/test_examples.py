"""The examples. The Kubernetes manifests (examples/kubernetes/): valid YAML, and every
dp-models command in them (a container's command, or a line of a shell script) parses with
the installed command line, so the examples cannot drift from the CLI; they are not run on
a cluster here (the examples' README says so). The notebook (examples/tour.ipynb): run by
a kernel of this interpreter, inside the network guard, and its outputs checked."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

from dp_models._cli import _parser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"
MANIFESTS = sorted(EXAMPLES.glob("*.yaml"))


def commands(node: Any) -> Iterator[list[str]]:
    """Every dp-models invocation in a manifest: container ``command`` (+ ``args``) lists,
    and the lines of ``sh -c`` scripts."""
    if isinstance(node, dict):
        command, args = node.get("command"), node.get("args")
        if isinstance(command, list) and command and command[0] == "dp-models":
            yield [str(c) for c in command + (args or [])]
        if isinstance(command, list) and command[:2] == ["/bin/sh", "-c"]:
            for script in [*command[2:], *(args or [])]:
                joined = str(script).replace("\\\n", " ")
                for line in joined.splitlines():
                    words = shlex.split(line.split("||", 1)[0].split("&&", 1)[0])
                    if words and words[0] == "dp-models":
                        yield words
        for value in node.values():
            yield from commands(value)
    elif isinstance(node, list):
        for value in node:
            yield from commands(value)


def test_there_are_examples() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "processor-init-pull.yaml",
        "node-agent.yaml",
        "triton-replicas.yaml",
    }


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_every_dp_models_command_in_an_example_parses(manifest: Path) -> None:
    documents = [d for d in yaml.safe_load_all(manifest.read_text(encoding="utf-8")) if d]
    assert documents and all("kind" in d and "apiVersion" in d for d in documents)
    found = [argv for d in documents for argv in commands(d)]
    if manifest.name != "triton-replicas.yaml":
        assert found, f"{manifest.name} runs no dp-models command"
    parser = _parser()
    for argv in found:
        try:
            args = parser.parse_args(argv[1:])
        except SystemExit:  # argparse's way of refusing
            pytest.fail(f"{manifest.name}: `{shlex.join(argv)}` does not parse")
        assert callable(args.func)


# -- the notebook ------------------------------------------------------------------------

NOTEBOOK = EXAMPLES.parent / "tour.ipynb"
KERNEL = "dp-models-tests"

#: Run by the kernel before the notebook: the network guard, for the whole session (held
#: in the kernel's namespace, so that it is not collected and exited).
GUARD_STARTUP = """\
import contextlib as _contextlib

from dp_models import network_guard as _network_guard

_dp_models_no_network = _contextlib.ExitStack()
_dp_models_no_network.enter_context(_network_guard(["examples/tour.ipynb"]))
"""

#: Appended by the test: the guard was in effect all along.
PROBE = """\
import socket
from dp_models import NetworkBlockedError
try:
    socket.create_connection(("127.0.0.1", 9), timeout=1)
except NetworkBlockedError:
    print("network blocked")
"""


@pytest.fixture
def kernel_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernel spec of this interpreter in a temporary Jupyter path; the user's Jupyter
    and IPython configuration (kernels, profiles, startup files) out of reach."""
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")
    ipython = tmp_path / "ipython"
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-network-guard.py").write_text(GUARD_STARTUP, encoding="utf-8")
    for name, path in {
        "JUPYTER_PATH": jupyter / "data",
        "JUPYTER_DATA_DIR": jupyter / "data",
        "JUPYTER_CONFIG_DIR": jupyter / "config",
        "JUPYTER_RUNTIME_DIR": jupyter / "runtime",
        "IPYTHONDIR": ipython,
    }.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("JUPYTER_NO_CONFIG", "1")
    return KERNEL


def outputs(cell: Any, mime: str) -> str:
    """Everything ``cell`` showed as ``mime`` (streams count as text/plain)."""
    found = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and mime == "text/plain":
            found.append(out["text"])
        elif out["output_type"] in ("execute_result", "display_data"):
            found.append(out["data"].get(mime, ""))
    return "".join(found)


def test_the_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_the_notebook_runs_offline_on_the_example_root(kernel_here: str, tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE, id="probe"))
    client = NotebookClient(
        notebook,
        kernel_name=kernel_here,
        timeout=120,
        startup_timeout=60,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    cells = {c.id: c for c in notebook.cells}

    manager = outputs(cells["manager"], "text/plain")
    assert "<ModelManager root=" in manager and "offline)>" in manager
    assert "HF_HUB_OFFLINE = 1" in manager
    catalog = outputs(cells["manager"], "text/html")
    assert "<table>" in catalog and "tiny_color_classifier" in catalog

    handle = outputs(cells["handle"], "text/plain")
    assert handle.startswith("<ModelHandle tiny_color_classifier inprocess cpu fp32 71f6fdaa…>")
    assert "71f6fdaace49" in outputs(cells["handle"], "text/html")

    assert outputs(cells["load"], "text/plain") == "['red', 'green', 'blue']"
    assert "stamps verify: True" in outputs(cells["stamp"], "text/plain")
    doctor = outputs(cells["doctor"], "text/html")
    assert "Doctor: ok" in doctor and "tiny_color_classifier" in doctor
    restored = outputs(cells["restore"], "text/plain")
    assert "HF_HUB_OFFLINE = None" in restored and "offline" not in restored
    assert outputs(cells["probe"], "text/plain") == "network blocked\n"
