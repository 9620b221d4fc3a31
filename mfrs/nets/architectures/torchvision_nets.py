"""ResNet-50, MobileNetV2, VGG16-BN and Inception-v3: torchvision's definitions and module names.

torchvision weight files load into these unchanged (3 channels), or with the first
convolution summed over colour channels for 1-channel input (``mfrs.nets.weights``).
"""

from __future__ import annotations

from typing import cast

from torch import nn
from torchvision import models
from torchvision.models.inception import (
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

__all__ = ["resnet50", "mobilenet_v2", "vgg16_bn", "inception_v3", "first_conv", "BLOCKS"]

#: A Conv2d's sizes: pairs (torch types the attributes as ``tuple[int, ...]``).
_Pair = tuple[int, int]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first ``Conv2d`` of ``model`` in registration order, with its module path."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} has no Conv2d")


def _set_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Give ``model``'s first convolution ``in_channels`` inputs, keeping its initialisation.

    The new kernel is the first input-channel slice of the model's own (seeded) initial
    kernel: every torchvision scheme draws elements i.i.d. with a scale that does not
    depend on the input channels (fan-out or fixed std), so the slice has the same law.
    """
    if in_channels == 3:
        return model
    name, old = first_conv(model)
    new = nn.Conv2d(in_channels, old.out_channels, cast(_Pair, old.kernel_size), cast(_Pair, old.stride),
                    cast("str | _Pair", old.padding), cast(_Pair, old.dilation), old.groups, old.bias is not None)
    new.weight.data.copy_(old.weight.data[:, :1].repeat(1, in_channels, 1, 1))
    if old.bias is not None and new.bias is not None:
        new.bias.data.copy_(old.bias.data)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)
    return model


def resnet50(*, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """torchvision ResNet-50; ``(batch, C, H, W) -> (batch, num_classes)``, H, W >= 32."""
    return _set_in_channels(models.resnet50(weights=None, num_classes=num_classes), in_channels)


def mobilenet_v2(*, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """torchvision MobileNetV2; ``(batch, C, H, W) -> (batch, num_classes)``, H, W >= 32."""
    return _set_in_channels(models.mobilenet_v2(weights=None, num_classes=num_classes), in_channels)


def vgg16_bn(*, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """torchvision VGG16 with batch-norm; ``(batch, C, H, W) -> (batch, num_classes)``, H, W >= 32."""
    return _set_in_channels(models.vgg16_bn(weights=None, num_classes=num_classes), in_channels)


def inception_v3(*, in_channels: int = 3, num_classes: int = 1000) -> nn.Module:
    """torchvision Inception-v3 (with its auxiliary head, so torchvision weight files load).

    ``(batch, C, H, W) -> (batch, num_classes)`` in eval mode, H, W >= 75; in training mode
    it returns ``InceptionOutputs(logits, aux_logits)``. ``transform_input`` is off: inputs
    are normalised by the stage.
    """
    model = models.inception_v3(weights=None, num_classes=num_classes, aux_logits=True,
                                 transform_input=False, init_weights=True)
    return _set_in_channels(model, in_channels)


BLOCKS: tuple[type[nn.Module], ...] = (
    InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionAux,
)
