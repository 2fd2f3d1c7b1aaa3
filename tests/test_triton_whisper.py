"""Whisper token ids to text (dp_models.triton.whisper) with tokenizer files that lack the
timestamp tokens: no id is dropped silently; the caller chooses between an error and
decoded timestamps, and gets timed segments on request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit

from dp_models._catalog import Catalog
from dp_models._errors import ConfigurationError, TritonInferenceError, UnknownTokenError
from dp_models.triton import whisper
from dp_models.triton.client import TritonClient
from dp_models.triton.whisper import Segment

WORDS = {"hello": 0, "world": 1, "again": 2, "[UNK]": 3}
#: Whisper's layout: the special tokens after the text tokens, <|notimestamps|> last.
SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|notimestamps|>",
]
HELLO, WORLD, AGAIN = 0, 1, 2
END, SOT, EN, TRANSCRIBE, NO_TIMESTAMPS = range(4, 9)
FIRST_TIMESTAMP = NO_TIMESTAMPS + 1


def ts(seconds: float) -> int:
    """The id Whisper gives the timestamp ``seconds``."""
    return FIRST_TIMESTAMP + round(seconds / 0.02)


def _tokenizer_file(path: Path, *, timestamps: bool) -> Path:
    """A real tokenizers file in Whisper's layout; with the 1501 timestamp tokens
    <|0.00|> ... <|30.00|> after <|notimestamps|> (as ordinary added tokens, as Hugging
    Face's Whisper files have them), or without (the file the brief is about)."""
    tokenizer = Tokenizer(WordLevel(WORDS, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    tokenizer.add_special_tokens(SPECIALS)
    if timestamps:
        tokenizer.add_tokens(
            [AddedToken(f"<|{i * 0.02:.2f}|>", special=False) for i in range(1501)]
        )
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module")
def lacking(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(_tokenizer_file(path, timestamps=False)))
    assert tokenizer.token_to_id("<|notimestamps|>") == NO_TIMESTAMPS
    assert tokenizer.get_vocab_size(with_added_tokens=True) == FIRST_TIMESTAMP
    return tokenizer


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(_tokenizer_file(path, timestamps=True)))
    assert tokenizer.token_to_id("<|1.00|>") == ts(1.0)
    return tokenizer


def client(tokenizer: Any) -> TritonClient:
    spec = Catalog.load()["whisper_small_triton"]
    return TritonClient(spec, "http://127.0.0.1:1", tokenizer=lambda: tokenizer)  # never sent


#: <|startoftranscript|><|en|><|transcribe|><|0.00|> hello world<|1.00|><|1.00|> again<|2.40|>
TIMED = [SOT, EN, TRANSCRIBE, ts(0), HELLO, WORLD, ts(1), ts(1), AGAIN, ts(2.4), END, -1]


def test_timestamps_the_tokenizer_lacks_raise_by_default_saying_how_to_choose(
    lacking: Tokenizer,
) -> None:
    with pytest.raises(UnknownTokenError, match=r"Whisper timestamps \(<\|0\.00\|>, ") as exc:
        whisper.decode(client(lacking), np.array(TIMED, dtype=np.int32))
    err = exc.value
    assert isinstance(err, TritonInferenceError) and isinstance(err, LookupError)
    assert err.ids == err.timestamps == (ts(0), ts(1), ts(2.4))
    assert err.spec == "whisper_small_triton"
    assert "timestamps='decode'" in str(err) and "segments()" in str(err)
    assert "<|notimestamps|> is 8" in str(err)
    with pytest.raises(UnknownTokenError):
        whisper.decode_batch(client(lacking), np.array([TIMED], dtype=np.int64))


def test_decode_writes_them_into_the_text_as_the_complete_file_would(
    lacking: Tokenizer, complete: Tokenizer
) -> None:
    ids = np.array(TIMED, dtype=np.int32)
    expected = "<|0.00|>hello world<|1.00|><|1.00|>again<|2.40|>"
    assert whisper.decode(client(lacking), ids, timestamps="decode") == expected
    assert whisper.decode(client(complete), ids, timestamps="decode") == expected
    assert whisper.decode_batch(client(lacking), np.stack([ids, ids]), timestamps="decode") == [
        expected,
        expected,
    ]
    # a file that knows them: markers, left out of the text as before
    assert whisper.decode(client(complete), ids) == "hello world again"
    assert whisper.decode(client(lacking), np.array([HELLO, WORLD])) == "hello world"


def test_segments_are_timed_alike_with_either_file(lacking: Tokenizer, complete: Tokenizer) -> None:
    ids = np.array(TIMED, dtype=np.int32)
    expected = [
        Segment(0.0, 1.0, "hello world", (HELLO, WORLD)),
        Segment(1.0, 2.4, "again", (AGAIN,)),
    ]
    assert whisper.segments(client(lacking), ids) == expected
    assert whisper.segments(client(complete), ids) == expected
    shifted = whisper.segments(client(lacking), ids, offset=30.0)
    assert [(s.start, s.end) for s in shifted] == [(30.0, 31.0), (31.0, 32.4)]
    cut = whisper.segments(client(lacking), np.array([HELLO, ts(29.98), WORLD]))
    assert cut == [Segment(None, 29.98, "hello", (HELLO,)), Segment(29.98, None, "world", (WORLD,))]
    assert whisper.segments(client(lacking), np.array([SOT, NO_TIMESTAMPS, HELLO])) == [
        Segment(None, None, "hello", (HELLO,))
    ]


@pytest.mark.parametrize("mode", ["raise", "decode"])
def test_an_unknown_id_that_is_no_timestamp_always_raises(lacking: Tokenizer, mode: str) -> None:
    past = ts(30.0) + 1  # after <|30.00|>: Whisper has no such token
    ids = np.array([ts(0), HELLO, past, past + 7], dtype=np.int32)
    with pytest.raises(UnknownTokenError, match="nor are they Whisper timestamps") as exc:
        whisper.decode(client(lacking), ids, timestamps=mode)
    assert exc.value.ids == (past, past + 7) and exc.value.timestamps == ()
    assert f"token ids {past}, {past + 7} outside the vocabulary" in str(exc.value)
    with pytest.raises(UnknownTokenError):
        whisper.segments(client(lacking), ids)


def test_unknown_ids_are_no_timestamps_for_a_tokenizer_not_laid_out_as_whispers() -> None:
    """<|notimestamps|> followed by other tokens (the fake tokenizer's layout): what follows
    its vocabulary cannot be told to be a timestamp."""
    tokenizer = Tokenizer(WordLevel({"<|notimestamps|>": 0, "hello": 1, "[UNK]": 2}, "[UNK]"))
    with pytest.raises(UnknownTokenError, match="not laid out as Whisper's") as exc:
        whisper.decode(client(tokenizer), np.array([1, 3]), timestamps="decode")
    assert exc.value.ids == (3,) and exc.value.timestamps == ()


def test_the_choice_is_checked(lacking: Tokenizer) -> None:
    with pytest.raises(ConfigurationError, match=r"timestamps must be 'raise'.*or 'decode'"):
        whisper.decode(client(lacking), np.array([HELLO]), timestamps="drop")
