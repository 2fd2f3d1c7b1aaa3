"""The spec schema: strict fields, cross-field rules, the committed JSON Schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from dp_models._docgen import render_schema_json
from dp_models._spec import Spec, check_relative_path

REPO = Path(__file__).resolve().parents[1]

INPROCESS: dict[str, Any] = {
    "name": "emonet_8",
    "version": "v1",
    "family": "emonet",
    "role": "facial_emotion",
    "users": ["VisualProcessor/emotion_face"],
    "runtime": "inprocess",
    "engine": "torch",
    "loader": "torch_state_dict",
    "loader_args": {"class_path": "emotion_face.emonet:EmoNet", "kwargs": {"n_expression": 8}},
    "artifacts": [{"path": "visual/emonet/emonet_8.pth", "format": "pth"}],
}
TRITON: dict[str, Any] = {
    "name": "midas_triton",
    "version": "v3",
    "family": "midas",
    "role": "depth",
    "users": ["VisualProcessor/core_depth_midas"],
    "runtime": "triton",
    "engine": "onnx",
    "triton": {
        "model_name": "midas",
        "model_version": 1,
        "platform": "onnxruntime_onnx",
        "max_batch_size": 8,
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [3, 384, 384]}],
        "outputs": [{"name": "depth", "datatype": "FP32", "shape": [384, 384]}],
    },
}


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as exc:
        Spec.model_validate(data)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.value.errors()]


def test_valid_specs() -> None:
    spec = Spec.model_validate(INPROCESS)
    assert (spec.precision, spec.device, spec.optional, spec.artifacts[0].kind) == (
        "fp32",
        "auto",
        False,
        "file",
    )
    triton = Spec.model_validate(TRITON)
    assert triton.triton is not None and triton.triton.endpoint == "default"
    assert triton.triton.require_weights_digest is True


def test_unknown_keys_are_errors_at_every_level() -> None:
    data = with_(INPROCESS, colour="blue")
    data["artifacts"][0]["checksum"] = "x"
    found = errors(data)
    assert ("colour", "Extra inputs are not permitted") in found
    assert ("artifacts.0.checksum", "Extra inputs are not permitted") in found


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("version", 1, "version"),
        ("optional", "yes", "optional"),
        ("users", "VisualProcessor/x", "users"),
        ("runtime", "remote", "runtime"),
        ("engine", "caffe", "engine"),
        ("precision", "fp8", "precision"),
        ("name", "Has Spaces", "name"),
    ],
)
def test_types_are_strict(field: str, value: Any, loc: str) -> None:
    assert loc in [f for f, _ in errors(with_(INPROCESS, **{field: value}))]


def test_size_is_an_int_not_a_string() -> None:
    data = with_(INPROCESS)
    data["artifacts"][0]["size"] = "12"
    assert [f for f, _ in errors(data)] == ["artifacts.0.size"]


def test_bad_sha256() -> None:
    data = with_(INPROCESS)
    data["artifacts"][0]["sha256"] = "ABC"
    assert errors(data)[0][0] == "artifacts.0.sha256"


def test_triton_spec_needs_its_section() -> None:
    assert errors(with_(TRITON, triton=None)) == [
        ("", "Value error, a 'triton' spec needs a 'triton' section (model_name, ...)")
    ]


def test_triton_spec_has_no_loader() -> None:
    assert errors(with_(TRITON, loader="onnxruntime"))[0][1].endswith(
        "a 'triton' spec has no 'loader' or 'loader_args'"
    )


def test_inprocess_spec_needs_a_loader_and_an_artifact() -> None:
    assert errors(with_(INPROCESS, loader=None))[0][1].endswith(
        "an 'inprocess' spec needs a 'loader'"
    )
    assert errors(with_(INPROCESS, artifacts=[]))[0][1].endswith("needs at least one artifact")


def test_inprocess_spec_has_no_triton_section() -> None:
    assert errors(with_(INPROCESS, triton=TRITON["triton"]))[0][1].endswith(
        "an 'inprocess' spec has no 'triton' section"
    )


def test_triton_tensor_names_are_unique() -> None:
    data = with_(TRITON)
    data["triton"]["inputs"].append({"name": "image", "datatype": "FP32", "shape": [3]})
    assert errors(data) == [("triton", "Value error, duplicate inputs names: image")]


def test_triton_dimensions_are_positive_or_wildcards() -> None:
    data = with_(TRITON)
    data["triton"]["outputs"][0]["shape"] = [0, 4]
    data["triton"]["inputs"][0]["shape"] = [-2]
    found = dict(errors(data))
    assert "0 is not allowed" in found["triton.outputs.0.shape"]
    assert "greater than or equal to -1" in found["triton.inputs.0.shape.0"]


def test_spec_cannot_require_itself() -> None:
    assert errors(with_(INPROCESS, requires=["emonet_8"]))[0][1].endswith("cannot require itself")


def test_loader_args_must_be_json() -> None:
    assert "plain JSON values" in errors(with_(INPROCESS, loader_args={"x": float("nan")}))[0][1]


def test_artifact_listed_twice() -> None:
    art = {"path": "a.pt", "format": "pt"}
    assert errors(with_(INPROCESS, artifacts=[art, art]))[0][1].endswith(
        "artifact listed twice: a.pt"
    )


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../etc/passwd", "must not contain '..'"),
        ("visual/../../x", "must not contain '..'"),
        ("/etc/passwd", "must be relative to MODELS_ROOT, not absolute"),
        ("~/weights.pt", "must be relative to MODELS_ROOT, not absolute"),
        ("C:/weights.pt", "must be relative to MODELS_ROOT, not absolute"),
        ("visual\\clip.pt", "must use '/' separators"),
        ("visual//clip.pt", "must be normalised"),
        ("./clip.pt", "must be normalised"),
    ],
)
def test_artifact_paths_stay_inside_the_root(path: str, problem: str) -> None:
    assert problem in (check_relative_path(path) or "")
    data = with_(INPROCESS)
    data["artifacts"][0]["path"] = path
    field, message = errors(data)[0]
    assert field == "artifacts.0.path"
    assert problem in message


def test_empty_artifact_path() -> None:
    assert check_relative_path("") == "must not be empty"
    data = with_(INPROCESS)
    data["artifacts"][0]["path"] = ""
    assert errors(data) == [("artifacts.0.path", "String should have at least 1 character")]


def test_safe_relative_paths() -> None:
    for ok in ("a.pt", "visual/clip/ViT-B-32.pt", "text/dir.with.dots/x", "a/..b/c"):
        assert check_relative_path(ok) is None


def test_committed_json_schema_is_current() -> None:
    committed = (REPO / "spec_catalog" / "schema.json").read_text(encoding="utf-8")
    assert committed == render_schema_json(), (
        "spec_catalog/schema.json is stale: run `python -m dp_models._docgen --write`"
    )


def test_json_schema_accepts_every_packaged_spec_and_rejects_bad_ones() -> None:
    schema = json.loads((REPO / "spec_catalog" / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    files = sorted((REPO / "spec_catalog").rglob("*.yaml"))
    assert len(files) >= 30
    for f in files:
        validator.validate(yaml.safe_load(f.read_text()))
    bad = with_(INPROCESS, colour="blue")
    assert not validator.is_valid(bad)
    assert not validator.is_valid(with_(INPROCESS, version=1))
