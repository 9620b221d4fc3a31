"""The seven architectures of reference.md §3, built by name.

One module per family: ``cornet`` (CORnet-S), ``facenet`` (Inception-ResNet-v1),
``sphereface`` (SphereFace-20) written here, ``torchvision_nets`` for ResNet-50,
MobileNetV2, VGG16-BN and Inception-v3. Imports torch: only the CNN stages load it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from mfrs.errors import ConfigError
from mfrs.nets.architectures import cornet, facenet, sphereface, torchvision_nets
from mfrs.nets.specs import INPUT_SIZES, MIN_INPUT_SIZES
from mfrs.nets.types import NETWORKS, Network

__all__ = ["build_network", "BUILDERS", "INPUT_SIZES", "MIN_INPUT_SIZES", "BLOCK_TYPES", "first_conv"]

first_conv = torchvision_nets.first_conv

BUILDERS: dict[Network, Callable[..., nn.Module]] = {
    "cornet_s": cornet.cornet_s,
    "resnet50": torchvision_nets.resnet50,
    "mobilenet_v2": torchvision_nets.mobilenet_v2,
    "vgg16_bn": torchvision_nets.vgg16_bn,
    "inception_v3": torchvision_nets.inception_v3,
    "facenet": facenet.facenet,
    "sphereface20": sphereface.sphereface20,
}

#: Module classes recorded as whole blocks (hook kind ``block``).
BLOCK_TYPES: tuple[type[nn.Module], ...] = cornet.BLOCKS + facenet.BLOCKS + torchvision_nets.BLOCKS


def build_network(network: Network, *, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """Build an untrained network (initialised from torch's current RNG state).

    Parameters
    ----------
    network : Network
        One of :data:`mfrs.nets.types.NETWORKS`.
    in_channels : int
        1 (grayscale, as in the reference) or 3.
    num_classes : int
        Outputs of the classifier.

    Returns
    -------
    torch.nn.Module
        ``(batch, in_channels, H, W) -> (batch, num_classes)``.

    Raises
    ------
    ConfigError
        Unknown network, or channels/classes out of range.
    """
    if network not in BUILDERS:
        raise ConfigError(
            f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}."
        )
    if in_channels not in (1, 3):
        raise ConfigError(f"network {network!r}: in_channels={in_channels!r}; use 1 (grayscale) or 3 (RGB).")
    if num_classes < 1:
        raise ConfigError(f"network {network!r}: num_classes={num_classes!r}; it must be >= 1.")
    return BUILDERS[network](in_channels=in_channels, num_classes=num_classes)
