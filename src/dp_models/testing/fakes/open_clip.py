"""Fake weights for ``open_clip``: a CLIP of the real layout, a few MB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._spec import Spec
from ...loaders.open_clip import (
    PRESET_SIZES,
    WEIGHT_FORMATS,
    OpenClipArgs,
    _open_clip,
    _quiet,
    _torch,
)
from .torch import write_weights

__all__ = ["make_open_clip", "tiny_model_kwargs"]


def tiny_model_kwargs(image_size: int) -> dict[str, Any]:
    """A CLIP of the real layout, a few MB: one block per tower, the real vocabulary (the
    tokenizer's ids must fit) and the preset's resolution (the preprocess check still holds)."""
    return {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": image_size,
            "layers": 1,
            "width": 32,
            "patch_size": 32,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 16,
            "heads": 2,
            "layers": 1,
        },
    }


def make_open_clip(spec: Spec, root: Path) -> dict[str, Any] | None:
    """A tiny CLIP (one block per tower, a few MB) at the spec's preset resolution, saved
    as the spec's format reads it: a TorchScript archive like OpenAI's for
    ``pretrained_format: openai``, a state dict (safetensors or pickle of tensors) for
    ``open_clip``. Returns ``model_kwargs`` for the fake catalog."""
    torch = _torch(spec.name)
    open_clip = _open_clip(spec.name)
    args = OpenClipArgs.model_validate(spec.loader_args)
    kwargs = tiny_model_kwargs(PRESET_SIZES.get(spec.preprocess or "", 224))
    openai = args.pretrained_format == "openai"
    with _quiet():
        model = open_clip.create_model(args.model_name, force_quick_gelu=openai, **kwargs)
    model.eval()

    def save(path: Path) -> None:
        if openai:  # OpenAI's releases are TorchScript archives
            with _quiet():
                torch.jit.save(torch.jit.script(model), str(path))
        else:
            torch.save(model.state_dict(), path)

    write_weights(spec, root, model.state_dict(), WEIGHT_FORMATS, save)
    return {"model_kwargs": kwargs}
