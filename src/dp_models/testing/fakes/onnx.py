"""Fake weights for ``onnxruntime``: a one-node ONNX model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...loaders.base import require
from ...spec import Spec
from . import write_placeholder

__all__ = ["make_onnx"]


def make_onnx(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A one-node ONNX model (``x`` -> Identity -> ``y``, float32, any shape) for each
    ``onnx`` artifact; placeholders for the others."""
    onnx = require("onnx", extra="onnx", spec=spec.name)
    helper = onnx.helper
    for art in spec.artifacts:
        path = root / art.path
        if art.format != "onnx":
            write_placeholder(path, art.format)
            continue
        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "dp_models_fake",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(model.SerializeToString())
    return None
