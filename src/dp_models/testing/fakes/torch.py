"""Fake weights for the PyTorch loaders: ``torch_state_dict``, ``torchscript``,
``torchvision`` and ``slowfast``. Each is a randomly initialised state dict saved the way
the spec's loader_args read it back (safetensors, or a pickle of tensors, under
``state_dict_key``, with ``strip_prefix`` added)."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..._spec import Spec
from ...loaders.base import require
from ...loaders.slowfast import SlowFastArgs, net_kwargs
from ...loaders.torch import WEIGHT_FORMATS, TorchStateDictArgs
from ...loaders.torchvision import TorchvisionArgs, no_weights
from . import substitute, write_placeholder

__all__ = [
    "FAKE_ARCH",
    "FAKE_SLOWFAST",
    "make_slowfast",
    "make_state_dict",
    "make_torchscript",
    "make_torchvision",
    "write_weights",
]

#: The torchvision fake's architecture for an image classifier: a small classifier (1.6 MB
#: at 1000 classes) that the same get_model / load_state_dict / feature-extractor path builds.
FAKE_ARCH: Mapping[str, Any] = {"arch": "mobilenet_v3_small", "kwargs": {"width_mult": 0.25}}
#: The SlowFast fake's architecture: one block per stage, a quarter of the width, 32-pixel
#: crops (larger inputs still work): 1.3 MB of weights instead of 138 MB.
FAKE_SLOWFAST: Mapping[str, Any] = {"layers": [1, 1, 1, 1], "width": 8, "crop_size": 32}
_TINYNET = "dp_models.testing.nets:TinyNet"


def _torch(spec: Spec) -> Any:
    return require("torch", extra="torch", spec=spec.name)


def write_weights(
    spec: Spec,
    root: Path,
    state: Mapping[str, Any],
    formats: tuple[str, ...],
    save: Callable[[Path], None],
) -> None:
    """Make ``spec``'s artifacts under ``root``: its first artifact of ``formats`` holds the
    weights (``state`` as safetensors for a ``safetensors`` artifact, else what
    ``save(path)`` writes), every other artifact a placeholder."""
    weights = next((a for a in spec.artifacts if a.format in formats), None)
    for art in spec.artifacts:
        path = root / art.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if art is not weights:
            write_placeholder(path, art.format)
        elif art.format == "safetensors":
            tensors = {k: v.detach().clone().contiguous() for k, v in state.items()}
            require("safetensors.torch", extra="torch", spec=spec.name).save_file(
                tensors, str(path)
            )
        else:
            save(path)


def _save_state(
    spec: Spec, root: Path, state: Mapping[str, Any], key: str | None, prefix: str | None
) -> None:
    """``state`` as ``torch_state_dict`` reads it back: keys with ``prefix``, the whole
    under ``key`` in a pickle."""
    torch = _torch(spec)
    state = {f"{prefix or ''}{k}": v.detach().clone().contiguous() for k, v in state.items()}
    write_weights(
        spec, root, state, WEIGHT_FORMATS, lambda p: torch.save({key: state} if key else state, p)
    )


def make_state_dict(spec: Spec, root: Path) -> dict[str, Any] | None:
    """Randomly initialised weights of the spec's class, built with its ``kwargs``. A class
    that does not import here is a :class:`~dp_models._errors.FakeWeightsError` naming the
    import error, unless the test asked for stand-ins (:func:`~dp_models.testing.fakes.substitute`):
    then :class:`dp_models.testing.nets.TinyNet` (a 4 -> 3 linear layer, the spec's
    ``kwargs`` dropped) stands in, in the fake catalog only (returned as the
    ``class_path`` / ``kwargs`` override)."""
    _torch(spec)
    args = TorchStateDictArgs.model_validate(spec.loader_args)
    try:
        module_name, _, attr = args.class_path.partition(":")
        cls: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as exc:
        substitute(
            spec,
            replaces=args.class_path,
            stand_in=_TINYNET,
            reason=f"{type(exc).__name__}: {exc}",
            fix="make the class importable in the test process (install the package that "
            "provides it, or put its directory on sys.path)",
            cause=exc,
        )
        from ..nets import TinyNet

        _save_state(spec, root, TinyNet().state_dict(), args.state_dict_key, args.strip_prefix)
        return {"class_path": _TINYNET, "kwargs": {}}
    state = cls(**dict(args.kwargs)).state_dict()
    _save_state(spec, root, state, args.state_dict_key, args.strip_prefix)
    return None


def make_torchscript(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A scripted 4 -> 3 linear layer for the weights; placeholders for the rest. The
    fake catalog keeps the spec's own ``trust_archive_code``."""
    torch = _torch(spec)
    from ..nets import TinyNet

    for i, art in enumerate(spec.artifacts):
        path = root / art.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if i == 0 or art.format in ("torchscript", "pt", "pth"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                torch.jit.save(torch.jit.script(TinyNet()), str(path))
        else:
            write_placeholder(path, art.format)
    return None


def make_torchvision(spec: Spec, root: Path) -> dict[str, Any] | None:
    """Random weights of :data:`FAKE_ARCH` (a 0.25-wide MobileNetV3-small, 1.6 MB) for an
    image classifier, of the spec's own ``arch`` otherwise, saved the way the spec reads
    them (the labels spec it requires is faked by its own maker). Returns the
    ``arch``/``kwargs`` override for the fake catalog."""
    tv = require("torchvision", extra="torch", spec=spec.name)
    args = TorchvisionArgs.model_validate(spec.loader_args)
    arch, kwargs = args.arch, dict(args.kwargs)
    override: dict[str, Any] | None = None
    if arch in tv.models.list_models(tv.models):
        override = {"arch": FAKE_ARCH["arch"], "kwargs": dict(FAKE_ARCH["kwargs"])}
        arch, kwargs = override["arch"], dict(override["kwargs"])
    kwargs.update(no_weights(tv, arch))
    if args.num_classes is not None:
        kwargs["num_classes"] = args.num_classes
    model = tv.models.get_model(arch, **kwargs)
    _save_state(spec, root, model.state_dict(), args.state_dict_key, args.strip_prefix)
    return override


def make_slowfast(spec: Spec, root: Path) -> dict[str, Any] | None:
    """Random weights of a one-block-per-stage, 8-wide SlowFast (:data:`FAKE_SLOWFAST`,
    the spec's clip_frames, alpha and num_classes kept), saved as a PyTorchVideo checkpoint
    (under ``state_dict_key``). Returns the overrides."""
    _torch(spec)
    from ...loaders._slowfast_net import SlowFast

    args = SlowFastArgs.model_validate({**spec.loader_args, **FAKE_SLOWFAST})
    kwargs = net_kwargs(args)
    _save_state(spec, root, SlowFast(**kwargs).state_dict(), args.state_dict_key, None)
    return dict(FAKE_SLOWFAST)
