"""torchvision loader: ``torchvision.models.get_model(arch, weights=None)`` and a local state dict.

The architecture is built without weights (``weights=None``, and ``weights_backbone=None``
for the builders that would otherwise fetch a backbone), then its weights are read from the
spec's weights artifact exactly as ``torch_state_dict`` reads them (safetensors, or
``torch.load(weights_only=True)``: a pickle that needs more than tensors is refused). Keys
must match exactly. torchvision's ``pretrained``/``weights`` downloads are never used.

loader_args:
    arch: (required)             a name of ``torchvision.models.list_models()``, e.g. resnet50
    num_classes: null            outputs of the classifier; null keeps the builder's default
    feature_extractor: false     true: the classifier's last Linear layer becomes Identity,
                                 so the model returns pooled features (ResNet-18: [N, 512],
                                 ResNet-50: [N, 2048])
    kwargs: {}                   more keyword arguments for the builder (``width_mult``, ...)
    state_dict_key: null         take the state dict from this key of the checkpoint
    strip_prefix: null           remove this prefix from every key ("module.")
    weights_only: true           false opts out of safe unpickling (trusted files only)

A ``txt`` artifact is the class list: one class a line, ``name`` or ``name index``
(Places365's ``/a/airfield 0``). The model then has ``categories``: a tuple of names by class
index, Places365's ``/a/`` prefix removed (``airfield``, ``arena/hockey``).
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import LoaderArgsError, LoaderError
from ..spec import Spec
from .base import LoadContext, require
from .torch import (
    TorchStateDictLoader,
    _apply_precision,
    _cuda_available,
    _state_dict,
    _weights_artifact,
    fit_state_dict,
    read_checkpoint,
)

__all__ = ["TorchvisionLoader"]

#: The fake weights' architecture: a small torchvision classifier (1.6 MB at 1000
#: classes) that the same get_model / load_state_dict / feature-extractor path builds.
FAKE_ARCH: dict[str, Any] = {"arch": "mobilenet_v3_small", "kwargs": {"width_mult": 0.25}}

# Keyword arguments that would make torchvision fetch weights, or that loader_args own.
_RESERVED_KWARGS = ("weights", "weights_backbone", "pretrained", "pretrained_backbone")
_INDEXED_LINE = re.compile(r"(\S.*?)\s+(\d+)")
_PLACES_PREFIX = re.compile(r"^/[a-z]/")


def _torchvision(spec: str | None = None) -> Any:
    return require("torchvision", extra="torch", spec=spec)


def bool_arg(ctx: LoadContext, args: Mapping[str, Any], key: str, loader: str) -> bool:
    value = args[key]
    if not isinstance(value, bool):
        raise LoaderArgsError(
            f"spec {ctx.spec.name!r}: loader_args.{key} must be true or false, got {value!r}",
            spec=ctx.spec.name,
            loader=loader,
        )
    return value


def load_weights(
    ctx: LoadContext,
    model: Any,
    *,
    loader: str,
    what: str,
    hint: str,
    state_dict_key: str | None,
    strip_prefix: str | None,
    weights_only: bool,
) -> Any:
    """Load the spec's weights artifact into ``model`` (keys must match exactly), move it to
    ``ctx.device`` in ``ctx.precision`` and put it in eval mode. ``what`` names the model in
    errors; ``hint`` says which loader_args to check when keys do not match."""
    name = ctx.spec.name
    path, fmt = _weights_artifact(ctx)
    checkpoint = read_checkpoint(ctx, path, fmt, weights_only)
    state = _state_dict(ctx, checkpoint, state_dict_key, strip_prefix)
    fit_state_dict(
        model,
        state,
        spec=name,
        loader=loader,
        what=f"the weights do not fit {what}",
        shape_hint=hint,
        key_hint=hint,
    )
    model = _apply_precision(model, ctx, loader)
    model.eval()
    return model


def write_fake_weights(
    spec: Spec, root: Path, class_path: str, kwargs: Mapping[str, Any], state_dict_key: Any
) -> None:
    """Randomly initialised ``class_path(**kwargs)`` weights for ``spec``, written exactly as
    ``torch_state_dict`` writes its fakes (format, ``state_dict_key``, ``strip_prefix``)."""
    args = {
        "class_path": class_path,
        "kwargs": dict(kwargs),
        "state_dict_key": state_dict_key,
        "strip_prefix": spec.loader_args.get("strip_prefix"),
    }
    as_state_dict = spec.model_copy(update={"loader": "torch_state_dict", "loader_args": args})
    if TorchStateDictLoader().make_fake(as_state_dict, root) is not None:
        raise ImportError(f"{class_path} does not import here")  # it needed a stand-in


def write_fake_class_list(spec: Spec, root: Path, classes: int) -> None:
    """The spec's class list (its ``txt`` artifact, if any) with ``classes`` lines
    ``/f/fake_class_<i> <i>``, in the Places365 layout."""
    for art in spec.artifacts:
        if art.format == "txt":
            lines = [f"/f/fake_class_{i:03d} {i}\n" for i in range(classes)]
            (root / art.path).write_text("".join(lines), encoding="utf-8")


def attach_categories(ctx: LoadContext, model: Any, expected: int | None) -> Any:
    """Give ``model`` a ``categories`` tuple from the spec's ``txt`` artifact, if it has one."""
    labels = next((a for a in ctx.spec.artifacts if a.format == "txt"), None)
    if labels is not None:
        model.categories = read_categories(ctx, ctx.paths[labels.path], expected)
    return model


def _check_arch(ctx: LoadContext, tv: Any, arch: Any, feature_extractor: bool) -> str:
    name = ctx.spec.name
    known = tv.models.list_models()
    if not isinstance(arch, str) or arch not in known:
        close = difflib.get_close_matches(str(arch), known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LoaderArgsError(
            f"spec {name!r}: loader_args.arch {arch!r} is not a torchvision model{hint} "
            "(torchvision.models.list_models() lists them)",
            spec=name,
            loader="torchvision",
        )
    if feature_extractor:
        classifiers = tv.models.list_models(tv.models) + tv.models.list_models(tv.models.video)
        if arch not in classifiers:
            raise LoaderArgsError(
                f"spec {name!r}: feature_extractor works on image and video classifiers; "
                f"{arch!r} is not one",
                spec=name,
                loader="torchvision",
            )
    return arch


def _no_weights(tv: Any, arch: str) -> dict[str, Any]:
    """The builder arguments that keep torchvision from fetching any weights: detection and
    segmentation builders default ``weights_backbone`` to ImageNet weights."""
    params = inspect.signature(tv.models.get_model_builder(arch)).parameters
    return {"weights": None, **({"weights_backbone": None} if "weights_backbone" in params else {})}


def _builder_kwargs(
    ctx: LoadContext, tv: Any, arch: str, num_classes: Any, kwargs: Any
) -> dict[str, Any]:
    """Keyword arguments for ``get_model(arch, **them)``: never any weights."""
    name = ctx.spec.name
    if not isinstance(kwargs, Mapping):
        raise LoaderArgsError(
            f"spec {name!r}: loader_args.kwargs must be a mapping", spec=name, loader="torchvision"
        )
    reserved = sorted(k for k in kwargs if k in (*_RESERVED_KWARGS, "num_classes"))
    if reserved:
        raise LoaderArgsError(
            f"spec {name!r}: loader_args.kwargs may not set {', '.join(reserved)}: the loader "
            "builds the model without weights (weights come from the spec's artifact only) "
            "and num_classes is a loader_arg of its own",
            spec=name,
            loader="torchvision",
        )
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise LoaderArgsError(
            f"spec {name!r}: loader_args.num_classes must be a positive integer, got "
            f"{num_classes!r}",
            spec=name,
            loader="torchvision",
        )
    built: dict[str, Any] = {**kwargs, **_no_weights(tv, arch)}
    if num_classes is not None:
        built["num_classes"] = num_classes
    return built


def _remove_classifier(ctx: LoadContext, torch: Any, model: Any, arch: str) -> Any:
    """Replace the last Linear layer (ResNet's ``fc``, ``classifier[-1]``, ``heads.head``)
    with Identity, so the model returns what that layer received: the pooled features."""
    last = None
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            last = module_name
    if last is None:
        raise LoaderArgsError(
            f"spec {ctx.spec.name!r}: feature_extractor: {arch!r} has no Linear classifier "
            "layer to remove",
            spec=ctx.spec.name,
            loader="torchvision",
        )
    parent, _, attr = last.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, torch.nn.Identity())
    return model


def _bad_class_list(ctx: LoadContext, path: Path, problem: str) -> LoaderError:
    return LoaderError(
        f"spec {ctx.spec.name!r}: the class list {path} {problem}; the file passed its digest "
        "check, so the pinned artifact itself does not fit the spec",
        spec=ctx.spec.name,
        loader=ctx.spec.loader or "torchvision",
    )


def read_categories(ctx: LoadContext, path: Path, expected: int | None) -> tuple[str, ...]:
    """Class names by index from a class-list file (``name`` or ``name index`` a line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_class_list(ctx, path, "is not UTF-8 text") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    matches = [_INDEXED_LINE.fullmatch(line) for line in lines]
    if lines and all(matches):
        names = {int(m.group(2)): m.group(1) for m in matches if m}
    else:
        names = dict(enumerate(lines))
    if sorted(names) != list(range(len(lines))):
        raise _bad_class_list(
            ctx, path, f"does not number its {len(lines)} classes 0 to {len(lines) - 1} once each"
        )
    if expected is not None and len(names) != expected:
        raise _bad_class_list(
            ctx, path, f"has {len(names)} classes, but loader_args.num_classes is {expected}"
        )
    return tuple(_PLACES_PREFIX.sub("", names[i]) for i in range(len(names)))


class TorchvisionLoader:
    """``loader: torchvision``."""

    name = "torchvision"
    framework = "torchvision"
    extra = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        _torchvision()  # a missing torchvision is a MissingExtraError at get()
        return _cuda_available()

    def make_fake(self, spec: Spec, root: Path) -> dict[str, Any] | None:
        """Random weights of :data:`FAKE_ARCH` (a 0.25-wide MobileNetV3-small, 1.6 MB) for
        an image classifier, of the spec's own ``arch`` otherwise, saved the way the spec
        reads them; the class list gets ``num_classes`` lines ``/f/fake_class_<i> <i>``.
        Returns the ``arch``/``kwargs`` override for the fake catalog."""
        tv = _torchvision(spec.name)
        args = {"num_classes": None, "kwargs": {}, "state_dict_key": None, **spec.loader_args}
        override: dict[str, Any] | None = None
        if args.get("arch") in tv.models.list_models(tv.models):
            override = {"arch": FAKE_ARCH["arch"], "kwargs": dict(FAKE_ARCH["kwargs"])}
            args.update(override)
        kwargs: dict[str, Any] = {
            "name": args["arch"],
            **args["kwargs"],
            **_no_weights(tv, args["arch"]),
        }
        if args["num_classes"] is not None:
            kwargs["num_classes"] = args["num_classes"]
        write_fake_weights(
            spec, root, "torchvision.models:get_model", kwargs, args["state_dict_key"]
        )
        write_fake_class_list(spec, root, args["num_classes"] or 1000)
        return override

    def load(self, ctx: LoadContext) -> Any:
        args = ctx.args(
            {
                "arch": None,
                "num_classes": None,
                "feature_extractor": False,
                "kwargs": {},
                "state_dict_key": None,
                "strip_prefix": None,
                "weights_only": True,
            }
        )
        name = ctx.spec.name
        tv = _torchvision(name)
        torch = require("torch", extra=self.extra, spec=name)
        features = bool_arg(ctx, args, "feature_extractor", self.name)
        weights_only = bool_arg(ctx, args, "weights_only", self.name)
        arch = _check_arch(ctx, tv, args["arch"], features)
        kwargs = _builder_kwargs(ctx, tv, arch, args["num_classes"], args["kwargs"])
        try:
            model = tv.models.get_model(arch, **kwargs)
        except (TypeError, ValueError) as exc:
            shown = {k: v for k, v in kwargs.items() if k not in ("weights", "weights_backbone")}
            raise LoaderArgsError(
                f"spec {name!r}: torchvision cannot build {arch!r} with {shown}: {exc}",
                spec=name,
                loader=self.name,
            ) from exc
        model = load_weights(
            ctx,
            model,
            loader=self.name,
            what=f"torchvision {arch}",
            hint="Check arch, num_classes, state_dict_key and strip_prefix against the checkpoint.",
            state_dict_key=args["state_dict_key"],
            strip_prefix=args["strip_prefix"],
            weights_only=weights_only,
        )
        if features:
            model = _remove_classifier(ctx, torch, model, arch)
        return attach_categories(ctx, model, args["num_classes"])
