"""laion_clap loader: LAION-CLAP's ``CLAP_Module`` from a local checkpoint and a local
RoBERTa tokenizer/config directory.

The laion-clap package reaches the Hugging Face Hub in three places, none of which this
loader lets it use:

- at import, ``laion_clap.training.data`` builds module-level BERT, RoBERTa and BART
  tokenizers with ``from_pretrained("bert-base-uncased")`` and so on (used only by its
  training data pipeline). The loader imports the package with those calls answered by
  placeholders that raise if they are ever used, whatever the offline flags say;
- building the model calls ``RobertaModel.from_pretrained("roberta-base")`` (500 MB of
  weights the checkpoint overwrites anyway): the loader builds the text tower from the
  artifact directory's ``config.json`` instead, randomly initialised, then loads the
  checkpoint;
- ``CLAP_Module`` makes its tokenizer with ``RobertaTokenizer.from_pretrained(
  "roberta-base")``: the loader gives it the artifact directory's tokenizer, and checks
  that its vocabulary is the text tower's (transformers 5 quietly builds a 5-token
  tokenizer from a directory without ``vocab.json``).

The checkpoint is read by torch's weights-only unpickler (never laion-clap's
``load_state_dict``, which unpickles everything, and never Python's own unpickler), with
numpy's scalar and dtype types added to its allowlist: LAION's training code stores numpy
floats (learning rates) beside the weights. A pickle in a protocol torch's unpickler does
not parse (4, reported for LAION's released checkpoints) is translated to protocol 2
opcode for opcode, building and importing nothing, and read by that same unpickler
(:mod:`dp_models.loaders._checkpoint`). Only the ``state_dict`` is used; keys must match
exactly.

loader_args: :class:`LaionClapArgs`.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field, field_validator

from .._errors import (
    ArtifactMissingError,
    LoaderArgsError,
    LoaderError,
    MissingExtraError,
    UnprovisionedTokenizerError,
)
from .base import LoadContext, Loader, LoaderArgs, require
from .torch import (
    advise_huge_pages,
    fit_state_dict,
    parameters_left_uninitialised,
    read_checkpoint,
    unwrap_state_dict,
)

__all__ = ["LaionClapArgs", "LaionClapLoader"]

_NAME = "laion_clap"
WEIGHT_FORMATS = ("pt", "pth", "safetensors")
_TEXT_FILES = ("config.json", "vocab.json", "merges.txt")
_HUB_TOKENIZERS = ("BertTokenizer", "RobertaTokenizer", "BartTokenizer")
#: Buffers that older transformers saved with the weights and newer ones do not keep.
_STALE_BUFFERS = ("text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids")
_NUMERIC_DTYPES = tuple(
    f"{kind}DType"
    for kind in (
        "Bool",
        *(f"Int{b}" for b in (8, 16, 32, 64)),
        *(f"UInt{b}" for b in (8, 16, 32, 64)),
        "Float16",
        "Float32",
        "Float64",
        "LongDouble",
        "Complex64",
        "Complex128",
    )
)
# CLAP_Module looks RobertaModel / RobertaTokenizer up in its modules' globals while it is
# built; they point at the spec's directory for the duration of one build at a time.
_BUILD_LOCK = threading.Lock()
_IMPORT_LOCK = threading.Lock()


class LaionClapArgs(LoaderArgs):
    """``loader_args`` of ``laion_clap``."""

    amodel: str = Field(
        default="HTSAT-tiny",
        description="audio tower: a laion-clap model config (HTSAT-tiny, PANN-14, ...), "
        "checked against the installed laion-clap at load",
    )
    tmodel: str = Field(
        default="roberta",
        description="text tower: only 'roberta' (its files are the spec's artifact)",
    )
    enable_fusion: bool = Field(
        default=False, description="the fusion variant (needs a fusion checkpoint)"
    )
    weights_only: bool = Field(
        default=True, description="false opts out of safe unpickling (trusted files only)"
    )

    @field_validator("tmodel")
    @classmethod
    def _roberta(cls, value: str) -> str:
        if value != "roberta":
            raise ValueError(
                "is not supported: laion_clap would download its text tower from the Hugging "
                "Face Hub; only 'roberta' is built from the spec's RoBERTa directory"
            )
        return value


class _HubPlaceholder:
    """What ``laion_clap.training.data``'s module-level tokenizers are: unusable, loudly."""

    def __init__(self, cls_name: str, repo: str) -> None:
        self._what = f"{cls_name}.from_pretrained({repo!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnprovisionedTokenizerError(
            f"laion_clap's training tokenizer {self._what} would come from the Hugging Face "
            "Hub; dp_models does not provide it. Use the CLAP_Module's own tokenizer "
            "(clap.tokenizer(texts), clap.get_text_embedding(texts))."
        )

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"{self._what} is not provisioned by dp_models (laion_clap)")

    def __repr__(self) -> str:
        return f"<not provisioned: {self._what}>"


class _NoHub:
    """Stands in for a transformers tokenizer class while laion_clap imports."""

    def __init__(self, cls_name: str) -> None:
        self.__name__ = cls_name

    def from_pretrained(self, repo: str, *args: Any, **kwargs: Any) -> _HubPlaceholder:
        return _HubPlaceholder(self.__name__, repo)


def _torch(spec: str | None = None) -> Any:
    return require("torch", extra="clap", spec=spec)


def _import_laion_clap(spec: str | None) -> ModuleType:
    """``import laion_clap`` without its import-time Hub downloads (see the module doc)."""
    with _IMPORT_LOCK:
        if "laion_clap" in sys.modules and sys.modules["laion_clap"] is not None:
            return sys.modules["laion_clap"]
        if importlib.util.find_spec("laion_clap") is None:
            raise MissingExtraError("laion_clap", extra="clap", spec=spec)
        require("transformers", extra="clap", spec=spec)
        # transformers swaps the module in sys.modules for a new lazy module the first time
        # some of its classes are imported: import what laion_clap imports first, then patch
        # the module that `from transformers import X` will read
        for module_name in ("transformers.tokenization_utils_base", "transformers"):
            importlib.import_module(module_name)
        for name in (*_HUB_TOKENIZERS, "BertModel", "RobertaModel", "BartModel"):
            getattr(sys.modules["transformers"], name)
        transformers = sys.modules["transformers"]
        real = {name: getattr(transformers, name) for name in _HUB_TOKENIZERS}
        shims = {name: _NoHub(name) for name in _HUB_TOKENIZERS}
        try:
            for name, shim in shims.items():
                setattr(transformers, name, shim)
            with warnings.catch_warnings():
                # timm and librosa warn about their own deprecations while laion_clap imports
                warnings.simplefilter("ignore")
                module = require("laion_clap", extra="clap", spec=spec)
        finally:
            for mod in {
                id(transformers): transformers,
                id(sys.modules["transformers"]): sys.modules["transformers"],
            }.values():
                for name, cls in real.items():
                    setattr(mod, name, cls)
        # `from transformers import X` bound the shims in laion_clap's modules: undo that
        for mod in list(sys.modules.values()):
            namespace = getattr(mod, "__dict__", {})  # not getattr: lazy modules would import
            for name, shim in shims.items():
                if namespace.get(name) is shim:
                    namespace[name] = real[name]
        return module


def _numpy_scalars() -> list[Any]:
    """numpy scalars and dtypes, under the names numpy 1 and numpy 2 pickle them: plain
    data (a dtype and the scalar's bytes), nothing that runs code."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: dtype instances of these classes
    numeric = [
        getattr(dtypes, name)
        for name in _NUMERIC_DTYPES
        if dtypes is not None and hasattr(dtypes, name)
    ]
    return [
        (scalar, "numpy.core.multiarray.scalar"),
        (scalar, "numpy._core.multiarray.scalar"),
        np.dtype,
        *numeric,
    ]


def _read_checkpoint(ctx: LoadContext, path: Path, fmt: str, weights_only: bool) -> Any:
    """The checkpoint, read by torch's weights-only unpickler with numpy's scalars and
    dtypes allowed (any pickle protocol: LAION's are protocol 4, which is translated to
    protocol 2 first, running nothing; see :mod:`._checkpoint`)."""
    return read_checkpoint(
        ctx, path, fmt, weights_only, allow=_numpy_scalars(), what="tensors and numpy scalars"
    )


def _text_tower(ctx: LoadContext) -> tuple[Any, Any, Path]:
    """The RoBERTa config and tokenizer of the spec's ``tokenizer_dir`` artifact."""
    name = ctx.spec.name
    directory = ctx.artifact("tokenizer_dir", "model_dir")
    for file in _TEXT_FILES:
        if not (directory / file).is_file():
            raise ArtifactMissingError(
                f"spec {name!r}: the RoBERTa directory {directory} has no {file}; it needs "
                f"{', '.join(_TEXT_FILES)} (from roberta-base). Provision the whole directory "
                "and pin it again with `dp-models lock`.",
                spec=name,
                path=directory / file,
            )
    transformers = require("transformers", extra="clap", spec=name)
    config = transformers.RobertaConfig.from_pretrained(str(directory), local_files_only=True)
    tokenizer = transformers.RobertaTokenizer.from_pretrained(str(directory), local_files_only=True)
    if len(tokenizer) != config.vocab_size:
        raise LoaderError(
            f"spec {name!r}: the RoBERTa tokenizer in {directory} has {len(tokenizer)} tokens "
            f"but its config.json says vocab_size {config.vocab_size}; the directory is not "
            "one model's files (vocab.json, merges.txt and config.json of roberta-base)",
            spec=name,
            loader=_NAME,
        )
    return config, tokenizer, directory


def _clap_modules(laion_clap: ModuleType) -> tuple[ModuleType, ModuleType, ModuleType]:
    """laion_clap's hook, factory and model modules. The package puts its own directory on
    sys.path and imports ``clap_module`` as a top-level package, so these are found from
    the objects, not by name."""
    hook = sys.modules[laion_clap.CLAP_Module.__module__]
    factory = sys.modules[hook.create_model.__module__]
    return hook, factory, sys.modules[factory.CLAP.__module__]


@contextmanager
def _local_roberta(
    laion_clap: ModuleType, config: Any, tokenizer: Any, spec: str
) -> Iterator[None]:
    """While one CLAP_Module is built: ``RobertaModel.from_pretrained("roberta-base")`` is a
    randomly initialised RoBERTa of ``config`` (the checkpoint holds its weights), and
    ``RobertaTokenizer.from_pretrained("roberta-base")`` is ``tokenizer``."""
    transformers = sys.modules["transformers"]
    hook, _, model_module = _clap_modules(laion_clap)

    def local(make: Callable[[], Any], what: str) -> Any:
        class Local:
            @staticmethod
            def from_pretrained(repo: str, *args: Any, **kwargs: Any) -> Any:
                if repo != "roberta-base":
                    raise LoaderError(
                        f"spec {spec!r}: laion_clap asked for {what}.from_pretrained({repo!r}); "
                        "only roberta-base is provided (the spec's tokenizer_dir artifact)",
                        spec=spec,
                        loader=_NAME,
                    )
                return make()

        return Local

    patches = [
        (
            model_module,
            "RobertaModel",
            local(lambda: transformers.RobertaModel(config), "RobertaModel"),
        ),
        (hook, "RobertaTokenizer", local(lambda: tokenizer, "RobertaTokenizer")),
    ]
    with _BUILD_LOCK:
        saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patches]
        try:
            for mod, attr, value in patches:
                setattr(mod, attr, value)
            with warnings.catch_warnings():
                # HTSAT calls torch.meshgrid without indexing=, and torch warns on every call
                warnings.simplefilter("ignore")
                yield
        finally:
            for mod, attr, value in saved:
                setattr(mod, attr, value)


def _load_weights(ctx: LoadContext, model: Any, state: dict[str, Any], label: str) -> None:
    name = ctx.spec.name
    own = model.state_dict()
    for key in _STALE_BUFFERS:
        if key not in own:
            state.pop(key, None)
    fit_state_dict(
        model,
        state,
        spec=name,
        loader=_NAME,
        what=f"the checkpoint does not fit CLAP {label}",
        shape_hint="Check amodel and enable_fusion against the checkpoint, and the RoBERTa config.",
        key_hint="Check amodel and enable_fusion against the checkpoint (a fusion checkpoint "
        "needs enable_fusion: true).",
    )


def _check_amodel(ctx: LoadContext, amodel: str, laion_clap: ModuleType) -> None:
    known = _clap_modules(laion_clap)[1].list_models()
    if amodel not in known:
        raise LoaderArgsError(
            f"spec {ctx.spec.name!r}: loader_args.amodel {amodel!r} is not a laion_clap audio "
            f"model config; known: {', '.join(known)}",
            spec=ctx.spec.name,
            loader=_NAME,
        )


class LaionClapLoader(Loader[LaionClapArgs]):
    """``loader: laion_clap``; returns a ``laion_clap.CLAP_Module`` in eval mode."""

    name = _NAME
    framework = "laion_clap"
    extra = "clap"
    args_model = LaionClapArgs
    # CLAP_Module feeds its towers float32 features; half precision is the caller's autocast
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        # find_spec, not an import: laion_clap takes seconds to import and get() loads nothing
        if importlib.util.find_spec("laion_clap") is None:
            raise MissingExtraError("laion_clap", extra=self.extra)
        return bool(_torch().cuda.is_available())

    def load(self, ctx: LoadContext) -> Any:
        args = self.args(ctx)
        name = ctx.spec.name
        laion_clap = _import_laion_clap(name)
        _check_amodel(ctx, args.amodel, laion_clap)
        config, tokenizer, _ = _text_tower(ctx)
        art = next((a for a in ctx.spec.artifacts if a.format in WEIGHT_FORMATS), None)
        if art is None:
            ctx.artifact(*WEIGHT_FORMATS)  # raises: the spec has no weights artifact
            raise AssertionError("unreachable")
        checkpoint = _read_checkpoint(ctx, Path(art.path), art.format, args.weights_only)
        state = unwrap_state_dict(checkpoint, spec=ctx.spec.name, loader=_NAME)
        # every parameter comes from the checkpoint (a strict load): torch.nn.init leaves
        # them as allocated; the audio front end's DFT matrices, HTSAT's own truncated
        # normal init and RoBERTa's (transformers' init functions) still run
        with (
            _local_roberta(laion_clap, config, tokenizer, name),
            parameters_left_uninitialised(ctx),
        ):
            clap = laion_clap.CLAP_Module(
                enable_fusion=args.enable_fusion,
                device=ctx.device,
                amodel=args.amodel,
                tmodel="roberta",
            )
        label = f"{args.amodel} + roberta (enable_fusion: {str(args.enable_fusion).lower()})"
        advise_huge_pages(_torch(name), clap.model.parameters())
        _load_weights(ctx, clap.model, state, label)
        clap.eval()
        return clap
