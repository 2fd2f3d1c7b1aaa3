"""Test assertions on stamped artifacts: does a file a processor wrote verify against the
catalog and lock of the manager it was given?

>>> from dp_models.testing import assert_stamps_verify
>>> assert_stamps_verify(out / "emotions.json", dp_models_manager)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .._errors import ProvenanceError
from .._provenance import StampReport, check_artifact

if TYPE_CHECKING:
    from .._manager import ModelManager

__all__ = ["assert_stamps_verify"]


def assert_stamps_verify(path: str | os.PathLike[str], manager: ModelManager) -> StampReport:
    """The :class:`~dp_models._provenance.StampReport` of the stamps written in ``path``
    (``.json`` or ``.npz``, read with :func:`~dp_models._provenance.read_stamps`) checked
    against ``manager.catalog`` and its lock, as ``dp-models verify-artifact`` checks them
    (inputs looked for beside the file too).

    Raises :class:`AssertionError` with the report's text when it is not ok, when the file
    carries no readable stamps (the :class:`~dp_models._errors.ProvenanceError` chained),
    and when its stamps record another catalog or lock than the manager's
    (``catalog_used``: the file was stamped by another manager than the one the test
    handed the processor). Stamps that record no catalog are checked as they are."""
    try:
        report = check_artifact(path, manager.catalog)
    except ProvenanceError as exc:
        raise AssertionError(f"{path}: its stamps cannot be checked: {exc}") from exc
    if not report.ok:
        raise AssertionError(
            f"{path}: the stamps do not verify against the manager's catalog "
            f"{manager.catalog.directory} and lock {manager.catalog.lock.path}:\n"
            + report.text(str(path))
        )
    if report.catalog is not None and not report.catalog.same:
        raise AssertionError(
            f"{path}: stamped by a manager on another catalog or lock than this one's "
            f"({manager.catalog.directory}), though its models verify against it too: does "
            "the processor make its own ModelManager instead of using the one it was "
            "given?\n" + report.text(str(path))
        )
    return report
