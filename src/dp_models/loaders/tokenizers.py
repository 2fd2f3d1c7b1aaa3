"""Tokenizer loader: a Hugging Face ``tokenizers.Tokenizer`` from a local ``tokenizer.json``.

``loader: tokenizer`` calls ``tokenizers.Tokenizer.from_file(<verified artifact>)``: never
``Tokenizer.from_pretrained`` (a Hub download) and never a name. The result encodes text and
decodes token ids, e.g. the ids a Whisper model served by Triton returns::

    tok = mm.load("shared_tokenizer_v1")
    text = tok.decode(token_ids, skip_special_tokens=True)

Tokenizers run on the CPU: ``device: cuda`` is a
:class:`~dp_models._errors.DeviceUnavailableError` at ``get`` (``auto`` resolves to ``cpu``);
the only precision is ``fp32`` (a tokenizer has no weights; the spec still names one).

No loader_args.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .._errors import DPModelsError, LoaderError, MissingExtraError
from .base import LoadContext, Loader, NoArgs, require

__all__ = ["TokenizerLoader"]

_NAME = "tokenizer"
_EXTRA = "tokenizers"


class TokenizerLoader(Loader[NoArgs]):
    """``loader: tokenizer``: a ``tokenizers.Tokenizer`` from the spec's ``json`` artifact."""

    name = _NAME
    framework = "tokenizers"
    extra = _EXTRA
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        if importlib.util.find_spec("tokenizers") is None:  # no import at get()
            raise MissingExtraError("tokenizers", extra=self.extra)
        return False  # tokenization runs on the CPU

    def load(self, ctx: LoadContext) -> Any:
        name = ctx.spec.name
        path = ctx.artifact("json")
        tk = require("tokenizers", extra=self.extra, spec=name)
        try:
            return tk.Tokenizer.from_file(str(path))
        except DPModelsError:
            raise
        except Exception as exc:  # tokenizers raises a bare Exception for a bad file
            raise LoaderError(
                f"spec {name!r}: tokenizers cannot read {path} as a tokenizer.json "
                f"({_first_line(exc)}). The file passed its digest check, so the pinned "
                "artifact itself is not a tokenizers JSON file this tokenizers "
                f"({tk.__version__}) can read: check the provisioned file.",
                spec=name,
                loader=self.name,
            ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
