"""An EmoNet-size network for ``bench_loads.py``: the face-alignment network layout EmoNet
builds on (a stem, two stacked hourglasses of depth 4 at 256 channels, each of residual
blocks of batch norm and 3x3 convolutions) with an expression and valence/arousal head.
EmoNet's own class lives in the pipeline's code, not here; this one has its kind of
layers, their count and their size (about 13 M parameters in some 600 tensors)."""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    """Pre-activation residual block: three 3x3 convolutions of 1/2, 1/4, 1/4 the width,
    concatenated, plus a 1x1 projection when the width changes."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.project = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False))
            if cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(torch.relu(self.bn1(x)))
        b = self.conv2(torch.relu(self.bn2(a)))
        c = self.conv3(torch.relu(self.bn3(b)))
        out = torch.cat([a, b, c], dim=1)
        return out + (x if self.project is None else self.project(x))


class Hourglass(nn.Module):
    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        self.depth = depth
        self.up = nn.ModuleList(Block(width, width) for _ in range(depth))
        self.down = nn.ModuleList(Block(width, width) for _ in range(depth))
        self.merge = nn.ModuleList(Block(width, width) for _ in range(depth))
        self.bottom = Block(width, width)

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        skip = self.up[level](x)
        low = self.down[level](nn.functional.avg_pool2d(x, 2))
        low = self._level(level + 1, low) if level + 1 < self.depth else self.bottom(low)
        low = self.merge[level](low)
        return skip + nn.functional.interpolate(low, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(0, x)


class FanEmotionNet(nn.Module):
    def __init__(self, n_expression: int = 8, stacks: int = 2, width: int = 256) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.BatchNorm2d(64), nn.ReLU()
        )
        self.blocks = nn.Sequential(Block(64, 128), nn.AvgPool2d(2), Block(128, 128))
        self.widen = Block(128, width)
        self.hourglasses = nn.ModuleList(Hourglass(4, width) for _ in range(stacks))
        self.tops = nn.ModuleList(Block(width, width) for _ in range(stacks))
        self.heatmaps = nn.ModuleList(nn.Conv2d(width, 68, 1) for _ in range(stacks))
        self.back = nn.ModuleList(nn.Conv2d(68, width, 1) for _ in range(stacks - 1))
        self.emotion = nn.Sequential(Block(width + 68, width), Block(width, width))
        self.head = nn.Linear(width, n_expression + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.widen(self.blocks(self.stem(x)))
        for i, hourglass in enumerate(self.hourglasses):
            features = self.tops[i](hourglass(x))
            heatmaps = self.heatmaps[i](features)
            if i < len(self.back):
                x = x + features + self.back[i](heatmaps)
        pooled = self.emotion(torch.cat([features, heatmaps], dim=1)).mean(dim=(2, 3))
        return self.head(pooled)  # type: ignore[no-any-return]
