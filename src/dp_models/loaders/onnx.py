"""ONNX Runtime loader: an ``InferenceSession`` on the providers the device calls for.

``device: cpu`` runs on ``CPUExecutionProvider``; ``device: cuda`` on
``CUDAExecutionProvider`` only, and is an error where ONNX Runtime has no CUDA provider
(ONNX Runtime itself would quietly run on the CPU). ``providers`` in loader_args names
them explicitly; each must be available.

loader_args: :class:`OnnxRuntimeArgs`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from .._errors import DeviceUnavailableError, LoaderArgsError, PrecisionError
from .base import LoadContext, Loader, LoaderArgs, require

__all__ = ["OnnxRuntimeArgs", "OnnxRuntimeLoader"]

_GPU_PROVIDERS = frozenset({"CUDAExecutionProvider", "TensorrtExecutionProvider"})
Threads = Annotated[int, Field(ge=0, description="0 lets ONNX Runtime choose")]


class OnnxRuntimeArgs(LoaderArgs):
    """``loader_args`` of ``onnxruntime``."""

    providers: Annotated[list[str], Field(min_length=1)] | None = Field(
        default=None,
        description="execution providers in order, e.g. [CUDAExecutionProvider, "
        "CPUExecutionProvider]; null: the device's own",
    )
    intra_op_num_threads: Threads = 0
    inter_op_num_threads: Threads = 0


class OnnxRuntimeLoader(Loader[OnnxRuntimeArgs]):
    """``loader: onnxruntime``. Any precision passes ``get``: an ONNX model runs in the one
    it was exported in (the spec's), checked at load."""

    name = "onnxruntime"
    framework = "onnxruntime"
    extra = "onnx"
    args_model = OnnxRuntimeArgs

    def cuda_available(self) -> bool:
        ort = require("onnxruntime", extra=self.extra)  # missing: MissingExtraError
        return "CUDAExecutionProvider" in ort.get_available_providers()

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        ort = require("onnxruntime", extra=self.extra, spec=name)
        if ctx.precision != ctx.spec.precision:
            raise PrecisionError(
                f"spec {name!r}: an ONNX model runs in the precision it was exported in "
                f"({ctx.spec.precision}); {ctx.precision} needs its own exported model and spec",
                spec=name,
                precision=ctx.precision,
                device=ctx.device,
            )
        providers = args.providers
        if providers is None:
            providers = (
                ["CUDAExecutionProvider"]
                if ctx.device.startswith("cuda")
                else ["CPUExecutionProvider"]
            )
        on_gpu = [p for p in providers if p in _GPU_PROVIDERS]
        if ctx.device.startswith("cuda") != bool(on_gpu) or (
            on_gpu and providers[0] not in _GPU_PROVIDERS
        ):
            raise LoaderArgsError(
                f"spec {name!r}: providers {providers} do not match device {ctx.device!r}: "
                "on cuda the first provider must be a GPU one (CUDAExecutionProvider, "
                "TensorrtExecutionProvider), on cpu none may be, so that what runs is what "
                "models_used records",
                spec=name,
                loader=self.name,
            )
        available = ort.get_available_providers()
        run_on: list[Any] = list(providers)
        if ctx.device.startswith("cuda:") and run_on[0] == "CUDAExecutionProvider":
            run_on[0] = ("CUDAExecutionProvider", {"device_id": int(ctx.device[5:])})
        missing = [p for p in providers if p not in available]
        if missing:
            raise DeviceUnavailableError(
                f"spec {name!r}: ONNX Runtime provider(s) {', '.join(missing)} not available "
                f"here (available: {', '.join(available)}); dp_models does not fall back to "
                "another provider. Install onnxruntime-gpu with a working CUDA, or ask for "
                "device cpu.",
                spec=name,
                requested=",".join(missing),
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.intra_op_num_threads
        options.inter_op_num_threads = args.inter_op_num_threads
        session = ort.InferenceSession(
            str(ctx.artifact("onnx")), sess_options=options, providers=run_on
        )
        dropped = [p for p in providers if p not in session.get_providers()]
        if dropped:  # ONNX Runtime fell back quietly: refuse
            raise DeviceUnavailableError(
                f"spec {name!r}: ONNX Runtime could not start {', '.join(dropped)} and fell "
                f"back to {', '.join(session.get_providers())}; dp_models does not run a model "
                "on another device than asked.",
                spec=name,
                requested=",".join(dropped),
            )
        return session
