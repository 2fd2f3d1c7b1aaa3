"""Tiny, valid TensorFlow Lite models, written offline for fake MediaPipe assets.

MediaPipe ships the TFLite flatbuffer schema (``mediapipe.tasks.metadata.schema_py_generated``)
and depends on ``flatbuffers``, so a model can be built without TensorFlow. The models here
compute nothing useful: each output is a constant (``input[0...0] * 0 + value``, tiled to
the output's shape), which is what a fake needs: the real runtime loads it, checks its
tensor shapes and runs it.

>>> data = constant_model([1, 128, 128, 3], [([1, 896, 16], 0.0), ([1, 896, 1], -100.0)])
>>> data[4:8]
b'TFL3'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..loaders.base import require

__all__ = ["constant_model", "linear_model"]

_ALIGN = 16  # constant buffers start 16-byte aligned, so TFLite uses them in place


def _schema() -> Any:
    return require("mediapipe.tasks.metadata.schema_py_generated", extra="mediapipe")


class _Graph:
    def __init__(self, schema: Any) -> None:
        self.s = schema
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty buffer
        self.operators: list[Any] = []
        self.codes: list[int] = []

    def tensor(
        self, shape: Sequence[int], ttype: int | None = None, data: Any = None, name: str = ""
    ) -> int:
        buffer = 0
        if data is not None:
            self.buffers.append(_aligned_buffer(self.s, np.ascontiguousarray(data).tobytes()))
            buffer = len(self.buffers) - 1
        self.tensors.append(
            self.s.TensorT(
                shape=list(shape),
                type=self.s.TensorType.FLOAT32 if ttype is None else ttype,
                buffer=buffer,
                name=name or f"t{len(self.tensors)}",
            )
        )
        return len(self.tensors) - 1

    def ints(self, values: Sequence[int]) -> int:
        return self.tensor([len(values)], self.s.TensorType.INT32, np.asarray(values, np.int32))

    def scalar(self, value: float) -> int:
        return self.tensor([1], data=np.asarray([value], np.float32))

    def op(self, code: int, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        if code not in self.codes:
            self.codes.append(code)
        kind = 0
        if options is not None:  # MulOptionsT -> BuiltinOptions.MulOptions
            kind = getattr(self.s.BuiltinOptions, type(options).__name__[:-1])
        self.operators.append(
            self.s.OperatorT(
                opcodeIndex=self.codes.index(code),
                inputs=inputs,
                outputs=outputs,
                builtinOptionsType=kind,
                builtinOptions=options,
            )
        )

    def serialize(self, inputs: list[int], outputs: list[int], description: str) -> bytes:
        s = self.s
        flatbuffers = require("flatbuffers", extra="mediapipe")
        subgraph = s.SubGraphT(
            tensors=self.tensors,
            inputs=inputs,
            outputs=outputs,
            operators=self.operators,
            name="main",
        )
        model = s.ModelT(
            version=3,
            operatorCodes=[
                s.OperatorCodeT(deprecatedBuiltinCode=c, builtinCode=c, version=1)
                for c in self.codes
            ],
            subgraphs=[subgraph],
            description=description,
            buffers=self.buffers,
        )
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def _aligned_buffer(schema: Any, raw: bytes) -> Any:
    class AlignedBufferT(schema.BufferT):  # type: ignore[misc]
        def Pack(self, builder: Any) -> Any:  # noqa: N802 (the flatbuffers API)
            builder.StartVector(1, len(raw), _ALIGN)
            builder.head -= len(raw)
            builder.Bytes[builder.head : builder.head + len(raw)] = raw
            data = builder.EndVector()
            schema.BufferStart(builder)
            schema.BufferAddData(builder, data)
            return schema.BufferEnd(builder)

    return AlignedBufferT()


def constant_model(
    input_shape: Sequence[int],
    outputs: Sequence[tuple[Sequence[int], float]],
    *,
    input_type: str = "uint8",
    description: str = "dp_models fake",
) -> bytes:
    """A TFLite model with one input of ``input_shape`` (``uint8`` or ``float32``) and one
    float32 output per ``(shape, value)``, every element equal to ``value``."""
    return _first_element_model(input_shape, outputs, None, input_type, description)


def linear_model(
    input_shape: Sequence[int],
    outputs: Sequence[tuple[Sequence[int], float, float]],
    *,
    input_type: str = "uint8",
    description: str = "dp_models fake",
) -> bytes:
    """Like :func:`constant_model`, but each output ``(shape, value, gain)`` follows the
    input: every element is ``input[0...0] * gain + value`` (the first element of the
    input, its top-left pixel's first channel for an image), so that what a task finds
    depends on the frame.

    >>> linear_model([1, 128, 128, 3], [([1, 896, 1], -5.0, 0.05)])[4:8]
    b'TFL3'
    """
    shapes = [(shape, value) for shape, value, _ in outputs]
    gains = [gain for _, _, gain in outputs]
    return _first_element_model(input_shape, shapes, gains, input_type, description)


def _first_element_model(
    input_shape: Sequence[int],
    outputs: Sequence[tuple[Sequence[int], float]],
    gains: Sequence[float] | None,
    input_type: str,
    description: str,
) -> bytes:
    s = _schema()
    ops = s.BuiltinOperator
    g = _Graph(s)
    rank = len(input_shape)
    types = {"uint8": s.TensorType.UINT8, "float32": s.TensorType.FLOAT32}
    x = inp = g.tensor(input_shape, types[input_type], name="input")
    if input_type != "float32":
        xf = g.tensor(input_shape)
        g.op(ops.CAST, [x], [xf])
        x = xf
    first = g.tensor([1] * rank)
    g.op(ops.SLICE, [x, g.ints([0] * rank), g.ints([1] * rank)], [first], s.SliceOptionsT())

    def times(gain: float) -> int:
        scaled = g.tensor([1] * rank)
        g.op(ops.MUL, [first, g.scalar(gain)], [scaled], s.MulOptionsT())
        return scaled

    zero = times(0.0) if gains is None else -1  # constant outputs share one zero
    out_ids = []
    for i, (shape, value) in enumerate(outputs):
        source = zero if gains is None else times(gains[i])
        ones = [1] * len(shape)
        flat = g.tensor(ones)
        g.op(ops.RESHAPE, [source, g.ints(ones)], [flat], s.ReshapeOptionsT(newShape=ones))
        filled = g.tensor(ones)
        g.op(ops.ADD, [flat, g.scalar(value)], [filled], s.AddOptionsT())
        out = g.tensor(shape, name=f"output_{i}")
        g.op(ops.TILE, [filled, g.ints(list(shape))], [out], s.TileOptionsT())
        out_ids.append(out)
    return g.serialize([inp], out_ids, description)
