"""Fake label lists for ``labels``: ``count`` names in the upstream file's layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..._spec import Spec
from ...loaders.labels import LabelsArgs
from . import write_artifacts

__all__ = ["fake_label", "make_labels"]

#: How a fake name is written in the file, tried in order: Places365's ``/a/abbey``, a
#: quoted name as in PyTorchVideo's Kinetics list, a plain name.
_STYLES = ("/f/{}", '"{}"', "{}")


def fake_label(index: int) -> str:
    """The name a fake label list gives class ``index``: ``fake_class_000`` ..."""
    return f"fake_class_{index:03d}"


def _written(args: LabelsArgs) -> tuple[list[str], dict[str, Any] | None]:
    """The names as the file holds them: the first style that ``name_pattern`` turns into
    :func:`fake_label`'s names; else plain names, and no pattern in the fake catalog."""
    names = [fake_label(i) for i in range(args.count)]
    if args.name_pattern is None:
        return names, None
    pattern = re.compile(args.name_pattern)
    for style in _STYLES:
        written = [style.format(n) for n in names]
        found = [pattern.fullmatch(w) for w in written]
        if all(m is not None and m.group(1) == n for m, n in zip(found, names, strict=True)):
            return written, None
    return names, {"name_pattern": None}


def make_labels(spec: Spec, root: Path) -> dict[str, Any] | None:
    """``count`` names ``fake_class_000`` ... as the spec's file lays them out: a ``txt``
    artifact gets ``name index`` lines (``/f/fake_class_000 0`` where the name pattern is
    Places365's), a ``json`` one a ``{"name": index}`` object (``"\\"fake_class_000\\""``
    keys where the pattern takes quotes off, as PyTorchVideo's Kinetics list has them)."""
    args = LabelsArgs.model_validate(spec.loader_args)
    written, override = _written(args)
    formats = {root / a.path: a.format for a in spec.artifacts}

    def write(path: Path) -> None:
        if formats[path] == "json":
            text = json.dumps({name: i for i, name in enumerate(written)}, indent=1) + "\n"
        else:
            text = "".join(f"{name} {i}\n" for i, name in enumerate(written))
        path.write_text(text, encoding="utf-8")

    write_artifacts(spec, root, ("txt", "json"), write)
    return override
