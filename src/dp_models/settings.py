"""Where dp_models finds its catalog, its root and its cache.

One resolution order everywhere: the argument, then the environment, then the packaged
default. Every environment variable dp_models reads is named here and nowhere else.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from .errors import ConfigurationError, ModelsRootError
from .urls import parse_endpoint

__all__ = [
    "ENV_CACHE_DIR",
    "ENV_CATALOG",
    "ENV_LOCK",
    "ENV_LOCK_KEY",
    "ENV_ROOT",
    "ENV_ROOT_ALIAS",
    "ENV_TRITON_TIMEOUT",
    "ENV_TRITON_URL",
    "ENV_VARS",
    "ENV_VERIFY",
    "FRAMEWORK_ENV_VARS",
    "LOCK_FILENAME",
    "TRITON_CLIENT_DEFAULTS",
    "VERIFY_POLICIES",
    "check_triton_option",
    "packaged_catalog_dir",
    "resolve_cache_dir",
    "resolve_catalog_dir",
    "resolve_lock_key",
    "resolve_lock_path",
    "resolve_models_root",
    "resolve_triton_endpoints",
    "resolve_triton_options",
    "resolve_verify_policy",
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
ENV_VERIFY = "DP_MODELS_VERIFY"
#: URL of the default Triton endpoint; ``DP_MODELS_TRITON_URL_<NAME>`` names another one.
ENV_TRITON_URL = "DP_MODELS_TRITON_URL"
#: Timeouts and retries of the default Triton endpoint's clients (``connect=5,network=60``);
#: ``DP_MODELS_TRITON_TIMEOUT_<NAME>`` those of another one.
ENV_TRITON_TIMEOUT = "DP_MODELS_TRITON_TIMEOUT"

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
    ENV_TRITON_URL,
    ENV_TRITON_TIMEOUT,
    *FRAMEWORK_ENV_VARS,
)

#: File name of the lock beside a catalog directory.
LOCK_FILENAME = "catalog.lock.json"

#: ``cached``: trust a digest-cache entry whose file identity and stat still match;
#: ``always``: hash every artifact on every verification.
VERIFY_POLICIES = ("cached", "always")


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def packaged_catalog_dir() -> Path:
    """The catalog shipped inside the package (``dp_models/spec_catalog``)."""
    return Path(str(resources.files("dp_models").joinpath("spec_catalog")))


def resolve_catalog_dir(catalog: str | os.PathLike[str] | None = None) -> Path:
    """The catalog directory: ``catalog``, else ``$DP_MODELS_CATALOG``, else the packaged one."""
    if catalog is not None:
        return Path(catalog).expanduser()
    env = _env(ENV_CATALOG)
    return Path(env).expanduser() if env else packaged_catalog_dir()


def resolve_lock_path(catalog_dir: Path, lock: str | os.PathLike[str] | None = None) -> Path:
    """The lock: ``lock``, else ``$DP_MODELS_LOCK``, else ``catalog.lock.json`` in the catalog."""
    if lock is not None:
        return Path(lock).expanduser()
    env = _env(ENV_LOCK)
    return Path(env).expanduser() if env else catalog_dir / LOCK_FILENAME


def resolve_lock_key(key: str | os.PathLike[str] | None = None) -> Path | None:
    """The public key the lock must be signed with: ``key``, else ``$DP_MODELS_LOCK_KEY``,
    else None (signatures are not checked). See :mod:`dp_models.signing`."""
    if key is not None:
        return Path(key).expanduser()
    env = _env(ENV_LOCK_KEY)
    return Path(env).expanduser() if env else None


def resolve_models_root(
    root: str | os.PathLike[str] | None = None, *, origin: str = "the models_root argument"
) -> Path:
    """MODELS_ROOT: ``root``, else ``$DP_MODELS_ROOT``, else ``$MODELS_ROOT``; never guessed.

    Returns the absolute, symlink-resolved directory. Raises :class:`ModelsRootError`
    when nothing is set or the directory does not exist. ``origin`` names where ``root``
    came from, for the message.
    """
    if root is not None:
        raw = str(root)
    elif (env := _env(ENV_ROOT)) is not None:
        raw, origin = env, f"${ENV_ROOT}"
    elif (env := _env(ENV_ROOT_ALIAS)) is not None:
        raw, origin = env, f"${ENV_ROOT_ALIAS}"
    else:
        raise ModelsRootError(
            "MODELS_ROOT is not set: dp_models does not guess where model weights live. "
            f"Pass models_root=..., or set {ENV_ROOT}=/path/to/models (or {ENV_ROOT_ALIAS}), "
            "or give --root to the dp-models command."
        )
    path = Path(raw).expanduser()
    if not path.exists():
        raise ModelsRootError(
            f"MODELS_ROOT {path} (from {origin}) does not exist. Create it and provision "
            "the artifacts, or point it at the provisioned directory.",
            path=path,
        )
    if not path.is_dir():
        raise ModelsRootError(f"MODELS_ROOT {path} (from {origin}) is not a directory.", path=path)
    return path.resolve()


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The per-user digest cache: ``cache_dir``, else ``$DP_MODELS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dp_models``, else ``~/.cache/dp_models``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = _env(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = _env("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "dp_models"


def resolve_triton_endpoints(endpoints: Mapping[str, str] | None = None) -> dict[str, str]:
    """Triton endpoint URLs by name: ``endpoints``, else the environment:
    ``$DP_MODELS_TRITON_URL`` is the endpoint named ``default`` and
    ``$DP_MODELS_TRITON_URL_<NAME>`` the one named ``<name>`` (lowercased).

    Each URL must be ``http(s)://HOST[:PORT][/PATH]``, optionally with credentials
    (:func:`~dp_models.urls.parse_endpoint`); anything else, a scheme-less ``host:8000``
    included, is a :class:`ConfigurationError` that shows the value with credentials masked."""
    if endpoints is not None:
        for name, url in endpoints.items():
            parse_endpoint(url, source=f"triton_endpoints[{name!r}]")
        return dict(endpoints)
    found: dict[str, str] = {}
    for key, value in os.environ.items():
        if not value.strip():
            continue
        if key == ENV_TRITON_URL:
            found["default"] = value.strip()
        elif key.startswith(ENV_TRITON_URL + "_"):
            found[key[len(ENV_TRITON_URL) + 1 :].lower()] = value.strip()
        else:
            continue
        parse_endpoint(value, source=f"${key}")
    return found


def triton_url_variable(endpoint: str) -> str:
    """The environment variable that gives the URL of the Triton endpoint ``endpoint``."""
    return ENV_TRITON_URL if endpoint == "default" else f"{ENV_TRITON_URL}_{endpoint.upper()}"


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


def resolve_triton_options(
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, dict[str, float]]:
    """Triton client options (timeouts, retries) by endpoint name: ``options`` (endpoint
    name -> {option name: value}, the names of :data:`TRITON_CLIENT_DEFAULTS`), else the
    environment: ``$DP_MODELS_TRITON_TIMEOUT`` for the endpoint named ``default`` and
    ``$DP_MODELS_TRITON_TIMEOUT_<NAME>`` for ``<name>`` (lowercased), each a list such as
    ``connect=2,network=30,ready=10,retries=1,backoff=0.1``. What is not set keeps the
    client's default. Every value is checked here (:func:`check_triton_option`)."""
    if options is not None:
        return {
            name: {
                k: check_triton_option(k, v, source=f"triton_timeouts[{name!r}]")
                for k, v in given.items()
            }
            for name, given in options.items()
        }
    found: dict[str, dict[str, float]] = {}
    for key, value in os.environ.items():
        if not value.strip():
            continue
        if key == ENV_TRITON_TIMEOUT:
            name = "default"
        elif key.startswith(ENV_TRITON_TIMEOUT + "_"):
            name = key[len(ENV_TRITON_TIMEOUT) + 1 :].lower()
        else:
            continue
        found[name] = _parse_timeouts(value.strip(), source=f"${key}")
    return found


def triton_timeout_variable(endpoint: str) -> str:
    """The environment variable that sets the timeouts of the Triton endpoint ``endpoint``."""
    return (
        ENV_TRITON_TIMEOUT if endpoint == "default" else f"{ENV_TRITON_TIMEOUT}_{endpoint.upper()}"
    )


def resolve_verify_policy(verify: str | None = None) -> str:
    """``verify``, else ``$DP_MODELS_VERIFY``, else ``"cached"``; validated."""
    value = verify if verify is not None else (_env(ENV_VERIFY) or "cached")
    if value not in VERIFY_POLICIES:
        raise ConfigurationError(
            f"verify policy must be one of {', '.join(VERIFY_POLICIES)}; got {value!r}"
            f" (from {'the argument' if verify is not None else '$' + ENV_VERIFY})"
        )
    return value
