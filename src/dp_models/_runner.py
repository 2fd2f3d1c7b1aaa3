"""One calling convention for both runtimes: a model handle's runner.

>>> def embed(runner, frames):                                      # doctest: +SKIP
...     return runner(runner.preprocess(frames))["embedding"]
>>> with ModelManager().runner("clip_vit_b32") as runner:           # doctest: +SKIP
...     in_process = embed(runner, frames)
>>> with ModelManager().runner("clip_vit_b32_triton") as runner:    # doctest: +SKIP
...     served = embed(runner, frames)

A processor switches runtime by changing only the spec name it asks for. The interface is
what the spec declares: a Triton spec's ``triton`` section, an in-process spec's
``interface`` section (:class:`~dp_models._spec.Interface`), named and shaped alike:

- ``runner.preprocess(frames, channels="rgb")``: the spec's ``preprocess`` preset
  (:mod:`dp_models.preprocess`, the same function on both runtimes), always a batch;
  frames it cannot take (another dtype, channel count or size) are a
  :class:`~dp_models._errors.RunnerInputError`;
- ``runner(batch) -> {output name: numpy array}``: ``batch`` maps input names to arrays
  (one array for a one-input spec), checked against the declared inputs before anything
  runs (names, dtype, shape, one batch size: :class:`~dp_models._errors.RunnerInputError`),
  then run in parts of at most ``max_batch_size`` items, the outputs concatenated.

In process the loaded object's ``call`` (or the object itself) runs on torch tensors on the
handle's device under ``torch.inference_mode()``, its result (one tensor, a tuple by
position or a mapping by name) checked against the declared outputs
(:class:`~dp_models._errors.RunnerOutputError`). On Triton, the spec's
:class:`~dp_models.triton.client.TritonClient` runs it (its errors are the client's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import ConfigurationError, RunnerInputError, RunnerOutputError
from ._spec import Interface, Spec, TritonSection, TritonTensor
from .triton.checks import NUMPY_DTYPES, input_problems, shape_text

if TYPE_CHECKING:
    from ._manager import ModelHandle
    from .triton.client import TritonClient

__all__ = ["Runner", "declared_interface", "preset_batch", "to_torch"]

Arrays = dict[str, np.ndarray[Any, Any]]

_TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def declared_interface(spec: Spec) -> TritonSection | Interface:
    """The calling convention ``spec`` declares: its ``triton`` section, or its ``interface``
    section; a :class:`~dp_models._errors.ConfigurationError` naming what to add when it
    declares none."""
    if spec.triton is not None:
        return spec.triton
    if spec.interface is not None:
        return spec.interface
    raise ConfigurationError(
        f"spec {spec.name!r} declares no calling convention, so it has no runner: add an "
        "'interface' section to it (call: the loaded object's method, or none to call the "
        "object itself; max_batch_size; inputs and outputs as {name, datatype, shape}, named "
        "and shaped as its Triton twin's 'triton' section), or call the loaded object "
        "yourself (ModelManager.load). docs/manager.md, 'One calling convention'."
    )


def preset_batch(
    spec: Spec, *data: Any, batch: bool = True, channels: str = "rgb", **options: Any
) -> Any:
    """``data`` through ``spec``'s ``preprocess`` preset (:func:`dp_models.preprocess.preprocess`),
    as a batch: an image preset's frames (a list, or an ``N x H x W x C`` uint8 array) give
    ``N x 3 x H x W``, and one image a batch of one; a preset that makes one item (a clip's
    pathways, two frames, a waveform's features) gives each of its arrays a batch dimension
    of one (``batch=False``: the preset's output as it is). ``channels`` (``"rgb"`` or
    ``"bgr"``) goes to the image presets. The one implementation behind
    :meth:`Runner.preprocess` and :meth:`ModelHandle.preprocess
    <dp_models._manager.ModelHandle.preprocess>`: data the preset cannot take is a
    :class:`~dp_models._errors.RunnerInputError`; a spec without a preset a
    :class:`~dp_models._errors.ConfigurationError`."""
    from .preprocess import PRESETS, FramePairPreset, ImagePreset, preprocess

    name = spec.preprocess
    if name is None:
        raise ConfigurationError(
            f"spec {spec.name!r} names no preprocess preset: prepare its inputs yourself, "
            "or set preprocess in the spec"
        )
    preset = PRESETS.get(name)
    if isinstance(preset, (ImagePreset, FramePairPreset)):
        options["channels"] = channels  # audio and video presets take no channel order
    try:
        out = preprocess(name, *data, **options)
    except (TypeError, ValueError) as exc:
        problems = [f"data the {name} preset cannot take: {exc}"]
        raise RunnerInputError(
            f"spec {spec.name!r} ({spec.runtime}): {problems[0]}",
            spec=spec.name,
            runtime=spec.runtime,
            problems=problems,
        ) from exc
    if not batch:
        return out
    if isinstance(preset, ImagePreset):
        return out[None] if out.ndim == 3 else out  # one image: a batch of one
    if isinstance(out, tuple):
        return tuple(np.asarray(a)[None] for a in out)
    return np.asarray(out)[None]


def to_torch(value: Any, device: str, precision: str) -> Any:
    """``value`` (a numpy array, or a tuple or mapping of them) as torch tensors on
    ``device``; floating ones in ``precision`` (``fp16``, ``bf16``; else as they are)."""
    import torch

    if isinstance(value, Mapping):
        return {k: to_torch(v, device, precision) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(to_torch(v, device, precision) for v in value)
    tensor = torch.from_numpy(np.ascontiguousarray(value)).to(device)
    cast = _TORCH_DTYPES.get(precision)
    if cast is not None and tensor.is_floating_point():
        tensor = tensor.to(getattr(torch, cast))
    return tensor


class Runner:
    """A model behind the one calling convention (see the module documentation); made by
    :meth:`ModelHandle.runner <dp_models._manager.ModelHandle.runner>` or
    :meth:`ModelManager.runner <dp_models._manager.ModelManager.runner>`. Closing it
    closes the Triton client it owns (in-process models stay cached in the manager).

    ``interface``: for an in-process spec, the calling convention to run its model under
    instead of its own (its Triton twin's, at the export's input size:
    :func:`~dp_models._compare.compare_runtimes` does)."""

    def __init__(
        self, handle: ModelHandle, *, interface: Interface | None = None, **options: Any
    ) -> None:
        self.handle = handle
        self.interface = declared_interface(handle.spec) if interface is None else interface
        self._client: TritonClient | None = None
        self._run: Callable[[Arrays], Arrays]
        if interface is not None and handle.spec.triton is not None:
            raise TypeError(
                f"spec {handle.name!r} is served by Triton: its interface is its triton section"
            )
        if handle.spec.triton is not None:
            self._client = handle.client(**options)
            self._run = self._client.infer
        else:
            if options:
                raise TypeError(
                    f"spec {handle.name!r} runs in process: its runner takes no client options "
                    f"({', '.join(sorted(options))})"
                )
            self._run = _InProcess(handle, self.interface, handle.load())

    @property
    def spec(self) -> Spec:
        return self.handle.spec

    @property
    def name(self) -> str:
        return self.handle.spec.name

    @property
    def runtime(self) -> str:
        return self.handle.spec.runtime

    @property
    def inputs(self) -> tuple[TritonTensor, ...]:
        """The declared inputs (without the batch dimension), in order."""
        return tuple(self.interface.inputs)

    @property
    def outputs(self) -> tuple[TritonTensor, ...]:
        """The declared outputs (without the batch dimension): the keys of what a call returns."""
        return tuple(self.interface.outputs)

    @property
    def max_batch_size(self) -> int:
        """The most items one model call takes (larger batches are split); 0: no batch
        dimension."""
        return self.interface.max_batch_size

    def preprocess(self, *data: Any, channels: str = "rgb", **options: Any) -> Any:
        """``data`` through the spec's preset (:func:`preset_batch`): for an image preset
        frames (a list, or an ``N x H x W x C`` uint8 array; one image becomes a batch of
        one) to the batch the runner takes; presets that make one array per input (two
        frames for ``raft_frames``) give a mapping by input name. ``channels``: ``"rgb"``
        or ``"bgr"``. A spec without a batch dimension (``max_batch_size: 0``) gets the
        preset's output as it is."""
        out = preset_batch(
            self.spec, *data, batch=self.max_batch_size > 0, channels=channels, **options
        )
        if isinstance(out, tuple) and len(out) == len(self.inputs) > 1:
            return {t.name: a for t, a in zip(self.inputs, out, strict=True)}
        return out

    def validate(self, batch: Mapping[str, Any] | np.ndarray[Any, Any]) -> int:
        """Check ``batch`` against the declared inputs without running anything; returns its
        batch size (1 without a batch dimension). Raises
        :class:`~dp_models._errors.RunnerInputError`."""
        return self._check(self._named(batch))

    def __call__(self, batch: Mapping[str, Any] | np.ndarray[Any, Any]) -> Arrays:
        """The declared outputs by name for ``batch`` (input arrays by name, or one array
        for a one-input spec), in parts of at most ``max_batch_size`` items."""
        arrays = self._named(batch)
        size = self._check(arrays)
        limit = self.max_batch_size
        if limit <= 0 or size <= limit:
            return self._run(arrays)
        parts = [
            self._run({n: a[start : start + limit] for n, a in arrays.items()})
            for start in range(0, size, limit)
        ]
        try:
            return {
                t.name: np.concatenate([p[t.name] for p in parts], axis=0) for t in self.outputs
            }
        except ValueError as exc:
            raise RunnerOutputError(
                f"spec {self.name!r}: the parts of a batch of {size} (max_batch_size {limit}) "
                f"gave outputs whose variable dimensions differ; pass at most {limit} items per "
                f"call: {exc}",
                spec=self.name,
                problems=[str(exc)],
            ) from exc

    def _named(self, batch: Mapping[str, Any] | np.ndarray[Any, Any]) -> dict[str, Any]:
        if isinstance(batch, Mapping):
            return dict(batch)
        if len(self.inputs) != 1:
            names = ", ".join(t.name for t in self.inputs)
            raise self._refused(
                [f"the spec has {len(self.inputs)} inputs ({names}): pass a mapping of arrays"]
            )
        return {self.inputs[0].name: batch}

    def _check(self, arrays: Mapping[str, Any]) -> int:
        problems, size = input_problems(self.interface, arrays)
        if problems:
            raise self._refused(problems)
        return size

    def _refused(self, problems: list[str]) -> RunnerInputError:
        count = len(problems)
        return RunnerInputError(
            f"a batch for spec {self.name!r} ({self.runtime}) does not fit its interface "
            f"({count} problem{'s' if count != 1 else ''}); nothing ran:\n"
            + "\n".join(f"  - {p}" for p in problems),
            spec=self.name,
            runtime=self.runtime,
            problems=problems,
        )

    def close(self) -> None:
        """Close the Triton client this runner owns (nothing to do in process)."""
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        inputs = ", ".join(f"{t.name} {shape_text(t.shape)}" for t in self.inputs)
        outputs = ", ".join(f"{t.name} {shape_text(t.shape)}" for t in self.outputs)
        return (
            f"<Runner {self.name} {self.runtime} ({inputs}) -> ({outputs}) "
            f"max_batch_size={self.max_batch_size}>"
        )


class _InProcess:
    """One model call in process: numpy in, the loaded object's ``call`` on torch tensors
    on the handle's device under inference mode, numpy out, checked."""

    def __init__(self, handle: ModelHandle, interface: Interface | TritonSection, model: Any):
        assert isinstance(interface, Interface)
        self.spec = handle.spec
        self.device = handle.device
        self.precision = handle.precision
        self.interface = interface
        fn = model if interface.call is None else getattr(model, interface.call, None)
        if not callable(fn):
            what = "the loaded object" if interface.call is None else repr(interface.call)
            raise ConfigurationError(
                f"spec {self.spec.name!r}: its interface calls {what}, which the loaded "
                f"{type(model).__name__} does not have as a method; fix interface.call in "
                "the spec"
            )
        self.fn: Callable[..., Any] = fn

    def __call__(self, arrays: Arrays) -> Arrays:
        import torch

        tensors = [
            to_torch(arrays[t.name], self.device, self.precision) for t in self.interface.inputs
        ]
        with torch.inference_mode():
            result = self.fn(*tensors)
        batch = int(tensors[0].shape[0]) if self.interface.max_batch_size > 0 else None
        return self._outputs(result, batch)

    def _outputs(self, result: Any, batch: int | None) -> Arrays:
        declared = self.interface.outputs
        names = [t.name for t in declared]
        if isinstance(result, Mapping):
            values = {n: result[n] for n in names if n in result}
        elif isinstance(result, (tuple, list)):
            values = dict(zip(names, result, strict=False)) if len(result) == len(names) else {}
        elif len(names) == 1:
            values = {names[0]: result}
        else:
            values = {}
        problems = [
            f"output {n!r} is missing from what {self._what()} returned ({_kind(result)})"
            for n in names
            if n not in values
        ]
        out: Arrays = {}
        for t in declared:
            if t.name not in values:
                continue
            array, problem = _to_numpy(values[t.name], t, batch)
            if problem is not None:
                problems.append(problem)
            else:
                out[t.name] = array
        if problems:
            raise RunnerOutputError(
                f"spec {self.spec.name!r}: {self._what()} returned outputs that differ from its "
                "interface; fix the spec's interface (or its call):\n"
                + "\n".join(f"  - {p}" for p in problems),
                spec=self.spec.name,
                problems=problems,
            )
        return out

    def _what(self) -> str:
        call = self.interface.call
        return "the loaded object" if call is None else f"{call}()"


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"a mapping of {', '.join(map(repr, value))}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _to_numpy(
    value: Any, tensor: TritonTensor, batch: int | None
) -> tuple[np.ndarray[Any, Any], str | None]:
    """``value`` (a torch tensor or numpy array) as the declared output's numpy array, or why
    it is not one. Floating results take the declared floating dtype (half precision models
    answer in half; numpy has no bfloat16)."""
    empty = np.empty(0)
    if hasattr(value, "detach"):
        if value.is_floating_point() and tensor.datatype in ("FP16", "FP32", "FP64"):
            value = value.float()
        value = value.detach().to("cpu").numpy()
    if not isinstance(value, np.ndarray):
        return empty, f"output {tensor.name!r} is a {type(value).__name__}, not a tensor"
    want = np.dtype(NUMPY_DTYPES[tensor.datatype]) if tensor.datatype != "BYTES" else None
    if want is not None and value.dtype != want:
        if value.dtype.kind == "f" and want.kind == "f":
            value = value.astype(want)
        else:
            return empty, (
                f"output {tensor.name!r} has dtype {value.dtype}, the interface says "
                f"{tensor.datatype}"
            )
    dims = list(value.shape)
    expected = list(tensor.shape) if batch is None else [batch, *tensor.shape]
    fits = len(dims) == len(expected) and all(
        e in (-1, d) for e, d in zip(expected, dims, strict=True)
    )
    if not fits:
        said = shape_text(expected)
        return empty, (
            f"output {tensor.name!r} has shape {shape_text(dims)}, the interface says {said}"
        )
    return value, None
