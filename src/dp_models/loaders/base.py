"""What a loader is: the :class:`Loader` base class (every hook the manager calls, with its
default), the strict :class:`LoaderArgs` model its ``loader_args`` are validated against,
and the :class:`LoadContext` a load receives."""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Generic, Protocol, TypeVar, cast

from pydantic import BaseModel, ConfigDict, ValidationError

from .._errors import LoaderArgsError, MissingExtraError
from .._io import open_regular
from .._spec import PRECISIONS, Spec

__all__ = [
    "FrameworkPaths",
    "LoadContext",
    "Loader",
    "LoaderArgs",
    "NoArgs",
    "Requirement",
    "VerifiedFile",
    "require",
]


class LoaderArgs(BaseModel):
    """The base of every loader's ``loader_args`` model: unknown keys are errors, values
    are not coerced (``"true"`` is not a boolean), and the model is immutable. The catalog
    validates each in-process spec's ``loader_args`` against its loader's model when it
    loads, so a misspelt key is a :class:`~dp_models._errors.CatalogError` naming file and
    field (``dp-models validate``), not a surprise at load time."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoArgs(LoaderArgs):
    """``loader_args`` of a loader that takes none: any key is an error."""


ArgsT = TypeVar("ArgsT", bound=LoaderArgs)


class VerifiedFile(Protocol):
    """A file artifact as a load sees it (:class:`dp_models._verify.OpenedFile`): the open,
    verified file, whatever happened to its path since."""

    def read_bytes(self) -> bytes: ...

    def open(self) -> BinaryIO: ...

    def framework_path(self) -> Path: ...

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class Requirement:
    """A spec the loaded one requires (its ``requires``), as a load sees it: the spec, and
    ``load()``, which gives its in-process object (loaded once by the manager, verified and
    cached like any other)."""

    spec: Spec
    load: Callable[[], Any]


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader may use: the spec, its verified artifacts, the resolved device and
    precision, and the specs it requires (:meth:`required`).

    Loaders read files through the context only: :meth:`read_bytes` and :meth:`open` hand
    over the bytes of the file that was verified (read once, hashed while read when the
    policy is ``verify: always``); :meth:`artifact` and ``paths`` give a path, for
    frameworks that only take paths, that leads to that same open file (a link to
    ``/proc/self/fd/N`` named like the artifact), or, for a directory artifact, the
    directory itself, checked again file by file after the load.
    """

    spec: Spec
    paths: Mapping[str, Path]  # artifact path as the spec writes it -> path to give a framework
    device: str  # "cpu" or "cuda" / "cuda:N"
    precision: str  # "fp32", "fp16", "bf16" or "int8"
    loader_args: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, VerifiedFile] = field(default_factory=dict)  # file artifacts, opened
    requires: tuple[Requirement, ...] = ()  # the specs this one requires, in spec order
    #: What becomes of the lines the framework's native code writes to stderr while the
    #: model is built or closed: ``"route"`` (to the ``dp_models.native`` logger) or
    #: ``"keep"`` (``Settings.native_logs``, ``$DP_MODELS_NATIVE_LOGS``); loaders that can
    #: (MediaPipe) honour it.
    native_logs: str = "route"

    def required(self, role: str) -> Requirement | None:
        """The spec this one requires whose ``role`` is ``role`` (``labels``, ``tokenizer``),
        or None when it requires none; requiring two of one role is a
        :class:`~dp_models._errors.LoaderArgsError` (which one would be meant?)."""
        found = [r for r in self.requires if r.spec.role == role]
        if len(found) > 1:
            raise LoaderArgsError(
                f"spec {self.spec.name!r} requires {len(found)} specs of role {role!r} "
                f"({', '.join(r.spec.name for r in found)}); its loader takes one",
                spec=self.spec.name,
                loader=self.spec.loader or "?",
            )
        return found[0] if found else None

    def _find(self, formats: tuple[str, ...]) -> str:
        for art in self.spec.artifacts:
            if not formats or art.format in formats:
                return art.path
        want = " or ".join(formats) or "any"
        raise LoaderArgsError(
            f"spec {self.spec.name!r} has no artifact of format {want}; its loader "
            f"{self.spec.loader!r} needs one",
            spec=self.spec.name,
            loader=self.spec.loader or "?",
        )

    def artifact(self, *formats: str) -> Path:
        """The path of the spec's first artifact, or of the first one of ``formats``."""
        key = self._find(formats)
        opened = self.files.get(key)
        return opened.framework_path() if opened is not None else self.paths[key]

    def source(self, *formats: str) -> Path:
        """Where the first artifact (of ``formats``) lives under MODELS_ROOT: for messages
        and records only. Never open it: that would look the path up again
        (:meth:`artifact`, :meth:`open` and :meth:`read_bytes` read the verified file)."""
        key = self._find(formats)
        opened = self.files.get(key)
        return opened.path if opened is not None else self.paths[key]

    def read_bytes(self, *formats: str) -> bytes:
        """The verified bytes of the first artifact (of ``formats``), a file."""
        key = self._find(formats)
        opened = self.files.get(key)
        if opened is not None:
            return opened.read_bytes()
        fd = open_regular(self.paths[key])
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def open(self, *formats: str) -> BinaryIO:
        """A binary file object over the verified first artifact (of ``formats``)."""
        key = self._find(formats)
        opened = self.files.get(key)
        if opened is not None:
            return opened.open()
        return os.fdopen(open_regular(self.paths[key]), "rb")


class FrameworkPaths(Mapping[str, Path]):
    """``LoadContext.paths`` for a load: a file artifact's entry is its verified file's
    :meth:`~VerifiedFile.framework_path` (verified when first asked for), a directory's is
    the directory."""

    def __init__(self, directories: Mapping[str, Path], files: Mapping[str, VerifiedFile]):
        self._directories = directories
        self._files = files

    def __getitem__(self, key: str) -> Path:
        opened = self._files.get(key)
        return opened.framework_path() if opened is not None else self._directories[key]

    def __iter__(self) -> Iterator[str]:
        return iter([*self._directories, *self._files])

    def __len__(self) -> int:
        return len(self._directories) + len(self._files)


class Loader(ABC, Generic[ArgsT]):
    """Builds the in-process object of a spec: subclass it, set ``name``, ``framework`` and
    ``extra``, implement :meth:`load`, and override what differs from the defaults.

    Every attribute and method here is a hook the manager (or the catalog) calls; none is
    looked up with ``getattr``. A loader instance serves many specs and threads: keep
    per-load state in :meth:`load`.
    """

    #: The spec's ``loader`` value.
    name: str
    #: The distribution whose version goes into ``models_used`` (``"torch"``).
    framework: str
    #: The dp-models extra that installs the framework (``"torch"``): named by
    #: :class:`~dp_models._errors.MissingExtraError`.
    extra: str
    #: The model ``loader_args`` are validated against when the catalog loads (a subclass
    #: of :class:`LoaderArgs`: strict, unknown keys refused); :meth:`args` returns it.
    args_model: type[LoaderArgs] = NoArgs
    #: The precisions it runs; anything else is a PrecisionError at ``get``.
    precisions: tuple[str, ...] = PRECISIONS
    #: Engines and artifact formats a spec of this loader may name beyond the built-in
    #: lists of :mod:`dp_models._spec` (a third-party framework's own).
    engines: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    #: Whether what this loader builds keeps per-stream state (a MediaPipe task in VIDEO
    #: mode holds the last timestamp and what it tracks), so that each stream needs an
    #: instance of its own: such a loader implements :meth:`stream_factory`, and
    #: ``ModelHandle.open()`` hands out one instance per stream. False: ``open()`` is a
    #: :class:`~dp_models._errors.ConfigurationError` naming ``load()``.
    stateful: bool = False

    def cuda_available(self) -> bool:
        """Whether this loader's framework can run on CUDA here: decides ``device: auto``
        and refuses ``device: cuda`` at ``get`` (not called for ``cpu``). Import the
        framework with :func:`require`, so that a missing one is a MissingExtraError."""
        return False

    def describe(self, spec: Spec, paths: Mapping[str, Path]) -> Mapping[str, Any] | None:
        """Facts read from the verified artifacts without loading them (a spaCy pipeline's
        name and version, say), recorded as ``model_info`` in ``models_used``; None for
        none. Must not raise for a bad artifact: :meth:`load` reports it."""
        return None

    def export_module(self, loaded: Any) -> Any | None:
        """The torch module to export to ONNX from what :meth:`load` returned (``dp-models
        export onnx``): its inputs and outputs are those of the Triton spec derived from
        this one. None (the default): this loader's models cannot be exported."""
        return None

    @abstractmethod
    def load(self, ctx: LoadContext) -> Any:
        """Build and return the model. Raise dp_models errors for anything the user can fix."""

    def stream_factory(self, ctx: LoadContext) -> Callable[..., Any]:
        """For a :attr:`stateful` loader: a factory of per-stream instances,
        ``make(**options)`` -> a fresh instance that its caller closes (``with``). Read the
        artifacts here, through ``ctx``: the factory outlives the load, whose verified files
        are closed when this returns, so it keeps what it read (the verified bytes) and
        never reads the files again. The manager builds it once per (name, device,
        precision), inside the network guard like :meth:`load`, caches it, and calls it
        (guarded too) for every ``ModelHandle.open(**options)``, from any thread: it must be
        safe to call from several at once. ``options`` it does not take are a
        :class:`~dp_models._errors.LoaderArgsError`."""
        raise NotImplementedError(
            f"loader {self.name!r} declares stateful = True but does not implement stream_factory()"
        )

    def args(self, ctx: LoadContext) -> ArgsT:
        """The spec's ``loader_args`` as :attr:`args_model`, defaults filled in. The catalog
        validated them already; a context made by hand with args the model refuses is a
        :class:`LoaderArgsError`."""
        try:
            return cast(ArgsT, self.args_model.model_validate(dict(ctx.loader_args)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise LoaderArgsError(
                f"spec {ctx.spec.name!r}: loader_args{'.' + where if where else ''} do not fit "
                f"loader {self.name!r}: {first.get('msg')}",
                spec=ctx.spec.name,
                loader=self.name,
            ) from None


def require(module: str, *, extra: str, spec: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the framework is there but broken: show the real error
        raise MissingExtraError(module, extra=extra, spec=spec) from exc
