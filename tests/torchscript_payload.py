"""A TorchScript archive whose load writes a file (for the hostile-checkpoint tests).

No ``from __future__ import annotations`` here: TorchScript compiles these methods from
their source and needs the annotations as written."""

from typing import Tuple  # noqa: UP035 - TorchScript reads the typing form

import torch


class WritesOnLoad(torch.nn.Module):
    """``torch.jit.load`` runs an archive's ``__setstate__``; this one calls
    ``aten::from_file``, which creates the file named in its state. A test can then tell
    whether anything of the archive ran."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.weight = torch.nn.Parameter(torch.ones(3, 4))

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, torch.Tensor, bool]:  # noqa: UP006
        return (self.marker, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, torch.Tensor, bool]) -> None:  # noqa: UP006
        self.marker = state[0]
        # used, so that TorchScript does not drop the call as dead code
        written = torch.from_file(state[0], True, 12).view(3, 4)
        self.weight = (state[1] + written * 0).detach()
        self.training = state[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()
