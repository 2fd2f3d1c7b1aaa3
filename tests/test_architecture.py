"""The layering of docs/architecture.md, checked: every module of src/dp_models imports
only from lower layers (or its own layer, without a cycle). Imports inside functions
count; imports under ``if TYPE_CHECKING:`` do not (they never run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import dp_models

SRC = Path(dp_models.__file__).parent

#: module (dotted, below dp_models; a package's modules share its entry) -> layer.
LAYERS: dict[str, int] = {
    "_errors": 0,
    "_yaml": 0,
    "_json": 0,
    "_io": 0,
    "_urls": 0,
    "_version": 0,
    "_progress": 0,
    "_audio": 0,
    "_video": 0,
    "_html": 0,
    "_spec": 1,
    "_settings": 1,
    "_digest": 1,
    "_paths": 1,
    "_health": 1,
    "_registry": 1,
    "_catalog": 2,
    "_homes": 2,
    "_lock": 2,
    "_transfer": 2,
    "_s3": 2,
    "_oci": 2,
    "_upstream": 2,
    "_signing": 2,
    "_guard": 2,
    "_offline": 2,
    "preprocess": 2,
    "_verify": 3,
    "_provenance": 3,
    "_pinning": 3,
    "_pull": 3,
    "_push": 3,
    "_bundle": 3,
    "loaders": 4,
    "triton": 4,
    "_manager": 5,
    "_runner": 5,
    "_doctor": 6,
    "_compare": 6,
    "_cli": 6,
    "_export": 6,
    "testing": 6,
    "_docgen": 6,
    "__init__": 7,
    "__main__": 7,
}


def layer_of(module: str) -> int:
    """The layer of ``dp_models.<module>``: its own entry, else its package's."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    raise KeyError(f"dp_models.{module} has no layer in docs/architecture.md (LAYERS)")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                return True
    return False


def imports(module: str, path: Path) -> set[str]:
    """The dp_models modules ``module`` imports (relative or absolute), at run time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "__init__":
        package = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("dp_models"):
                target = node.module.removeprefix("dp_models").lstrip(".")
            else:
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}".lstrip(".") for n in names]
            known = modules()
            hits = [s for s in subs if s in known]
            found.update(hits or ([target] if target else []))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dp_models."):
                    found.add(alias.name.removeprefix("dp_models."))
    found.discard(module)
    return {m for m in found if m}


GRAPH = {m: imports(m, p) for m, p in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    own = layer_of(module)
    upward = sorted(m for m in GRAPH[module] if layer_of(m) > own)
    assert not upward, f"dp_models.{module} (layer {own}) imports higher layers: " + ", ".join(
        f"{m} (layer {layer_of(m)})" for m in upward
    )


def test_no_import_cycle() -> None:
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        seen[m] = 1
        path.append(m)
        for dep in sorted(GRAPH.get(m, ())):
            if seen.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if dep not in seen and dep in GRAPH:
                visit(dep)
        path.pop()
        seen[m] = 2

    for m in sorted(GRAPH):
        if m not in seen and m != "__init__":
            visit(m)


def test_every_module_has_a_layer() -> None:
    for module in GRAPH:
        layer_of(module)


def test_the_layer_table_is_the_documented_one() -> None:
    """docs/architecture.md's table of layers is exactly this test's LAYERS."""
    doc = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    documented: dict[str, int] = {}
    for match in re.finditer(r"^\| (\d) \| (.+) \|$", doc, re.MULTILINE):
        for name in re.findall(r"`([^`]+)`", match.group(2)):
            documented[name] = int(match.group(1))
    assert documented == LAYERS


#: Standard-library modules that open network connections.
NETWORK_MODULES = frozenset({"socket", "ssl", "http.client", "urllib.request", "ftplib"})
#: Where dp_models may touch them: provisioning's one transport (pull and its sources), the
#: Triton client's transport, the network guard (it patches ``socket`` to block), and the
#: test servers of ``dp_models.testing``.
NETWORK_ALLOWED = {
    "_transfer": "provisioning: mirrors and upstream sources (dp-models pull)",
    "_oci": "provisioning: OCI registries as pull mirrors and push destinations (its own "
    "requests: registry auth challenges, uploads; blob downloads go through _transfer)",
    "triton.transport": "the Triton client, to its configured endpoint",
    "_guard": "the network guard itself",
    "testing.faults": "a loopback proxy for tests",
    "testing.triton": "a loopback Triton server for tests",
    "testing.s3": "a loopback S3 server (moto) for tests",
}
#: The modules that fetch over the network, and who may import them: provisioning and its
#: front doors, never a load path (loaders, the verifier, the catalog).
FETCHERS = {"_transfer", "_upstream", "_pull", "_bundle", "_oci", "_s3", "_push"}
#: ... and ``triton.repository``: ``triton export --to s3://`` uploads the repository.
FETCHER_USERS = FETCHERS | {"_manager", "_cli", "__init__", "triton.repository"}


def network_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in NETWORK_MODULES}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module in NETWORK_MODULES:
                found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names} & NETWORK_MODULES
    return found


def test_only_provisioning_the_triton_transport_and_the_guard_touch_the_network() -> None:
    reaching = {m for m, p in modules().items() if network_imports(p)}
    assert reaching == set(NETWORK_ALLOWED), (
        "modules importing socket/ssl/http.client/urllib.request changed: "
        f"{sorted(reaching ^ set(NETWORK_ALLOWED))}; loads never use the network, and "
        "provisioning goes through _transfer"
    )


def test_no_load_path_imports_what_fetches() -> None:
    importers = {m for m, deps in GRAPH.items() if deps & FETCHERS}
    assert importers <= FETCHER_USERS, sorted(importers - FETCHER_USERS)
