"""Each of the seven architectures builds with 1 and 3 channels and runs 2 stimuli at its input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mfrs.errors import ConfigError
from mfrs.nets.architectures import build_network, first_conv
from mfrs.nets.specs import INPUT_SIZES, MIN_INPUT_SIZES
from mfrs.nets.types import NETWORKS


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("network", NETWORKS)
def test_builds_and_runs_two_stimuli(network: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_network(network, in_channels=in_channels, num_classes=7).eval()
    size = INPUT_SIZES[network]
    x = torch.randn(2, in_channels, size, size)
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (2, 7)
    assert torch.isfinite(y).all()
    _, conv = first_conv(model)
    assert conv.in_channels == in_channels
    # the two stimuli give different outputs (relative: untrained MobileNetV2 outputs are ~1e-9)
    assert (y[0] - y[1]).abs().max() > 1e-3 * y.abs().max()


@pytest.mark.parametrize("network", ["inception_v3", "facenet", "sphereface20"])
def test_smallest_input_size_runs(network: str) -> None:
    size = MIN_INPUT_SIZES[network]
    model = build_network(network, in_channels=1, num_classes=3).eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(2, 1, size, size)).shape) == (2, 3)


def test_torchvision_module_names_kept() -> None:
    """ResNet-50, VGG16-BN and Inception-v3 keep torchvision's state dict keys (3 channels)."""
    from torchvision import models

    pairs = [(build_network("resnet50"), models.resnet50()),
             (build_network("vgg16_bn"), models.vgg16_bn()),
             (build_network("inception_v3"), models.inception_v3(init_weights=False))]
    for ours, theirs in pairs:
        assert {k: v.shape for k, v in ours.state_dict().items()} == \
               {k: v.shape for k, v in theirs.state_dict().items()}


def test_cornet_s_recurrence_and_blocks() -> None:
    """CORnet-S: V4 unrolls 4 steps (one batch-norm triple per step), 4 areas + decoder."""
    model = build_network("cornet_s", in_channels=1, num_classes=5)
    names = dict(model.named_children())
    assert list(names) == ["V1", "V2", "V4", "IT", "decoder"]
    v4_norms = [n for n, m in names["V4"].named_children() if isinstance(m, nn.BatchNorm2d)]
    assert len(v4_norms) == 3 * 4 + 1


def test_sphereface20_has_twenty_convolutions_and_prelu() -> None:
    model = build_network("sphereface20", in_channels=1, num_classes=5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20
    assert all(isinstance(getattr(model, n.replace("conv", "relu")), nn.PReLU)
               for n, m in model.named_children() if isinstance(m, nn.Conv2d))


def test_facenet_embedding_is_512() -> None:
    model = build_network("facenet", in_channels=3, num_classes=5)
    assert model.last_linear.out_features == 512 and model.logits.in_features == 512


def test_errors_name_the_bad_value() -> None:
    with pytest.raises(ConfigError, match="unknown network 'resnet51'.*resnet50"):
        build_network("resnet51")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="in_channels=2"):
        build_network("resnet50", in_channels=2)
