"""open_clip loader: CLIP image and text towers built by open_clip from local weights only.

The model is built from one of open_clip's built-in architecture configs (``model_name``),
never from a pretrained tag, a Hub id or a ``local-dir:``/``hf-hub:`` schema, so
open_clip's download machinery is never reached; its weights come from the spec's
verified artifact, read by this loader:

``pretrained_format: openai``
    An OpenAI CLIP release (``ViT-B-32.pt``, ...): a TorchScript archive. It is read as
    data, never with ``torch.jit.load`` (which runs the archive's ``__setstate__`` code,
    and that code can call aten ops that write files): its ``data.pkl`` is unpickled by
    torch's weights-only unpickler with the archive's TorchScript classes as inert
    records, its tensors come from the archive's storage records, and which attributes are
    parameters and buffers is read from its code as text
    (:func:`~dp_models.loaders._checkpoint.read_torchscript_state_dict`). The model that
    runs is open_clip's, built from that state dict, with QuickGELU as OpenAI trained it.
    A plain state dict in the OpenAI layout is read with torch's weights-only unpickler.
``pretrained_format: open_clip``
    A state dict saved by open_clip: ``format: safetensors`` (no pickle at all), or a
    ``pt``/``pth`` pickle read with ``torch.load(weights_only=True)``.

Keys must match the architecture exactly (a checkpoint of another size is a
:class:`~dp_models._errors.StateDictMismatchError`, never a resized positional embedding).
The spec's ``preprocess`` preset (``openai_clip_224|336|448``) must name the model's input
resolution.

loader_args: :class:`OpenClipArgs`.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .._errors import (
    LoaderArgsError,
    LoaderError,
    MissingExtraError,
    UnsafeCheckpointError,
    UnsupportedPickleError,
)
from ._checkpoint import read_torchscript_state_dict
from .base import LoadContext, Loader, LoaderArgs, require
from .torch import (
    _unpickler_detail,
    build_without_init,
    fit_state_dict,
    read_checkpoint,
    unwrap_state_dict,
)

__all__ = ["OpenClipArgs", "OpenClipLoader", "OpenClipModel"]

_NAME = "open_clip"
WEIGHT_FORMATS = ("pt", "pth", "torchscript", "safetensors")
#: Preset -> the square input resolution it resizes and crops to.
PRESET_SIZES = {"openai_clip_224": 224, "openai_clip_336": 336, "openai_clip_448": 448}
#: Entries an OpenAI TorchScript archive (or a scripted open_clip model) carries in its
#: state_dict besides the weights.
_JIT_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class OpenClipModel:
    """What ``loader: open_clip`` returns.

    ``model`` is open_clip's ``CLIP`` in eval mode on ``device``; ``preprocess`` turns a PIL
    image into a ``(3, image_size, image_size)`` float tensor (open_clip's eval transform:
    resize, centre crop, OpenAI mean and std); ``tokenizer`` turns a list of strings into a
    ``(N, context_length)`` LongTensor (made on first use). Images go to the model in
    ``input_dtype``.

    >>> clip = mm.load("clip_vit_b32")                              # doctest: +SKIP
    >>> text = clip.text_embeddings(["a photo of a cat", "a dog"])  # doctest: +SKIP
    >>> image = clip.image_embeddings(torch.stack([clip.preprocess(img)]))  # doctest: +SKIP
    >>> similarity = image @ text.T                                 # doctest: +SKIP
    """

    model: Any
    preprocess: Any
    image_size: int
    context_length: int
    device: str
    input_dtype: Any  # torch.dtype
    #: Makes the tokenizer (open_clip's, for ``model_name``), on first use of ``tokenizer``.
    make_tokenizer: Callable[[], Any] = field(repr=False, compare=False)

    @functools.cached_property
    def tokenizer(self) -> Any:
        """open_clip's tokenizer for the architecture, made on first use (reading its
        vocabulary takes longer than building the model)."""
        return self.make_tokenizer()

    def text_embeddings(self, prompts: Sequence[str], *, batch_size: int = 256) -> Any:
        """L2-normalised text embeddings of ``prompts``: a float32 ``(N, embed_dim)`` tensor
        on ``device``, in the order given."""
        import torch

        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
            raise TypeError("prompts must be a sequence of strings (a list of prompts)")
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                tokens = self.tokenizer(list(prompts[start : start + batch_size]))
                features = self.model.encode_text(tokens.to(self.device), normalize=True)
                chunks.append(features.float())
        if not chunks:
            return torch.empty((0, int(self.model.text_projection.shape[-1])), device=self.device)
        return torch.cat(chunks)

    def image_embeddings(self, images: Any) -> Any:
        """L2-normalised image embeddings: ``images`` is a ``(N, 3, S, S)`` batch made by
        ``preprocess``; returns a float32 ``(N, embed_dim)`` tensor on ``device``."""
        import torch

        with torch.inference_mode():
            batch = images.to(device=self.device, dtype=self.input_dtype)
            return self.model.encode_image(batch, normalize=True).float()


def _image_tower(model: Any) -> Any:
    """``model.encode_image(image, normalize=True)`` as a module of its own (what an export
    of the image tower runs)."""
    torch = _torch()

    class ImageTower(torch.nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, image: Any) -> Any:
            return self.clip.encode_image(image, normalize=True)

    return ImageTower().eval()


class OpenClipArgs(LoaderArgs):
    """``loader_args`` of ``open_clip``."""

    model_name: str = Field(
        min_length=1, description="an open_clip architecture config, e.g. 'ViT-B-32'"
    )
    pretrained_format: Literal["openai", "open_clip"] = Field(
        default="openai",
        description="'openai' (an OpenAI CLIP release) or 'open_clip' (a state dict saved by "
        "open_clip)",
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the architecture config (open_clip's **model_kwargs: "
        "embed_dim, vision_cfg, text_cfg, ...)",
    )

    @field_validator("model_name")
    @classmethod
    def _no_schema(cls, value: str) -> str:
        if ":" in value:
            raise ValueError(
                "names a schema (hf-hub:, local-dir:); open_clip would read its config and "
                "weights from there, not from the spec's verified artifacts. Name a built-in "
                "architecture such as 'ViT-B-32' instead"
            )
        return value


def _torch(spec: str | None = None) -> Any:
    return require("torch", extra="clip", spec=spec)


def _open_clip(spec: str | None = None) -> Any:
    with warnings.catch_warnings():
        # open_clip imports timm and transformers, which warn about their own deprecations.
        warnings.simplefilter("ignore")
        return require("open_clip", extra="clip", spec=spec)


class _DropRandomInitNotice(logging.Filter):
    """open_clip logs "No pretrained weights loaded ... initialized randomly" because the
    weights are loaded by this loader, after it built the model: not true, not shown."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    notice = _DropRandomInitNotice()
    root.addFilter(notice)
    try:
        with warnings.catch_warnings():
            # torch announces TorchScript's deprecation on every jit call; the spec chose it.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            warnings.filterwarnings("ignore", message=r".*TorchScript.*", category=FutureWarning)
            yield
    finally:
        root.removeFilter(notice)


def _is_torchscript(ctx: LoadContext, fmt: str) -> bool:
    """Whether the verified artifact is a TorchScript archive (a zip with ``constants.pkl``
    and ``code/``), read from the zip's directory only."""
    try:
        with ctx.open(fmt) as f, zipfile.ZipFile(f) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _square(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    if isinstance(size, Sequence) and len(size) == 2 and size[0] == size[1]:
        return int(size[0])
    return None


def _check_config(ctx: LoadContext, args: OpenClipArgs, open_clip: Any) -> None:
    """``model_name`` is an architecture this open_clip has, with a CLIP text tower."""
    name, model_name = ctx.spec.name, args.model_name
    config = open_clip.get_model_config(model_name)
    if config is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=4)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise LoaderArgsError(
            f"spec {name!r}: open_clip {open_clip.__version__} has no architecture config "
            f"{model_name!r} (loader_args.model_name){hint}",
            spec=name,
            loader=_NAME,
        )
    text_cfg = {**config.get("text_cfg", {}), **args.model_kwargs.get("text_cfg", {})}
    if "hf_model_name" in text_cfg or "hf_tokenizer_name" in text_cfg:
        raise LoaderArgsError(
            f"spec {name!r}: {model_name!r} has a Hugging Face text tower or tokenizer "
            f"({text_cfg.get('hf_model_name') or text_cfg.get('hf_tokenizer_name')}), which "
            "open_clip fetches from the Hub; loader open_clip builds CLIP text towers only",
            spec=name,
            loader=_NAME,
        )


def _read_state_dict(ctx: LoadContext, path: Path, fmt: str, pretrained_format: str) -> Any:
    """The weights as a plain mapping, read the safe way for what the file is; nothing in
    the file runs (see the module doc)."""
    name = ctx.spec.name
    if fmt != "safetensors" and _is_torchscript(ctx, fmt):
        if pretrained_format != "openai":
            raise LoaderArgsError(
                f"spec {name!r}: {path} is a TorchScript archive (an OpenAI CLIP release), "
                "not a state dict saved by open_clip: set loader_args.pretrained_format: openai",
                spec=name,
                loader=_NAME,
            )
        _torch(name)
        try:
            with ctx.open(fmt) as f:
                return read_torchscript_state_dict(f)
        except UnsupportedPickleError as exc:
            raise LoaderError(
                f"spec {name!r}: {path} is not a TorchScript archive this loader reads as "
                f"data ({exc}). Convert the weights to a state dict (safetensors).",
                spec=name,
                loader=_NAME,
            ) from exc
        except pickle.UnpicklingError as exc:
            raise UnsafeCheckpointError(
                f"spec {name!r}: the TorchScript archive {path} holds more than modules and "
                "tensors, so reading it could run code; it was refused and nothing in it "
                f"ran. ({_unpickler_detail(exc)})",
                spec=name,
                loader=_NAME,
            ) from exc
    return read_checkpoint(ctx, path, fmt, weights_only=True, mapped=True)


def _unwrap(ctx: LoadContext, checkpoint: Any, model: Any) -> dict[str, Any]:
    state = unwrap_state_dict(checkpoint, spec=ctx.spec.name, loader=_NAME)
    own = model.state_dict()
    for key in _JIT_EXTRAS:
        if key not in own:
            state.pop(key, None)
    return state


def _load_weights(ctx: LoadContext, model: Any, state: Mapping[str, Any], label: str) -> None:
    fit_state_dict(
        model,
        state,
        spec=ctx.spec.name,
        loader=_NAME,
        what=f"the weights do not fit open_clip {label}",
        shape_hint="The checkpoint is of another architecture or resolution than loader_args say.",
        key_hint="Check model_name and pretrained_format against the checkpoint.",
    )


def _read_into(ctx: LoadContext, model: Any, label: str) -> bool:
    """A safetensors state dict with exactly the model's keys, copied straight from the
    verified file into the model (:func:`~dp_models.loaders.torch.read_safetensors_into`);
    False, with nothing copied, for any other file (a prefixed or wrapped state dict,
    another architecture): the general path reads it, or says what does not fit."""
    from ._safetensors import read_into

    found = read_into(_torch(ctx.spec.name), str(ctx.artifact("safetensors")), model.state_dict())
    if found is None or any(found):
        return False
    return True


def _check_preprocess(ctx: LoadContext, image_size: Any) -> int:
    name = ctx.spec.name
    size = _square(image_size)
    if size is None:
        raise LoaderError(
            f"spec {name!r}: the model takes {image_size} images; the openai_clip presets "
            "are square",
            spec=name,
            loader=_NAME,
        )
    preset = ctx.spec.preprocess
    if preset is None:
        return size
    wanted = PRESET_SIZES.get(preset)
    if wanted is None:
        raise LoaderError(
            f"spec {name!r}: preprocess {preset!r} is not a CLIP preset; an open_clip model "
            f"takes openai_clip_{size} input",
            spec=name,
            loader=_NAME,
        )
    if wanted != size:
        raise LoaderError(
            f"spec {name!r}: preprocess {preset!r} makes {wanted}x{wanted} images, but the "
            f"model takes {size}x{size} (loader_args.model_name "
            f"{ctx.loader_args.get('model_name')!r}); set preprocess: openai_clip_{size} or "
            "fix the architecture",
            spec=name,
            loader=_NAME,
        )
    return size


class OpenClipLoader(Loader[OpenClipArgs]):
    """``loader: open_clip``; returns an :class:`OpenClipModel`."""

    name = _NAME
    framework = "open_clip_torch"
    extra = "clip"
    args_model = OpenClipArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        # find_spec, not an import: open_clip takes seconds to import and get() loads nothing
        if importlib.util.find_spec("open_clip") is None:
            raise MissingExtraError("open_clip", extra=self.extra)
        return bool(_torch().cuda.is_available())

    def export_module(self, loaded: Any) -> Any:
        """The image tower: ``image`` (a preprocessed batch) -> ``embedding``, L2-normalised,
        as :meth:`OpenClipModel.image_embeddings` computes it."""
        return _image_tower(loaded.model)

    def load(self, ctx: LoadContext) -> OpenClipModel:
        args = self.args(ctx)
        name = ctx.spec.name
        open_clip = _open_clip(name)
        _check_config(ctx, args, open_clip)
        kwargs = args.model_kwargs
        openai = args.pretrained_format == "openai"
        art = next((a for a in ctx.spec.artifacts if a.format in WEIGHT_FORMATS), None)
        if art is None:
            ctx.artifact(*WEIGHT_FORMATS)  # raises: the spec has no weights artifact
            raise AssertionError("unreachable")
        precision, device = ctx.precision, ctx.device
        try:
            with _quiet():
                # every parameter comes from the checkpoint: none is initialised (the text
                # tower's causal mask, in no state dict, is computed as open_clip computes it)
                model = build_without_init(
                    ctx,
                    lambda: open_clip.create_model(
                        args.model_name,
                        pretrained=None,
                        precision=precision,
                        device=device,
                        force_quick_gelu=openai,
                        **kwargs,
                    ),
                )
        except TypeError as exc:
            raise LoaderArgsError(
                f"spec {name!r}: open_clip cannot build {args.model_name!r} with "
                f"model_kwargs {kwargs!r}: {exc}",
                spec=name,
                loader=_NAME,
            ) from exc
        size = _check_preprocess(ctx, model.visual.image_size)
        label = repr(args.model_name)
        if not (art.format == "safetensors" and _read_into(ctx, model, label)):
            checkpoint = _read_state_dict(ctx, Path(art.path), art.format, args.pretrained_format)
            _load_weights(ctx, model, _unwrap(ctx, checkpoint, model), label)
            del checkpoint  # views of the file's map: none may outlive the copy
        model.eval()
        transform = importlib.import_module("open_clip.transform")
        preprocess = transform.image_transform_v2(
            transform.PreprocessCfg(**model.visual.preprocess_cfg), is_train=False
        )
        context_length = int(model.context_length)
        return OpenClipModel(
            model=model,
            preprocess=preprocess,
            image_size=size,
            context_length=context_length,
            device=ctx.device,
            input_dtype=open_clip.get_input_dtype(ctx.precision) or _torch(name).float32,
            make_tokenizer=functools.partial(
                open_clip.get_tokenizer, args.model_name, context_length=context_length
            ),
        )
