"""Token ids to text for the specs that answer with token ids (the Whisper specs), with
the tokenizer the spec requires (``shared_tokenizer_v1``).

>>> from dp_models.triton.whisper import decode_batch, segments
>>> asr = mm.get("whisper_small_triton").client()                # doctest: +SKIP
>>> ids = asr.infer({"input_features": features})["token_ids"]   # doctest: +SKIP
>>> texts = decode_batch(asr, ids)                               # doctest: +SKIP
>>> segments(asr, ids[0], offset=30.0)                           # doctest: +SKIP
[Segment(start=30.0, end=32.4, text=' Hello world.', token_ids=(...))]

Negative ids (padding) are dropped and a sequence ends at its first ``<|endoftext|>``.
The ``<|...|>`` markers the tokenizer knows (task, language, timestamps) and its other
special tokens are left out of the text.

No id is dropped silently. An id the tokenizer does not know is either a Whisper
timestamp or an error: Whisper numbers its timestamp tokens right after
``<|notimestamps|>``, one every 0.02 s from 0.00 to 30.00, and a tokenizer file may lack
them (then the model's timestamp ids are past its vocabulary). With ``timestamps="raise"``
(the default) such ids are an :class:`~dp_models._errors.UnknownTokenError` that says how
to choose; with ``timestamps="decode"`` every timestamp, known or not, is written into
the text as ``<|1.08|>`` (as OpenAI Whisper's ``decode_with_timestamps`` writes them);
:func:`segments` returns timed segments. Any other id the tokenizer does not know is
always an ``UnknownTokenError``: the served model and the tokenizer do not belong
together. Unknown ids are read as timestamps only when the tokenizer is laid out as
Whisper's: ``<|notimestamps|>`` followed by nothing but timestamp tokens, if any.

The tokenizer is the client's (:meth:`TritonClient.tokenizer
<dp_models.triton.client.TritonClient.tokenizer>`, loaded on first use).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import ConfigurationError, TritonInputError, UnknownTokenError
from .client import TritonClient

__all__ = [
    "MAX_TIMESTAMP_S",
    "TIMESTAMP_MODES",
    "TIME_PRECISION_S",
    "Segment",
    "decode",
    "decode_batch",
    "segments",
]

#: What ``timestamps=`` takes: ``raise`` (unknown timestamp ids are an error) or ``decode``.
TIMESTAMP_MODES = ("raise", "decode")
#: Seconds between two Whisper timestamp tokens.
TIME_PRECISION_S = 0.02
#: The last timestamp Whisper has (its 30 s window): ``<|30.00|>``.
MAX_TIMESTAMP_S = 30.0
_TIMESTAMPS = round(MAX_TIMESTAMP_S / TIME_PRECISION_S) + 1  # <|0.00|> ... <|30.00|>
_TIMESTAMP = re.compile(r"<\|(\d+\.\d\d)\|>")
_SHOWN = 5


@dataclass(frozen=True)
class Segment:
    """Text between two Whisper timestamps, in seconds (plus :func:`segments`' ``offset``).
    ``start`` is None for text before the first timestamp (or in a sequence without any),
    ``end`` None for text after the last one (a segment the window cut)."""

    start: float | None
    end: float | None
    text: str
    token_ids: tuple[int, ...]


def decode(client: TritonClient, token_ids: Any, *, timestamps: str = "raise") -> str:
    """The text of one sequence of token ids (1-D) that ``client``'s model returned.

    ``timestamps``: ``"raise"`` (default) or ``"decode"``, for timestamp ids the tokenizer
    does not know (see the module doc). An unknown id is an
    :class:`~dp_models._errors.UnknownTokenError` (a ``TritonInferenceError``); anything
    but one 1-D integer sequence a :class:`TritonInputError`."""
    mode = _mode(timestamps)
    ids = _token_ids(client, token_ids, 1, "decode")
    vocab = _Vocabulary(client.tokenizer())
    return _text(client, vocab, ids, mode)


def decode_batch(client: TritonClient, token_ids: Any, *, timestamps: str = "raise") -> list[str]:
    """:func:`decode` for each row of a ``[batch, length]`` array (what
    :meth:`~dp_models.triton.client.TritonClient.infer` returns for a batched spec)."""
    mode = _mode(timestamps)
    ids = _token_ids(client, token_ids, 2, "decode_batch")
    vocab = _Vocabulary(client.tokenizer())
    return [_text(client, vocab, row, mode) for row in ids]


def segments(client: TritonClient, token_ids: Any, *, offset: float = 0.0) -> list[Segment]:
    """The timed segments of one sequence of token ids (1-D): the text between each two
    timestamps (Whisper writes ``<|t0|> text <|t1|><|t1|> text <|t2|>``), times in seconds
    plus ``offset`` (the window's start in the audio). Timestamp ids the tokenizer lacks are
    decoded; any other unknown id is an :class:`~dp_models._errors.UnknownTokenError`."""
    ids = _token_ids(client, token_ids, 1, "segments")
    vocab = _Vocabulary(client.tokenizer())
    pieces = _pieces(client, vocab, ids, "decode")
    found: list[Segment] = []
    start: float | None = None
    run: list[int] = []
    for piece in pieces:
        if isinstance(piece, float):
            if run:
                found.append(_segment(vocab, start, piece, run, offset))
                run = []
            start = piece
        else:
            run.append(piece)
    if run:
        found.append(_segment(vocab, start, None, run, offset))
    return found


def _segment(
    vocab: _Vocabulary, start: float | None, end: float | None, run: list[int], offset: float
) -> Segment:
    def shift(t: float | None) -> float | None:
        return None if t is None else round(t + offset, 6)

    return Segment(shift(start), shift(end), vocab.text(run), tuple(run))


def _mode(timestamps: str) -> str:
    if timestamps not in TIMESTAMP_MODES:
        raise ConfigurationError(
            f"timestamps must be 'raise' (timestamp ids the tokenizer lacks are an error) or "
            f"'decode' (they become <|1.08|> markers in the text), not {timestamps!r}"
        )
    return timestamps


class _Vocabulary:
    """What decoding needs to know of a tokenizer: which ids it knows, its markers, its
    timestamp tokens, and where Whisper's timestamps start when it lacks them."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.end = tokenizer.token_to_id("<|endoftext|>")
        added = {int(i): str(t.content) for i, t in tokenizer.get_added_tokens_decoder().items()}
        # every <|...|> token, special or not: some tokenizer files add the timestamps as
        # ordinary tokens, which skip_special_tokens would keep
        self.markers = frozenset(
            i for i, c in added.items() if c.startswith("<|") and c.endswith("|>")
        )
        self.times = {
            i: float(found.group(1))
            for i, c in added.items()
            if (found := _TIMESTAMP.fullmatch(c)) is not None
        }
        self.no_timestamps = tokenizer.token_to_id("<|notimestamps|>")
        self.first_timestamp = self._first_timestamp()

    def _first_timestamp(self) -> int | None:
        """``<|notimestamps|>`` + 1 when every id the tokenizer knows past it is the
        timestamp Whisper puts there; else None (unknown ids cannot be timestamps)."""
        if self.no_timestamps is None:
            return None
        first = int(self.no_timestamps) + 1
        for i in range(first, max(self.size, first)):
            expected = round((i - first) * TIME_PRECISION_S, 2)
            if self.tokenizer.id_to_token(i) is not None and self.times.get(i) != expected:
                return None
        return first

    def time(self, token: int) -> float | None:
        """The seconds of a timestamp id the tokenizer does not know, or None."""
        first = self.first_timestamp
        if first is None or not first <= token < first + _TIMESTAMPS:
            return None
        return round((token - first) * TIME_PRECISION_S, 2)

    def text(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))


def _pieces(
    client: TritonClient, vocab: _Vocabulary, ids: np.ndarray[Any, Any], mode: str
) -> list[int | float]:
    """The sequence as text token ids and timestamps (floats, seconds), markers left out;
    unknown ids checked (see the module doc)."""
    values = [int(i) for i in ids if i >= 0]
    if vocab.end is not None and vocab.end in values:
        values = values[: values.index(vocab.end)]
    pieces: list[int | float] = []
    unknown: list[int] = []
    stamps: list[int] = []
    for token in values:
        if vocab.tokenizer.id_to_token(token) is not None:
            if token in vocab.times:
                pieces.append(vocab.times[token])
            elif token not in vocab.markers:
                pieces.append(token)
            continue
        seconds = vocab.time(token)
        if seconds is None:
            unknown.append(token)
        else:
            stamps.append(token)
            pieces.append(seconds)
    if unknown:
        raise _unknown(client, vocab, sorted(set(unknown)))
    if stamps and mode == "raise":
        raise _unknown_timestamps(client, vocab, sorted(set(stamps)))
    return pieces


def _text(client: TritonClient, vocab: _Vocabulary, ids: np.ndarray[Any, Any], mode: str) -> str:
    pieces = _pieces(client, vocab, ids, mode)
    if mode == "raise":  # the tokens the tokenizer knows as timestamps are markers: left out
        return vocab.text([p for p in pieces if isinstance(p, int)])
    out: list[str] = []
    run: list[int] = []
    for piece in pieces:
        if isinstance(piece, float):
            out += [vocab.text(run), f"<|{piece:.2f}|>"]
            run = []
        else:
            run.append(piece)
    return "".join([*out, vocab.text(run)])


def _shown(ids: Sequence[int]) -> str:
    more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
    return ", ".join(map(str, ids[:_SHOWN])) + more


def _unknown(client: TritonClient, vocab: _Vocabulary, ids: list[int]) -> UnknownTokenError:
    why = ""
    if vocab.no_timestamps is not None and vocab.first_timestamp is None:
        why = (
            "; they cannot be timestamps either, as this tokenizer is not laid out as "
            "Whisper's (<|notimestamps|> followed by nothing but timestamp tokens)"
        )
    elif vocab.first_timestamp is not None:
        why = (
            f"; nor are they Whisper timestamps (ids {vocab.first_timestamp} to "
            f"{vocab.first_timestamp + _TIMESTAMPS - 1})"
        )
    return UnknownTokenError(
        f"Triton model {client.model_name!r} (spec {client.spec.name!r}) returned token "
        f"ids {_shown(ids)} outside the vocabulary of its tokenizer ({vocab.size} tokens)"
        f"{why}: the served model and the tokenizer spec it requires do not belong together "
        "(e.g. a Whisper large-v3 deployment needs its own tokenizer)",
        spec=client.spec.name,
        endpoint=client.endpoint,
        ids=ids,
    )


def _unknown_timestamps(
    client: TritonClient, vocab: _Vocabulary, ids: list[int]
) -> UnknownTokenError:
    times = ", ".join(f"<|{vocab.time(i):.2f}|>" for i in ids[:_SHOWN])
    return UnknownTokenError(
        f"Triton model {client.model_name!r} (spec {client.spec.name!r}) returned token "
        f"ids {_shown(ids)} that its tokenizer does not know: Whisper timestamps ({times}), "
        f"which this tokenizer file lacks (<|notimestamps|> is {vocab.no_timestamps}; the "
        "timestamps follow it, 0.02 s apart). They are never dropped silently: pass "
        "timestamps='decode' to write them into the text as <|1.08|> markers, or use "
        "dp_models.triton.whisper.segments() for timed segments",
        spec=client.spec.name,
        endpoint=client.endpoint,
        ids=ids,
        timestamps=ids,
    )


_SHAPES = {
    1: "{name} takes one 1-D integer sequence of token ids, not a {dtype} array of shape "
    "{shape} (decode_batch takes [batch, length])",
    2: "decode_batch takes a [batch, length] integer array of token ids, not a {dtype} array "
    "of shape {shape} (decode and segments take one sequence)",
}


def _token_ids(client: TritonClient, token_ids: Any, ndim: int, name: str) -> np.ndarray[Any, Any]:
    """``token_ids`` as an integer array of ``ndim`` dimensions, or a TritonInputError."""
    ids = np.asarray(token_ids)
    if ids.ndim != ndim or not (ids.dtype.kind in "iu" or ids.size == 0):
        message = _SHAPES[ndim].format(name=name, dtype=ids.dtype, shape=list(ids.shape))
        raise TritonInputError(
            message,
            spec=client.spec.name,
            endpoint=client.endpoint,
            problems=[f"token ids of shape {list(ids.shape)} and dtype {ids.dtype}"],
        )
    return ids
