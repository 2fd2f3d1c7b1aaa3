"""The Triton client's checks (dp_models.triton.checks) as pure functions: no server, no
client, plain data in and findings out."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dp_models._spec import Spec, TritonSection
from dp_models.triton.checks import (
    NUMPY_DTYPES,
    DigestVerdict,
    input_problems,
    metadata_differences,
    served_digest_of,
    served_digest_verdict,
)

DIGEST = "a" * 64
OTHER = "b" * 64


def _section(max_batch_size: int = 2, **changes: Any) -> TritonSection:
    body = textwrap.dedent(
        f"""\
        name: checks_echo
        version: "1"
        family: test
        role: test
        users: [VisualProcessor/test]
        runtime: triton
        engine: python
        triton:
          model_name: checks_echo
          model_version: 1
          platform: python
          max_batch_size: {max_batch_size}
          inputs:
            - {{name: x, datatype: FP32, shape: [4]}}
            - {{name: ids, datatype: INT64, shape: [-1]}}
          outputs:
            - {{name: y, datatype: FP32, shape: [2]}}
            - {{name: label, datatype: BYTES, shape: [1]}}
        """
    )
    triton = Spec.model_validate(yaml.safe_load(body)).triton
    assert triton is not None
    return triton.model_copy(update=changes)


def _served(section: TritonSection, *, versions: list[str] | None = None) -> tuple[dict, dict]:
    """Triton's metadata and config answers for a deployment exactly as ``section`` says."""
    batched = section.max_batch_size > 0

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [
            {"name": t.name, "datatype": t.datatype, "shape": ([-1] if batched else []) + t.shape}
            for t in items
        ]

    metadata = {
        "name": section.model_name,
        "versions": versions or [str(section.model_version)],
        "platform": section.platform,
        "inputs": tensors(section.inputs),
        "outputs": tensors(section.outputs),
    }
    config = {
        "max_batch_size": section.max_batch_size,
        "parameters": {"weights_digest": {"string_value": DIGEST}},
    }
    return metadata, config


# -- metadata --------------------------------------------------------------------------------


def test_a_deployment_as_the_spec_says_has_no_difference() -> None:
    section = _section()
    assert metadata_differences(section, *_served(section, versions=["1", "2"])) == []
    unbatched = _section(max_batch_size=0)
    assert metadata_differences(unbatched, *_served(unbatched)) == []


def test_every_difference_is_listed_sorted() -> None:
    section = _section()
    metadata, config = _served(section, versions=["2", "3"])
    config["max_batch_size"] = 8
    metadata["inputs"][0]["datatype"] = "FP16"
    metadata["inputs"][1]["name"] = "input_ids"
    metadata["outputs"][0]["shape"] = [-1, 3]
    assert metadata_differences(section, metadata, config) == sorted(
        [
            "version: the spec pins 1, the server has 2, 3",
            "max_batch_size: the spec says 2, the server 8",
            "inputs: 'x' datatype is FP16 on the server, FP32 in the spec",
            "inputs: 'ids' is in the spec but not served",
            "inputs: 'input_ids' is served but not in the spec",
            "outputs: 'y' shape is [3] on the server, [2] in the spec (without the batch "
            "dimension)",
        ]
    )


def test_a_variable_dimension_on_either_side_matches_any_length() -> None:
    section = _section()
    metadata, config = _served(section)
    metadata["inputs"][0]["shape"] = [-1, -1]  # the server accepts any length for x
    metadata["inputs"][1]["shape"] = [-1, 7]  # the spec accepts any length for ids
    assert metadata_differences(section, metadata, config) == []
    metadata["outputs"][0]["shape"] = [-1, 2, 1]  # another rank is a difference
    assert metadata_differences(section, metadata, config) == [
        "outputs: 'y' shape is [2, 1] on the server, [2] in the spec (without the batch dimension)"
    ]


def test_an_unbatched_model_compares_whole_shapes() -> None:
    section = _section(max_batch_size=0)
    metadata, config = _served(_section(max_batch_size=0))
    metadata["inputs"][0]["shape"] = [1, 4]
    assert metadata_differences(section, metadata, config) == [
        "inputs: 'x' shape is [1, 4] on the server, [4] in the spec (without the batch dimension)"
    ]


@pytest.mark.adversarial
@pytest.mark.parametrize(
    ("damage", "phrase"),
    [
        (lambda m, c: m.update(versions="1"), "versions: the server's is not a list"),
        (lambda m, c: m.update(inputs={"x": 1}), "inputs: the server's are not a list"),
        (lambda m, c: m["outputs"].append({"shape": [1]}), "outputs: the server's are not a list"),
        (lambda m, c: m["inputs"][0].update(shape=["a", 4]), "'x' shape on the server is not"),
        (lambda m, c: m["inputs"][0].update(shape="[4]"), "'x' shape on the server is not"),
        (lambda m, c: m["inputs"][0].update(shape=[True]), "'x' shape on the server is not"),
        (lambda m, c: c.update(max_batch_size="two"), "max_batch_size: the server's is not"),
        (lambda m, c: c.update(max_batch_size=None), "max_batch_size: the server's is not"),
    ],
)
def test_malformed_answers_are_differences_not_exceptions(damage: Any, phrase: str) -> None:
    """A server (or something posing as one) that answers metadata of the wrong shape made
    the client raise ValueError or AttributeError from inside the check."""
    section = _section()
    metadata, config = _served(section)
    damage(metadata, config)
    differences = metadata_differences(section, metadata, config)
    assert any(phrase in d for d in differences), differences


@pytest.mark.adversarial
def test_metadata_that_is_not_an_object_is_one_difference() -> None:
    section = _section()
    assert metadata_differences(section, [], {}) == [  # type: ignore[arg-type]
        "the server's model metadata or config is not a JSON object"
    ]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@pytest.mark.adversarial
@settings(max_examples=200, deadline=None)
@given(
    metadata=st.dictionaries(
        st.sampled_from(["versions", "inputs", "outputs", "name"]), JSON, max_size=4
    ),
    config=st.dictionaries(st.sampled_from(["max_batch_size", "parameters"]), JSON, max_size=2),
)
def test_property_any_json_answer_gives_a_list_of_differences(
    metadata: dict[str, Any], config: dict[str, Any]
) -> None:
    differences = metadata_differences(_section(), metadata, config)
    assert isinstance(differences, list) and all(isinstance(d, str) for d in differences)
    served_digest_of(config)  # never raises either


# -- inputs ----------------------------------------------------------------------------------


def _good(batch: int = 2) -> dict[str, np.ndarray[Any, Any]]:
    return {"x": np.zeros((batch, 4), np.float32), "ids": np.zeros((batch, 6), np.int64)}


def test_inputs_that_fit_give_their_batch_size() -> None:
    assert input_problems(_section(), _good(3)) == ([], 3)
    unbatched = _section(max_batch_size=0)
    assert (
        input_problems(unbatched, {"x": np.zeros(4, np.float32), "ids": np.zeros(9, np.int64)})[0]
        == []
    )


def test_every_input_problem_is_listed() -> None:
    good = _good()
    problems, _ = input_problems(
        _section(),
        {"x": good["x"].astype(np.float64), "ids": good["ids"][:, None], "extra": good["x"]},
    )
    assert problems == [
        "unexpected input 'extra' (the spec's inputs: x, ids)",
        "input 'x' has dtype float64, the spec's FP32 needs float32 (convert it explicitly; "
        "nothing is cast silently)",
        "input 'ids' has shape [2, 1, 6], the spec's is [batch, -1]",
    ]


@pytest.mark.parametrize(
    ("inputs", "phrase"),
    [
        ({"x": np.zeros((2, 4), np.float32)}, "missing input 'ids'"),
        (
            {**_good(), "ids": np.zeros((1, 6), np.int64)},
            "disagree on the batch size (x: 2, ids: 1)",
        ),
        ({**_good(), "x": np.zeros((0, 4), np.float32)}, "needs a batch dimension of at least 1"),
        ({**_good(), "x": np.zeros((2, 4), np.float32).tolist()}, "is a list, not a numpy array"),
        ({**_good(), "ids": np.zeros((2, 0), np.int64)}, "the spec's is [batch, -1]"),
    ],
)
def test_each_kind_of_input_problem(inputs: dict[str, Any], phrase: str) -> None:
    problems, _ = input_problems(_section(), inputs)
    assert any(phrase in p for p in problems), problems


def test_bytes_inputs_take_object_or_bytes_arrays() -> None:
    section = _section(
        inputs=[_section().inputs[0].model_copy(update={"name": "s", "datatype": "BYTES"})]
    )
    assert input_problems(section, {"s": np.array([[b"a"] * 4], dtype=object)})[0] == []
    assert input_problems(section, {"s": np.array([[b"a"] * 4])})[0] == []
    [problem] = input_problems(section, {"s": np.zeros((1, 4), np.float32)})[0]
    assert "BYTES needs object or bytes" in problem


def test_every_spec_datatype_has_a_numpy_dtype() -> None:
    from typing import get_args

    from dp_models._spec import TritonDatatype

    assert set(NUMPY_DTYPES) | {"BYTES"} == set(get_args(TritonDatatype))


# -- the served digest -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "digest"),
    [
        ({"parameters": {"weights_digest": {"string_value": DIGEST}}}, DIGEST),
        ({"parameters": {"weights_digest": {"string_value": ""}}}, None),
        ({"parameters": {}}, None),
        ({}, None),
        ({"parameters": {"weights_digest": {"string_value": 7}}}, None),
        ({"parameters": [1]}, None),
        ({"parameters": {"weights_digest": "x"}}, None),
    ],
)
def test_the_served_digest_is_the_weights_digest_parameter(
    config: dict[str, Any], digest: str | None
) -> None:
    assert served_digest_of(config) == digest


@pytest.mark.parametrize(
    ("expected", "served", "required", "verdict"),
    [
        (DIGEST, DIGEST, True, DigestVerdict.VERIFIED),
        (DIGEST, DIGEST, False, DigestVerdict.VERIFIED),
        (DIGEST, OTHER, True, DigestVerdict.MISMATCH),
        (DIGEST, OTHER, False, DigestVerdict.MISMATCH),  # other weights are never accepted
        (DIGEST, None, True, DigestVerdict.NOT_PUBLISHED),
        (DIGEST, None, False, DigestVerdict.UNVERIFIED),
        (None, DIGEST, True, DigestVerdict.NOT_EXPECTED),
        (None, DIGEST, False, DigestVerdict.UNVERIFIED),
        (None, None, True, DigestVerdict.NOT_PUBLISHED),
        (None, None, False, DigestVerdict.UNVERIFIED),
    ],
)
def test_the_served_digest_verdict(
    expected: str | None, served: str | None, required: bool, verdict: DigestVerdict
) -> None:
    assert served_digest_verdict(expected, served, required=required) is verdict
