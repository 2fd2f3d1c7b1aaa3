"""The ModelManager: the one object every processor imports to get its models.

>>> from dp_models import ModelManager
>>> mm = ModelManager()                        # root, catalog, cache from env / package
>>> handle = mm.get("emonet_8")               # resolved and verified; nothing loaded
>>> model = handle.load()                     # built by the spec's loader, offline
>>> meta = mm.stamp({"video_id": "abc"})      # models_used, model_signature, weights_digest

``get`` verifies the spec's artifacts (and those of the specs it requires) and resolves
device and precision; ``load`` verifies again (a file changed or removed since ``get`` is
an error, not a surprise inside a framework), then runs the loader inside the network
guard. Loaded objects are cached per (name, device, precision); threads asking for the
same one wait for a single load. A stateful model (a MediaPipe task keeps its last
timestamp) gives each stream its own instance: ``handle.open()``, built from what was
verified at its first call, the caller's to close.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _html
from ._catalog import Catalog, lineage_message
from ._digest import DigestCache, Hasher
from ._errors import (
    ArtifactError,
    ConfigurationError,
    DeviceUnavailableError,
    DPModelsError,
    LineageError,
    LoaderError,
    MissingExtraError,
    NetworkBlockedError,
    PrecisionError,
)
from ._guard import network_guard
from ._health import HealthReport, HealthStatus
from ._offline import OfflineSwitch, switch_offline
from ._provenance import input_links, model_signature, select_models, stamp, weights_digest
from ._registry import LoaderRegistry, default_loaders, loader_set
from ._settings import Settings, check_device
from ._spec import Spec
from ._urls import redact_endpoints
from ._verify import ArtifactReport, Verifier
from .loaders import LoadContext, Loader
from .loaders.base import FrameworkPaths, Requirement

if TYPE_CHECKING:
    from ._pull import PullReport
    from ._runner import Runner
    from .triton.client import TritonClient

__all__ = ["ModelHandle", "ModelManager"]

log = logging.getLogger("dp_models")

_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _either(items: tuple[str, ...]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _framework_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class ModelHandle:
    """A resolved, verified spec: what :meth:`ModelManager.get` returns. Loads nothing."""

    spec: Spec
    device: str
    precision: str
    paths: Mapping[str, Path]
    artifact_digests: tuple[str, ...]
    model_signature: str
    weights_digest: str | None
    requires: tuple[ModelHandle, ...]
    endpoint: str | None = None
    info: Mapping[str, Any] | None = None
    _manager: ModelManager | None = field(default=None, repr=False, compare=False)
    #: Where each artifact was found, in spec order: ``home`` (``root``, ``huggingface``,
    #: ``installed``), ``location`` (that root, hub cache or site directory) and an
    #: installed artifact's ``distribution`` (name and version).
    homes: tuple[Mapping[str, Any], ...] = ()
    #: A derived Triton spec's source (``derived_from``): ``name`` and the ``weights_digest``
    #: its served model was exported from (None when the lock records no export).
    derived_from: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        """One line: ``<ModelHandle clip_vit_b32 inprocess cpu fp32 40d36571…>`` (name,
        runtime, device, precision, the weights digest's first 8 hex digits)."""
        digest = f"{self.weights_digest[:8]}…" if self.weights_digest else "unpinned"
        spec = self.spec
        return f"<ModelHandle {spec.name} {spec.runtime} {self.device} {self.precision} {digest}>"

    def _repr_html_(self) -> str:
        """The handle as a table, for notebooks (every value escaped; the endpoint's
        credentials masked)."""
        spec = self.spec
        rows: list[tuple[str, object]] = [
            ("version", spec.version),
            ("runtime", spec.runtime),
            ("engine", spec.engine if spec.loader is None else f"{spec.engine} ({spec.loader})"),
            ("device", self.device),
            ("precision", self.precision),
            ("weights digest", _html.short_digest(self.weights_digest)),
            ("model signature", _html.short_digest(self.model_signature)),
        ]
        for artifact, digest in zip(spec.artifacts, self.artifact_digests, strict=False):
            rows.append((f"artifact {artifact.path}", _html.short_digest(digest)))
        if self.requires:
            rows.append(("requires", ", ".join(r.name for r in self.requires)))
        if self.derived_from is not None:
            source = self.derived_from
            exported = _html.short_digest(source["weights_digest"], missing="no export recorded")
            rows.append(("derived from", _html.Markup(f"{_html.esc(source['name'])} {exported}")))
        if spec.triton is not None:
            triton = spec.triton
            where = redact_endpoints(self.endpoint) if self.endpoint else "not configured"
            rows.append(
                ("triton", f"{triton.model_name} v{triton.model_version} at {triton.endpoint}")
            )
            rows.append(("endpoint", where))
        return _html.titled(
            _html.Markup(f"ModelHandle {_html.code(self.name)}"),
            _html.pairs(rows),
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def path(self) -> Path:
        """The first artifact's path (most specs have one)."""
        return self.paths[self.spec.artifacts[0].path]

    @property
    def models_used_entry(self) -> dict[str, Any]:
        """This model's ``models_used`` entry."""
        spec = self.spec
        framework: dict[str, Any] | None = None
        if spec.runtime == "inprocess" and spec.loader is not None:
            loaders = self._manager.loaders if self._manager is not None else default_loaders()
            dist = _loader_framework(loaders, spec.loader)
            if dist is not None:
                framework = {"name": dist, "version": _framework_version(dist)}
        entry: dict[str, Any] = {
            "name": spec.name,
            "version": spec.version,
            "status": "ok",
            "optional": spec.optional,
            "runtime": spec.runtime,
            "engine": spec.engine,
            "loader": spec.loader,
            "loader_args": spec.loader_args,
            "preprocess": spec.preprocess,
            "precision": self.precision,
            "device": self.device,
            "weights_digest": self.weights_digest,
            "artifacts": [
                {"path": a.path, "sha256": d, **(dict(h) if h else {})}
                for a, d, h in zip(
                    spec.artifacts,
                    self.artifact_digests,
                    self.homes or [None] * len(spec.artifacts),
                    strict=False,
                )
            ],
            "model_signature": self.model_signature,
            "framework": framework,
            "requires": [r.name for r in self.requires],
            "model_info": dict(self.info) if self.info else None,
            "triton": None,
        }
        if self.derived_from is not None:
            entry["derived_from"] = dict(self.derived_from)
        if spec.substitute is not None:  # a fake root's stand-in (dp_models.testing)
            entry["substitute"] = spec.substitute.model_dump()
        if spec.triton is not None:
            entry["triton"] = {
                "model_name": spec.triton.model_name,
                "model_version": spec.triton.model_version,
                "endpoint_name": spec.triton.endpoint,
                "endpoint": redact_endpoints(self.endpoint) if self.endpoint else None,
            }
        return entry

    def client(self, **options: Any) -> TritonClient:
        """A :class:`~dp_models.triton.client.TritonClient` for this Triton spec: its
        endpoint URL, its expected digest (the handle's ``weights_digest``) and the
        tokenizer and labels it requires, if any (``options``: timeouts, retries, ``shared_memory``,
        ``transport``; what is not given comes from the manager's ``triton_timeouts``,
        ``triton_replicas`` and ``triton_shared_memory`` for the spec's endpoint, then the
        client's defaults). Once the deployment passes its checks, the manager's
        ``models_used`` entry gets ``triton.served_digest_verified`` (True, False, or None
        when not published). An unconfigured endpoint is a
        :class:`~dp_models._errors.ConfigurationError` naming the variable to set."""
        from ._settings import triton_url_variable
        from .triton.client import TritonClient

        spec = self.spec
        if spec.triton is None:
            raise ConfigurationError(
                f"spec {spec.name!r} is not served by Triton (runtime: {spec.runtime}); "
                "load it in process with ModelManager.load"
            )
        if self.endpoint is None:
            env = triton_url_variable(spec.triton.endpoint)
            raise ConfigurationError(
                f"spec {spec.name!r} is served at the Triton endpoint named "
                f"{spec.triton.endpoint!r}, which is not configured: set ${env} or pass "
                f"triton_endpoints={{{spec.triton.endpoint!r}: URL}} to the ModelManager"
            )
        if self._manager is not None:
            configured = self._manager.triton_timeouts.get(spec.triton.endpoint, {})
            for option, value in configured.items():
                options.setdefault(option, value)
            mode = self._manager.triton_replicas.get(spec.triton.endpoint)
            if mode is not None:
                options.setdefault("replicas", mode)
            shared = self._manager.triton_shared_memory.get(spec.triton.endpoint)
            if shared is not None:
                options.setdefault("shared_memory", shared)
            key = (self.name, self.device, self.precision)
            record = functools.partial(self._manager._record_verified, key)
            options.setdefault("on_verified", record)
        options.setdefault("expected_digest", self.weights_digest)
        tokenizer = next((r for r in self.requires if r.spec.role == "tokenizer"), None)
        if tokenizer is not None:
            options.setdefault("tokenizer", tokenizer.load)
        labels = next((r for r in self.requires if r.spec.role == "labels"), None)
        if labels is not None:
            options.setdefault("labels", labels.load)
        return TritonClient(spec, self.endpoint, **options)

    def runner(self, **options: Any) -> Runner:
        """This model behind the one calling convention of both runtimes
        (:class:`~dp_models._runner.Runner`): ``runner.preprocess(frames)``, then
        ``runner(batch) -> {output name: array}``, as the spec's ``triton`` or ``interface``
        section declares. In process it loads the model (:meth:`load`); on Triton it opens
        :meth:`client` (``options`` are the client's). A spec that declares no interface is
        a :class:`~dp_models._errors.ConfigurationError` naming what to add."""
        from ._runner import Runner

        return Runner(self, **options)

    def preprocess(self, *data: Any, channels: str = "rgb", **options: Any) -> Any:
        """``data`` through the spec's ``preprocess`` preset, as the model takes it: frames
        (a list, or an ``N x H x W x C`` uint8 array; one image becomes a batch of one) in,
        a batch out; a clip's pathways, two frames or a waveform's features each get a batch
        dimension of one. In process, torch tensors on this handle's ``device``, floating
        ones in its ``precision`` (``fp16``/``bf16``); on Triton, numpy arrays (what
        :meth:`TritonClient.infer <dp_models.triton.client.TritonClient.infer>` takes).
        ``channels``: ``"rgb"`` or ``"bgr"`` (OpenCV's order). The runner's implementation
        (:func:`~dp_models._runner.preset_batch`): data the preset cannot take is a
        :class:`~dp_models._errors.RunnerInputError`, a spec without a preset a
        :class:`~dp_models._errors.ConfigurationError`.

        >>> handle = mm.get("resnet18_features")                       # doctest: +SKIP
        >>> batch = handle.preprocess(frames)    # N x 3 x 224 x 224 on handle.device
        >>> features = handle.load()(batch)                            # doctest: +SKIP
        """
        from ._runner import preset_batch, to_torch

        batch = preset_batch(self.spec, *data, channels=channels, **options)
        if self.spec.runtime != "inprocess":
            return batch
        return to_torch(batch, self.device, self.precision)

    def load(self) -> Any:
        """The in-process object (see :meth:`ModelManager.load`)."""
        if self._manager is None:
            raise RuntimeError("this handle is not bound to a ModelManager")
        return self._manager._load_handle(self)

    def open(self, **options: Any) -> Any:
        """A fresh per-stream instance of this stateful in-process model, the caller's to
        close: ``with handle.open() as task:`` (a MediaPipe task in VIDEO mode, its
        timestamps starting again at 0). Its loader's factory
        (:meth:`Loader.stream_factory <dp_models.loaders.Loader.stream_factory>`) is built
        once per (name, device, precision) from the artifacts verified again as for
        :meth:`load`, and keeps what it read: later calls read no file and hash nothing.
        Instances are not cached and the manager does not close them. ``options`` go to the
        factory (MediaPipe: ``result_callback`` in LIVE_STREAM mode). A loader that is not
        stateful is a :class:`~dp_models._errors.ConfigurationError` naming :meth:`load`.

        >>> handle = mm.get("mediapipe_face_detector")                # doctest: +SKIP
        >>> for video in videos:                                       # doctest: +SKIP
        ...     with handle.open() as task:
        ...         results = [task.detect_for_video(f, t) for f, t in frames(video)]
        """
        if self._manager is None:
            raise RuntimeError("this handle is not bound to a ModelManager")
        return self._manager._open_handle(self, options)


def _loader_framework(loaders: LoaderRegistry, name: str) -> str | None:
    try:
        return loaders.get(name).framework
    except DPModelsError:
        return None


class ModelManager:
    """Resolves, verifies and loads the catalog's models under MODELS_ROOT.

    Every argument is optional and resolved as argument, then environment, then default:
    ``models_root`` ($DP_MODELS_ROOT, $MODELS_ROOT), ``catalog`` (a directory or a loaded
    :class:`Catalog`; $DP_MODELS_CATALOG, else the packaged one), ``lock``, ``lock_key`` (the
    public key the lock must be signed with, $DP_MODELS_LOCK_KEY: an unsigned or wrongly
    signed lock raises :class:`~dp_models._errors.LockSignatureError`), ``verify``
    ("cached" or "always"; $DP_MODELS_VERIFY), ``cache_dir`` ($DP_MODELS_CACHE_DIR),
    ``triton_endpoints`` (name -> URL, or the URLs of its replicas separated by commas;
    $DP_MODELS_TRITON_URL[_<NAME>]), ``triton_replicas`` (name -> ``"urls"`` or ``"dns"``: how
    the endpoint's replicas are found; $DP_MODELS_TRITON_REPLICAS[_<NAME>]),
    ``triton_shared_memory`` (name -> ``"auto"``, ``"on"`` or ``"off"``: whether its clients
    move tensors through the server's system shared memory; $DP_MODELS_TRITON_SHM[_<NAME>]),
    ``triton_timeouts``
    (endpoint name -> {client option: value}: the timeouts and retries of its clients;
    $DP_MODELS_TRITON_TIMEOUT[_<NAME>], checked here) and ``device``
    ("auto", "cpu", "cuda" or "cuda:N": overrides every spec's device). Creating a manager enforces
    offline operation (:func:`dp_models.enforce_offline`) unless ``offline=False``; a
    ``with ModelManager(...) as mm:`` block undoes it on exit (:meth:`restore_environment`).

    The arguments are resolved once, by :meth:`Settings.resolve
    <dp_models._settings.Settings.resolve>`, into ``mm.settings``; ``settings=`` takes an
    already resolved :class:`~dp_models._settings.Settings` instead (then the only other
    arguments allowed are a loaded :class:`Catalog` and ``loaders``).

    ``loaders`` is this manager's own loader set: a
    :class:`~dp_models._registry.LoaderRegistry`, or a mapping name -> loader (instance or
    class) added to the process-wide registry; the catalog's ``loader_args`` are validated
    against it. Default: the process-wide registry (:func:`dp_models.register_loader`).
    """

    def __init__(
        self,
        models_root: str | os.PathLike[str] | None = None,
        catalog: Catalog | str | os.PathLike[str] | None = None,
        *,
        lock: str | os.PathLike[str] | None = None,
        lock_key: str | os.PathLike[str] | None = None,
        verify: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        triton_endpoints: Mapping[str, str] | None = None,
        triton_timeouts: Mapping[str, Mapping[str, float]] | None = None,
        triton_replicas: Mapping[str, str] | None = None,
        triton_shared_memory: Mapping[str, str] | None = None,
        device: str | None = None,
        offline: bool | None = None,
        settings: Settings | None = None,
        loaders: LoaderRegistry | Mapping[str, Loader[Any] | type] | None = None,
    ) -> None:
        loaded = catalog if isinstance(catalog, Catalog) else None
        arguments: dict[str, Any] = {
            "models_root": models_root,
            "catalog": None if loaded is not None else catalog,
            "lock": lock,
            "lock_key": lock_key,
            "verify": verify,
            "cache_dir": cache_dir,
            "triton_endpoints": triton_endpoints,
            "triton_timeouts": triton_timeouts,
            "triton_replicas": triton_replicas,
            "triton_shared_memory": triton_shared_memory,
            "device": device,
            "offline": offline,
        }
        if settings is None:
            settings = Settings.resolve(**{k: v for k, v in arguments.items() if v is not None})
        elif given := [k for k, v in arguments.items() if v is not None]:
            raise ConfigurationError(
                f"ModelManager got settings and {', '.join(given)}: pass the settings alone "
                "(dataclasses.replace(settings, ...) changes one), or the arguments alone"
            )
        #: Every setting of this manager, resolved once (:class:`~dp_models._settings.Settings`).
        self.settings = settings
        self.root = settings.require_root()
        #: The loaders this manager uses: ``loaders`` (a registry, or name -> loader added
        #: to the process-wide one), else the process-wide registry.
        self.loaders = loader_set(loaders)
        if loaded is not None:
            from ._signing import check_catalog_lock

            check_catalog_lock(loaded, settings.lock_key)  # no key: nothing to check
            if loaded.loaders is not self.loaders:
                loaded.check_loader_args(self.loaders)
            self.catalog = loaded
        else:
            self.catalog = Catalog.load(settings=settings, loaders=self.loaders)
        #: The offline switches this manager set (None: ``offline=False``, or restored).
        self._offline: OfflineSwitch | None = None
        if settings.offline:
            self._offline = switch_offline(settings=settings)
        hasher = Hasher(DigestCache(settings.cache_dir), policy=settings.verify)
        #: Every root, in search order (the last, :attr:`root`, is the writable one).
        self.roots = settings.require_roots()
        self._verifier = Verifier(self.catalog, self.roots, hasher, hf_cache=settings.hf_cache)
        self._lock = threading.RLock()
        self._loaded: dict[tuple[str, str, str], Any] = {}
        self._inflight: dict[tuple[str, str, str], Future[Any]] = {}
        #: Stateful models' factories of per-stream instances (ModelHandle.open), cached
        #: like models; the instances themselves are their callers'.
        self._streams: dict[tuple[str, str, str], Any] = {}
        self._streams_inflight: dict[tuple[str, str, str], Future[Any]] = {}
        self._used: dict[tuple[str, str, str], dict[str, Any]] = {}

    def __repr__(self) -> str:
        with self._lock:
            loaded = len(self._loaded)
        state = ", offline" if self._offline is not None else ""
        count = len(self.catalog)
        return (
            f"<ModelManager root={self.root} catalog={self.catalog.directory} "
            f"({count} spec{'' if count == 1 else 's'}, {loaded} loaded{state})>"
        )

    @property
    def verify_policy(self) -> str:
        """``"cached"`` or ``"always"`` (``settings.verify``)."""
        return self.settings.verify

    @property
    def triton_endpoints(self) -> dict[str, str]:
        """Triton endpoint URLs by name (``settings.triton_endpoints``), credentials included."""
        return dict(self.settings.triton_endpoints)

    @property
    def triton_timeouts(self) -> dict[str, dict[str, float]]:
        """Triton client options by endpoint name (``settings.triton_timeouts``)."""
        return {k: dict(v) for k, v in self.settings.triton_timeouts.items()}

    @property
    def triton_replicas(self) -> dict[str, str]:
        """How each Triton endpoint's replicas are found, by endpoint name (``urls`` or
        ``dns``; ``settings.triton_replicas``; an endpoint not listed: ``urls``)."""
        return dict(self.settings.triton_replicas)

    @property
    def triton_shared_memory(self) -> dict[str, str]:
        """Whether each Triton endpoint's clients use system shared memory, by endpoint name
        (``auto``, ``on`` or ``off``; ``settings.triton_shared_memory``; an endpoint not
        listed: ``auto``)."""
        return dict(self.settings.triton_shared_memory)

    @property
    def device(self) -> str | None:
        """The device every spec runs on instead of its own; None: each spec's."""
        return self.settings.device

    def __enter__(self) -> ModelManager:
        """``with ModelManager(...) as mm:``: on exit, :meth:`close` and
        :meth:`restore_environment`. Entering a manager whose environment was restored sets
        its offline switches again."""
        with self._lock:
            if self.settings.offline and self._offline is None:
                self._offline = switch_offline(settings=self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.restore_environment()

    def restore_environment(self) -> dict[str, str | None]:
        """Undo the offline switches this manager set when it was created: the environment
        variables (``HF_HUB_OFFLINE``, ``HF_HUB_CACHE``, ``TORCH_HOME``, ...) and the
        imported frameworks' flags go back to what they were, so that other libraries in a
        notebook are not left offline. Returns the variables set back, with their value now
        (None: unset).

        Only what this manager changed, and only where it still holds what the manager set:
        a value changed since is left as it is; one that another manager created later (or
        :func:`dp_models.enforce_offline`) also set stays until that one restores it, so
        nested managers may end in any order. Loads stay inside the network guard; models
        and handles stay usable. Called on leaving a ``with`` block; :meth:`close` does not
        call it (a processor closing a manager stays offline). Safe to call twice."""
        with self._lock:
            switch, self._offline = self._offline, None
        return switch.restore() if switch is not None else {}

    # -- resolving -----------------------------------------------------------------------

    def get(
        self, name: str, *, device: str | None = None, precision: str | None = None
    ) -> ModelHandle:
        """Resolve and verify ``name`` (and what it requires); load nothing.

        Raises :class:`~dp_models._errors.SpecNotFoundError` (with close names), an
        :class:`~dp_models._errors.ArtifactError` for a missing, unpinned or wrong artifact,
        :class:`~dp_models._errors.DeviceUnavailableError`,
        :class:`~dp_models._errors.PrecisionError`,
        :class:`~dp_models._errors.ConfigurationError` (a bad device or precision value),
        :class:`~dp_models._errors.LoaderNotFoundError` or
        :class:`~dp_models._errors.MissingExtraError` (the framework is not installed).
        """
        handle = self._resolve(self.catalog[name], device, precision)
        self._record(handle)
        return handle

    def get_optional(
        self, name: str, *, device: str | None = None, precision: str | None = None
    ) -> ModelHandle | None:
        """Like :meth:`get`, but an ``optional: true`` spec none of whose artifacts is
        provisioned returns None, logs a warning and is recorded as absent in
        :meth:`models_used`. A required spec, or an optional one that is partly provisioned
        or wrong, raises as :meth:`get` does."""
        spec = self.catalog[name]
        if not (spec.optional and self._verifier.absent(spec)):
            return self.get(name, device=device, precision=precision)
        reason = ", ".join(a.installed or a.path for a in spec.artifacts)
        homes = ", ".join(str(r) for r in self.roots)
        if any(a.huggingface is not None for a in spec.artifacts):
            homes += f" or the hub cache {self.settings.hf_cache}"
        if any(a.installed is not None for a in spec.artifacts):
            homes += " or this Python environment"
        log.warning("optional model %r is not provisioned in %s: %s", name, homes, reason)
        with self._lock:
            self._used.setdefault(
                (name, "-", "-"),
                {
                    "name": name,
                    "version": spec.version,
                    "status": "absent",
                    "optional": True,
                    "runtime": spec.runtime,
                    "engine": spec.engine,
                    "reason": f"not provisioned: {reason}",
                },
            )
        return None

    def _resolve(
        self, spec: Spec, device: str | None, precision: str | None, *, hash_now: bool = True
    ) -> ModelHandle:
        """The handle of ``spec``. ``hash_now=False`` checks everything but the digests of
        its own artifacts (the pins stand in for them) for a load that hashes them as it
        reads them."""
        requires = tuple(self._resolve(self.catalog[d], None, None) for d in spec.requires)
        precision = precision or spec.precision
        if precision not in _PRECISIONS:
            raise ConfigurationError(
                f"precision must be one of {', '.join(_PRECISIONS)}, got {precision!r}"
            )
        endpoint: str | None = None
        info: Mapping[str, Any] | None = None
        if spec.runtime == "triton":
            assert spec.triton is not None
            expected = self.catalog.expected_digest(spec)
            digests: tuple[str, ...] = ()
            paths: dict[str, Path] = {}
            resolved_device = "triton"
            endpoint = self.triton_endpoints.get(spec.triton.endpoint)
            weights = expected.sha256 if expected else None
            homes: tuple[Mapping[str, Any], ...] = ()
            derived = self._lineage(spec)
        else:
            assert spec.loader is not None
            loader = self.loaders.get(spec.loader, spec=spec.name)  # an unknown one fails here
            if hash_now:
                reports = self._verifier.verify(spec)
                digests = tuple(_digest(r) for r in reports)
            else:
                reports = self._verifier.inspect(spec)
                digests = tuple(r.pin.sha256 for r in reports if r.pin is not None)
            paths = {r.artifact.path: r.path for r in reports}
            homes = tuple(r.where() for r in reports)
            resolved_device = self._device(spec, device, loader)
            info = loader.describe(spec, paths)
            self._check_precision(spec, precision, resolved_device, loader)
            weights = weights_digest(digests)
            expected = None
            derived = None
        signature = model_signature(
            spec,
            artifact_digests=digests,
            precision=precision,
            expected_digest=expected.sha256 if expected else None,
            requires={r.name: r.model_signature for r in requires},
            derived_from=derived,
        )
        return ModelHandle(
            spec,
            resolved_device,
            precision,
            paths,
            digests,
            signature,
            weights,
            requires,
            endpoint,
            info,
            self,
            homes,
            derived,
        )

    def _lineage(self, spec: Spec) -> dict[str, Any] | None:
        """A derived Triton spec's ``derived_from`` entry: its source and the weights digest
        the lock records it was exported from. A record that no longer matches what the
        source spec pins is a :class:`LineageError` (the served model is not an export of
        the source's weights any more)."""
        if spec.derived_from is None:
            return None
        source = spec.derived_from
        broken = self.catalog.broken_lineage(spec)
        if broken is not None:
            recorded, current = broken
            raise LineageError(
                lineage_message(spec, recorded.weights_digest, current),
                spec=spec.name,
                path=spec.artifacts[0].path,
                source=source,
                recorded=recorded.weights_digest,
                current=current,
            )
        lineage = self.catalog.lineage(spec)
        known = lineage is not None and lineage.source == source
        return {
            "name": source,
            "weights_digest": lineage.weights_digest if known and lineage else None,
        }

    def _device(self, spec: Spec, requested: str | None, loader: Loader[Any]) -> str:
        wanted = check_device(requested or self.device or spec.device, source=f"spec {spec.name!r}")
        if wanted == "cpu":
            return "cpu"
        try:
            has_cuda = loader.cuda_available()
        except MissingExtraError as exc:
            raise MissingExtraError(exc.module, extra=exc.extra, spec=spec.name) from exc
        if wanted == "auto":
            return "cuda" if has_cuda else "cpu"
        if not has_cuda:
            raise DeviceUnavailableError(
                f"spec {spec.name!r} asks for device {wanted!r}, but {loader.framework} sees no "
                "CUDA device here. dp_models never falls back to the CPU silently: ask for "
                "device 'cpu' (or 'auto') explicitly, or run where CUDA is available.",
                spec=spec.name,
                requested=wanted,
            )
        return wanted

    @staticmethod
    def _check_precision(spec: Spec, precision: str, device: str, loader: Loader[Any]) -> None:
        supported = loader.precisions
        if precision not in supported:
            raise PrecisionError(
                f"spec {spec.name!r}: loader {loader.name!r} runs models in "
                f"{_either(supported)}, not {precision}; a model in "
                "another precision needs a loader that builds it",
                spec=spec.name,
                precision=precision,
                device=device,
            )
        if device == "cpu" and precision in ("fp16", "bf16") and not spec.allow_half_on_cpu:
            raise PrecisionError(
                f"spec {spec.name!r}: {precision} on the CPU is not allowed (slow or missing "
                "kernels); use fp32 on the CPU, run on CUDA, or set allow_half_on_cpu: true in "
                "the spec if this model is known to work.",
                spec=spec.name,
                precision=precision,
                device=device,
            )

    def _record(self, handle: ModelHandle) -> None:
        with self._lock:
            for dep in handle.requires:
                self._record(dep)
            key = (handle.name, handle.device, handle.precision)
            self._used.setdefault(key, handle.models_used_entry)

    # -- loading -------------------------------------------------------------------------

    def load(self, name: str, *, device: str | None = None, precision: str | None = None) -> Any:
        """``get(name, ...)`` then its in-process object, loaded once per
        (name, device, precision) and cached."""
        if self.verify_policy != "always":
            return self._load_handle(self.get(name, device=device, precision=precision))
        # verify: always hashes each file while the load reads it (one pass), not in get()
        handle = self._resolve(self.catalog[name], device, precision, hash_now=False)
        model = self._load_handle(handle)
        self._record(handle)
        return model

    def runner(
        self,
        name: str,
        *,
        device: str | None = None,
        precision: str | None = None,
        **options: Any,
    ) -> Runner:
        """``get(name, ...).runner(**options)``: the model behind the one calling convention
        of both runtimes (:meth:`ModelHandle.runner`); a processor switches runtime by
        changing only ``name``."""
        return self.get(name, device=device, precision=precision).runner(**options)

    def open(
        self,
        name: str,
        *,
        device: str | None = None,
        precision: str | None = None,
        **options: Any,
    ) -> Any:
        """``get(name, ...).open(**options)``: a fresh per-stream instance of a stateful
        model, the caller's to close (:meth:`ModelHandle.open`). For many streams, get the
        handle once and call ``handle.open()`` per stream: ``get`` verifies each time."""
        if self.verify_policy != "always":
            return self.get(name, device=device, precision=precision).open(**options)
        # verify: always hashes each file while the factory reads it, not in get() as well
        handle = self._resolve(self.catalog[name], device, precision, hash_now=False)
        instance = self._open_handle(handle, options)
        self._record(handle)
        return instance

    @staticmethod
    def _in_process(spec: Spec) -> None:
        if spec.runtime != "inprocess":
            raise LoaderError(
                f"spec {spec.name!r} is served by Triton (runtime: triton): there is no "
                "in-process model to load; talk to the served model through a Triton client",
                spec=spec.name,
                loader="-",
            )

    def _load_handle(self, handle: ModelHandle) -> Any:
        spec = handle.spec
        self._in_process(spec)
        key = (spec.name, handle.device, handle.precision)
        return self._once(self._loaded, self._inflight, key, lambda: self._build(handle))

    def _open_handle(self, handle: ModelHandle, options: Mapping[str, Any]) -> Any:
        spec = handle.spec
        self._in_process(spec)
        assert spec.loader is not None
        loader = self.loaders.get(spec.loader, spec=spec.name)
        if not loader.stateful:
            raise ConfigurationError(
                f"spec {spec.name!r}: loader {spec.loader!r} is not stateful: one model serves "
                "every stream, so there is nothing to open per stream; use handle.load() "
                "(ModelManager.load), which loads it once and caches it"
            )
        key = (spec.name, handle.device, handle.precision)
        make = self._once(
            self._streams,
            self._streams_inflight,
            key,
            lambda: self._build(handle, streams=True),
        )
        return self._run_loader(handle, lambda: make(**options))

    def _once(
        self,
        cache: dict[tuple[str, str, str], Any],
        inflight: dict[tuple[str, str, str], Future[Any]],
        key: tuple[str, str, str],
        build: Callable[[], Any],
    ) -> Any:
        """``cache[key]``, built by one thread while the others ask for it wait."""
        with self._lock:
            if key in cache:
                return cache[key]
            future = inflight.get(key)
            owner = future is None
            if future is None:
                future = inflight[key] = Future()
        if not owner:
            return future.result()  # another thread is loading it: wait for that one load
        try:
            value = build()
        except BaseException as exc:
            with self._lock:
                del inflight[key]
            future.set_exception(exc)
            raise
        with self._lock:
            cache[key] = value
            del inflight[key]
        future.set_result(value)
        return value

    def _build(self, handle: ModelHandle, *, streams: bool = False) -> Any:
        """The loader's model (``streams``: its factory of per-stream instances) from the
        artifacts opened and verified for this load."""
        spec = handle.spec
        assert spec.loader is not None
        loader = self.loaders.get(spec.loader, spec=spec.name)
        # The loader reads the files opened and verified here, not their paths looked up
        # again: a file swapped, truncated or removed since get() is caught, and one renamed
        # over the path during the load is not what loads.
        with self._verifier.open_for_load(spec) as opened:
            directories = {
                r.artifact.path: opened.directory(r)
                for r in opened.reports
                if r.artifact.kind == "dir"
            }
            ctx = LoadContext(
                spec,
                FrameworkPaths(directories, opened.files),
                handle.device,
                handle.precision,
                dict(spec.loader_args),
                files=opened.files,
                requires=tuple(Requirement(r.spec, r.load) for r in handle.requires),
                native_logs=self.settings.native_logs,
            )
            build = loader.stream_factory if streams else loader.load
            model = self._run_loader(handle, lambda: build(ctx))
            if opened.digests() != handle.artifact_digests:
                raise LoaderError(
                    f"spec {spec.name!r}: its artifacts changed since it was resolved; get it "
                    "again",
                    spec=spec.name,
                    loader=spec.loader,
                )
            opened.check_unchanged()
        return model

    def _run_loader(self, handle: ModelHandle, run: Callable[[], Any]) -> Any:
        """``run()`` (the loader's ``load``, its stream factory, or a call of that factory)
        inside the network guard, what it raises translated."""
        spec = handle.spec
        assert spec.loader is not None
        try:
            with network_guard([spec.name], allow=self.triton_endpoints.values()) as blocked:
                model = run()
        except ArtifactError:
            raise  # the verified file did not match or changed: already typed
        except DPModelsError as exc:
            if blocked and not isinstance(exc, NetworkBlockedError):
                raise blocked[0] from exc  # the loader wrapped the guard's error: surface it
            raise
        except Exception as exc:
            if blocked:
                raise blocked[0] from exc  # a library caught the guard's error: surface it
            raise LoaderError(
                f"spec {spec.name!r}: loader {spec.loader!r} failed on "
                f"{', '.join(str(p) for p in handle.paths.values())}: "
                f"{type(exc).__name__}: {exc}. The artifact passed its digest check, so the "
                "spec's loader or loader_args do not fit it.",
                spec=spec.name,
                loader=spec.loader,
            ) from exc
        if blocked:  # the loader swallowed the block and returned something else: refuse it
            raise blocked[0]
        return model

    def unload(self, name: str) -> int:
        """Drop every cached object of ``name`` (a stateful model's stream factory too: the
        next ``open()`` verifies again); returns how many were dropped."""
        dropped = 0
        with self._lock:
            for cache in (self._loaded, self._streams):
                keys = [k for k in cache if k[0] == name]
                for k in keys:
                    del cache[k]
                dropped += len(keys)
        return dropped

    def close(self) -> None:
        """Drop every cached object. The offline switches stay (:meth:`restore_environment`
        undoes them; leaving a ``with`` block does both). Per-stream instances
        (:meth:`ModelHandle.open`) are their callers' to close."""
        with self._lock:
            self._loaded.clear()
            self._streams.clear()

    # -- health --------------------------------------------------------------------------

    def pull(
        self,
        names: Iterable[str] | None = None,
        *,
        mirrors: list[str] | None = None,
        users: str | None = None,
        all: bool = False,
        upstream: bool = False,
        dry_run: bool = False,
        jobs: int = 4,
        progress: bool | None = None,
    ) -> PullReport:
        """Fetch what ``names`` need into this manager's root from ``mirrors`` (else
        ``settings.mirrors``; with ``upstream``, then the specs' sources), with its catalog
        and lock: :func:`dp_models.pull`. Provisioning only: it is not run inside the
        network guard, and loads stay offline. Pinning first copies (``pin=True``) changes
        the lock, so it is :func:`dp_models.pull`'s alone; a manager made afterwards reads
        the new pins."""
        from ._pull import pull

        return pull(
            names,
            mirrors=mirrors,
            catalog=self.catalog,
            users=users,
            all=all,
            upstream=upstream,
            dry_run=dry_run,
            jobs=jobs,
            progress=progress,
            settings=self.settings,
        )

    def check(
        self, names: Iterable[str] | None = None, *, ready_timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The health of ``names`` (default: every model this manager has handed out), for a
        processor's health endpoint: ``{"ok": bool, "models": [report, ...]}``, each report
        a :meth:`HealthReport.as_dict <dp_models._health.HealthReport.as_dict>`.

        A Triton spec's deployment is checked as
        :meth:`TritonClient.check <dp_models.triton.client.TritonClient.check>` does (live,
        ready, metadata, served digest; an unconfigured endpoint is not ok); its
        ``served_digest_verified`` is recorded in :meth:`models_used`. An in-process spec's
        artifacts are verified again (from the digest cache unless ``verify="always"``) and
        ``loaded`` says whether it is loaded; an optional spec none of whose artifacts is
        provisioned is ``absent`` and still ok (as :meth:`get_optional` treats it). Never
        raises for a deployment's or an artifact's problem (they are in each report's
        ``error``); an unknown name raises :class:`~dp_models._errors.SpecNotFoundError`."""
        from .triton.health import Deployment, check_deployments

        if names is None:
            with self._lock:
                wanted = list(dict.fromkeys(k[0] for k in self._used))
        else:
            wanted = list(dict.fromkeys(names))
        specs = [self.catalog[n] for n in wanted]
        deployments = []
        for spec in specs:
            if spec.triton is None:
                continue
            expected = self.catalog.expected_digest(spec)
            with self._lock:
                key = next((k for k in self._used if k[0] == spec.name and k[1] == "triton"), None)
            record = None if key is None else functools.partial(self._record_verified, key)
            deployments.append(
                Deployment(
                    spec,
                    self.triton_endpoints.get(spec.triton.endpoint),
                    expected.sha256 if expected else None,
                    on_verified=record,
                    replicas=self.triton_replicas.get(spec.triton.endpoint, "urls"),
                    shared_memory=self.triton_shared_memory.get(spec.triton.endpoint, "auto"),
                )
            )
        served = iter(check_deployments(deployments, ready_timeout_s=ready_timeout_s))
        reports = [
            next(served) if spec.triton is not None else self._check_inprocess(spec)
            for spec in specs
        ]
        return {"ok": all(r.ok for r in reports), "models": [r.as_dict() for r in reports]}

    def _record_verified(self, key: tuple[str, str, str], verified: bool | None) -> None:
        """Record a served digest's verification in the ``models_used`` entry ``key``."""
        with self._lock:
            entry = self._used.get(key)
            if entry is not None and entry.get("triton") is not None:
                entry["triton"] = {**entry["triton"], "served_digest_verified": verified}

    def _check_inprocess(self, spec: Spec) -> HealthReport:
        absent = spec.optional and self._verifier.absent(spec)
        bad = [] if absent else [r for r in self._verifier.check([spec]) if not r.ok]
        with self._lock:
            loaded = any(k[0] == spec.name for k in (*self._loaded, *self._streams))
        error = bad[0].error if bad else None
        if absent:
            status = HealthStatus.ABSENT
        else:
            status = HealthStatus(bad[0].status) if bad else HealthStatus.OK
        return HealthReport(
            spec=spec.name,
            runtime="inprocess",
            status=status,
            error=str(error) if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            loaded=loaded,
        )

    # -- provenance ----------------------------------------------------------------------

    def models_used(self) -> list[dict[str, Any]]:
        """Every model this manager handed out (and every optional one found absent), in order."""
        with self._lock:
            return [dict(e) for e in self._used.values()]

    def stamp(
        self,
        meta: Mapping[str, Any],
        *,
        models: Iterable[str] | None = None,
        inputs: Iterable[str | os.PathLike[str] | Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """A copy of ``meta`` with ``models_used``, ``model_signature``, ``weights_digest``
        and ``catalog_used`` (this manager's catalog and lock: paths and digests).

        ``models``: the names of the models that produced this output (default: every
        model handed out), with the specs they require; a name not handed out is a
        :class:`~dp_models._errors.ProvenanceError` listing those that were. ``inputs``:
        the stamped artifacts (``.json`` / ``.npz`` paths, or stamps already read) it was
        computed from, recorded under ``inputs_used`` after their stamps are checked
        against this manager's catalog and lock
        (:class:`~dp_models._errors.LineageInputError` when they fail)."""
        entries = select_models(self.models_used(), models)
        return stamp(meta, entries, inputs=input_links(inputs, self.catalog), catalog=self.catalog)


def _digest(report: ArtifactReport) -> str:
    assert report.sha256 is not None
    return report.sha256
