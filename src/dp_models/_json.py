"""A hardened JSON reader for the small files dp_models reads whole (the lock, digest-cache
entries).

``json.loads`` recurses once per nesting level, so a file of 100,000 ``[`` ends in a bare
``RecursionError``; an integer of more than 4,300 digits is a ``ValueError`` that advises
raising an interpreter limit. This reader measures the nesting before parsing and refuses
anything deeper than :data:`MAX_NESTING`, refuses integers longer than
:data:`MAX_INT_DIGITS` digits and ``NaN`` / ``Infinity`` (not JSON), and reads UTF-8 only.
Every refusal is a :class:`~dp_models._errors.JsonRejectedError` (a ``ValueError``) that
says why.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from ._errors import JsonRejectedError

__all__ = ["MAX_INT_DIGITS", "MAX_NESTING", "load_json"]

#: The lock nests three levels; anything near this is hostile.
MAX_NESTING = 64

#: Sizes in bytes need 20 digits; anything near this is hostile.
MAX_INT_DIGITS = 100

# A string literal (its closing quote optional, so that an unclosed one never backtracks).
_STRING = re.compile(rb'"(?:[^"\\]+|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
for _b in b"[{":
    _STEP[_b] = 1
for _b in b"]}":
    _STEP[_b] = -1


def nesting(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in UTF-8 JSON ``raw``, without parsing it
    (string literals skipped; in UTF-8, bracket and quote bytes are always characters)."""
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonRejectedError(f"an integer of {digits} digits; at most {MAX_INT_DIGITS} are read")
    return int(text)


def _constant(name: str) -> Any:
    raise JsonRejectedError(f"{name} is not a JSON value")


def load_json(raw: bytes) -> Any:
    """Parse UTF-8 JSON ``raw``. Raises :class:`JsonRejectedError` with a readable reason."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRejectedError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if nesting(raw) > MAX_NESTING:
        raise JsonRejectedError(f"arrays and objects nested more than {MAX_NESTING} levels deep")
    try:
        return json.loads(text, parse_int=_int, parse_constant=_constant)
    except JsonRejectedError:
        raise
    except ValueError as exc:
        raise JsonRejectedError(f"not valid JSON ({exc})") from None
