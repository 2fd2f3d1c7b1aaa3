"""torchvision loader: ``torchvision.models.get_model(arch, weights=None)`` and a local state dict.

The architecture is built without weights (``weights=None``, and ``weights_backbone=None``
for the builders that would otherwise fetch a backbone), then its weights are read from the
spec's weights artifact exactly as ``torch_state_dict`` reads them (safetensors, or
``torch.load(weights_only=True)``: a pickle that needs more than tensors is refused). Keys
must match exactly. torchvision's ``pretrained``/``weights`` downloads are never used.

loader_args: :class:`TorchvisionArgs`.

A spec that requires a labels spec (``requires: [places365_categories]``,
:mod:`dp_models.loaders.labels`) gives the model ``categories``: those names by class index
(``airfield``, ``arena/hockey``), as many as ``num_classes``.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Annotated, Any

from pydantic import Field, field_validator

from .._errors import LoaderArgsError
from .base import LoadContext, Loader, require
from .labels import ROLE, Labels, check_count
from .torch import (
    CheckpointArgs,
    _apply_precision,
    _cuda_available,
    _state_dict,
    _weights_artifact,
    build_without_init,
    fit_state_dict,
    read_checkpoint,
    read_safetensors_into,
)

__all__ = ["TorchvisionArgs", "TorchvisionLoader"]

# Keyword arguments that would make torchvision fetch weights, or that loader_args own.
_RESERVED_KWARGS = ("weights", "weights_backbone", "pretrained", "pretrained_backbone")


class TorchvisionArgs(CheckpointArgs):
    """``loader_args`` of ``torchvision``."""

    arch: str = Field(
        description="a name of torchvision.models.list_models(), e.g. resnet50 (checked "
        "against the installed torchvision at load)"
    )
    num_classes: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="outputs of the classifier; null keeps the builder's default"
    )
    feature_extractor: bool = Field(
        default=False,
        description="true: the classifier's last Linear layer becomes Identity, so the model "
        "returns pooled features (ResNet-18: [N, 512], ResNet-50: [N, 2048])",
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="more keyword arguments for the builder (width_mult, ...); never weights",
    )

    @field_validator("kwargs")
    @classmethod
    def _no_weights_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(k for k in value if k in (*_RESERVED_KWARGS, "num_classes"))
        if reserved:
            raise ValueError(
                f"may not set {', '.join(reserved)}: the loader builds the model without "
                "weights (weights come from the spec's artifact only) and num_classes is a "
                "loader_arg of its own"
            )
        return value


def _torchvision(spec: str | None = None) -> Any:
    return require("torchvision", extra="torch", spec=spec)


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
    empty: bool = False,
) -> Any:
    """Load the spec's weights artifact into ``model`` (keys must match exactly), move it to
    ``ctx.device`` in ``ctx.precision`` and put it in eval mode. ``what`` names the model in
    errors; ``hint`` says which loader_args to check when keys do not match. ``empty``:
    ``model`` came from :func:`~dp_models.loaders.torch.build_without_init`, so a
    safetensors file is read straight into its memory."""
    name = ctx.spec.name
    path, fmt = _weights_artifact(ctx)
    what = f"the weights do not fit {what}"
    if (
        empty
        and fmt == "safetensors"
        and state_dict_key is None
        and read_safetensors_into(
            ctx,
            model,
            strip_prefix=strip_prefix,
            loader=loader,
            what=what,
            shape_hint=hint,
            key_hint=hint,
        )
    ):
        return _finish(ctx, model, loader)
    checkpoint = read_checkpoint(ctx, path, fmt, weights_only, mapped=True)
    state = _state_dict(ctx, checkpoint, state_dict_key, strip_prefix)
    fit_state_dict(
        model,
        state,
        spec=name,
        loader=loader,
        what=what,
        shape_hint=hint,
        key_hint=hint,
    )
    del checkpoint, state  # views of the file's map: none may outlive the copy
    return _finish(ctx, model, loader)


def _finish(ctx: LoadContext, model: Any, loader: str) -> Any:
    model = _apply_precision(model, ctx, loader)
    model.eval()
    return model


def attach_categories(ctx: LoadContext, model: Any, expected: int | None) -> Any:
    """Give ``model`` ``categories``: the :class:`~dp_models.loaders.labels.Labels` of the
    labels spec the spec requires (role ``labels``), if any, whose count must be
    ``expected`` (``num_classes``; None: not checked). A class list among the spec's own
    artifacts is refused: labels are a spec of their own, shared through ``requires``."""
    loader = ctx.spec.loader or "torchvision"
    own = next((a for a in ctx.spec.artifacts if a.format == "txt"), None)
    if own is not None:
        raise LoaderArgsError(
            f"spec {ctx.spec.name!r} lists the class list {own.path} among its artifacts; a "
            "class list is a labels spec of its own (loader: labels), which the model lists "
            "under requires (docs/loaders.md#labels): move the artifact there",
            spec=ctx.spec.name,
            loader=loader,
        )
    required = ctx.required(ROLE)
    if required is None:
        return model
    labels = required.load()
    if not isinstance(labels, Labels):
        raise LoaderArgsError(
            f"spec {ctx.spec.name!r} requires {required.spec.name!r} as its labels, but that "
            f"spec's loader ({required.spec.loader!r}) does not make a label list: give it "
            "loader: labels",
            spec=ctx.spec.name,
            loader=loader,
        )
    if expected is not None:
        check_count(
            labels, expected, spec=ctx.spec.name, loader=loader, what="loader_args.num_classes"
        )
    model.categories = labels
    return model


def _check_arch(ctx: LoadContext, tv: Any, arch: str, feature_extractor: bool) -> str:
    name = ctx.spec.name
    known = tv.models.list_models()
    if arch not in known:
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


def no_weights(tv: Any, arch: str) -> dict[str, Any]:
    """The builder arguments that keep torchvision from fetching any weights: detection and
    segmentation builders default ``weights_backbone`` to ImageNet weights."""
    params = inspect.signature(tv.models.get_model_builder(arch)).parameters
    return {"weights": None, **({"weights_backbone": None} if "weights_backbone" in params else {})}


def _builder_kwargs(tv: Any, arch: str, args: TorchvisionArgs) -> dict[str, Any]:
    """Keyword arguments for ``get_model(arch, **them)``: never any weights."""
    built: dict[str, Any] = {**args.kwargs, **no_weights(tv, arch)}
    if args.num_classes is not None:
        built["num_classes"] = args.num_classes
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


class TorchvisionLoader(Loader[TorchvisionArgs]):
    """``loader: torchvision``."""

    name = "torchvision"
    framework = "torchvision"
    extra = "torch"
    args_model = TorchvisionArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        _torchvision()  # a missing torchvision is a MissingExtraError at get()
        return _cuda_available()

    def export_module(self, loaded: Any) -> Any:
        """The model itself (a classifier's logits; a feature extractor's features)."""
        return loaded

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        tv = _torchvision(name)
        torch = require("torch", extra=self.extra, spec=name)
        arch = _check_arch(ctx, tv, args.arch, args.feature_extractor)
        kwargs = _builder_kwargs(tv, arch, args)
        try:
            model = build_without_init(ctx, lambda: tv.models.get_model(arch, **kwargs))
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
            state_dict_key=args.state_dict_key,
            strip_prefix=args.strip_prefix,
            weights_only=args.weights_only,
            empty=True,
        )
        if args.feature_extractor:
            model = _remove_classifier(ctx, torch, model, arch)
        return attach_categories(ctx, model, args.num_classes)
