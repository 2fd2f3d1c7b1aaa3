"""SlowFast loader: an in-house SlowFast ResNet that loads PyTorchVideo checkpoints.

PyTorchVideo itself is not used: its last release (0.1.5, 2022) pulls in fvcore, iopath
and more, and its hub functions download. :mod:`dp_models.loaders._slowfast_net` builds
the same network with the same parameter names (checked against PyTorchVideo's
``slowfast_r50``: same 662 state-dict keys and shapes, same outputs), and its weights are
read from the spec's checkpoint the way ``torch_state_dict`` reads them
(``torch.load(weights_only=True)``, the state dict under ``model_state``).

The model takes ``[slow, fast]`` clips (``model.pathways(clip)`` makes them from one
``[B, 3, clip_frames, H, W]`` clip) and returns logits ``[B, num_classes]``; the spec's
``preprocess`` preset (``kinetics400_slowfast_256``) makes both pathways from frames. The
labels spec it requires (``kinetics400_categories``) gives ``model.categories``, as the
``torchvision`` loader gives Places365's.

loader_args: :class:`SlowFastArgs`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .base import LoadContext, Loader, LoaderArgs, require
from .torch import _cuda_available, build_without_init
from .torchvision import attach_categories, load_weights

__all__ = ["SlowFastArgs", "SlowFastLoader", "net_kwargs"]

#: arch -> (blocks per stage, temporal kernel of the fast-to-slow fusion), as PyTorchVideo.
_ARCHS = {"slowfast_r50": ((3, 4, 6, 3), 7), "slowfast_r101": ((3, 4, 23, 3), 5)}
_BETA = 8  # channel ratio slow / fast
Positive = Annotated[int, Field(ge=1)]


class SlowFastArgs(LoaderArgs):
    """``loader_args`` of ``slowfast``."""

    arch: Literal["slowfast_r50", "slowfast_r101"] = Field(
        default="slowfast_r50", description="depth and fusion kernel, as PyTorchVideo's"
    )
    num_classes: Positive = Field(default=400, description="outputs of the head (Kinetics-400)")
    clip_frames: Positive = Field(
        default=32, description="frames of the fast pathway; the slow one has clip_frames / alpha"
    )
    alpha: Positive = Field(default=4, description="frame-rate ratio between the pathways")
    crop_size: Positive = Field(
        default=224, description="the training crop: the head pools (crop_size / 32)^2 windows"
    )
    layers: Annotated[list[Positive], Field(min_length=4, max_length=4)] | None = Field(
        default=None, description="blocks per stage; null: from arch ([3, 4, 6, 3] for r50)"
    )
    width: Positive = Field(
        default=64, description=f"slow stem channels (the fast pathway has width / {_BETA})"
    )
    state_dict_key: str | None = Field(
        default="model_state",
        description="where PyTorchVideo checkpoints keep the weights; null: the file is the "
        "state dict itself",
    )
    weights_only: bool = Field(
        default=True, description="false opts out of safe unpickling (trusted files only)"
    )

    @model_validator(mode="after")
    def _fits(self) -> SlowFastArgs:
        if self.clip_frames % self.alpha:
            raise ValueError(
                f"clip_frames ({self.clip_frames}) must be a multiple of alpha ({self.alpha}): "
                "the slow pathway sees every alpha-th frame"
            )
        if self.crop_size % 32:
            raise ValueError(f"crop_size must be a multiple of 32, got {self.crop_size}")
        if self.width % _BETA:
            raise ValueError(f"width must be a multiple of {_BETA}, got {self.width}")
        return self


def net_kwargs(args: SlowFastArgs) -> dict[str, Any]:
    """The network's keyword arguments (:class:`~._slowfast_net.SlowFast`) from its args."""
    depths, fusion_kernel = _ARCHS[args.arch]
    return {
        "num_classes": args.num_classes,
        "layers": list(depths if args.layers is None else args.layers),
        "width": args.width,
        "alpha": args.alpha,
        "beta": _BETA,
        "fusion_kernel": fusion_kernel,
        "clip_frames": args.clip_frames,
        "crop_size": args.crop_size,
    }


class SlowFastLoader(Loader[SlowFastArgs]):
    """``loader: slowfast``."""

    name = "slowfast"
    framework = "torch"
    extra = "torch"
    args_model = SlowFastArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        return _cuda_available()

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        kwargs = net_kwargs(args)
        require("torch", extra=self.extra, spec=name)
        from ._slowfast_net import SlowFast

        net = build_without_init(ctx, lambda: SlowFast(**kwargs))
        model = load_weights(
            ctx,
            net,
            loader=self.name,
            what=f"SlowFast {args.arch}",
            hint="Check arch, num_classes, layers and width against the checkpoint (a "
            "PyTorchVideo checkpoint; the original SlowFast repository's names differ).",
            state_dict_key=args.state_dict_key,
            strip_prefix=None,
            weights_only=args.weights_only,
            empty=True,
        )
        return attach_categories(ctx, model, kwargs["num_classes"])
