"""Fake model directories for ``sentence_transformers``: a tiny BERT with a WordPiece
vocabulary of the words tests use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..._errors import FakeWeightsError
from ..._spec import Spec
from ...loaders.base import require
from . import write_placeholder

__all__ = ["make_sentence_transformer"]

_EXTRA = "st"
_FAKE_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_FAKE_WORDS = (
    "a the is on and of in to query passage : . , ! ? "
    "cat cats kitten dog dogs puppy sat sits mat rug sofa "
    "stock stocks market markets fell rose sharply price prices today "
    "how old universe years billion"
).split()
_FAKE_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_FAKE_HIDDEN = 32
_FAKE_MAX_LEN = 64


def _torch(spec: str | None = None) -> Any:
    return require("torch", extra=_EXTRA, spec=spec)


def _fake_vocab() -> dict[str, int]:
    tokens = [*_FAKE_SPECIAL, *_FAKE_WORDS, *_FAKE_CHARS, *(f"##{c}" for c in _FAKE_CHARS)]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _write_fake_model(spec: Spec, directory: Path) -> None:
    """A real sentence-transformers directory around a 2-layer, 32-wide BERT."""
    torch = _torch(spec.name)
    tk = require("tokenizers", extra=_EXTRA, spec=spec.name)
    transformers = require("transformers", extra=_EXTRA, spec=spec.name)
    vocab = _fake_vocab()
    tok = tk.Tokenizer(tk.models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = tk.normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
    tok.post_processor = tk.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = tk.decoders.WordPiece()
    directory.mkdir(parents=True, exist_ok=True)
    tok.save(str(directory / "tokenizer.json"))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    _write_json(
        directory / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "do_lower_case": True,
            "model_max_length": _FAKE_MAX_LEN,
            **{f"{t[1:-1].lower()}_token": t for t in _FAKE_SPECIAL},
        },
    )
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=_FAKE_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=_FAKE_MAX_LEN,
        pad_token_id=vocab["[PAD]"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = transformers.BertModel(config)
    tensors = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    config.architectures = ["BertModel"]
    config.to_json_file(str(directory / "config.json"))
    require("safetensors.torch", extra=_EXTRA, spec=spec.name).save_file(
        tensors, str(directory / "model.safetensors"), metadata={"format": "pt"}
    )
    _write_json(
        directory / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
        ],
    )
    _write_json(
        directory / "sentence_bert_config.json",
        {"max_seq_length": _FAKE_MAX_LEN, "do_lower_case": False},
    )
    _write_json(
        directory / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": _FAKE_HIDDEN,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )


def make_sentence_transformer(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A real sentence-transformers directory of about 110 kB for the ``model_dir``
    artifact: a randomly initialised (seeded) 2-layer BERT, hidden size 32, with a
    WordPiece tokenizer of 117 tokens (built with ``tokenizers``), mean pooling,
    ``modules.json`` and the weights as ``model.safetensors``; no Normalize module (the
    loader adds it for ``normalize_embeddings: true``). Other artifacts inside the
    directory are the files written there; placeholders for the rest."""
    directory = next((a for a in spec.artifacts if a.format == "model_dir"), None)
    if directory is not None:
        _write_fake_model(spec, root / directory.path)
    for art in spec.artifacts:
        path = root / art.path
        if art is directory or (directory is not None and path.exists()):
            continue
        if art.format == "safetensors":
            raise FakeWeightsError(
                f"spec {spec.name!r}: its safetensors artifact {art.path} is not the "
                "model.safetensors of its model_dir artifact; no fake for that layout"
            )
        write_placeholder(path, art.format)
    return None
