"""Fake tokenizers for ``tokenizer``: a byte-level BPE of Whisper's kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._spec import Spec
from ...loaders.base import require
from . import write_artifacts

__all__ = ["FAKE_SPECIAL_TOKENS", "make_tokenizer"]

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


def make_tokenizer(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A byte-level BPE tokenizer (Whisper's kind: 256 byte tokens, a few dozen merges
    learnt from a fixed corpus, Whisper's special tokens), saved as ``tokenizer.json`` for
    each ``json`` artifact; placeholders for the others. About 10 kB."""
    tk = require("tokenizers", extra="tokenizers", spec=spec.name)
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
    write_artifacts(spec, root, ("json",), lambda path: tok.save(str(path)))
    return None
