"""Where dp_models finds its catalog, its root and its cache.

One resolution order everywhere: the argument, then the environment, then the packaged
default. Every environment variable dp_models reads is named here and nowhere else.
"""

from __future__ import annotations

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
    "ENV_TRITON_URL",
    "ENV_VARS",
    "ENV_VERIFY",
    "FRAMEWORK_ENV_VARS",
    "LOCK_FILENAME",
    "VERIFY_POLICIES",
    "packaged_catalog_dir",
    "resolve_cache_dir",
    "resolve_catalog_dir",
    "resolve_lock_key",
    "resolve_lock_path",
    "resolve_models_root",
    "resolve_triton_endpoints",
    "resolve_verify_policy",
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


def resolve_verify_policy(verify: str | None = None) -> str:
    """``verify``, else ``$DP_MODELS_VERIFY``, else ``"cached"``; validated."""
    value = verify if verify is not None else (_env(ENV_VERIFY) or "cached")
    if value not in VERIFY_POLICIES:
        raise ConfigurationError(
            f"verify policy must be one of {', '.join(VERIFY_POLICIES)}; got {value!r}"
            f" (from {'the argument' if verify is not None else '$' + ENV_VERIFY})"
        )
    return value
