"""CORnet-S (Kubilius et al. 2019), with the module names of dicarlolab/CORnet so its weight files load.

Areas V1, V2, V4, IT are recurrent blocks unrolled ``times`` steps (V2: 2, V4: 4, IT: 2),
with a batch-norm per time step; the decoder pools, flattens and classifies.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

__all__ = ["CORblockS", "cornet_s"]


class Flatten(nn.Module):
    """``(batch, ...) -> (batch, features)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)


class Identity(nn.Module):
    """Marks an area's output (a hook point), as in the original code."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class CORblockS(nn.Module):
    """One recurrent CORnet-S area.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels entering and leaving the area.
    times : int
        Number of recurrent steps; the first step downsamples by 2.
    """

    scale = 4  # bottleneck expansion

    def __init__(self, in_channels: int, out_channels: int, times: int = 1):
        super().__init__()
        self.times = times
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.skip = nn.Conv2d(out_channels, out_channels, kernel_size=1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(out_channels)
        wide = out_channels * self.scale
        self.conv1 = nn.Conv2d(out_channels, wide, kernel_size=1, bias=False)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(wide, wide, kernel_size=3, stride=2, padding=1, bias=False)
        self.nonlin2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(wide, out_channels, kernel_size=1, bias=False)
        self.nonlin3 = nn.ReLU(inplace=True)
        self.output = Identity()
        for t in range(times):
            setattr(self, f"norm1_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm2_{t}", nn.BatchNorm2d(wide))
            setattr(self, f"norm3_{t}", nn.BatchNorm2d(out_channels))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.conv_input(inp)
        output = x
        for t in range(self.times):
            if t == 0:
                skip = self.norm_skip(self.skip(x))
                stride = 2
            else:
                skip = x
                stride = 1
            x = self.conv1(x)
            x = getattr(self, f"norm1_{t}")(x)
            x = self.nonlin1(x)
            # conv2 is shared over time steps but strides only at t=0; calling the module keeps
            # its forward hooks, so the stride is set per call (the original mutated it the same way)
            self.conv2.stride = (stride, stride)
            x = self.conv2(x)
            x = getattr(self, f"norm2_{t}")(x)
            x = self.nonlin2(x)
            x = self.conv3(x)
            x = getattr(self, f"norm3_{t}")(x)
            x = x + skip
            x = self.nonlin3(x)
            output = self.output(x)
        self.conv2.stride = (2, 2)
        return output


class _V1(nn.Sequential):
    """CORnet-S area V1 (a plain sequence; its own class so that hooks can select it as a block)."""


class _Decoder(nn.Sequential):
    """Average pool, flatten, linear read-out."""


def cornet_s(*, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """Build CORnet-S.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grayscale, 3 for RGB).
    num_classes : int
        Outputs of the decoder.

    Returns
    -------
    torch.nn.Module
        ``(batch, in_channels, H, W) -> (batch, num_classes)``; any H, W >= 32.
    """
    model = nn.Sequential(OrderedDict([
        ("V1", _V1(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)),
            ("norm1", nn.BatchNorm2d(64)),
            ("nonlin1", nn.ReLU(inplace=True)),
            ("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ("conv2", nn.Conv2d(64, 64, kernel_size=3, stride=1, padding=1, bias=False)),
            ("norm2", nn.BatchNorm2d(64)),
            ("nonlin2", nn.ReLU(inplace=True)),
            ("output", Identity()),
        ]))),
        ("V2", CORblockS(64, 128, times=2)),
        ("V4", CORblockS(128, 256, times=4)),
        ("IT", CORblockS(256, 512, times=2)),
        ("decoder", _Decoder(OrderedDict([
            ("avgpool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", Flatten()),
            ("linear", nn.Linear(512, num_classes)),
            ("output", Identity()),
        ]))),
    ]))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            m.weight.data.normal_(0, math.sqrt(2.0 / n))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    return model


BLOCKS: tuple[type[nn.Module], ...] = (_V1, CORblockS)
