"""The public API: a curated, complete, sorted __all__, and an import that stays light."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dp_models
from dp_models import _errors as errors

HEAVY = (
    "pydantic",
    "yaml",
    "numpy",
    "torch",
    "onnxruntime",
    "tritonclient",
    "mediapipe",
    "spacy",
    "transformers",
    "open_clip",
    "ultralytics",
    "sentence_transformers",
)


def test_all_is_sorted_and_resolves() -> None:
    assert dp_models.__all__ == sorted(dp_models.__all__)
    for name in dp_models.__all__:
        assert getattr(dp_models, name) is not None, name
    assert set(dp_models.__all__) <= set(dir(dp_models))


def test_every_name_dir_lists_resolves_without_importing_it_first() -> None:
    """What tab completion offers works: the public submodules too (``dp_models.preprocess``
    without ``import dp_models.preprocess``), and nothing of the module's own plumbing."""
    code = (
        "import dp_models, sys\n"
        "names = dir(dp_models)\n"
        "assert 'preprocess' not in sys.modules['dp_models'].__dict__\n"
        "print(dp_models.preprocess.preprocess.__module__)\n"
        "missing = [n for n in names if not hasattr(dp_models, n)]\n"
        "assert not missing, missing\n"
        "assert not {'importlib', 'annotations', 'TYPE_CHECKING'} & set(names), names\n"
        "assert {'preprocess', 'loaders', 'triton', 'testing'} <= set(names)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "dp_models.preprocess"


#: Raised and translated inside dp_models (never reach a caller): in the tree, not exported.
INTERNAL_ERRORS = {
    "DeadlineError",  # these four: dp_models.triton.transport's signals to the client
    "JsonRejectedError",
    "NewConnectionError",
    "ServerAnswerError",
    "SharedMemoryRefusedError",
    "UnsupportedPickleError",
    "YamlRejectedError",
}


def test_every_error_is_exported() -> None:
    classes = {
        n for n, obj in vars(errors).items() if inspect.isclass(obj) and issubclass(obj, Exception)
    }
    public = {n for n in errors.__all__ if n != "CatalogProblem"}
    assert classes == public | INTERNAL_ERRORS
    assert not public & INTERNAL_ERRORS
    assert public <= set(dp_models.__all__)
    assert not INTERNAL_ERRORS & set(dp_models.__all__)


def test_error_tree_is_rooted() -> None:
    for name, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, errors.DPModelsError), name


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        dp_models.nope  # noqa: B018


def test_import_is_light() -> None:
    code = (
        "import sys, json; import dp_models; "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_version() -> None:
    from importlib.metadata import version

    assert dp_models.__version__ == version("dp-models")


# -- private by default ------------------------------------------------------------------------

SRC = Path(dp_models.__file__).parent


def _dotted(path: Path) -> str:
    parts = ["dp_models", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(dotted: str) -> bool:
    return any(p.startswith("_") and p not in ("__init__", "__main__") for p in dotted.split("."))


def test_every_module_is_private_or_in_the_public_api() -> None:
    public = dp_models._PUBLIC_MODULES
    for path in sorted(SRC.rglob("*.py")):
        dotted = _dotted(path)
        if _private(dotted) or dotted == "dp_models.__main__":
            continue
        assert any(dotted == p or dotted.startswith(p + ".") for p in public), (
            f"{dotted} is neither private (a leading underscore) nor in dp_models._PUBLIC_MODULES"
        )


@pytest.mark.parametrize("name", dp_models._PUBLIC_MODULES)
def test_each_public_module_lists_its_api(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    # sorted, plainly or as ruff sorts it (CONSTANTS, then Classes, then functions)
    grouped = sorted(exported, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))
    assert list(exported) in (sorted(exported), grouped), f"{name}.__all__ is not sorted"
    for attr in exported:
        if not hasattr(module, attr):
            importlib.import_module(f"{name}.{attr}")  # a package lists its modules
        assert getattr(module, attr) is not None, f"{name}.{attr}"


def test_the_public_modules_are_documented() -> None:
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name in dp_models._PUBLIC_MODULES:
        assert f"`{name}`" in doc, name
