"""What a loader is: the :class:`Loader` protocol and the :class:`LoadContext` it receives."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

from ..errors import LoaderArgsError, MissingExtraError
from ..spec import Spec

__all__ = ["LoadContext", "Loader", "require", "write_placeholder"]


@dataclass(frozen=True)
class LoadContext:
    """Everything a loader may use: the spec, its verified artifacts, the resolved device and
    precision. Loaders read files only through ``paths``: each is inside MODELS_ROOT and was
    verified just before the load."""

    spec: Spec
    paths: Mapping[str, Path]  # artifact path as the spec writes it -> file on disk
    device: str  # "cpu" or "cuda" / "cuda:N"
    precision: str  # "fp32", "fp16", "bf16" or "int8"
    loader_args: Mapping[str, Any] = field(default_factory=dict)

    def artifact(self, *formats: str) -> Path:
        """The path of the spec's first artifact, or of the first one of ``formats``."""
        for art in self.spec.artifacts:
            if not formats or art.format in formats:
                return self.paths[art.path]
        want = " or ".join(formats) or "any"
        raise LoaderArgsError(
            f"spec {self.spec.name!r} has no artifact of format {want}; its loader "
            f"{self.spec.loader!r} needs one",
            spec=self.spec.name,
            loader=self.spec.loader or "?",
        )

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
