"""Fake weights for ``onnxruntime``: a one-node ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._spec import Spec
from ...loaders.base import require
from . import write_artifacts

__all__ = ["make_onnx"]


def make_onnx(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A one-node ONNX model (``x`` -> Identity -> ``y``, float32, any shape) for each
    ``onnx`` artifact; placeholders for the others."""
    onnx = require("onnx", extra="onnx", spec=spec.name)
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "dp_models_fake",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    write_artifacts(spec, root, ("onnx",), lambda path: path.write_bytes(data))
    return None
