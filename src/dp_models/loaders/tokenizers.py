"""Tokenizer loader: a Hugging Face ``tokenizers.Tokenizer`` from a local ``tokenizer.json``.

``loader: tokenizer`` calls ``tokenizers.Tokenizer.from_file(<verified artifact>)``: never
``Tokenizer.from_pretrained`` (a Hub download) and never a name. The result encodes text and
decodes token ids, e.g. the ids a Whisper model served by Triton returns::

    tok = mm.load("shared_tokenizer_v1")
    text = tok.decode(token_ids, skip_special_tokens=True)

Tokenizers run on the CPU: ``device: cuda`` is a
:class:`~dp_models.errors.DeviceUnavailableError` at ``get`` (``auto`` resolves to ``cpu``);
the only precision is ``fp32`` (a tokenizer has no weights; the spec still names one).

No loader_args.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from ..errors import DPModelsError, LoaderError, MissingExtraError
from ..spec import Spec
from .base import LoadContext, require, write_placeholder

__all__ = ["FAKE_SPECIAL_TOKENS", "TokenizerLoader"]

_NAME = "tokenizer"
_EXTRA = "tokenizers"

#: Special tokens of the fake tokenizer: Whisper's task and language markers.
FAKE_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|ru|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|notimestamps|>",
)

#: What the fake's byte-level BPE is trained on (a few merges beyond the 256 bytes).
_FAKE_CORPUS = (
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a transcript of speech",
    "привет, мир: это расшифровка речи",
    "numbers 0123456789 and punctuation .,:;!?'\"()-",
)


class TokenizerLoader:
    """``loader: tokenizer``: a ``tokenizers.Tokenizer`` from the spec's ``json`` artifact."""

    name = _NAME
    framework = "tokenizers"
    extra = _EXTRA
    precisions = ("fp32",)

    def cuda_available(self) -> bool:
        if importlib.util.find_spec("tokenizers") is None:  # no import at get()
            raise MissingExtraError("tokenizers", extra=self.extra)
        return False  # tokenization runs on the CPU

    def make_fake(self, spec: Spec, root: Path) -> dict[str, Any] | None:
        """A byte-level BPE tokenizer (Whisper's kind: 256 byte tokens, a few dozen merges
        learnt from a fixed corpus, Whisper's special tokens), saved as ``tokenizer.json``
        for each ``json`` artifact; placeholders for the others. About 10 kB."""
        tk = require("tokenizers", extra=self.extra, spec=spec.name)
        for art in spec.artifacts:
            path = root / art.path
            if art.format != "json":
                write_placeholder(path, art.format)
                continue
            byte_level = tk.pre_tokenizers.ByteLevel
            tok = tk.Tokenizer(tk.models.BPE())
            tok.pre_tokenizer = byte_level(add_prefix_space=False)
            tok.decoder = tk.decoders.ByteLevel()
            trainer = tk.trainers.BpeTrainer(
                vocab_size=320,
                special_tokens=list(FAKE_SPECIAL_TOKENS),
                initial_alphabet=byte_level.alphabet(),
                show_progress=False,
            )
            tok.train_from_iterator(list(_FAKE_CORPUS), trainer=trainer)
            path.parent.mkdir(parents=True, exist_ok=True)
            tok.save(str(path))
        return None

    def load(self, ctx: LoadContext) -> Any:
        ctx.args({})
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
