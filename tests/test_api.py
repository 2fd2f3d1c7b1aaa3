"""The public API: a curated, complete, sorted __all__, and an import that stays light."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

import dp_models
from dp_models import errors

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


#: Raised and translated inside dp_models (never reach a caller): in the tree, not exported.
INTERNAL_ERRORS = {
    "DeadlineError",  # these three: dp_models.triton.transport's signals to the client
    "JsonRejectedError",
    "NewConnectionError",
    "ServerAnswerError",
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
