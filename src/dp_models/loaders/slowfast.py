"""SlowFast loader: an in-house SlowFast ResNet that loads PyTorchVideo checkpoints.

PyTorchVideo itself is not used: its last release (0.1.5, 2022) pulls in fvcore, iopath
and more, and its hub functions download. :mod:`dp_models.loaders._slowfast_net` builds
the same network with the same parameter names (checked against PyTorchVideo's
``slowfast_r50``: same 662 state-dict keys and shapes, same outputs), and its weights are
read from the spec's checkpoint the way ``torch_state_dict`` reads them
(``torch.load(weights_only=True)``, the state dict under ``model_state``).

The model takes ``[slow, fast]`` clips (``model.pathways(clip)`` makes them from one
``[B, 3, clip_frames, H, W]`` clip) and returns logits ``[B, num_classes]``. A ``txt``
artifact, if the spec has one, is the class list (``model.categories``), read as the
``torchvision`` loader reads Places365's.

loader_args:
    arch: slowfast_r50           slowfast_r50 or slowfast_r101 (depth and fusion kernel)
    num_classes: 400             outputs of the head (Kinetics-400)
    clip_frames: 32              frames of the fast pathway; the slow one has clip_frames / alpha
    alpha: 4                     frame-rate ratio between the pathways
    crop_size: 224               the training crop: the head pools (crop_size / 32)^2 windows
    layers: null                 blocks per stage; null: from arch ([3, 4, 6, 3] for r50)
    width: 64                    slow stem channels (the fast pathway has width / 8)
    state_dict_key: model_state  where PyTorchVideo checkpoints keep the weights; null: the
                                 file is the state dict itself
    weights_only: true           false opts out of safe unpickling (trusted files only)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LoaderArgsError
from ..spec import Spec
from .base import LoadContext, require
from .torch import _cuda_available
from .torchvision import (
    attach_categories,
    bool_arg,
    load_weights,
    write_fake_class_list,
    write_fake_weights,
)

__all__ = ["SlowFastLoader"]

_NET = "dp_models.loaders._slowfast_net:SlowFast"
#: arch -> (blocks per stage, temporal kernel of the fast-to-slow fusion), as PyTorchVideo.
_ARCHS = {"slowfast_r50": ((3, 4, 6, 3), 7), "slowfast_r101": ((3, 4, 23, 3), 5)}
_BETA = 8  # channel ratio slow / fast
_DEFAULTS: dict[str, Any] = {
    "arch": "slowfast_r50",
    "num_classes": 400,
    "clip_frames": 32,
    "alpha": 4,
    "crop_size": 224,
    "layers": None,
    "width": 64,
    "state_dict_key": "model_state",
    "weights_only": True,
}
#: The fake's architecture: one block per stage, a quarter of the width, 32-pixel crops
#: (larger inputs still work): 1.3 MB of weights instead of 138 MB.
FAKE_OVERRIDES: dict[str, Any] = {"layers": [1, 1, 1, 1], "width": 8, "crop_size": 32}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _net_kwargs(spec: Spec, args: Mapping[str, Any]) -> dict[str, Any]:
    """The network's keyword arguments from checked loader_args."""

    def bad(message: str) -> LoaderArgsError:
        return LoaderArgsError(f"spec {spec.name!r}: {message}", spec=spec.name, loader="slowfast")

    if args["arch"] not in _ARCHS:
        raise bad(f"loader_args.arch must be one of {', '.join(_ARCHS)}, got {args['arch']!r}")
    depths, fusion_kernel = _ARCHS[args["arch"]]
    for key in ("num_classes", "clip_frames", "alpha", "crop_size", "width"):
        if not _is_int(args[key]):
            raise bad(f"loader_args.{key} must be a positive integer, got {args[key]!r}")
    layers = depths if args["layers"] is None else args["layers"]
    if not isinstance(layers, list | tuple) or len(layers) != 4 or not all(map(_is_int, layers)):
        raise bad(f"loader_args.layers must be four positive integers, got {layers!r}")
    if args["clip_frames"] % args["alpha"]:
        raise bad(
            f"loader_args.clip_frames ({args['clip_frames']}) must be a multiple of alpha "
            f"({args['alpha']}): the slow pathway sees every alpha-th frame"
        )
    if args["crop_size"] % 32:
        raise bad(f"loader_args.crop_size must be a multiple of 32, got {args['crop_size']}")
    if args["width"] % _BETA:
        raise bad(f"loader_args.width must be a multiple of {_BETA}, got {args['width']}")
    return {
        "num_classes": args["num_classes"],
        "layers": list(layers),
        "width": args["width"],
        "alpha": args["alpha"],
        "beta": _BETA,
        "fusion_kernel": fusion_kernel,
        "clip_frames": args["clip_frames"],
        "crop_size": args["crop_size"],
    }


class SlowFastLoader:
    """``loader: slowfast``."""

    name = "slowfast"
    framework = "torch"
    extra = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        return _cuda_available()

    def make_fake(self, spec: Spec, root: Path) -> dict[str, Any] | None:
        """Random weights of a one-block-per-stage, 8-wide SlowFast (:data:`FAKE_OVERRIDES`,
        the spec's clip_frames, alpha and num_classes kept), saved as a PyTorchVideo
        checkpoint (under ``state_dict_key``). Returns the overrides."""
        require("torch", extra=self.extra, spec=spec.name)
        args = {**_DEFAULTS, **spec.loader_args, **FAKE_OVERRIDES}
        kwargs = _net_kwargs(spec, args)
        write_fake_weights(spec, root, _NET, kwargs, args["state_dict_key"])
        write_fake_class_list(spec, root, kwargs["num_classes"])
        return dict(FAKE_OVERRIDES)

    def load(self, ctx: LoadContext) -> Any:
        args = ctx.args(_DEFAULTS)
        name = ctx.spec.name
        weights_only = bool_arg(ctx, args, "weights_only", self.name)
        kwargs = _net_kwargs(ctx.spec, args)
        require("torch", extra=self.extra, spec=name)
        from ._slowfast_net import SlowFast

        model = load_weights(
            ctx,
            SlowFast(**kwargs),
            loader=self.name,
            what=f"SlowFast {args['arch']}",
            hint="Check arch, num_classes, layers and width against the checkpoint (a "
            "PyTorchVideo checkpoint; the original SlowFast repository's names differ).",
            state_dict_key=args["state_dict_key"],
            strip_prefix=None,
            weights_only=weights_only,
        )
        return attach_categories(ctx, model, kwargs["num_classes"])
