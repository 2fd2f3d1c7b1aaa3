"""The spec catalog: a directory tree of YAML spec files and the lock beside them.

Loading reads every ``*.yaml`` file below the directory with a hardened safe loader,
validates each against the schema and then the catalog as a whole (unique names, file
named after its spec, ``requires`` naming existing specs without cycles, one digest per
artifact path, spec and lock agreeing), and reports *every* problem in one
:class:`~dp_models._errors.CatalogError` that names file and field.

>>> from dp_models._catalog import Catalog
>>> catalog = Catalog.load()            # argument, else $DP_MODELS_CATALOG, else packaged
>>> "clip_vit_b32" in catalog
True
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from . import _html
from ._digest import weights_digest
from ._errors import (
    CatalogError,
    CatalogProblem,
    ConfigurationError,
    FileTooLargeError,
    LockError,
    LockSignatureError,
    NotRegularFileError,
    SpecNotFoundError,
    YamlRejectedError,
)
from ._io import read_regular
from ._lock import Lineage, Lock, LockEntry
from ._registry import LoaderRegistry, default_loaders
from ._settings import Settings
from ._signing import load_signed_lock
from ._spec import Artifact, Spec, TritonSection, TritonTensor
from ._yaml import MAX_SPEC_BYTES, load_spec_yaml

__all__ = ["Catalog", "Pin"]

_SPEC_SUFFIXES = (".yaml", ".yml")
_MAX_SPEC_FILES = 10_000


@dataclass(frozen=True)
class Pin:
    """The digest an artifact must have, and where it is pinned."""

    sha256: str
    size: int | None
    source: Literal["spec", "lock"]


class Catalog(Mapping[str, Spec]):
    """Validated specs by name, with the lock that pins in-house artifacts."""

    def __init__(
        self,
        specs: Mapping[str, Spec],
        files: Mapping[str, Path],
        directory: Path,
        lock: Lock,
        *,
        loaders: LoaderRegistry | None = None,
    ) -> None:
        self._specs = dict(specs)
        self.files = dict(files)
        self.directory = directory
        self.lock = lock
        #: The loaders the specs' loader_args were validated against.
        self.loaders = loaders if loaders is not None else default_loaders()
        self._spec_pinned = {
            a.path: a for s in self._specs.values() for a in s.artifacts if a.sha256 is not None
        }

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        catalog: str | os.PathLike[str] | None = None,
        *,
        lock: str | os.PathLike[str] | None = None,
        check_lock: bool = True,
        lock_key: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        loaders: LoaderRegistry | None = None,
    ) -> Catalog:
        """Load and validate a catalog. Raises :class:`CatalogError` listing every problem.

        ``check_lock=False`` is for rewriting the lock: a malformed lock reads as empty and
        its disagreements with the specs are not errors (``dp-models lock`` replaces it).

        ``lock_key`` (else ``$DP_MODELS_LOCK_KEY``) is the public key the lock must be
        signed with: a lock that is missing, unsigned, signed with another key or edited
        since raises :class:`~dp_models._errors.LockSignatureError`, and the pins used are
        parsed from the bytes that verified (:mod:`dp_models._signing`). Not checked with
        ``check_lock=False``.

        ``settings`` (a resolved :class:`~dp_models._settings.Settings`) gives the catalog
        directory, the lock and its key instead; without it they are resolved from the
        arguments and the environment (:meth:`Settings.resolve
        <dp_models._settings.Settings.resolve>`).

        Each in-process spec's ``loader_args`` are validated against its loader's
        ``args_model``, and its engine and artifact formats may be ones its loader declares,
        with ``loaders`` (default: the process-wide registry,
        :func:`~dp_models._registry.default_loaders`). A spec naming a loader that no source
        knows is not checked here (``get`` raises
        :class:`~dp_models._errors.LoaderNotFoundError`).
        """
        loaders = loaders if loaders is not None else default_loaders()
        if settings is None:
            settings = Settings.resolve(catalog=catalog, lock=lock, lock_key=lock_key)
        elif (catalog, lock, lock_key) != (None, None, None):
            raise ConfigurationError(
                "Catalog.load takes catalog, lock and lock_key, or settings that hold them, "
                "not both"
            )
        directory, lock_path = settings.catalog, settings.lock
        if not directory.is_dir():
            raise CatalogError(
                [
                    CatalogProblem(
                        str(directory),
                        "",
                        "catalog directory does not exist; pass "
                        "catalog=..., set DP_MODELS_CATALOG, or omit both for the "
                        "packaged catalog",
                    )
                ],
                catalog=directory,
            )
        problems: list[CatalogProblem] = []
        broken: set[str] = set()
        specs: dict[str, Spec] = {}
        files: dict[str, Path] = {}

        paths = _spec_files(directory)
        if not paths:
            problems.append(
                CatalogProblem(
                    str(directory),
                    "",
                    "the catalog holds no spec files (*.yaml); an empty "
                    "catalog is an error, not a catalog without models",
                )
            )
        if len(paths) > _MAX_SPEC_FILES:
            problems.append(
                CatalogProblem(str(directory), "", f"more than {_MAX_SPEC_FILES} spec files")
            )
            paths = paths[:_MAX_SPEC_FILES]

        for path in paths:
            shown = _shown(path, directory)
            spec = _load_one(path, shown, problems, broken, loaders)
            if spec is None:
                continue
            if spec.name != path.stem:
                problems.append(
                    CatalogProblem(
                        shown,
                        "name",
                        f"spec {spec.name!r} must live in a file named "
                        f"{spec.name}{path.suffix} (found {path.name})",
                    )
                )
            if spec.name in specs:
                problems.append(
                    CatalogProblem(
                        shown,
                        "name",
                        f"duplicate spec name {spec.name!r}, also defined in "
                        f"{_shown(files[spec.name], directory)}",
                    )
                )
                continue
            specs[spec.name] = spec
            files[spec.name] = path

        key = settings.lock_key if check_lock else None
        try:
            lock_data = Lock.read(lock_path) if key is None else load_signed_lock(lock_path, key)
        except LockSignatureError:
            raise
        except LockError as exc:
            if check_lock:
                problems.append(CatalogProblem(str(lock_path), "", str(exc)))
            lock_data = Lock(lock_path)

        shown_of = {name: _shown(p, directory) for name, p in files.items()}
        problems += _check_requires(specs, shown_of, broken - set(specs))
        problems += _check_artifact_agreement(
            specs, shown_of, lock_data if check_lock else Lock(lock_path)
        )
        if problems:
            raise CatalogError(problems, catalog=directory)
        return cls(specs, files, directory, lock_data, loaders=loaders)

    def check_loader_args(self, loaders: LoaderRegistry) -> None:
        """Validate every spec's ``loader_args`` against ``loaders`` (a manager's own loader
        set, when the catalog was loaded with another). Raises :class:`CatalogError`
        listing every problem, as :meth:`load` does."""
        problems = [
            problem
            for name, spec in self._specs.items()
            for problem in _loader_args_problems(
                spec, _shown(self.files[name], self.directory), loaders
            )
        ]
        if problems:
            raise CatalogError(problems, catalog=self.directory)

    # -- mapping -------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Spec:
        try:
            return self._specs[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._specs, n=3, cutoff=0.5)
            raise SpecNotFoundError(name, close, catalog=self.directory) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __repr__(self) -> str:
        count = len(self)
        return f"<Catalog {self.directory} with {count} spec{'' if count == 1 else 's'}>"

    def _repr_html_(self) -> str:
        """The catalog as a table, one row per spec (its description on hover), for
        notebooks; every value escaped."""
        rows = []
        for spec in self._specs.values():
            runtime: str = spec.runtime
            if spec.triton is not None:
                runtime += f" ({spec.triton.model_name} v{spec.triton.model_version})"
            rows.append(
                [
                    _html.code(spec.name, title=spec.description),
                    spec.version,
                    runtime,
                    spec.engine,
                    spec.device,
                    spec.precision,
                    ", ".join(spec.users),
                    self.pin_summary(spec),
                    "yes" if spec.optional else "",
                ]
            )
        headers = ["name", "version", "runtime", "engine", "device", "precision", "users"]
        return _html.titled(
            f"Catalog {self.directory}: {len(self)} spec{'' if len(self) == 1 else 's'}",
            _html.table([*headers, "pinned", "optional"], rows),
            notes=[f"lock: {self.lock.path}"],
        )

    def pin_summary(self, spec: Spec) -> str:
        """Whether every artifact of ``spec`` is pinned (by its spec or the lock): ``yes``,
        ``no``, ``N of M`` or ``no artifacts``."""
        pins = [self.pin(a) for a in spec.artifacts]
        if not pins:
            return "no artifacts"
        if all(pins):
            return "yes"
        if not any(pins):
            return "no"
        return f"{sum(p is not None for p in pins)} of {len(pins)}"

    # -- identity ------------------------------------------------------------------------

    @functools.cached_property
    def digest(self) -> str:
        """The sha256 that identifies the catalog's specs: of every validated spec as
        canonical JSON (sorted keys, no spaces), by name. The same specs give the same
        digest in any directory and whatever their files' layout, comments or formatting;
        the lock is not in it (:attr:`lock_digest`). Stamps record it (``catalog_used``,
        docs/provenance.md)."""
        payload = {name: self._specs[name].model_dump(mode="json") for name in sorted(self._specs)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def lock_digest(self) -> str:
        """The sha256 that identifies the lock's pins: of its canonical text
        (:meth:`Lock.dumps <dp_models._lock.Lock.dumps>`), whatever the file's formatting
        or signature; a lock not written yet has the digest of an empty one."""
        return hashlib.sha256(self.lock.dumps().encode()).hexdigest()

    # -- pins ----------------------------------------------------------------------------

    def pin(self, artifact: Artifact) -> Pin | None:
        """The digest ``artifact`` must have: from its spec (or another spec naming the same
        path: one path is one artifact), else from the lock, else None."""
        entry = self.lock.artifacts.get(artifact.path)
        artifact = self._spec_pinned.get(artifact.path, artifact)
        if artifact.sha256 is not None:
            size = artifact.size
            if size is None and entry is not None and entry.sha256 == artifact.sha256:
                size = entry.size
            return Pin(artifact.sha256, size, "spec")
        if entry is not None:
            return Pin(
                entry.sha256, artifact.size if artifact.size is not None else entry.size, "lock"
            )
        return None

    def expected_digest(self, spec: Spec) -> Pin | None:
        """The weights digest a Triton deployment of ``spec`` must serve: its
        ``triton.weights_digest``, else the pin of its first artifact; None for an
        in-process spec or when neither is known yet."""
        if spec.triton is None:
            return None
        if spec.triton.weights_digest is not None:
            return Pin(spec.triton.weights_digest, None, "spec")
        return self.pin(spec.artifacts[0]) if spec.artifacts else None

    def lineage(self, spec: Spec) -> Lineage | None:
        """What the lock records of where ``spec``'s model was exported from (the entry of
        its first artifact, written by ``dp-models export onnx``), or None."""
        if not spec.artifacts:
            return None
        entry = self.lock.artifacts.get(spec.artifacts[0].path)
        return entry.derived if entry is not None else None

    def broken_lineage(self, spec: Spec) -> tuple[Lineage, str] | None:
        """For a derived spec whose recorded export no longer matches its source: what the
        lock records and the weights digest the source pins now; None when the lineage
        holds, is not recorded, or the source is not fully pinned (nothing to compare)."""
        if spec.derived_from is None or spec.derived_from not in self:
            return None
        recorded = self.lineage(spec)
        if recorded is None or recorded.source != spec.derived_from:
            return None
        current = self.pinned_weights_digest(self[spec.derived_from])
        if current is None or current == recorded.weights_digest:
            return None
        return recorded, current

    def pinned_weights_digest(self, spec: Spec) -> str | None:
        """The weights digest an in-process ``spec`` has when its artifacts are the pinned
        ones (what its handle's ``weights_digest`` is once verified), from the pins
        alone; None when an artifact is unpinned."""
        pins = [self.pin(a) for a in spec.artifacts]
        if any(p is None for p in pins):
            return None
        return weights_digest([p.sha256 for p in pins if p is not None])

    def closure(self, name: str) -> list[Spec]:
        """The spec and everything it ``requires``, dependencies first, each once."""
        order: list[Spec] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            spec = self[n]
            for dep in spec.requires:
                visit(dep)
            order.append(spec)

        visit(name)
        return order


def _spec_files(directory: Path) -> list[Path]:
    """Every ``*.yaml`` / ``*.yml`` below ``directory``, whatever it is: a directory, FIFO or
    device of that name is listed (and then reported), never walked into or skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(directory):
        named = [*filenames, *dirnames]
        found += [
            Path(dirpath) / f for f in named if f.endswith(_SPEC_SUFFIXES) and not f.startswith(".")
        ]
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not d.endswith(_SPEC_SUFFIXES)
        )
    return sorted(found)


def _shown(path: Path, directory: Path) -> str:
    try:
        return path.relative_to(directory).as_posix()
    except ValueError:
        return str(path)


def _load_one(
    path: Path,
    shown: str,
    problems: list[CatalogProblem],
    broken: set[str],
    loaders: LoaderRegistry,
) -> Spec | None:
    """The validated spec of one file, or None with its problems appended. The name of a
    file that does not validate goes into ``broken``, so that specs requiring it are not
    also told that it does not exist."""
    try:
        raw = read_regular(path, max_bytes=MAX_SPEC_BYTES)
    except NotRegularFileError as exc:
        problems.append(
            CatalogProblem(
                shown,
                "",
                f"is {exc.kind}, not a regular file; a spec file is a YAML file (replace it "
                "with one, or remove it)",
            )
        )
        return None
    except FileTooLargeError:
        try:
            size = f"is {os.stat(path).st_size} bytes"
        except OSError:
            size = f"is larger than {MAX_SPEC_BYTES} bytes"
        problems.append(
            CatalogProblem(shown, "", f"file {size}; a spec file is at most {MAX_SPEC_BYTES} bytes")
        )
        return None
    except OSError as exc:
        problems.append(CatalogProblem(shown, "", f"cannot read: {exc}"))
        return None
    broken.add(path.stem)
    try:
        data = load_spec_yaml(raw)
    except YamlRejectedError as exc:
        problems.append(CatalogProblem(shown, "", str(exc)))
        return None
    if not isinstance(data, dict):
        problems.append(
            CatalogProblem(
                shown, "", f"a spec file holds one mapping of fields, found {type(data).__name__}"
            )
        )
        return None
    if isinstance(data.get("name"), str):
        broken.add(data["name"])
    loader = data.get("loader") if isinstance(data.get("loader"), str) else None
    try:
        engines, formats = loaders.extensions(loader)
    except Exception as exc:  # a third-party loader that does not import: its own problem
        problems.append(_unusable_loader(shown, loader, exc))
        return None
    try:
        spec = Spec.model_validate(data, context={"engines": engines, "formats": formats})
    except ValidationError as exc:
        problems += [_problem(shown, err) for err in exc.errors()]
        return None
    args_problems = _loader_args_problems(spec, shown, loaders)
    if args_problems:
        problems += args_problems
        return None
    broken.discard(path.stem)
    broken.discard(spec.name)
    return spec


def _unusable_loader(shown: str, loader: str | None, exc: Exception) -> CatalogProblem:
    return CatalogProblem(
        shown,
        "loader",
        f"loader {loader!r} cannot be used: {type(exc).__name__}: {exc}. Fix or reinstall "
        "the package that provides it.",
    )


def _loader_args_problems(spec: Spec, shown: str, loaders: LoaderRegistry) -> list[CatalogProblem]:
    """``spec``'s ``loader_args`` against its loader's ``args_model`` in ``loaders``: one
    problem per error, each naming the field (``loader_args.<key>``). None for a Triton
    spec, or a loader no source knows (``get`` raises for it)."""
    if spec.loader is None:
        return []
    try:
        model = loaders.args_model(spec.loader)
    except Exception as exc:  # a third-party loader that does not import: its own problem
        return [_unusable_loader(shown, spec.loader, exc)]
    if model is None:
        return []
    try:
        model.model_validate(spec.loader_args)
    except ValidationError as exc:
        return [_args_problem(shown, spec.loader, model, err) for err in exc.errors()]
    return []


def _args_problem(shown: str, loader: str, model: type[BaseModel], err: Any) -> CatalogProblem:
    loc = ("loader_args", *err.get("loc", ()))
    if err.get("type") == "extra_forbidden":
        key = str(loc[-1])
        known = sorted(model.model_fields)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        return CatalogProblem(
            shown,
            ".".join(str(p) for p in loc[:-1]) + f".{key}",
            f"loader {loader!r} does not take loader_args {key!r}{hint}; {takes} "
            "(see docs/loaders.md)",
        )
    return _problem(shown, {**err, "loc": loc})


@functools.cache
def _known_keys() -> frozenset[str]:
    models: tuple[type[BaseModel], ...] = (Spec, Artifact, TritonSection, TritonTensor)
    return frozenset(key for model in models for key in model.model_fields)


def _problem(shown: str, err: Any) -> CatalogProblem:
    loc = err.get("loc", ())
    field = ""
    for part in loc:
        if isinstance(part, int):
            field += f"[{part}]"
        else:
            field += ("." if field else "") + str(part)
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(key, _known_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return CatalogProblem(shown, field, f"unknown key {key!r}{hint} (see docs/spec.md)")
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    given = err.get("input")
    if (
        "input" in err
        and kind != "missing"
        and not isinstance(given, dict)
        and repr(given) not in msg
    ):
        msg += f" (got {err['input']!r})"
    return CatalogProblem(shown, field, msg)


def lineage_message(spec: Spec, recorded: str, current: str) -> str:
    """Why ``spec``'s recorded export no longer holds, and what to do (``get`` raises it
    as a LineageError, ``doctor`` reports it)."""
    source = spec.derived_from
    path = spec.artifacts[0].path if spec.artifacts else "its model"
    return (
        f"spec {spec.name!r}: its artifact {path} was exported from {source!r} weights "
        f"{recorded[:12]}…, but {source!r} now pins {current[:12]}…: the served model is not an "
        f"export of the source's weights any more. Export it again (`dp-models export onnx "
        f"{source} --for {spec.name} --root ROOT`) and deploy the new file, or pin the source "
        "back."
    )


def _interface_differences(source: Spec, derived: Spec) -> list[str]:
    """How the interface an in-process ``source`` declares differs from the ``triton``
    section of the spec derived from it, beyond the input sizes (a 336 px twin of a 224 px
    model is one model): the tensor names in order, their datatypes, the output shapes. One
    calling convention means a processor switches runtime by the spec name alone."""
    mine, served = source.interface, derived.triton
    if mine is None or served is None:
        return []
    problems = []
    for kind, ours, theirs in (
        ("inputs", mine.inputs, served.inputs),
        ("outputs", mine.outputs, served.outputs),
    ):
        said = [(t.name, t.datatype) for t in ours]
        serves = [(t.name, t.datatype) for t in theirs]
        if said != serves:
            problems.append(
                f"the interface {kind} of {source.name!r}, {_tensors(said)}, differ from "
                f"this spec's triton {kind}, {_tensors(serves)}: name and type them alike"
            )
    if not problems:
        for own, twin in zip(mine.outputs, served.outputs, strict=True):
            if list(own.shape) != list(twin.shape):
                problems.append(
                    f"output {own.name!r} has shape {list(own.shape)} in the interface of "
                    f"{source.name!r} and {list(twin.shape)} in this spec's triton section"
                )
    return problems


def _tensors(pairs: Sequence[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{n} {d}" for n, d in pairs) + "]"


def _check_requires(
    specs: Mapping[str, Spec], shown: Mapping[str, str], broken: set[str]
) -> list[CatalogProblem]:
    """``requires`` names existing specs (or specs whose own file is broken: reported
    already), without cycles."""
    problems: list[CatalogProblem] = []
    for name, spec in specs.items():
        for i, dep in enumerate(spec.requires):
            if dep not in specs and dep not in broken:
                close = difflib.get_close_matches(dep, specs, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    CatalogProblem(
                        shown[name],
                        f"requires[{i}]",
                        f"names no spec in the catalog: {dep!r}{hint}",
                    )
                )
        source = spec.derived_from
        if source is not None and source not in broken:
            if source not in specs:
                close = difflib.get_close_matches(source, specs, n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(
                    CatalogProblem(
                        shown[name],
                        "derived_from",
                        f"names no spec in the catalog: {source!r}{hint}",
                    )
                )
            elif specs[source].runtime != "inprocess":
                problems.append(
                    CatalogProblem(
                        shown[name],
                        "derived_from",
                        f"names {source!r}, a {specs[source].runtime} spec; a derived model is "
                        "exported from an in-process spec's weights",
                    )
                )
            else:
                problems += [
                    CatalogProblem(shown[name], "derived_from", message)
                    for message in _interface_differences(specs[source], spec)
                ]
    # cycles, reported once per cycle
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for dep in specs[n].requires:
            if dep not in specs:
                continue
            if state.get(dep) == 1:
                cycle = [*stack[stack.index(dep) :], dep]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append(
                        CatalogProblem(
                            shown[n], "requires", "dependency cycle: " + " -> ".join(cycle)
                        )
                    )
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[n] = 2

    for n in specs:
        if n not in state:
            visit(n, [n])
    return problems


def _check_artifact_agreement(
    specs: Mapping[str, Spec], shown: Mapping[str, str], lock: Lock
) -> list[CatalogProblem]:
    """One path, one artifact: specs sharing a path agree on kind and digest, and a digest
    in a spec agrees with the lock's."""
    problems: list[CatalogProblem] = []
    first: dict[str, tuple[str, int, Artifact]] = {}
    for name, spec in specs.items():
        for i, art in enumerate(spec.artifacts):
            field = f"artifacts[{i}]"
            if art.path in first:
                other_name, _, other = first[art.path]
                for attr in ("kind", "sha256", "size"):
                    a, b = getattr(art, attr), getattr(other, attr)
                    if a is not None and b is not None and a != b:
                        problems.append(
                            CatalogProblem(
                                shown[name],
                                f"{field}.{attr}",
                                f"{art.path!r} is {a!r} here but {b!r} in spec {other_name!r}; "
                                "one path is one artifact",
                            )
                        )
            else:
                first[art.path] = (name, i, art)
            entry: LockEntry | None = lock.artifacts.get(art.path)
            if entry is None:
                continue
            if entry.kind != art.kind:
                problems.append(
                    CatalogProblem(
                        shown[name],
                        f"{field}.kind",
                        f"{art.path!r} is a {art.kind} in the spec "
                        f"but a {entry.kind} in the lock {lock.path.name}; run `dp-models lock`",
                    )
                )
            if art.sha256 is not None and entry.sha256 != art.sha256:
                problems.append(
                    CatalogProblem(
                        shown[name],
                        f"{field}.sha256",
                        f"spec pins {art.sha256} but the lock {lock.path.name} has {entry.sha256} "
                        f"for {art.path!r}; they must agree (fix the spec, or re-provision and run "
                        "`dp-models lock`)",
                    )
                )
            if (
                art.size is not None
                and entry.sha256 == (art.sha256 or entry.sha256)
                and entry.size != art.size
            ):
                problems.append(
                    CatalogProblem(
                        shown[name],
                        f"{field}.size",
                        f"spec says {art.size} bytes but the lock {lock.path.name} has "
                        f"{entry.size} for {art.path!r}",
                    )
                )
    return problems
