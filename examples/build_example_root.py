"""Rebuild MODELS_ROOT.example/ and the demo input (needs `pip install onnx numpy`).

The committed files are the output of this script; it is deterministic, so running it
again changes nothing (`git status` stays clean). After a deliberate change, run
`dp-models lock --catalog examples/spec_catalog --root MODELS_ROOT.example` and update the
spec's sha256 and size.

The model is a real, tiny ONNX classifier: it averages each colour channel of an RGB
image (N, 3, H, W) in [0, 1] and scores the classes red, green, blue with a linear layer
and a softmax. Small enough to read, real enough to load, run and verify.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent / "MODELS_ROOT.example"
MODEL_DIR = ROOT / "demo" / "tiny_color_classifier"


def build_model() -> onnx.ModelProto:
    # Each class scores its own channel against the mean of the other two.
    weight = (
        np.array([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0]], dtype=np.float32) * 4.0
    )
    bias = np.zeros(3, dtype=np.float32)
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
        helper.make_node("Gemm", ["features", "weight", "bias"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_color_classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    model = helper.make_model(
        graph,
        producer_name="dp_models examples/build_example_root.py",
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    (MODEL_DIR / "model.onnx").write_bytes(build_model().SerializeToString())
    (MODEL_DIR / "labels.txt").write_text("red\ngreen\nblue\n")
    rng = np.random.default_rng(0)
    frames = rng.uniform(0.0, 0.3, size=(3, 3, 8, 8)).astype(np.float32)
    for i in range(3):  # frame i is dominated by channel i
        frames[i, i] += 0.6
    np.save(HERE / "demo_frames.npy", frames)


if __name__ == "__main__":
    main()
