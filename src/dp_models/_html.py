"""HTML for notebooks: the ``_repr_html_`` of the catalog, a model handle and a doctor
report are built from these few pieces.

Every value is escaped here, with :func:`html.escape` (quotes included), so a spec's text
can never inject markup; what the callers pass in is plain text, already free of secrets
(endpoint URLs masked with :func:`dp_models._urls.redact`). The markup is plain tables,
styled by whatever notebook shows them.

>>> esc('<img src="x">'), code("a&b")
('&lt;img src=&quot;x&quot;&gt;', '<code>a&amp;b</code>')
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

__all__ = ["Markup", "code", "esc", "pairs", "short_digest", "table", "titled"]

_LEFT = ' style="text-align:left"'


class Markup(str):
    """Text that is already HTML (built by this module from escaped pieces)."""


def esc(value: object) -> str:
    """``value`` as escaped HTML text; None is an empty cell, Markup passes as it is."""
    if isinstance(value, Markup):
        return value
    return "" if value is None else html.escape(str(value), quote=True)


def code(value: object, *, title: str | None = None) -> Markup:
    """``value`` in a ``<code>`` element (``title``: shown on hover)."""
    hover = f' title="{esc(title)}"' if title else ""
    return Markup(f"<code{hover}>{esc(value)}</code>")


def short_digest(digest: str | None, *, missing: str = "unpinned") -> Markup:
    """The first 12 hex digits of ``digest`` with the whole digest as the hover title."""
    if not digest:
        return Markup(f"<em>{esc(missing)}</em>")
    return code(f"{digest[:12]}…", title=digest)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table with ``headers`` over ``rows``; each cell is plain text (escaped) or
    :class:`Markup` built here (:func:`code`, :func:`short_digest`)."""
    head = "".join(f"<th{_LEFT}>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td{_LEFT}>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pairs(rows: Iterable[tuple[str, object]]) -> str:
    """A two-column table of (field, value) rows, without a header."""
    body = "".join(f"<tr><th{_LEFT}>{esc(k)}</th><td{_LEFT}>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def titled(title: object, *parts: str, notes: Iterable[object] = ()) -> str:
    """A block: ``title`` in bold over ``parts`` (HTML built here), then ``notes``, one
    paragraph each (escaped)."""
    paragraphs = "".join(f"<p>{esc(n)}</p>" for n in notes)
    return f"<div><p><strong>{esc(title)}</strong></p>{''.join(parts)}{paragraphs}</div>"
