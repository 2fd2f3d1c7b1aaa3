"""Token ids to text for the specs that answer with token ids (the Whisper specs), with
the tokenizer the spec requires (``shared_tokenizer_v1``).

>>> from dp_models.triton.whisper import decode_batch
>>> asr = mm.get("whisper_small_triton").client()                # doctest: +SKIP
>>> ids = asr.infer({"input_features": features})["token_ids"]   # doctest: +SKIP
>>> texts = decode_batch(asr, ids)                               # doctest: +SKIP

Negative ids (padding) are dropped, a sequence ends at its first ``<|endoftext|>``, and
the ``<|...|>`` markers (task, language, timestamps) and other special tokens are left out.
The tokenizer is the client's (:meth:`TritonClient.tokenizer
<dp_models.triton.client.TritonClient.tokenizer>`, loaded on first use).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import TritonInferenceError, TritonInputError
from .client import TritonClient

__all__ = ["decode", "decode_batch"]


def decode(client: TritonClient, token_ids: Any) -> str:
    """The text of one sequence of token ids (1-D) that ``client``'s model returned.

    An id outside the tokenizer's vocabulary is a :class:`TritonInferenceError`: the
    served model and the tokenizer spec do not belong together; anything but one 1-D
    integer sequence is a :class:`TritonInputError`."""
    ids = _token_ids(client, token_ids, 1)
    tokenizer = client.tokenizer()
    return _decode(client, tokenizer, _markers(tokenizer), ids)


def decode_batch(client: TritonClient, token_ids: Any) -> list[str]:
    """:func:`decode` for each row of a ``[batch, length]`` array (what
    :meth:`~dp_models.triton.client.TritonClient.infer` returns for a batched spec)."""
    ids = _token_ids(client, token_ids, 2)
    tokenizer = client.tokenizer()
    markers = _markers(tokenizer)
    return [_decode(client, tokenizer, markers, row) for row in ids]


_SHAPES = {
    1: "decode takes one 1-D integer sequence of token ids, not a {dtype} array of shape "
    "{shape} (decode_batch takes [batch, length])",
    2: "decode_batch takes a [batch, length] integer array of token ids, not a {dtype} array "
    "of shape {shape} (decode takes one sequence)",
}


def _token_ids(client: TritonClient, token_ids: Any, ndim: int) -> np.ndarray[Any, Any]:
    """``token_ids`` as an integer array of ``ndim`` dimensions, or a TritonInputError."""
    ids = np.asarray(token_ids)
    if ids.ndim != ndim or not (ids.dtype.kind in "iu" or ids.size == 0):
        message = _SHAPES[ndim].format(dtype=ids.dtype, shape=list(ids.shape))
        raise _ids_error(client, message, ids)
    return ids


def _decode(
    client: TritonClient, tokenizer: Any, markers: frozenset[int], ids: np.ndarray[Any, Any]
) -> str:
    values = [int(i) for i in ids if i >= 0]
    end = tokenizer.token_to_id("<|endoftext|>")
    if end is not None and end in values:
        values = values[: values.index(end)]
    values = [i for i in values if i not in markers]
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    outside = sorted({i for i in values if i >= size})
    if outside:
        raise TritonInferenceError(
            f"Triton model {client.model_name!r} (spec {client.spec.name!r}) returned token "
            f"ids {', '.join(map(str, outside[:5]))} outside the vocabulary of its tokenizer "
            f"({size} tokens): the served model and the tokenizer spec it requires do not "
            "belong together (e.g. a Whisper large-v3 deployment needs its own tokenizer)",
            spec=client.spec.name,
            endpoint=client.endpoint,
        )
    return str(tokenizer.decode(values, skip_special_tokens=True))


def _markers(tokenizer: Any) -> frozenset[int]:
    """The ids of the tokenizer's ``<|...|>`` tokens (Whisper's task, language and
    timestamp markers), special or not: some tokenizer files add the timestamps as
    ordinary tokens, which ``skip_special_tokens`` would keep."""
    added = tokenizer.get_added_tokens_decoder()
    return frozenset(
        int(i)
        for i, token in added.items()
        if token.content.startswith("<|") and token.content.endswith("|>")
    )


def _ids_error(client: TritonClient, message: str, ids: np.ndarray[Any, Any]) -> TritonInputError:
    return TritonInputError(
        message,
        spec=client.spec.name,
        endpoint=client.endpoint,
        problems=[f"token ids of shape {list(ids.shape)} and dtype {ids.dtype}"],
    )
