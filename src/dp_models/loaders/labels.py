"""Labels loader: the class names of a classifier, as a spec of their own.

A label list is a spec (role ``labels``, ``loader: labels``) whose one artifact is a ``txt``
or ``json`` file. Every spec whose outputs are classes lists it under ``requires``:
``places365_resnet50`` and its three Triton specs require ``places365_categories``,
``slowfast_r50`` requires ``kinetics400_categories``. So the file is pinned once, verified
once and shared, never copied into each spec. Loading it gives :class:`Labels`: a
``tuple[str, ...]`` of names by class index that also says which spec it came from.

The file is read strictly; what does not fit is a :class:`~dp_models._errors.LabelsError`:

``txt``
    One class a line: ``name`` (the line order is the index) or ``name index`` (Places365's
    ``categories_places365.txt``: ``/a/abbey 0``), every line of one kind. UTF-8 (a BOM is
    allowed); a blank line is refused (it would shift every index after it), the final
    newline is not one.
``json``
    A list of names in index order; or an object of ``name: index`` (PyTorchVideo's
    ``kinetics_classnames.json``) or of ``"index": name``.

The indices must be ``0 .. n-1``, each once; ``n`` must be the spec's ``count``; each name,
after ``name_pattern``, must be non-empty. A model that requires labels checks that their
count is its number of classes (the in-process loaders against ``num_classes``; the
Triton client against its first output's last dimension).

loader_args: :class:`LabelsArgs`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field, field_validator

from .._errors import JsonRejectedError, LabelsError
from .._json import load_json
from .._spec import Spec
from .base import LoadContext, Loader, LoaderArgs

__all__ = ["ROLE", "Labels", "LabelsArgs", "LabelsLoader", "check_count", "parse_labels"]

#: The ``role`` of a labels spec: what a model that requires one looks for.
ROLE = "labels"
_NAME = "labels"
_FORMATS = ("txt", "json")
_INDEXED_LINE = re.compile(r"(\S.*?)\s+(\d+)")
_INDEX_KEY = re.compile(r"0|[1-9]\d*")


class Labels(tuple[str, ...]):
    """Class names by index (a ``tuple[str, ...]``), from the labels spec ``spec``."""

    spec: str

    def __new__(cls, names: Iterable[str], *, spec: str) -> Labels:
        made = super().__new__(cls, names)
        made.spec = spec
        return made

    def __getnewargs_ex__(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (tuple(self),), {"spec": self.spec}

    def __repr__(self) -> str:
        shown = ", ".join(repr(n) for n in self[:3])
        more = ", ..." if len(self) > 3 else ""
        return f"Labels({len(self)} from {self.spec!r}: {shown}{more})"


class LabelsArgs(LoaderArgs):
    """``loader_args`` of ``labels``."""

    count: Annotated[int, Field(ge=1)] = Field(
        description="how many classes the file names: any other count is a LabelsError"
    )
    name_pattern: str | None = Field(
        default=None,
        description="a regular expression every name must match in full; its first group is "
        "the name kept (Places365: '/[a-z]/(.+)' turns '/a/arena/hockey' into "
        "'arena/hockey'; PyTorchVideo's Kinetics names: '\"?([^\"]+)\"?' removes the quotes)",
    )

    @field_validator("name_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        if compiled.groups < 1:
            raise ValueError("needs a group, '(...)': the part of each name that is kept")
        return value


def _problem(spec: Spec, message: str, **counts: int) -> LabelsError:
    return LabelsError(
        f"spec {spec.name!r}: its label list {message}; the file passed its digest check, so "
        "the pinned artifact itself does not fit the spec",
        spec=spec.name,
        loader=_NAME,
        labels=spec.name,
        **counts,
    )


def _numbered(spec: Spec, numbered: Mapping[int, str], total: int) -> list[str]:
    """``numbered`` (index -> name, from ``total`` entries) as a list by index."""
    if len(numbered) != total or sorted(numbered) != list(range(total)):
        raise _problem(spec, f"does not number its {total} classes 0 to {total - 1} once each")
    return [numbered[i] for i in range(total)]


def _from_txt(spec: Spec, text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    blank = next((n for n, line in enumerate(lines, 1) if not line), None)
    if blank is not None:
        raise _problem(
            spec, f"has a blank line (line {blank}): it would shift every index after it"
        )
    matches = [_INDEXED_LINE.fullmatch(line) for line in lines]
    if lines and all(matches):
        return _numbered(spec, {int(m.group(2)): m.group(1) for m in matches if m}, len(lines))
    return lines


def _from_json(spec: Spec, raw: bytes) -> list[str]:
    try:
        data = load_json(raw)
    except JsonRejectedError as exc:
        raise _problem(spec, f"cannot be read: {exc}") from None
    if isinstance(data, list):
        if not all(isinstance(n, str) for n in data):
            raise _problem(spec, "is a JSON list with entries that are not strings")
        return list(data)
    if isinstance(data, dict):
        if data and all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
            return _numbered(spec, {v: k for k, v in data.items()}, len(data))
        if all(_INDEX_KEY.fullmatch(k) and isinstance(v, str) for k, v in data.items()):
            return _numbered(spec, {int(k): v for k, v in data.items()}, len(data))
        raise _problem(
            spec,
            'is a JSON object that is neither {"name": index, ...} nor {"index": "name", ...}',
        )
    raise _problem(spec, f"is a JSON {type(data).__name__}, not a list or an object")


def parse_labels(spec: Spec, raw: bytes, fmt: str, args: LabelsArgs) -> Labels:
    """The names the ``fmt`` (``txt`` or ``json``) file ``raw`` gives by class index, as the
    labels spec ``spec`` with ``args`` reads them (see the module doc); a LabelsError if
    they do not fit."""
    if fmt == "json":
        names = _from_json(spec, raw)
    else:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _problem(spec, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        names = _from_txt(spec, text)
    if len(names) != args.count:
        raise _problem(
            spec,
            f"names {len(names)} classes, but loader_args.count is {args.count}",
            expected=args.count,
            actual=len(names),
        )
    if args.name_pattern is not None:
        pattern = re.compile(args.name_pattern)
        kept = []
        for index, name in enumerate(names):
            found = pattern.fullmatch(name)
            if found is None:
                raise _problem(
                    spec,
                    f"has the name {name!r} (class {index}), which loader_args.name_pattern "
                    f"{args.name_pattern!r} does not match",
                )
            kept.append(found.group(1) or "")
        names = kept
    empty = next((i for i, name in enumerate(names) if not name.strip()), None)
    if empty is not None:
        raise _problem(spec, f"has an empty name (class {empty})")
    return Labels(names, spec=spec.name)


def check_count(labels: Labels, classes: int, *, spec: str, loader: str, what: str) -> Labels:
    """``labels`` when there are ``classes`` of them, else a LabelsError: the model ``spec``
    (its ``what``, e.g. ``loader_args.num_classes``) and the labels it requires disagree."""
    if len(labels) != classes:
        raise LabelsError(
            f"spec {spec!r} has {classes} classes ({what}), but the labels spec it requires, "
            f"{labels.spec!r}, names {len(labels)}: they do not belong together (fix "
            "requires, or the count of one of the two specs)",
            spec=spec,
            loader=loader,
            labels=labels.spec,
            expected=classes,
            actual=len(labels),
        )
    return labels


class LabelsLoader(Loader[LabelsArgs]):
    """``loader: labels``: the :class:`Labels` of the spec's ``txt`` or ``json`` artifact."""

    name = _NAME
    #: The parsing is dp_models' own: its version is what models_used records.
    framework = "dp-models"
    extra = "all"  # nothing to install: there is no framework
    args_model = LabelsArgs
    precisions = ("fp32",)

    def load(self, ctx: LoadContext) -> Labels:
        args = self.args(ctx)
        fmt = next((a.format for a in ctx.spec.artifacts if a.format in _FORMATS), "txt")
        return parse_labels(ctx.spec, ctx.read_bytes(*_FORMATS), fmt, args)
