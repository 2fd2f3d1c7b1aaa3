"""SlowFast networks for video recognition (Feichtenhofer et al., ICCV 2019), laid out the
way PyTorchVideo's ``create_slowfast`` lays them out, so that PyTorchVideo checkpoints
(``SLOWFAST_8x8_R50.pyth``: the state dict under ``model_state``) load with their own key
names and give the same outputs:

- ``blocks.0``: one stem per pathway (``multipathway_blocks.{0,1}``: conv, norm) and the
  fast-to-slow fusion (``multipathway_fusion``: conv_fast_to_slow, norm);
- ``blocks.1`` to ``blocks.4``: a bottleneck stage per pathway
  (``res_blocks.N.branch1_conv/branch1_norm/branch2.conv_a..norm_c``), each but the last
  followed by a fusion;
- ``blocks.5``: per-pathway average pooling, concatenated; ``blocks.6``: dropout, ``proj``
  (Linear), global average.

Importing this module imports torch: the ``slowfast`` loader imports it only to load.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["DEPTHS", "SlowFast"]

#: Blocks per stage, by ResNet depth.
DEPTHS = {18: (1, 1, 1, 1), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
_SLOW_CONV_A_T = (1, 1, 3, 3)  # temporal kernel of conv_a per stage: slow pathway
_FAST_CONV_A_T = (3, 3, 3, 3)  # fast pathway
_FUSION_CHANNELS = 2  # fused channels = 2 x the fast pathway's channels


def _bn(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=1e-5, momentum=0.1)


def _conv(
    c_in: int,
    c_out: int,
    kernel: tuple[int, int, int],
    stride: tuple[int, int, int] = (1, 1, 1),
) -> nn.Conv3d:
    padding = (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)


class _Stem(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_kernel: int) -> None:
        super().__init__()
        self.conv = _conv(c_in, c_out, (t_kernel, 7, 7), (1, 2, 2))
        self.norm = _bn(c_out)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.pool(self.activation(self.norm(self.conv(x))))
        return out


class _Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_inner: int, c_out: int, t_kernel: int, stride: int) -> None:
        super().__init__()
        self.conv_a = _conv(c_in, c_inner, (t_kernel, 1, 1))
        self.norm_a = _bn(c_inner)
        self.act_a = nn.ReLU()
        self.conv_b = _conv(c_inner, c_inner, (1, 3, 3), (1, stride, stride))
        self.norm_b = _bn(c_inner)
        self.act_b = nn.ReLU()
        self.conv_c = _conv(c_inner, c_out, (1, 1, 1))
        self.norm_c = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        out: torch.Tensor = self.norm_c(self.conv_c(x))
        return out


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_inner: int, c_out: int, t_kernel: int, stride: int) -> None:
        super().__init__()
        self.branch1_conv: nn.Module | None = None
        self.branch1_norm: nn.Module | None = None
        if c_in != c_out or stride != 1:
            self.branch1_conv = _conv(c_in, c_out, (1, 1, 1), (1, stride, stride))
            self.branch1_norm = _bn(c_out)
        self.branch2 = _Bottleneck(c_in, c_inner, c_out, t_kernel, stride)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.branch1_conv is not None and self.branch1_norm is not None:
            shortcut = self.branch1_norm(self.branch1_conv(x))
        out: torch.Tensor = self.activation(shortcut + self.branch2(x))
        return out


class _ResStage(nn.Module):
    def __init__(
        self, depth: int, c_in: int, c_inner: int, c_out: int, t_kernel: int, stride: int
    ) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(
            _ResBlock(c_in if i == 0 else c_out, c_inner, c_out, t_kernel, stride if i == 0 else 1)
            for i in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class _FuseFastToSlow(nn.Module):
    """Concatenates a time-strided convolution of the fast pathway to the slow one."""

    def __init__(self, fast_channels: int, kernel: int, alpha: int) -> None:
        super().__init__()
        fused = fast_channels * _FUSION_CHANNELS
        self.conv_fast_to_slow = _conv(fast_channels, fused, (kernel, 1, 1), (alpha, 1, 1))
        self.norm = _bn(fused)
        self.activation = nn.ReLU()

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        slow, fast = x
        fuse = self.activation(self.norm(self.conv_fast_to_slow(fast)))
        return [torch.cat([slow, fuse], 1), fast]


class _Pathways(nn.Module):
    """One block per pathway, then the fusion (none after the last stage)."""

    def __init__(self, blocks: Sequence[nn.Module], fusion: nn.Module | None) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList(blocks)
        self.multipathway_fusion = fusion

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [block(t) for block, t in zip(self.multipathway_blocks, x, strict=True)]
        if self.multipathway_fusion is not None:
            out = self.multipathway_fusion(out)
        return out


class _PoolConcat(nn.Module):
    def __init__(self, kernels: Sequence[tuple[int, int, int]]) -> None:
        super().__init__()
        self.pool = nn.ModuleList(nn.AvgPool3d(k, stride=1) for k in kernels)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([pool(t) for pool, t in zip(self.pool, x, strict=True)], 1)


class _Head(nn.Module):
    def __init__(self, c_in: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(c_in, num_classes)
        self.output_pool = nn.AdaptiveAvgPool3d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.dropout(x).permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        out: torch.Tensor = self.output_pool(x).flatten(1)
        return out


class SlowFast(nn.Module):
    """SlowFast ResNet on ``[slow, fast]`` clips of shape ``[B, 3, T, H, W]``: the fast
    pathway sees ``clip_frames`` frames, the slow one every ``alpha``-th
    (``clip_frames // alpha``); returns logits ``[B, num_classes]`` (no softmax).

    The defaults are PyTorchVideo's ``slowfast_r50`` (8x8, Kinetics-400, 224-pixel crops).
    ``width`` is the slow pathway's stem width; the fast pathway has ``width // beta``.
    The head averages ``clip_frames x crop_size/32 x crop_size/32`` windows (stride 1)
    and then globally, so larger inputs work as in PyTorchVideo.
    """

    def __init__(
        self,
        *,
        num_classes: int = 400,
        layers: Sequence[int] = DEPTHS[50],
        width: int = 64,
        alpha: int = 4,
        beta: int = 8,
        fusion_kernel: int = 7,
        clip_frames: int = 32,
        crop_size: int = 224,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.clip_frames = clip_frames
        self.crop_size = crop_size

        def fusion(slow_channels: int) -> _FuseFastToSlow:
            return _FuseFastToSlow(slow_channels // beta, fusion_kernel, alpha)

        blocks: list[nn.Module] = [
            _Pathways([_Stem(3, width, 1), _Stem(3, width // beta, 5)], fusion(width))
        ]
        c_in, c_out = width, width * 4
        for i, depth in enumerate(layers):
            stride = 1 if i == 0 else 2
            slow_in = c_in + c_in * _FUSION_CHANNELS // beta
            slow = _ResStage(depth, slow_in, c_out // 4, c_out, _SLOW_CONV_A_T[i], stride)
            fast = _ResStage(
                depth, c_in // beta, c_out // 4 // beta, c_out // beta, _FAST_CONV_A_T[i], stride
            )
            last = i == len(layers) - 1
            blocks.append(_Pathways([slow, fast], None if last else fusion(c_out)))
            c_in, c_out = c_out, c_out * 2
        side = crop_size // 32
        blocks.append(_PoolConcat([(clip_frames // alpha, side, side), (clip_frames, side, side)]))
        blocks.append(_Head(c_in + c_in // beta, num_classes, dropout))
        self.blocks = nn.ModuleList(blocks)

    def pathways(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """``[slow, fast]`` from one clip ``[B, 3, T, H, W]``: the fast pathway is the clip,
        the slow one ``T // alpha`` frames evenly spaced (PyTorchVideo's ``PackPathway``)."""
        frames = clip.shape[2]
        index = torch.linspace(0, frames - 1, frames // self.alpha, device=clip.device).long()
        return [clip.index_select(2, index), clip]

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        if len(x) != 2:
            raise ValueError(f"SlowFast takes [slow, fast] clips, got {len(x)} tensor(s)")
        out: list[torch.Tensor] = list(x)
        for block in self.blocks[:-2]:
            out = block(out)
        pooled = self.blocks[-2](out)
        logits: torch.Tensor = self.blocks[-1](pooled)
        return logits
