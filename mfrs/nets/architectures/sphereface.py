"""SphereFace-20 (Liu et al. 2017, "sphere20a"), with the module names of its PyTorch port.

Four stages of stride-2 convolution + PReLU, each followed by residual units of two
3x3 convolutions (1, 2, 4, 1 units: 20 convolutions), ``fc5`` (512-d embedding) and
``fc6`` (classifier; the angular margin lives in the loss, see ``mfrs.nets.losses``).

Deviation from the original: an adaptive average pool to the original 7x6 grid sits
before ``fc5``, so any input size works (at the original 112x96 input it is the
identity) and ``fc5`` keeps its original shape.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SphereFace20", "sphereface20", "BLOCKS"]

#: (stage, input channels, output channels, residual units)
_STAGES = ((1, None, 64, 1), (2, 64, 128, 2), (3, 128, 256, 4), (4, 256, 512, 1))


class SphereFace20(nn.Module):
    """SphereFace-20.

    Parameters
    ----------
    in_channels : int
        Input channels (1 or 3).
    num_classes : int
        Outputs of ``fc6``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10574):
        super().__init__()
        self._stages: list[tuple[int, int]] = []
        for stage, cin, cout, units in _STAGES:
            cin = in_channels if cin is None else cin
            setattr(self, f"conv{stage}_1", nn.Conv2d(cin, cout, 3, 2, 1))
            setattr(self, f"relu{stage}_1", nn.PReLU(cout))
            for k in range(2, 2 + 2 * units):
                setattr(self, f"conv{stage}_{k}", nn.Conv2d(cout, cout, 3, 1, 1))
                setattr(self, f"relu{stage}_{k}", nn.PReLU(cout))
            self._stages.append((stage, units))
        self.pool = nn.AdaptiveAvgPool2d((7, 6))
        self.fc5 = nn.Linear(512 * 7 * 6, 512)
        self.fc6 = nn.Linear(512, num_classes)

    def _unit(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"relu{name}")(getattr(self, f"conv{name}")(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage, units in self._stages:
            x = self._unit(f"{stage}_1", x)
            for u in range(units):
                a, b = 2 + 2 * u, 3 + 2 * u
                x = x + self._unit(f"{stage}_{b}", self._unit(f"{stage}_{a}", x))
        x = self.pool(x)
        x = self.fc5(x.reshape(x.shape[0], -1))
        return self.fc6(x)


def sphereface20(*, in_channels: int = 3, num_classes: int = 10574) -> nn.Module:
    """Build SphereFace-20; ``(batch, C, H, W) -> (batch, num_classes)``, H, W >= 16."""
    return SphereFace20(in_channels=in_channels, num_classes=num_classes)


BLOCKS: tuple[type[nn.Module], ...] = ()
