"""Every setting dp_models reads, resolved once into one frozen :class:`Settings`.

One resolution order everywhere: the argument, then the environment, then the packaged
default (:meth:`Settings.resolve`). The ModelManager, :func:`~dp_models._offline.enforce_offline`,
``Catalog.load`` and every ``dp-models`` command take their settings from a Settings
object; no other module reads a variable of its own. Every environment variable
dp_models reads is named here and nowhere else; empty values count as unset.

Resolving reads the environment and checks every value's form (verify policy, device,
Triton URLs and timeouts): a bad one is a :class:`~dp_models._errors.ConfigurationError`
naming the argument or variable it came from. It does not look at the file system: a
MODELS_ROOT that does not exist is reported by :meth:`Settings.require_root`, when
something needs the root, so that commands that never touch the root are not stopped by
it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeAlias

from ._errors import ConfigurationError, DPModelsError, ModelsRootError
from ._urls import (
    parse_endpoint,
    parse_endpoints,
    parse_s3_url,
    redact,
    redact_endpoints,
    redact_url,
)

__all__ = [
    "DEVICES",
    "ENV_CACHE_DIR",
    "ENV_CATALOG",
    "ENV_DOCKER_CONFIG",
    "ENV_HF_CACHE",
    "ENV_LOCK",
    "ENV_LOCK_KEY",
    "ENV_MIRRORS",
    "ENV_NATIVE_LOGS",
    "ENV_OCI_PLAIN_HTTP",
    "ENV_ROOT",
    "ENV_ROOT_ALIAS",
    "ENV_TRITON_REPLICAS",
    "ENV_TRITON_SHM",
    "ENV_TRITON_TIMEOUT",
    "ENV_TRITON_URL",
    "ENV_VARS",
    "ENV_VERIFY",
    "FRAMEWORK_ENV_VARS",
    "LOCK_FILENAME",
    "NATIVE_LOG_MODES",
    "REPLICA_MODES",
    "SHARED_MEMORY_MODES",
    "TRITON_CLIENT_DEFAULTS",
    "VERIFY_POLICIES",
    "Settings",
    "check_device",
    "check_shared_memory_mode",
    "check_triton_option",
    "packaged_catalog_dir",
    "resolve_cache_dir",
    "resolve_catalog_dir",
    "resolve_docker_config",
    "resolve_hf_cache",
    "resolve_lock_key",
    "resolve_lock_path",
    "resolve_models_root",
    "resolve_oci_plain_http",
    "resolve_triton_endpoints",
    "resolve_triton_options",
    "resolve_triton_replicas",
    "resolve_triton_shared_memory",
    "resolve_verify_policy",
    "triton_replicas_variable",
    "triton_shm_variable",
    "triton_timeout_variable",
    "triton_url_variable",
]

ENV_ROOT = "DP_MODELS_ROOT"
ENV_ROOT_ALIAS = "MODELS_ROOT"
ENV_CATALOG = "DP_MODELS_CATALOG"
ENV_LOCK = "DP_MODELS_LOCK"
#: Public key (PEM) the lock must be signed with; unset: the lock's signature is not checked.
ENV_LOCK_KEY = "DP_MODELS_LOCK_KEY"
ENV_CACHE_DIR = "DP_MODELS_CACHE_DIR"
#: Mirrors ``dp-models pull`` fetches from, in order: directories laid out as a MODELS_ROOT
#: or http(s) URLs of servers with that layout, separated by spaces or commas.
ENV_MIRRORS = "DP_MODELS_MIRRORS"
ENV_VERIFY = "DP_MODELS_VERIFY"
#: URL of the default Triton endpoint (or the URLs of its replicas, separated by commas);
#: ``DP_MODELS_TRITON_URL_<NAME>`` names another one.
ENV_TRITON_URL = "DP_MODELS_TRITON_URL"
#: How the default Triton endpoint's replicas are found (:data:`REPLICA_MODES`): ``urls``,
#: the URLs listed, or ``dns``, every address its one URL's host name resolves to;
#: ``DP_MODELS_TRITON_REPLICAS_<NAME>`` for another endpoint.
ENV_TRITON_REPLICAS = "DP_MODELS_TRITON_REPLICAS"
#: Timeouts and retries of the default Triton endpoint's clients (``connect=5,network=60``);
#: ``DP_MODELS_TRITON_TIMEOUT_<NAME>`` those of another one.
ENV_TRITON_TIMEOUT = "DP_MODELS_TRITON_TIMEOUT"
#: Whether the default Triton endpoint's clients move tensors through the server's system
#: shared memory (:data:`SHARED_MEMORY_MODES`: ``auto``, ``on``, ``off``);
#: ``DP_MODELS_TRITON_SHM_<NAME>`` for another endpoint.
ENV_TRITON_SHM = "DP_MODELS_TRITON_SHM"
#: Registry hosts (``HOST`` or ``HOST:PORT``, spaces or commas between them) that pull and
#: push reach over plain http (``oci://``); loopback hosts always are, every other over https.
ENV_OCI_PLAIN_HTTP = "DP_MODELS_OCI_PLAIN_HTTP"
#: Docker's own variable: the directory of the ``config.json`` whose ``auths`` hold
#: registry credentials (``docker login``); unset: ``~/.docker``.
ENV_DOCKER_CONFIG = "DOCKER_CONFIG"
#: The Hugging Face hub cache that artifacts naming a ``huggingface`` snapshot are read from;
#: unset: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``.
ENV_HF_CACHE = "DP_MODELS_HF_CACHE"
#: What becomes of the lines a framework's native code writes to stderr while a model is
#: built or closed (:data:`NATIVE_LOG_MODES`): ``route`` (the default) or ``keep``.
ENV_NATIVE_LOGS = "DP_MODELS_NATIVE_LOGS"
_ENV_HF_HUB_CACHE = "HF_HUB_CACHE"
_ENV_HF_HOME = "HF_HOME"
#: Read only for the default digest cache (``$XDG_CACHE_HOME/dp_models``).
_ENV_XDG_CACHE = "XDG_CACHE_HOME"

#: Variables of the frameworks dp_models drives, shown by ``dp-models env``.
FRAMEWORK_ENV_VARS = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "HF_HUB_CACHE",
    "TORCH_HOME",
    "SENTENCE_TRANSFORMERS_HOME",
    "YOLO_OFFLINE",
    "YOLO_CONFIG_DIR",
    "XDG_CACHE_HOME",
    "CUDA_VISIBLE_DEVICES",
)
#: Every variable ``dp-models env`` reports (values redacted).
ENV_VARS = (
    ENV_ROOT,
    ENV_ROOT_ALIAS,
    ENV_CATALOG,
    ENV_LOCK,
    ENV_LOCK_KEY,
    ENV_CACHE_DIR,
    ENV_VERIFY,
    ENV_MIRRORS,
    ENV_TRITON_URL,
    ENV_TRITON_TIMEOUT,
    ENV_TRITON_REPLICAS,
    ENV_TRITON_SHM,
    ENV_OCI_PLAIN_HTTP,
    ENV_DOCKER_CONFIG,
    ENV_HF_CACHE,
    ENV_NATIVE_LOGS,
    *FRAMEWORK_ENV_VARS,
)

#: File name of the lock beside a catalog directory.
LOCK_FILENAME = "catalog.lock.json"

#: ``cached``: trust a digest-cache entry whose file identity and stat still match;
#: ``always``: hash every artifact on every verification.
VERIFY_POLICIES = ("cached", "always")

#: How a Triton endpoint's replicas are found: ``urls`` (the default), the URLs its value
#: lists (one or several, separated by commas); ``dns``, every address the host name of its
#: one URL resolves to, looked up each time the endpoint is checked.
REPLICA_MODES = ("urls", "dns")

#: Whether a Triton endpoint's clients move tensors through the server's system shared
#: memory: ``auto`` (the default), when every replica URL is loopback and the server accepts
#: the client's regions, else HTTP; ``on``, the server shares this host (a refusal is a
#: :class:`~dp_models._errors.TritonSharedMemoryError`); ``off``, HTTP only.
SHARED_MEMORY_MODES = ("auto", "on", "off")

#: What becomes of the log lines MediaPipe's native code (absl, TFLite, LiteRT) writes to
#: stderr while a task is created or closed: ``route`` (the default), each such line goes to
#: the ``dp_models.native`` logger (INFO and WARNING lines at DEBUG, ERROR and FATAL at
#: ERROR) and anything else written meanwhile back to stderr; ``keep``, stderr untouched.
NATIVE_LOG_MODES = ("route", "keep")

#: The devices a spec may name (``spec.Device``, the schema's list: a test keeps the two
#: equal; spec is not imported here, so that settings and enforce_offline stay free of
#: pydantic); a manager or a call may also ask for ``cuda:N``, one CUDA device.
DEVICES = ("auto", "cpu", "cuda")

#: The options of :class:`~dp_models.triton.client.TritonClient` that bound a request, with
#: the client's defaults: what ``triton_timeouts`` and ``$DP_MODELS_TRITON_TIMEOUT`` may set.
TRITON_CLIENT_DEFAULTS: dict[str, float] = {
    "connection_timeout_s": 5.0,
    "network_timeout_s": 60.0,
    "ready_timeout_s": 30.0,
    "retries": 3,
    "backoff_s": 0.2,
}
#: The keys of ``$DP_MODELS_TRITON_TIMEOUT[_<NAME>]`` and the options they set.
_TIMEOUT_KEYS = {
    "connect": "connection_timeout_s",
    "network": "network_timeout_s",
    "ready": "ready_timeout_s",
    "retries": "retries",
    "backoff": "backoff_s",
}

_NOT_SET = (
    "MODELS_ROOT is not set: dp_models does not guess where model weights live. "
    f"Pass models_root=..., or set {ENV_ROOT}=/path/to/models (or {ENV_ROOT_ALIAS}), "
    "or give --root to the dp-models command."
)

PathArg: TypeAlias = "str | os.PathLike[str]"


@dataclass(frozen=True)
class Settings:
    """Every setting, resolved once; build it with :meth:`Settings.resolve`.

    Frozen: a manager, the offline switches and a command all see the same values for
    their whole life. ``models_root`` is absolute with symlinks resolved when it names a
    directory; when it is set but unusable, ``models_root_problem`` says why and
    :meth:`require_root` raises it.

    MODELS_ROOT may list several roots (``$DP_MODELS_ROOT=/shared/models:/local/models``,
    or a sequence as the argument): ``roots`` holds them in search order, and
    ``models_root`` is the last one, the writable root that ``pull`` provisions.
    """

    #: MODELS_ROOT, or None when nothing sets it (dp_models never guesses it); with several
    #: roots, the last (the writable one).
    models_root: Path | None
    #: The catalog directory.
    catalog: Path
    #: The lock file.
    lock: Path
    #: The public key (PEM) the lock must be signed with; None: signatures not checked.
    lock_key: Path | None
    #: The per-user digest cache; None: no cache is read or written.
    cache_dir: Path | None
    #: ``"cached"`` or ``"always"`` (:data:`VERIFY_POLICIES`).
    verify: str
    #: Triton endpoint URLs by endpoint name (credentials included: show them masked).
    triton_endpoints: Mapping[str, str]
    #: Triton client options (timeouts, retries) by endpoint name, checked.
    triton_timeouts: Mapping[str, Mapping[str, float]]
    #: A device every spec runs on instead of its own (``auto``, ``cpu``, ``cuda``,
    #: ``cuda:N``); None: each spec's.
    device: str | None
    #: Whether a ModelManager switches the frameworks offline when it is created.
    offline: bool
    #: Mirrors ``dp-models pull`` fetches from, in order (directories, http(s) URLs with
    #: their credentials: show them masked).
    mirrors: tuple[str, ...] = ()
    #: How each Triton endpoint's replicas are found, by endpoint name (:data:`REPLICA_MODES`;
    #: an endpoint not here: ``urls``).
    triton_replicas: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Whether each Triton endpoint's clients use system shared memory, by endpoint name
    #: (:data:`SHARED_MEMORY_MODES`; an endpoint not here: ``auto``).
    triton_shared_memory: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Registry hosts (``HOST`` or ``HOST:PORT``) pull and push may reach over plain http
    #: besides loopback ones (``$DP_MODELS_OCI_PLAIN_HTTP``).
    oci_plain_http: tuple[str, ...] = ()
    #: The Docker config holding registry credentials (``$DOCKER_CONFIG/config.json``, else
    #: ``~/.docker/config.json``); None: none is read.
    docker_config: Path | None = None
    #: Every root, in search order (one, or those MODELS_ROOT lists); empty when unset.
    roots: tuple[Path, ...] = ()
    #: The Hugging Face hub cache read for ``huggingface`` snapshots (:data:`ENV_HF_CACHE`).
    hf_cache: Path | None = None
    #: What becomes of the lines a framework's native code writes to stderr while a model
    #: is built or closed (:data:`NATIVE_LOG_MODES`; ``$DP_MODELS_NATIVE_LOGS``): ``route``
    #: or ``keep``. Loaders see it as ``LoadContext.native_logs``.
    native_logs: str = NATIVE_LOG_MODES[0]
    #: Why the configured ``models_root`` cannot be used (None: it can, or it is not set).
    models_root_problem: str | None = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls,
        *,
        models_root: PathArg | Sequence[PathArg] | None = None,
        catalog: PathArg | None = None,
        lock: PathArg | None = None,
        lock_key: PathArg | None = None,
        cache_dir: PathArg | None = None,
        use_cache: bool = True,
        verify: str | None = None,
        triton_endpoints: Mapping[str, str] | None = None,
        triton_timeouts: Mapping[str, Mapping[str, object]] | None = None,
        device: str | None = None,
        offline: bool = True,
        mirrors: Sequence[str] | None = None,
        triton_replicas: Mapping[str, str] | None = None,
        triton_shared_memory: Mapping[str, str] | None = None,
        hf_cache: PathArg | None = None,
        environ: Mapping[str, str] | None = None,
        argument_names: Mapping[str, str] | None = None,
        problems: dict[str, DPModelsError] | None = None,
    ) -> Settings:
        """Each setting from its argument, else the environment (``environ``, default
        ``os.environ``), else its default; every value checked.

        ``use_cache=False`` turns the digest cache off (``cache_dir`` is then None).
        ``argument_names`` says how the caller names its arguments in messages (the
        command line: ``{"models_root": "--root"}``). Raises
        :class:`~dp_models._errors.ConfigurationError` naming the argument or the variable
        of a bad value (all of them when several are bad).

        With ``problems`` (a dict), a bad value does not raise: the setting keeps its
        default and its error is put in ``problems`` by field name. For ``dp-models env``,
        which shows a broken configuration instead of stopping at it."""
        report = problems is not None
        problems = {} if problems is None else problems
        env = os.environ if environ is None else environ
        names = dict(argument_names or {})

        def attempt(name: str, default: Any, resolve: Any, *args: Any) -> Any:
            try:
                return resolve(*args)
            except DPModelsError as exc:
                problems[name] = exc
                return default

        roots, root_problem = _models_roots(
            models_root, env, origin=names.get("models_root", "the models_root argument")
        )
        catalog_dir = _catalog_dir(catalog, env)
        endpoints = attempt(
            "triton_endpoints",
            {},
            _triton_endpoints,
            triton_endpoints,
            env,
            names.get("triton_endpoints", "triton_endpoints"),
        )
        timeouts = attempt(
            "triton_timeouts",
            {},
            _triton_options,
            triton_timeouts,
            env,
            names.get("triton_timeouts", "triton_timeouts"),
        )
        replicas = attempt(
            "triton_replicas",
            {},
            _triton_replicas,
            triton_replicas,
            endpoints,
            env,
            names.get("triton_replicas", "triton_replicas"),
        )
        shared_memory = attempt(
            "triton_shared_memory",
            {},
            _triton_shared_memory,
            triton_shared_memory,
            env,
            names.get("triton_shared_memory", "triton_shared_memory"),
        )
        settings = cls(
            models_root=roots[-1] if roots else None,
            catalog=catalog_dir,
            lock=_lock_path(catalog_dir, lock, env),
            lock_key=_lock_key(lock_key, env),
            cache_dir=_cache_dir(cache_dir, env) if use_cache else None,
            verify=attempt(
                "verify", VERIFY_POLICIES[0], _verify_policy, verify, env, names.get("verify")
            ),
            triton_endpoints=MappingProxyType(dict(endpoints)),
            triton_timeouts=MappingProxyType(
                {k: MappingProxyType(dict(v)) for k, v in timeouts.items()}
            ),
            device=attempt("device", None, _device, device, names.get("device", "device")),
            offline=bool(offline),
            mirrors=attempt("mirrors", (), _mirrors, mirrors, env, names.get("mirrors", "mirrors")),
            triton_replicas=MappingProxyType(dict(replicas)),
            triton_shared_memory=MappingProxyType(dict(shared_memory)),
            oci_plain_http=_oci_plain_http(env),
            docker_config=_docker_config(env),
            roots=roots,
            hf_cache=_hf_cache(hf_cache, env),
            native_logs=attempt("native_logs", NATIVE_LOG_MODES[0], _native_logs, env),
            models_root_problem=root_problem,
        )
        errors = list(problems.values())
        if report or not errors:
            return settings
        if len(errors) == 1:
            raise errors[0]
        raise ConfigurationError(
            f"{len(errors)} settings are invalid:\n" + "\n".join(f"- {e}" for e in errors)
        )

    def __repr__(self) -> str:
        """The dataclass repr, with the Triton URLs' credentials masked."""
        shown: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["triton_endpoints"] = {
            k: redact_endpoints(v) for k, v in self.triton_endpoints.items()
        }
        shown["triton_timeouts"] = {k: dict(v) for k, v in self.triton_timeouts.items()}
        shown["mirrors"] = tuple(redact_url(m) for m in self.mirrors)
        shown["triton_replicas"] = dict(self.triton_replicas)
        shown["triton_shared_memory"] = dict(self.triton_shared_memory)
        if self.hf_cache is not None:
            shown["hf_cache"] = redact(str(self.hf_cache))
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def require_root(self) -> Path:
        """MODELS_ROOT, for whatever needs it; :class:`~dp_models._errors.ModelsRootError`
        when it is not set, does not exist or is not a directory."""
        if self.models_root is None:
            raise ModelsRootError(_NOT_SET)
        if self.models_root_problem is not None:
            raise ModelsRootError(self.models_root_problem, path=self.models_root)
        return self.models_root

    def require_roots(self) -> tuple[Path, ...]:
        """Every root in search order (:meth:`require_root`'s errors when one is unusable)."""
        self.require_root()
        return self.roots

    def shown(self) -> dict[str, Any]:
        """The settings as plain data for people and logs: Triton URLs with their
        credentials masked (:func:`~dp_models._urls.redact_url`), absent values explained."""
        if self.models_root is None:
            root = "(not set)"
        elif self.models_root_problem is not None:
            root = f"(not usable: {self.models_root_problem})"
        else:
            root = str(self.models_root)
        return {
            "catalog": str(self.catalog),
            "lock": str(self.lock),
            "lock_key": str(self.lock_key or "(none: the lock's signature is not checked)"),
            "models_root": root,
            "roots": [str(r) for r in self.roots],
            "cache_dir": str(self.cache_dir) if self.cache_dir is not None else "(disabled)",
            "verify": self.verify,
            "triton_endpoints": {
                k: redact_endpoints(v) for k, v in sorted(self.triton_endpoints.items())
            },
            "triton_replicas": dict(sorted(self.triton_replicas.items())),
            "triton_shared_memory": dict(sorted(self.triton_shared_memory.items())),
            "triton_timeouts": {k: dict(v) for k, v in sorted(self.triton_timeouts.items())},
            "device": self.device or "(each spec's own)",
            "offline": self.offline,
            "mirrors": [redact_url(m) for m in self.mirrors],
            "oci_plain_http": list(self.oci_plain_http),
            "docker_config": str(self.docker_config or "(none)"),
            "hf_cache": redact(str(self.hf_cache)) if self.hf_cache else "(none)",
            "native_logs": self.native_logs,
        }


# -- one setting each -----------------------------------------------------------------------


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def packaged_catalog_dir() -> Path:
    """The catalog shipped inside the package (``dp_models/spec_catalog``)."""
    return Path(str(resources.files("dp_models").joinpath("spec_catalog")))


def _catalog_dir(catalog: PathArg | None, env: Mapping[str, str]) -> Path:
    if catalog is not None:
        return Path(catalog).expanduser()
    value = _get(env, ENV_CATALOG)
    return Path(value).expanduser() if value else packaged_catalog_dir()


def _lock_path(catalog_dir: Path, lock: PathArg | None, env: Mapping[str, str]) -> Path:
    if lock is not None:
        return Path(lock).expanduser()
    value = _get(env, ENV_LOCK)
    return Path(value).expanduser() if value else catalog_dir / LOCK_FILENAME


def _lock_key(key: PathArg | None, env: Mapping[str, str]) -> Path | None:
    if key is not None:
        return Path(key).expanduser()
    value = _get(env, ENV_LOCK_KEY)
    return Path(value).expanduser() if value else None


def _models_roots(
    root: PathArg | Sequence[PathArg] | None, env: Mapping[str, str], *, origin: str
) -> tuple[tuple[Path, ...], str | None]:
    """The roots in search order and why one cannot be used (None when all can); ((), None)
    when unset. A string (the argument or the variable) may list several, separated by
    ``os.pathsep``; the argument may also be a sequence."""
    if root is not None:
        raws = [str(r) for r in root] if isinstance(root, (list, tuple)) else [str(root)]
    elif (value := _get(env, ENV_ROOT)) is not None:
        raws, origin = [value], f"${ENV_ROOT}"
    elif (value := _get(env, ENV_ROOT_ALIAS)) is not None:
        raws, origin = [value], f"${ENV_ROOT_ALIAS}"
    else:
        return (), None
    entries = [e.strip() for raw in raws for e in raw.split(os.pathsep)]
    if any(not e for e in entries):
        return (Path(os.pathsep.join(entries)),), (
            f"MODELS_ROOT {os.pathsep.join(entries)!r} (from {origin}) has an empty entry; list "
            f"the roots separated by {os.pathsep!r}, each a directory."
        )
    roots: list[Path] = []
    for raw in entries:
        path, problem = _models_root(raw, origin, several=len(entries) > 1)
        if problem is not None:
            return (*roots, path), problem
        if path in roots:
            return (*roots, path), (
                f"MODELS_ROOT lists {path} twice (from {origin}); list each root once."
            )
        roots.append(path)
    return tuple(roots), None


def _models_root(raw: str, origin: str, *, several: bool) -> tuple[Path, str | None]:
    """One root and why it cannot be used (None when it can)."""
    path = Path(raw).expanduser()
    if several and not path.is_absolute():
        return path, (
            f"MODELS_ROOT entry {path} (from {origin}) is relative; with several roots give "
            "each as an absolute path."
        )
    if not path.exists():
        return path, (
            f"MODELS_ROOT {path} (from {origin}) does not exist. Create it and provision "
            "the artifacts, or point it at the provisioned directory"
            + (" (or remove it from the list of roots)." if several else ".")
        )
    if not path.is_dir():
        return path, f"MODELS_ROOT {path} (from {origin}) is not a directory."
    return path.resolve(), None


def _hf_cache(cache: PathArg | None, env: Mapping[str, str]) -> Path:
    if cache is not None:
        return Path(cache).expanduser()
    for name in (ENV_HF_CACHE, _ENV_HF_HUB_CACHE):
        if (value := _get(env, name)) is not None:
            return Path(value).expanduser()
    if (home := _get(env, _ENV_HF_HOME)) is not None:
        return Path(home).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def _cache_dir(cache_dir: PathArg | None, env: Mapping[str, str]) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    value = _get(env, ENV_CACHE_DIR)
    if value:
        return Path(value).expanduser()
    xdg = _get(env, _ENV_XDG_CACHE)
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dp_models"


def _mirrors(mirrors: Sequence[str] | None, env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Mirrors from the argument, else ``$DP_MODELS_MIRRORS`` (spaces or commas between
    them): http(s) URLs (checked as endpoint URLs), ``s3://`` and ``oci://`` stores, or
    directories (any other value)."""
    if mirrors is not None:
        values, source = [m.strip() for m in mirrors], name
    else:
        raw = _get(env, ENV_MIRRORS) or ""
        values, source = raw.replace(",", " ").split(), "$" + ENV_MIRRORS
    found: list[str] = []
    for value in values:
        if not value:
            raise ConfigurationError(f"{source}: an empty mirror")
        lowered = value.lower()
        if lowered.startswith("s3://"):
            parse_s3_url(value)
        elif "://" in value and not lowered.startswith(("file://", "oci://")):
            parse_endpoint(value, source=f"mirror from {source}")
        found.append(value)
    return tuple(found)


def _verify_policy(verify: str | None, env: Mapping[str, str], name: str | None) -> str:
    value = verify if verify is not None else (_get(env, ENV_VERIFY) or VERIFY_POLICIES[0])
    if value not in VERIFY_POLICIES:
        source = (name or "the argument") if verify is not None else "$" + ENV_VERIFY
        raise ConfigurationError(
            f"verify policy must be one of {', '.join(VERIFY_POLICIES)}; got {value!r}"
            f" (from {source})"
        )
    return value


def check_device(device: object, *, source: str) -> str:
    """``device`` when it is one of :data:`DEVICES` or ``cuda:N``; else a
    :class:`~dp_models._errors.ConfigurationError` naming ``source``. The one device check:
    the manager's override, a call's ``device=`` and a spec's device all go through it."""
    if isinstance(device, str) and (
        device in DEVICES
        or (device.startswith("cuda:") and device[5:].isascii() and device[5:].isdigit())
    ):
        return device
    raise ConfigurationError(
        f"{source}: device must be one of {', '.join(DEVICES)} or cuda:N, got {device!r}"
    )


def _device(device: str | None, name: str) -> str | None:
    return None if device is None else check_device(device, source=name)


def _triton_endpoints(
    endpoints: Mapping[str, str] | None, env: Mapping[str, str], name: str
) -> dict[str, str]:
    if endpoints is not None:
        for endpoint, url in endpoints.items():
            parse_endpoints(url, source=f"{name}[{endpoint!r}]")
        return dict(endpoints)
    found: dict[str, str] = {}
    for key, value in env.items():
        if not value.strip():
            continue
        if key == ENV_TRITON_URL:
            found["default"] = value.strip()
        elif key.startswith(ENV_TRITON_URL + "_"):
            found[key[len(ENV_TRITON_URL) + 1 :].lower()] = value.strip()
        else:
            continue
        parse_endpoints(value, source=f"${key}")
    return found


def triton_url_variable(endpoint: str) -> str:
    """The environment variable that gives the URL of the Triton endpoint ``endpoint``."""
    return ENV_TRITON_URL if endpoint == "default" else f"{ENV_TRITON_URL}_{endpoint.upper()}"


def _triton_replicas(
    replicas: Mapping[str, str] | None,
    endpoints: Mapping[str, str],
    env: Mapping[str, str],
    name: str,
) -> dict[str, str]:
    """The replica mode of each endpoint that sets one (:data:`REPLICA_MODES`), from the
    argument, else ``$DP_MODELS_TRITON_REPLICAS[_<NAME>]``. An endpoint in ``dns`` mode
    must have one URL: its host name is what is resolved."""
    found: dict[str, str] = {}
    sources: dict[str, str] = {}
    if replicas is not None:
        for endpoint, mode in replicas.items():
            found[endpoint], sources[endpoint] = mode, f"{name}[{endpoint!r}]"
    else:
        for key, value in env.items():
            if not value.strip():
                continue
            if key == ENV_TRITON_REPLICAS:
                endpoint = "default"
            elif key.startswith(ENV_TRITON_REPLICAS + "_"):
                endpoint = key[len(ENV_TRITON_REPLICAS) + 1 :].lower()
            else:
                continue
            found[endpoint], sources[endpoint] = value.strip().lower(), f"${key}"
    for endpoint, mode in found.items():
        if mode not in REPLICA_MODES:
            raise ConfigurationError(
                f"{sources[endpoint]}: the replicas of a Triton endpoint are found by "
                f"{' or '.join(REPLICA_MODES)}, not {mode!r} (urls: the URLs listed, separated "
                "by commas; dns: every address of the one URL's host name)"
            )
        url = endpoints.get(endpoint)
        if mode == "dns" and url is not None and len(parse_endpoints(url)) > 1:
            raise ConfigurationError(
                f"{sources[endpoint]}=dns resolves the host name of one URL, but the endpoint "
                f"{endpoint!r} lists several ({redact_endpoints(url)}): give one URL, or list "
                "the replicas without dns"
            )
    return found


def triton_replicas_variable(endpoint: str) -> str:
    """The environment variable that says how the replicas of the Triton endpoint
    ``endpoint`` are found (:data:`REPLICA_MODES`)."""
    return (
        ENV_TRITON_REPLICAS
        if endpoint == "default"
        else f"{ENV_TRITON_REPLICAS}_{endpoint.upper()}"
    )


def check_shared_memory_mode(mode: object, *, source: str) -> str:
    """``mode`` (lowercased, stripped) when it is one of :data:`SHARED_MEMORY_MODES`; else a
    :class:`~dp_models._errors.ConfigurationError` naming ``source``. The one check of a
    shared-memory mode: the settings' and :class:`~dp_models.triton.client.TritonClient`'s."""
    value = mode.strip().lower() if isinstance(mode, str) else mode
    if value in SHARED_MEMORY_MODES:
        return str(value)
    raise ConfigurationError(
        f"{source}: the shared-memory mode of a Triton endpoint is one of "
        f"{', '.join(SHARED_MEMORY_MODES)}, not {mode!r} (auto: shared memory when the server "
        "is on this host's loopback and accepts it, else HTTP; on: the server shares this "
        "host, a refusal is an error; off: HTTP only)"
    )


def _triton_shared_memory(
    modes: Mapping[str, str] | None, env: Mapping[str, str], name: str
) -> dict[str, str]:
    """The shared-memory mode of each endpoint that sets one (:data:`SHARED_MEMORY_MODES`),
    from the argument, else ``$DP_MODELS_TRITON_SHM[_<NAME>]``."""
    if modes is not None:
        return {
            endpoint: check_shared_memory_mode(mode, source=f"{name}[{endpoint!r}]")
            for endpoint, mode in modes.items()
        }
    found: dict[str, str] = {}
    for key, value in env.items():
        if not value.strip():
            continue
        if key == ENV_TRITON_SHM:
            endpoint = "default"
        elif key.startswith(ENV_TRITON_SHM + "_"):
            endpoint = key[len(ENV_TRITON_SHM) + 1 :].lower()
        else:
            continue
        found[endpoint] = check_shared_memory_mode(value, source=f"${key}")
    return found


def triton_shm_variable(endpoint: str) -> str:
    """The environment variable that sets the shared-memory mode of the Triton endpoint
    ``endpoint`` (:data:`SHARED_MEMORY_MODES`)."""
    return ENV_TRITON_SHM if endpoint == "default" else f"{ENV_TRITON_SHM}_{endpoint.upper()}"


def check_triton_option(name: str, value: object, *, source: str) -> float:
    """``value`` of the Triton client option ``name``, checked: ``retries`` a whole number
    >= 0; ``connection_timeout_s`` and ``network_timeout_s`` seconds > 0; ``ready_timeout_s``
    and ``backoff_s`` seconds >= 0 (0: no waiting). Numbers may be given as strings.
    Raises :class:`ConfigurationError` naming ``source``."""
    if name not in TRITON_CLIENT_DEFAULTS:
        raise ConfigurationError(
            f"{source}: unknown Triton client option {name!r} (the options: "
            f"{', '.join(TRITON_CLIENT_DEFAULTS)})"
        )
    number: float | None = None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    if name == "retries":
        if number is None or not number.is_integer() or number < 0:
            raise ConfigurationError(
                f"{source}: retries must be a whole number >= 0, got {value!r}"
            )
        return int(number)
    positive = name in ("connection_timeout_s", "network_timeout_s")
    if number is None or not math.isfinite(number) or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{source}: {name} must be a finite number of seconds {bound}, got {value!r}"
        )
    return number


def _parse_timeouts(text: str, *, source: str) -> dict[str, float]:
    options: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _TIMEOUT_KEYS:
            raise ConfigurationError(
                f"{source}={text!r}: expected comma-separated key=value pairs such as "
                f"'ready=10,network=30' (keys: {', '.join(_TIMEOUT_KEYS)}; seconds, and a "
                "count for retries)"
            )
        name = _TIMEOUT_KEYS[key]
        options[name] = check_triton_option(name, value, source=f"{source} ({key}=)")
    return options


def _triton_options(
    options: Mapping[str, Mapping[str, object]] | None, env: Mapping[str, str], name: str
) -> dict[str, dict[str, float]]:
    if options is not None:
        return {
            endpoint: {
                k: check_triton_option(k, v, source=f"{name}[{endpoint!r}]")
                for k, v in given.items()
            }
            for endpoint, given in options.items()
        }
    found: dict[str, dict[str, float]] = {}
    for key, value in env.items():
        if not value.strip():
            continue
        if key == ENV_TRITON_TIMEOUT:
            endpoint = "default"
        elif key.startswith(ENV_TRITON_TIMEOUT + "_"):
            endpoint = key[len(ENV_TRITON_TIMEOUT) + 1 :].lower()
        else:
            continue
        found[endpoint] = _parse_timeouts(value.strip(), source=f"${key}")
    return found


def triton_timeout_variable(endpoint: str) -> str:
    """The environment variable that sets the timeouts of the Triton endpoint ``endpoint``."""
    return (
        ENV_TRITON_TIMEOUT if endpoint == "default" else f"{ENV_TRITON_TIMEOUT}_{endpoint.upper()}"
    )


# -- one setting alone (documented helpers; the same code as Settings.resolve) -------------


def resolve_catalog_dir(catalog: PathArg | None = None) -> Path:
    """The catalog directory: ``catalog``, else ``$DP_MODELS_CATALOG``, else the packaged one."""
    return _catalog_dir(catalog, os.environ)


def resolve_lock_path(catalog_dir: Path, lock: PathArg | None = None) -> Path:
    """The lock: ``lock``, else ``$DP_MODELS_LOCK``, else ``catalog.lock.json`` in the catalog."""
    return _lock_path(catalog_dir, lock, os.environ)


def resolve_lock_key(key: PathArg | None = None) -> Path | None:
    """The public key the lock must be signed with: ``key``, else ``$DP_MODELS_LOCK_KEY``,
    else None (signatures are not checked). See :mod:`dp_models._signing`."""
    return _lock_key(key, os.environ)


def resolve_models_root(
    root: PathArg | None = None, *, origin: str = "the models_root argument"
) -> Path:
    """MODELS_ROOT: ``root``, else ``$DP_MODELS_ROOT``, else ``$MODELS_ROOT``; never guessed.

    Returns the absolute, symlink-resolved directory (of several roots, the last: the
    writable one). Raises :class:`ModelsRootError` when nothing is set or a directory does
    not exist. ``origin`` names where ``root`` came from, for the message.
    """
    roots, problem = _models_roots(root, os.environ, origin=origin)
    if not roots:
        raise ModelsRootError(_NOT_SET)
    if problem is not None:
        raise ModelsRootError(problem, path=roots[-1])
    return roots[-1]


def resolve_hf_cache(cache: PathArg | None = None) -> Path:
    """The Hugging Face hub cache read for ``huggingface`` snapshots: ``cache``, else
    ``$DP_MODELS_HF_CACHE``, else ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    return _hf_cache(cache, os.environ)


def resolve_cache_dir(cache_dir: PathArg | None = None) -> Path:
    """The per-user digest cache: ``cache_dir``, else ``$DP_MODELS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dp_models``, else ``~/.cache/dp_models``."""
    return _cache_dir(cache_dir, os.environ)


def resolve_triton_endpoints(endpoints: Mapping[str, str] | None = None) -> dict[str, str]:
    """Triton endpoint URLs by name: ``endpoints``, else the environment:
    ``$DP_MODELS_TRITON_URL`` is the endpoint named ``default`` and
    ``$DP_MODELS_TRITON_URL_<NAME>`` the one named ``<name>`` (lowercased).

    Each URL must be ``http(s)://HOST[:PORT][/PATH]``, optionally with credentials
    (:func:`~dp_models._urls.parse_endpoint`); anything else, a scheme-less ``host:8000``
    included, is a :class:`ConfigurationError` that shows the value with credentials masked.
    A value may list the URLs of several replicas, separated by commas
    (:func:`~dp_models._urls.parse_endpoints`: each checked, the wrong one named)."""
    return _triton_endpoints(endpoints, os.environ, "triton_endpoints")


def resolve_triton_options(
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, dict[str, float]]:
    """Triton client options (timeouts, retries) by endpoint name: ``options`` (endpoint
    name -> {option name: value}, the names of :data:`TRITON_CLIENT_DEFAULTS`), else the
    environment: ``$DP_MODELS_TRITON_TIMEOUT`` for the endpoint named ``default`` and
    ``$DP_MODELS_TRITON_TIMEOUT_<NAME>`` for ``<name>`` (lowercased), each a list such as
    ``connect=2,network=30,ready=10,retries=1,backoff=0.1``. What is not set keeps the
    client's default. Every value is checked here (:func:`check_triton_option`)."""
    return _triton_options(options, os.environ, "triton_timeouts")


def resolve_oci_plain_http() -> tuple[str, ...]:
    """The registry hosts ``$DP_MODELS_OCI_PLAIN_HTTP`` lets pull and push reach over plain
    http (``HOST`` or ``HOST:PORT``, lowercased; spaces or commas between them)."""
    return _oci_plain_http(os.environ)


def _oci_plain_http(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _get(env, ENV_OCI_PLAIN_HTTP) or ""
    return tuple(v.lower() for v in raw.replace(",", " ").split())


def resolve_docker_config() -> Path:
    """The Docker config file holding registry credentials: ``$DOCKER_CONFIG/config.json``,
    else ``~/.docker/config.json`` (what ``docker login`` writes)."""
    return _docker_config(os.environ)


def _docker_config(env: Mapping[str, str]) -> Path:
    directory = _get(env, ENV_DOCKER_CONFIG)
    return Path(directory or "~/.docker").expanduser() / "config.json"


def resolve_triton_replicas(replicas: Mapping[str, str] | None = None) -> dict[str, str]:
    """How each Triton endpoint's replicas are found: ``replicas`` (endpoint name -> ``urls``
    or ``dns``), else ``$DP_MODELS_TRITON_REPLICAS`` for the endpoint named ``default`` and
    ``$DP_MODELS_TRITON_REPLICAS_<NAME>`` for ``<name>`` (lowercased); an endpoint not listed
    is ``urls``. Checked against the endpoints' URLs from the environment (``dns`` takes
    one URL)."""
    endpoints = _triton_endpoints(None, os.environ, "triton_endpoints")
    return _triton_replicas(replicas, endpoints, os.environ, "triton_replicas")


def resolve_triton_shared_memory(modes: Mapping[str, str] | None = None) -> dict[str, str]:
    """Whether each Triton endpoint's clients use system shared memory: ``modes`` (endpoint
    name -> ``auto``, ``on`` or ``off``), else ``$DP_MODELS_TRITON_SHM`` for the endpoint
    named ``default`` and ``$DP_MODELS_TRITON_SHM_<NAME>`` for ``<name>`` (lowercased); an
    endpoint not listed is ``auto``. A bad mode is a :class:`ConfigurationError` naming the
    argument or variable."""
    return _triton_shared_memory(modes, os.environ, "triton_shared_memory")


def _native_logs(env: Mapping[str, str]) -> str:
    raw = _get(env, ENV_NATIVE_LOGS) or NATIVE_LOG_MODES[0]
    if raw.lower() not in NATIVE_LOG_MODES:
        raise ConfigurationError(
            f"${ENV_NATIVE_LOGS} must be one of {', '.join(NATIVE_LOG_MODES)}; got {raw!r}"
        )
    return raw.lower()


def resolve_verify_policy(verify: str | None = None) -> str:
    """``verify``, else ``$DP_MODELS_VERIFY``, else ``"cached"``; validated."""
    return _verify_policy(verify, os.environ, None)
