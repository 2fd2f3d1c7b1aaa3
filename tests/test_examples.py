"""The Kubernetes example manifests (examples/kubernetes/): valid YAML, and every dp-models
command in them (a container's command, or a line of a shell script) parses with the
installed command line, so the examples cannot drift from the CLI. They are not run on a
cluster here (the examples' README says so)."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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
