"""What a loader is: the :class:`Loader` protocol and the :class:`LoadContext` it receives."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, Protocol, runtime_checkable

from .._io import open_regular
from ..errors import LoaderArgsError, MissingExtraError
from ..spec import Spec

__all__ = [
    "FrameworkPaths",
    "LoadContext",
    "Loader",
    "VerifiedFile",
    "require",
    "write_placeholder",
]


class VerifiedFile(Protocol):
    """A file artifact as a load sees it (:class:`dp_models.verify.OpenedFile`): the open,
    verified file, whatever happened to its path since."""

    def read_bytes(self) -> bytes: ...

    def open(self) -> BinaryIO: ...

    def framework_path(self) -> Path: ...

    @property
    def path(self) -> Path: ...


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader may use: the spec, its verified artifacts, the resolved device and
    precision.

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

    def args(self, allowed: Mapping[str, Any]) -> dict[str, Any]:
        """``loader_args`` checked against ``allowed`` (name -> default), defaults filled in.
        An unknown argument is a :class:`LoaderArgsError` that lists the known ones."""
        unknown = sorted(set(self.loader_args) - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed)) or "none"
            raise LoaderArgsError(
                f"spec {self.spec.name!r}: loader {self.spec.loader!r} does not take "
                f"loader_args {', '.join(unknown)}; it takes {known}",
                spec=self.spec.name,
                loader=self.spec.loader or "?",
            )
        return {**allowed, **self.loader_args}


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


@runtime_checkable
class Loader(Protocol):
    """Builds the in-process object of a spec.

    ``framework`` is the distribution whose version goes into ``models_used``;
    ``extra`` is the dp-models extra that installs it.
    """

    name: str
    framework: str
    extra: str

    def cuda_available(self) -> bool:
        """Whether this loader's framework can run on CUDA here."""
        ...

    def load(self, ctx: LoadContext) -> Any:
        """Build and return the model. Raise dp_models errors for anything the user can fix."""
        ...


# Optional loader methods, looked up with getattr (a third-party loader may lack them):
#
#   precisions: tuple[str, ...]
#       The precisions it can run; anything else is a PrecisionError at get().
#   describe(spec: Spec, paths: Mapping[str, Path]) -> Mapping[str, Any] | None
#       Facts read from the verified artifacts without loading them (a spaCy pipeline's
#       name and version, say); recorded as ``model_info`` in models_used.
#   make_fake(spec: Spec, root: Path) -> Mapping[str, Any] | None
#       Write small artifacts the framework really loads at ``root / artifact.path``; return
#       loader_args overrides for the fake catalog copy (a tiny architecture), or None.


def require(module: str, *, extra: str, spec: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.split(".")[0] != exc.name.split(".")[0]:
            raise  # the framework is there but broken: show the real error
        raise MissingExtraError(module, extra=extra, spec=spec) from exc


def write_placeholder(path: Path, fmt: str) -> None:
    """Write a small, well-formed file of ``fmt`` for an artifact that is not the weights
    (labels, configs): what a fake root needs beside the fake weights."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "txt": "class_0\nclass_1\n",
        "json": "{}\n",
        "yaml": "{}\n",
    }.get(fmt)
    if content is None:
        raise ValueError(f"no placeholder for format {fmt!r}")
    path.write_text(content, encoding="utf-8")
