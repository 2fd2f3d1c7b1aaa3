"""Fake weights for ``laion_clap``: the spec's audio tower with a one-layer RoBERTa, saved
the way LAION's checkpoints are, and a byte-level RoBERTa tokenizer directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..._errors import FakeWeightsError
from ..._spec import Spec
from ...loaders.base import require
from ...loaders.laion_clap import LaionClapArgs, _import_laion_clap, _local_roberta, _torch
from . import write_placeholder

__all__ = ["make_laion_clap"]


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte-level alphabet (what RoBERTa's vocabulary is built on), in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = dict(zip(printable, printable, strict=True))
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return [chr(chars[b]) for b in range(256)]


def _write_fake_roberta(directory: Path) -> Any:
    """A byte-level RoBERTa tokenizer (261 tokens, no merges) and a one-layer RoBERTa
    config of hidden size 768 (CLAP's text projection is built for 768)."""
    transformers = require("transformers", extra="clap")
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for char in _bytes_to_unicode():
        vocab.setdefault(char, len(vocab))
    vocab["<mask>"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    config = transformers.RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=768,
        num_hidden_layers=1,
        num_attention_heads=12,
        intermediate_size=64,
        max_position_embeddings=80,  # 77 tokens after the padding offset of 2
        type_vocab_size=1,
        layer_norm_eps=1e-5,
    )
    config.to_json_file(str(directory / "config.json"))
    return config


def make_laion_clap(spec: Spec, root: Path) -> dict[str, Any] | None:
    """The spec's audio tower (HTSAT-tiny is fixed by laion_clap: 28M parameters, about
    130 MB) with a one-layer RoBERTa, randomly initialised and saved the way LAION's
    checkpoints are: ``{"epoch", "name", "state_dict" (keys with "module."), "optimizer"
    (a numpy learning rate)}``; a byte-level RoBERTa tokenizer directory beside it."""
    import numpy as np

    torch = _torch(spec.name)
    laion_clap = _import_laion_clap(spec.name)
    args = LaionClapArgs.model_validate(spec.loader_args)
    text_dir = next((a for a in spec.artifacts if a.format in ("tokenizer_dir", "model_dir")), None)
    if text_dir is None:
        raise FakeWeightsError(
            f"spec {spec.name!r}: loader laion_clap needs a tokenizer_dir artifact (roberta-base)"
        )
    config = _write_fake_roberta(root / text_dir.path)
    transformers = require("transformers", extra="clap", spec=spec.name)
    tokenizer = transformers.RobertaTokenizer.from_pretrained(
        str(root / text_dir.path), local_files_only=True
    )
    with _local_roberta(laion_clap, config, tokenizer, spec.name):
        clap = laion_clap.CLAP_Module(
            enable_fusion=args.enable_fusion, device="cpu", amodel=args.amodel
        )
    state = {f"module.{k}": v for k, v in clap.model.state_dict().items()}
    # what transformers < 4.31 saved, and LAION's checkpoints therefore carry
    state["module.text_branch.embeddings.position_ids"] = torch.arange(80).unsqueeze(0)
    checkpoint = {
        "epoch": 1,
        "name": "dp_models-fake",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": np.float64(1e-4), "params": [0]}]},
    }
    for art in spec.artifacts:
        path = root / art.path
        if art is text_dir:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if art.format in ("pt", "pth"):
            # protocol 4, as LAION's released checkpoints are pickled
            torch.save(checkpoint, path, pickle_protocol=4)
        elif art.format == "safetensors":
            require("safetensors.torch", extra="torch", spec=spec.name).save_file(
                {k[len("module.") :]: v.contiguous() for k, v in state.items()}, str(path)
            )
        else:
            write_placeholder(path, art.format)
    return None
