"""Stimulus images -> network input tensors: resize, channels, normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["prepare_images", "REFERENCE_MEAN", "REFERENCE_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

#: Grayscale normalisation of the reference study (reference.md §3).
REFERENCE_MEAN = (0.3612,)
REFERENCE_STD = (0.3056,)
#: torchvision's ImageNet RGB normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _per_channel(values: Sequence[float], channels: int, what: str) -> torch.Tensor:
    values = list(values)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{what} has {len(values)} values for {channels} channels; give 1 or {channels}.")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def prepare_images(images: np.ndarray, *, size: int, in_channels: int, mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """Turn stored uint8 images into a normalised network input.

    ``(stimulus, y, x)`` or ``(stimulus, y, x, colour)`` uint8 ->
    ``(stimulus, in_channels, size, size)`` float32.

    Values are scaled to [0, 1], resized (bilinear, antialiased) to ``size`` x ``size``;
    gray images are repeated over 3 channels for RGB networks and RGB images averaged
    for 1-channel networks; then ``(x - mean) / std`` per channel (1 value broadcasts).

    Examples
    --------
    >>> import numpy as np
    >>> x = prepare_images(np.full((2, 10, 10), 255, np.uint8), size=4, in_channels=3,
    ...                    mean=[0.5], std=[0.5])
    >>> tuple(x.shape), float(x.max())
    ((2, 3, 4, 4), 1.0)
    """
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != in_channels:
        x = x.mean(dim=1, keepdim=True) if in_channels == 1 else x[:, :1].expand(-1, in_channels, -1, -1)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return ((x - _per_channel(mean, in_channels, "mean")) / _per_channel(std, in_channels, "std")).contiguous()
