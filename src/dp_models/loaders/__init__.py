"""In-process loaders: one framework per module, each a :class:`Loader` with a declared
``loader_args`` model.

Built-in loaders live one framework per module under ``dp_models.loaders`` and import
their framework only when they load. Which loader a spec's ``loader`` names is decided by
the loader registry (:mod:`dp_models._registry`): loaders given to it, the built-in table,
then the ``dp_models.loaders`` entry-point group, through which third-party packages add
loaders::

    [project.entry-points."dp_models.loaders"]
    my_loader = "my_package.loaders:MyLoader"

The entry point names a :class:`Loader` subclass (or an instance). :func:`register_loader`
adds one to the process-wide registry at run time (notebooks); a
:class:`~dp_models.ModelManager` can be given its own set instead (``loaders=``).
"""

from __future__ import annotations

from .._registry import LOADERS_GROUP, LoaderRegistry, default_loaders
from .base import LoadContext, Loader, LoaderArgs, NoArgs, require

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadContext",
    "Loader",
    "LoaderArgs",
    "LoaderRegistry",
    "NoArgs",
    "get_loader",
    "loader_names",
    "register_loader",
    "require",
]

ENTRY_POINT_GROUP = LOADERS_GROUP


def loader_names() -> list[str]:
    """Every loader name the process-wide registry knows: built in, registered, and from
    entry points."""
    return default_loaders().names()


def register_loader(name: str, loader: Loader[LoaderArgs] | type, *, replace: bool = False) -> None:
    """Register ``loader`` (an instance, or a class to instantiate) under ``name`` in the
    process-wide registry; refuses to shadow one unless ``replace``. A test gives its
    manager its own loaders instead (``ModelManager(loaders={name: loader})``)."""
    default_loaders().register(name, loader, replace=replace)


def get_loader(name: str, *, spec: str | None = None) -> Loader[LoaderArgs]:
    """The loader registered under ``name`` in the process-wide registry. Raises
    :class:`~dp_models._errors.LoaderNotFoundError`."""
    return default_loaders().get(name, spec=spec)
