"""Tiny stand-in networks for fake roots (imported only when a fake needs one)."""

from __future__ import annotations

import torch


class TinyNet(torch.nn.Module):
    """A 4 -> 3 linear layer: the stand-in for a ``torch_state_dict`` spec whose model class
    is not importable where the fake root is made, when the test asks for one
    (``fake_models_root(..., substitute=[...])``); the scripted weights of a
    ``torchscript`` fake."""

    def __init__(self, in_features: int = 4, out_features: int = 3) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)  # type: ignore[no-any-return]
