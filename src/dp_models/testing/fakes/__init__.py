"""Fake-weight makers: for each loader, a function that writes small artifacts its real
framework loads. Test support only: no loader imports this package.

A maker is ``make(spec, root) -> Mapping[str, Any] | None``: it writes every artifact of
``spec`` at ``root / artifact.path`` and returns ``loader_args`` overrides for the fake
catalog copy (a tiny architecture where the real one is hundreds of MB), or None.

Makers are found by loader name in a :class:`~dp_models._registry.Registry`: makers given
to it (:func:`register_fake`, or ``fake_models_root(..., fakes={...})``), the built-in
table (one module per framework in this package), then the ``dp_models.fakes`` entry-point
group, through which the package of a third-party loader ships its fakes::

    [project.entry-points."dp_models.fakes"]
    my_loader = "my_package.fakes:make_my_loader_fake"     # keyed by the loader's name

A maker that cannot build what a spec names (a ``torch_state_dict`` class that does not
import in the test process) calls :func:`substitute` before it writes a stand-in: that
raises :class:`~dp_models._errors.FakeWeightsError` unless the test asked for stand-ins
(``fake_models_root(..., substitute=...)``, which runs the makers inside
:func:`substituting`); when it did, the stand-in is logged and recorded in the fake
catalog's spec (its ``substitute`` field), so it shows in ``models_used``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..._errors import FakeWeightsError
from ..._registry import Registry
from ..._spec import Spec

__all__ = [
    "BUILTIN_FAKES",
    "FAKES_GROUP",
    "FakeMaker",
    "Substitution",
    "Substitutions",
    "default_fakes",
    "fake_set",
    "register_fake",
    "substitute",
    "substituting",
    "write_artifacts",
    "write_placeholder",
]

log = logging.getLogger(__name__)

#: Writes the artifacts of a spec under a root; returns loader_args overrides, or None.
FakeMaker = Callable[[Spec, Path], "Mapping[str, Any] | None"]

#: The entry-point group third-party fake makers are published in, keyed by loader name.
FAKES_GROUP = "dp_models.fakes"

_HERE = "dp_models.testing.fakes"
#: Built-in makers: loader name -> "module:function", imported on first use.
BUILTIN_FAKES: Mapping[str, str] = {
    "torch_state_dict": f"{_HERE}.torch:make_state_dict",
    "torchscript": f"{_HERE}.torch:make_torchscript",
    "torchvision": f"{_HERE}.torch:make_torchvision",
    "slowfast": f"{_HERE}.torch:make_slowfast",
    "onnxruntime": f"{_HERE}.onnx:make_onnx",
    "open_clip": f"{_HERE}.open_clip:make_open_clip",
    "ultralytics": f"{_HERE}.ultralytics:make_detector",
    "ultralytics_tracker": f"{_HERE}.ultralytics:make_tracker_config",
    "mediapipe": f"{_HERE}.mediapipe:make_mediapipe",
    "sentence_transformers": f"{_HERE}.sentence_transformers:make_sentence_transformer",
    "laion_clap": f"{_HERE}.laion_clap:make_laion_clap",
    "spacy": f"{_HERE}.spacy:make_spacy",
    "tokenizer": f"{_HERE}.tokenizers:make_tokenizer",
    "labels": f"{_HERE}.labels:make_labels",
}


def _as_maker(name: str, obj: object) -> FakeMaker:
    if not callable(obj):
        raise TypeError(
            f"{obj!r}, registered as the fake maker of loader {name!r}, is not callable: a "
            "maker is make(spec, root) -> loader_args overrides or None"
        )
    return obj


_default: Registry[FakeMaker] | None = None
_default_lock = threading.Lock()


def default_fakes() -> Registry[FakeMaker]:
    """The process-wide registry of fake makers: built-ins, entry points, and what
    :func:`register_fake` added."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry(
                kind="fake maker", convert=_as_maker, group=FAKES_GROUP, builtin=BUILTIN_FAKES
            )
        return _default


def register_fake(loader: str, make: FakeMaker, *, replace: bool = False) -> None:
    """Register ``make`` as the fake maker of loader ``loader`` for this process; refuses to
    shadow one unless ``replace``. A test passes ``fakes={loader: make}`` to
    :func:`~dp_models.testing.fake_models_root` instead."""
    default_fakes().register(loader, make, replace=replace)


def fake_set(fakes: Registry[FakeMaker] | Mapping[str, FakeMaker] | None) -> Registry[FakeMaker]:
    """The registry ``fakes`` stands for: a registry as it is; a mapping (loader name ->
    maker) added to the process-wide one; None the process-wide one."""
    if fakes is None:
        return default_fakes()
    if isinstance(fakes, Registry):
        return fakes
    return default_fakes().extended(fakes)


def write_artifacts(
    spec: Spec, root: Path, formats: tuple[str, ...], write: Callable[[Path], object]
) -> None:
    """Every artifact of ``spec`` under ``root``: ``write(path)`` (its parent made) for one
    of ``formats``, a placeholder for the others."""
    for art in spec.artifacts:
        path = root / art.path
        if art.format not in formats:
            write_placeholder(path, art.format)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)


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


# -- stand-ins, only on request ------------------------------------------------------------


@dataclass(frozen=True)
class Substitution:
    """A stand-in a maker built for ``spec`` in place of what it names (``replaces``)."""

    spec: str
    replaces: str
    stand_in: str
    reason: str

    def as_field(self) -> dict[str, str]:
        """The spec's ``substitute`` field (:class:`~dp_models._spec.Substitute`)."""
        return {"replaces": self.replaces, "stand_in": self.stand_in, "reason": self.reason}


@dataclass
class Substitutions:
    """Which specs may get a stand-in (``allowed``: every one when True), and the
    stand-ins made so far."""

    allowed: bool | frozenset[str] = False
    made: list[Substitution] = field(default_factory=list)

    def allows(self, name: str) -> bool:
        return self.allowed is True or (
            isinstance(self.allowed, frozenset) and name in self.allowed
        )


#: The policy of the fake root being made in this context; none: no stand-ins.
_policy: ContextVar[Substitutions | None] = ContextVar("dp_models_fake_substitutes", default=None)


@contextmanager
def substituting(allowed: bool | Collection[str]) -> Iterator[Substitutions]:
    """Run makers allowing stand-ins for ``allowed`` (spec names, or True for every spec):
    what :func:`~dp_models.testing.fake_models_root` does with its ``substitute``
    argument. Yields the record of the stand-ins made."""
    policy = Substitutions(allowed if isinstance(allowed, bool) else frozenset(allowed))
    token = _policy.set(policy)
    try:
        yield policy
    finally:
        _policy.reset(token)


def substitute(
    spec: Spec,
    *,
    replaces: str,
    stand_in: str,
    reason: str,
    fix: str,
    cause: BaseException | None = None,
) -> Substitution:
    """Ask to build ``stand_in`` in place of ``replaces`` (what ``spec`` names) for the
    fake of ``spec``, because of ``reason``. Without the test's consent (see
    :func:`substituting`) this raises :class:`~dp_models._errors.FakeWeightsError` naming
    the spec, what it names, the reason, ``fix`` (how to make the real thing buildable)
    and how to opt in; with it, logs a warning and records the stand-in."""
    policy = _policy.get()
    if policy is None or not policy.allows(spec.name):
        raise FakeWeightsError(
            f"spec {spec.name!r}: no fake of {replaces} can be made here ({reason}). "
            f"{fix[:1].upper()}{fix[1:]}; or let {stand_in} stand in for it in this test "
            f"(fake_models_root(..., substitute=[{spec.name!r}]), or "
            f"@pytest.mark.dp_models(substitute=[{spec.name!r}])): the stand-in is logged and "
            "recorded as a substitute in models_used (docs/testing.md#stand-ins)"
        ) from cause
    made = Substitution(spec.name, replaces, stand_in, reason)
    log.warning(
        "fake root: spec %r gets the stand-in %s in place of %s (%s)",
        spec.name,
        stand_in,
        replaces,
        reason,
    )
    policy.made.append(made)
    return made
