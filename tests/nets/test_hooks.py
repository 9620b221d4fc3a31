"""Hooks: the layer list and shapes, reused modules, copies taken before in-place operations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mfrs.errors import ConfigError
from mfrs.nets.architectures import build_network
from mfrs.nets.hooks import LayerRecorder, probe_layers, select_modules
from mfrs.nets.types import LAYER_KINDS


def test_mobilenet_layer_list_and_shapes() -> None:
    torch.manual_seed(0)
    model = build_network("mobilenet_v2", in_channels=1, num_classes=10).eval()
    layers = probe_layers(model, ["conv", "batchnorm", "relu", "linear"], (1, 64, 64))
    # MobileNetV2 runs its modules once each, in registration order
    expected = [n for n, m in model.named_modules()
                if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU6, nn.Linear))]
    assert [lay.name for lay in layers] == expected
    assert len(layers) == 52 + 52 + 35 + 1
    by_name = {lay.name: lay for lay in layers}
    assert by_name["features.0.0"].shape == (32, 32, 32)
    assert by_name["features.18.2"].shape == (1280, 2, 2)
    assert by_name["classifier.1"].shape == (10,)
    assert [lay.index for lay in layers] == list(range(len(layers)))
    # recorded values equal the network's own intermediate outputs
    x = torch.randn(3, 1, 64, 64)
    with LayerRecorder(model, select_modules(model, ["conv", "batchnorm", "relu", "linear"])) as rec:
        out = rec.run(x)
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    np.testing.assert_allclose(out["features.18.2"], feats.reshape(3, -1).numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(out["classifier.1"], logits.numpy(), rtol=1e-5, atol=1e-12)
    assert {k: v.shape[1] for k, v in out.items()} == {lay.name: lay.units for lay in layers}


def test_meta_probe_equals_real_probe() -> None:
    real = probe_layers(build_network("inception_v3", in_channels=1).eval(), LAYER_KINDS, (1, 80, 80))
    with torch.device("meta"):
        meta_model = build_network("inception_v3", in_channels=1).eval()
    meta = probe_layers(meta_model, LAYER_KINDS, (1, 80, 80), device="meta")
    assert [(lay.name, lay.shape, lay.kind) for lay in real] == [(lay.name, lay.shape, lay.kind) for lay in meta]
    # whole Inception blocks are recorded, the auxiliary head (training only) is not
    assert "Mixed_5b" in {lay.name for lay in real}
    assert not any(lay.name.startswith("AuxLogits") for lay in real)


def test_reused_modules_give_one_layer_per_call_and_copies_precede_inplace_ops() -> None:
    torch.manual_seed(0)
    model = build_network("resnet50", in_channels=1, num_classes=4).eval()
    kinds = ["conv", "batchnorm", "relu"]
    x = torch.randn(2, 1, 64, 64)
    with LayerRecorder(model, select_modules(model, kinds)) as rec:
        out = rec.run(x)
    names = list(out)
    assert [n for n in names if n.startswith("layer1.0.relu")] == \
        ["layer1.0.relu@0", "layer1.0.relu@1", "layer1.0.relu@2"]
    # independent forward of stem + first bottleneck, step by step without in-place ops
    block = model.layer1[0]
    with torch.no_grad():
        stem = model.maxpool(torch.relu(model.bn1(model.conv1(x))))
        a = torch.relu(block.bn1(block.conv1(stem)))
        b = torch.relu(block.bn2(block.conv2(a)))
        bn3 = block.bn3(block.conv3(b))
        final = torch.relu(bn3 + block.downsample(stem))
    # bn3's output is modified in place by `out += identity`; the hook must have copied it first
    np.testing.assert_allclose(out["layer1.0.bn3"], bn3.reshape(2, -1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["layer1.0.bn1"], block.bn1(block.conv1(stem)).detach().reshape(2, -1).numpy(),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["layer1.0.relu@0"], a.reshape(2, -1).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["layer1.0.relu@2"], final.reshape(2, -1).numpy(), rtol=1e-5, atol=1e-5)


def test_cornet_recurrent_steps_and_areas() -> None:
    model = build_network("cornet_s", in_channels=1).eval()
    layers = probe_layers(model, ["conv", "block"], (1, 64, 64))
    names = [lay.name for lay in layers]
    assert [n for n in names if n.startswith("V4.conv2")] == [f"V4.conv2@{t}" for t in range(4)]
    assert [lay.name for lay in layers if lay.kind == "block"] == ["V1", "V2", "V4", "IT"]
    shapes = {lay.name: lay.shape for lay in layers}
    assert shapes["V4.conv2@0"] == (1024, 4, 4) and shapes["V4.conv2@3"] == (1024, 4, 4)
    assert shapes["IT"] == (512, 2, 2)


def test_facenet_blocks_and_prelu_kind() -> None:
    facenet = build_network("facenet", in_channels=1).eval()
    blocks = [lay.name for lay in probe_layers(facenet, ["block"], (1, 96, 96))]
    assert blocks == [*(f"repeat_1.{i}" for i in range(5)), "mixed_6a", *(f"repeat_2.{i}" for i in range(10)),
                      "mixed_7a", *(f"repeat_3.{i}" for i in range(5)), "block8"]
    sphere = build_network("sphereface20", in_channels=1).eval()
    relus = probe_layers(sphere, ["relu"], (1, 64, 64))
    assert len(relus) == 20 and relus[0].name == "relu1_1"


def test_unknown_kind() -> None:
    with pytest.raises(ConfigError, match=r"unknown layer kinds \['gelu'\]"):
        select_modules(nn.Linear(2, 2), ["gelu"])  # type: ignore[list-item]
