"""SentenceTransformers loader: a ``SentenceTransformer`` from a local model directory.

``loader: sentence_transformers`` calls ``SentenceTransformer(<verified directory>,
device=..., local_files_only=True, trust_remote_code=False)``: never a Hub id (which
downloads into a cache) and never code from the model directory. The spec names the
directory (``format: model_dir``) and, inside it, the weights (``format: safetensors``,
pinned by the sha256 Hugging Face publishes); the directory digest covers every other
file (configs, tokenizer, pooling).

Checked before the load, so that nothing is substituted quietly:

- the directory must hold ``modules.json`` (without it, sentence-transformers builds a
  mean-pooling model around a bare transformers checkpoint: another model than the one
  published), and every module it lists must be a ``sentence_transformers`` class (a
  module type names a class that is imported and run);
- the spec's weights file must lie inside the model directory (it is what loads);

and after it: every tensor the transformer needs must be in the weights file (transformers
initialises missing ones at random and only logs it):
:class:`~dp_models._errors.StateDictMismatchError` otherwise.

Query and passage prefixes (multilingual-e5: ``"query: "`` and ``"passage: "``) become the
model's prompts ``query``, ``document`` and ``passage``, so::

    model = mm.load("multilingual_e5_large")
    q = model.encode_query(["how old is the universe"])        # "query: how old ..."
    p = model.encode_document(["The universe is 13.8 ..."])     # "passage: The universe ..."
    model.encode(texts, prompt_name="passage")                  # the same as encode_document

``model.encode(texts)`` adds no prefix.

loader_args: :class:`SentenceTransformersArgs`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import Field

from .._errors import (
    DPModelsError,
    LoaderError,
    MissingExtraError,
    NetworkBlockedError,
    StateDictMismatchError,
)
from .base import LoadContext, Loader, LoaderArgs, require

__all__ = ["SentenceTransformersArgs", "SentenceTransformersLoader"]

_NAME = "sentence_transformers"
_EXTRA = "st"
_MODULE_PREFIX = "sentence_transformers."
_SHOWN_KEYS = 8
#: transformers renames these on load (checkpoints from before LayerNorm took weight/bias)
_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


class SentenceTransformersArgs(LoaderArgs):
    """``loader_args`` of ``sentence_transformers``."""

    normalize_embeddings: bool = Field(
        default=False,
        description="true: the model ends with a Normalize module (added when its "
        "modules.json has none), so every encode returns unit vectors; false: the modules "
        "exactly as modules.json lists them",
    )
    query_prefix: str | None = Field(default=None, description="the 'query' prompt")
    passage_prefix: str | None = Field(
        default=None, description="the 'document' and 'passage' prompts"
    )


def _torch(spec: str | None = None) -> Any:
    return require("torch", extra=_EXTRA, spec=spec)


def _check_modules(ctx: LoadContext, directory: Path) -> None:
    name = ctx.spec.name
    path = directory / "modules.json"
    problem: str | None = None
    try:
        modules = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise LoaderError(
            f"spec {name!r}: {directory} has no modules.json, so it is not a "
            "sentence-transformers model directory (sentence-transformers would wrap a bare "
            "transformers checkpoint in mean pooling: another model than the one published). "
            "Provision the model's whole directory.",
            spec=name,
            loader=_NAME,
        ) from None
    except (OSError, ValueError) as exc:
        raise LoaderError(
            f"spec {name!r}: cannot read {path} ({exc})", spec=name, loader=_NAME
        ) from exc
    if not isinstance(modules, list) or not modules:
        problem = "it is not a non-empty list of modules"
    else:
        for entry in modules:
            kind = entry.get("type") if isinstance(entry, Mapping) else None
            if not isinstance(kind, str) or not kind.startswith(_MODULE_PREFIX):
                problem = (
                    f"module type {kind!r} is not a sentence_transformers class (a module type "
                    "names a class that is imported and run; custom modules are refused)"
                )
                break
    if problem is not None:
        raise LoaderError(f"spec {name!r}: {path}: {problem}", spec=name, loader=_NAME)


def _weights(ctx: LoadContext, directory: Path) -> Path | None:
    """The spec's safetensors artifact, which must be the model directory's own file of
    that name (under a root, or in the view of a hub cache snapshot's verified files)."""
    art = next((a for a in ctx.spec.artifacts if a.format == "safetensors"), None)
    if art is None:
        return None
    path = ctx.paths[art.path]
    where = next(a.path for a in ctx.spec.artifacts if a.format == "model_dir")
    inside = PurePosixPath(art.path)
    try:
        same = inside.is_relative_to(where) and os.path.samefile(
            directory / inside.relative_to(where), path
        )
    except OSError:
        same = False
    if not same:
        raise LoaderError(
            f"spec {ctx.spec.name!r}: its weights {art.path} are not inside its model directory "
            f"{where}: the verified file would not be the one that loads",
            spec=ctx.spec.name,
            loader=_NAME,
        )
    return path


def _check_weights(ctx: LoadContext, model: Any, directory: Path, weights: Path) -> None:
    """Every tensor of the transformer is in ``weights`` (transformers would initialise the
    missing ones at random, with a log line). Sharded weights (an index file beside them)
    are not checked: one shard never holds every tensor."""
    net = next((m.auto_model for m in model if hasattr(m, "auto_model")), None)
    if net is None or (directory / "model.safetensors.index.json").exists():
        return
    safetensors = require("safetensors", extra=_EXTRA, spec=ctx.spec.name)
    with safetensors.safe_open(str(weights), framework="pt") as f:
        stored = set(f.keys())
    prefix = f"{getattr(net, 'base_model_prefix', '')}."
    found = set()
    for key in stored:
        key = key[len(prefix) :] if prefix != "." and key.startswith(prefix) else key
        for old, new in _LEGACY_SUFFIXES.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        found.add(key)
    missing = sorted(k for k in net.state_dict() if k not in found)
    if missing:
        more = f" and {len(missing) - _SHOWN_KEYS} more" if len(missing) > _SHOWN_KEYS else ""
        raise StateDictMismatchError(
            f"spec {ctx.spec.name!r}: {weights} lacks {len(missing)} tensor(s) the model's "
            f"config.json needs [{', '.join(missing[:_SHOWN_KEYS])}{more}]; transformers would "
            "initialise them at random. The weights and the config are from different models: "
            "provision the model directory as published.",
            spec=ctx.spec.name,
            loader=_NAME,
            missing=missing,
            unexpected=[],
        )


def _blocked(exc: BaseException) -> NetworkBlockedError | None:
    """The network guard's error, when a library caught it and raised another one."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, NetworkBlockedError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "no message"


def _normalize_class(spec: str) -> Any:
    """``Normalize``: newer sentence-transformers keep it in ``sentence_transformer.modules``
    (importing the old ``models`` path warns there), older ones in ``models``."""
    for module in ("sentence_transformers.sentence_transformer.modules", "sentence_transformers"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found = getattr(mod, "Normalize", None) or getattr(
            getattr(mod, "models", None), "Normalize", None
        )
        if found is not None:
            return found
    raise LoaderError(
        f"spec {spec!r}: this sentence-transformers has no Normalize module",
        spec=spec,
        loader=_NAME,
    )


class SentenceTransformersLoader(Loader[SentenceTransformersArgs]):
    """``loader: sentence_transformers``: a ``SentenceTransformer`` from a local directory."""

    name = _NAME
    framework = "sentence-transformers"
    extra = _EXTRA
    args_model = SentenceTransformersArgs
    precisions = ("fp32", "fp16", "bf16")

    def cuda_available(self) -> bool:
        # find_spec, not an import: sentence-transformers takes seconds to import
        if importlib.util.find_spec("sentence_transformers") is None:
            raise MissingExtraError("sentence_transformers", extra=self.extra)
        return bool(_torch().cuda.is_available())

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        prompts: dict[str, str] = {}
        if args.query_prefix is not None:
            prompts["query"] = args.query_prefix
        if args.passage_prefix is not None:
            prompts.update(dict.fromkeys(("document", "passage"), args.passage_prefix))
        directory = ctx.artifact("model_dir")
        weights = _weights(ctx, directory)
        _check_modules(ctx, directory)
        st = require("sentence_transformers", extra=self.extra, spec=name)
        torch = _torch(name)
        try:
            model = st.SentenceTransformer(
                str(directory),
                device=ctx.device,
                prompts=prompts or None,
                local_files_only=True,
                trust_remote_code=False,
            )
        except DPModelsError:
            raise
        except Exception as exc:
            blocked = _blocked(exc)
            if blocked is not None:
                raise blocked from exc
            raise LoaderError(
                f"spec {name!r}: sentence-transformers cannot load {directory} "
                f"({type(exc).__name__}: {_first_line(exc)}). The files passed their digest "
                "check, so the pinned directory itself is not "
                "a model this sentence-transformers and transformers can load: check the "
                "provisioned directory.",
                spec=name,
                loader=self.name,
            ) from exc
        if weights is not None:
            _check_weights(ctx, model, directory, weights)
        normalize = _normalize_class(name)
        if args.normalize_embeddings and not any(isinstance(m, normalize) for m in model):
            model.append(normalize())
        dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if ctx.precision != "fp32":
            model.to(dtype=dtypes[ctx.precision])
        model.eval()
        return model
