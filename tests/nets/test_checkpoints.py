"""Checkpoints as they are found: foreign layouts saved from mfrs's own modules load bit-exactly,
a broken file is reported tensor by tensor, and a malicious pickle is refused unexecuted."""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from mfrs.errors import InputDataError
from mfrs.nets.architectures import build_network, first_conv
from mfrs.nets.checkpoints import canonical, fit_checkpoint, strip_prefixes
from mfrs.nets.losses import final_linear
from mfrs.nets.weights import load_network, sha256_file

COUNTER = "num_batches_tracked"


def seeded(network: str, seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(network, **kwargs)


def fit(model: torch.nn.Module, state: dict, network: str, **kwargs):
    return fit_checkpoint(model, state, network=network, source="test file", first_conv=first_conv(model)[0],
                          classifier=final_linear(model)[0], **kwargs)


def assert_same(model: torch.nn.Module, expected: dict[str, torch.Tensor], *, skip: tuple[str, ...] = ()) -> None:
    """Every tensor of ``model`` equals ``expected`` bit for bit (same keys too)."""
    got = model.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        if not key.startswith(skip):
            assert torch.equal(got[key], value), key


def save_entry(tmp_path: Path, obj: object, network: str, name: str = "w.pth", **params) -> dict:
    path = tmp_path / name
    torch.save(obj, path)
    return {"location": path, "entry_params": {"network": network, "sha256": sha256_file(path), **params}}


def test_dataparallel_wrapped_study_checkpoint_loads_bit_exactly(tmp_path: Path) -> None:
    """``{"state_dict": {"module.model.<key>": ...}}`` with the study's names, through the catalog path."""
    reference = seeded("mobilenet_v2", 11, num_classes=6).state_dict()
    wrapped = OrderedDict((f"module.model.{k}", v) for k, v in reference.items())
    entry = save_entry(tmp_path, {"epoch": 30, "state_dict": wrapped}, "mobilenet_v2", num_classes=6)
    loaded = load_network("mobilenet_v2", "study_mnv2", in_channels=3, **entry)
    assert_same(loaded.model, reference)
    assert loaded.report.prefixes == ["module.", "model."]
    assert loaded.report.count("name") == len([k for k in reference if not k.endswith(COUNTER)])
    assert loaded.record()["fit"]["by_position"] == 0


def test_dicarlolab_cornet_s_layout_into_a_grayscale_network() -> None:
    """dicarlolab/CORnet's state dicts: DataParallel keys (``module.V1.conv1.weight``); loaded into a
    1-channel CORnet-S, the first convolution summed over colour (fitted in memory: the file would
    be 200 MB; the file-level unwrapping of ``state_dict`` is tested above)."""
    reference = seeded("cornet_s", 3).state_dict()
    model = seeded("cornet_s", 4, in_channels=1)
    report = fit(model, {f"module.{k}": v for k, v in reference.items()}, "cornet_s")
    assert report.prefixes == ["module."] and report.count("name") == len(
        [k for k in reference if not k.endswith(COUNTER)])
    assert_same(model, {**reference, "V1.conv1.weight": reference["V1.conv1.weight"].sum(1, keepdim=True)})


def test_classifier_and_batchnorm_renamed_resnet50() -> None:
    """The study's names: ``model.`` prefix, ``classifier`` for ``fc``, ``norm``/``gamma``/``beta`` for bn."""
    reference = seeded("resnet50", 2, num_classes=8).state_dict()

    def study_name(key: str) -> str:
        key = re.sub(r"^fc\.", "classifier.", key)
        key = re.sub(r"(^|\.)bn(\d)\.weight$", r"\1norm\2.gamma", key)
        key = re.sub(r"(^|\.)bn(\d)\.bias$", r"\1norm\2.beta", key)
        key = re.sub(r"(^|\.)bn(\d)\.running_var$", r"\1norm\2.moving_variance", key)
        return "model." + re.sub(r"(^|\.)bn(\d)\.", r"\1norm\2.", key)

    state = {study_name(k): v for k, v in reference.items()}
    assert "model.classifier.weight" in state and "model.layer1.0.norm1.gamma" in state
    model = seeded("resnet50", 99, num_classes=8)
    report = fit(model, state, "resnet50")
    assert_same(model, reference)
    assert report.ok and report.count("position") == 0
    assert report.count("alias") == sum(1 for k in reference if re.search(r"(^fc\.|bn\d\.)", k)
                                        and not k.endswith(COUNTER))
    assert report.summary()["renamed"]["fc.weight"] == "classifier.weight"


def test_position_matched_like_load_weights_with_grayscale_after_loading() -> None:
    """Every key renamed (only the order carries meaning), no batch counters (old torch): tensors are
    paired by position, then the RGB first convolution is summed over colour channels."""
    reference = seeded("mobilenet_v2", 4, num_classes=5).state_dict()
    state = OrderedDict((f"layer{i:03d}.param", v) for i, (k, v) in
                        enumerate((k, v) for k, v in reference.items() if not k.endswith(COUNTER)))
    model = seeded("mobilenet_v2", 5, in_channels=1, num_classes=5)
    report = fit(model, state, "mobilenet_v2")
    assert report.count("position") == len(state) and report.count("name") == 0
    conv = "features.0.0.weight"
    gray = {**reference, conv: reference[conv].sum(dim=1, keepdim=True)}
    assert_same(model, gray, skip=tuple(k for k in reference if k.endswith(COUNTER)))
    assert [p.adapt for p in report.pairs if p.target == conv] == ["gray"]
    # names-only refuses the same file and names what is left
    with pytest.raises(InputDataError, match=r"(?s)test file: the file does not fit mobilenet_v2.*"
                                             r"network tensor 'features.0.0.weight' \(expected shape \(32, 1, 3, 3\)\)"):
        fit(seeded("mobilenet_v2", 5, in_channels=1, num_classes=5), state, "mobilenet_v2", match="names")


def test_sphereface_fc6_without_bias_in_angle_linear_layout() -> None:
    """SphereFace-20's PyTorch port: ``fc6`` is an AngleLinear, weight ``(in, out)`` and no bias."""
    reference = seeded("sphereface20", 6, num_classes=7).state_dict()
    state = {f"module.{k}": v for k, v in reference.items() if k != "fc6.bias"}
    state["module.fc6.weight"] = reference["fc6.weight"].t().contiguous()
    model = seeded("sphereface20", 7, num_classes=7)
    report = fit(model, state, "sphereface20")
    assert model.fc6.bias is None and report.removed == ["fc6.bias"]
    assert [p.adapt for p in report.pairs if p.target == "fc6.weight"] == ["transpose"]
    expected = {k: v for k, v in reference.items() if k != "fc6.bias"}
    assert_same(model, expected)
    # the network computes what the bias-free original computes
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        emb = seeded("sphereface20", 6, num_classes=7).eval()
        emb.fc6 = torch.nn.Identity()
        torch.testing.assert_close(model.eval()(x), emb(x) @ reference["fc6.weight"].T, rtol=0, atol=0)
    # a file for 10574 identities into a 7-identity network: the classifier keeps the seeded init
    big = {**state, "module.fc6.weight": torch.randn(512, 10574)}
    fresh = seeded("sphereface20", 8, num_classes=7)
    init = fresh.fc6.weight.detach().clone()
    report = fit(fresh, big, "sphereface20")
    assert report.kept_init == ["fc6.weight"] and torch.equal(fresh.fc6.weight, init)
    assert torch.equal(fresh.fc5.weight, reference["fc5.weight"])


def test_inception_v3_without_auxlogits() -> None:
    reference = seeded("inception_v3", 9, num_classes=10).state_dict()
    state = {k: v for k, v in reference.items() if not k.startswith("AuxLogits.")}
    model = seeded("inception_v3", 10, num_classes=10)
    report = fit(model, state, "inception_v3")
    assert report.removed == ["AuxLogits"] and model.AuxLogits is None
    assert_same(model, state)
    out = model.train()(torch.randn(2, 3, 75, 75))
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 10)  # no aux output any more
    # with the head in the file, it is kept and loaded
    full = seeded("inception_v3", 10, num_classes=10)
    assert fit(full, reference, "inception_v3").removed == []
    assert_same(full, reference)
    # a 1000-class (torchvision) file into a 10-class network: both class heads keep their init
    imagenet = seeded("inception_v3", 11, num_classes=1000).state_dict()
    ten = seeded("inception_v3", 12, num_classes=10)
    init = {k: v.clone() for k, v in ten.state_dict().items() if k.startswith(("fc.", "AuxLogits.fc."))}
    report = fit(ten, imagenet, "inception_v3")
    assert sorted(report.kept_init) == sorted(init)
    assert_same(ten, {**imagenet, **init})


def test_facenet_pytorch_layout_with_another_identity_count() -> None:
    """facenet-pytorch's file names (ours), its classifier for 8631 VGGFace2 identities, into 5."""
    reference = seeded("facenet", 12, num_classes=20).state_dict()
    state = {**reference, "logits.weight": torch.randn(8631, 512), "logits.bias": torch.randn(8631)}
    model = seeded("facenet", 13, num_classes=5)
    init = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("logits.")}
    report = fit(model, state, "facenet")
    assert report.kept_init == ["logits.weight", "logits.bias"]
    assert_same(model, {**reference, **init})


def test_mismatch_report_on_a_broken_checkpoint(tmp_path: Path) -> None:
    reference = seeded("mobilenet_v2", 1, num_classes=4).state_dict()
    broken = dict(reference)
    broken["features.3.conv.1.1.weight"] = broken["features.3.conv.1.1.weight"][:10]  # truncated
    del broken["features.5.conv.0.1.running_var"], broken["features.6.conv.2.weight"]
    broken["center_loss.centers"] = torch.zeros(4, 1280)
    report = fit(seeded("mobilenet_v2", 2, num_classes=4), broken, "mobilenet_v2", strict=False)
    assert not report.ok
    assert report.mismatched == [("features.3.conv.1.1.weight", "features.3.conv.1.1.weight", (10,), (144,))]
    assert report.missing == [("features.5.conv.0.1.running_var", (192,)), ("features.6.conv.2.weight",
                                                                              (32, 192, 1, 1))]
    assert report.unused == [("center_loss.centers", (4, 1280))]
    entry = save_entry(tmp_path, broken, "mobilenet_v2", name="broken.pth")
    with pytest.raises(InputDataError) as err:
        load_network("mobilenet_v2", "broken", in_channels=3, num_classes=4, **entry)
    message = str(err.value)
    assert str(tmp_path / "broken.pth") in message
    assert "'features.3.conv.1.1.weight' of the file has shape (10,), network tensor " \
           "'features.3.conv.1.1.weight' expects (144,)" in message
    assert "'features.6.conv.2.weight' (expected shape (32, 192, 1, 1)) has no counterpart" in message
    assert "'center_loss.centers' of the file (shape (4, 1280)) matches no network tensor" in message
    # the entry's ignore pattern and the repaired tensors make the same file load
    repaired = {**broken, "features.3.conv.1.1.weight": reference["features.3.conv.1.1.weight"],
                "features.5.conv.0.1.running_var": reference["features.5.conv.0.1.running_var"],
                "features.6.conv.2.weight": reference["features.6.conv.2.weight"]}
    entry = save_entry(tmp_path, repaired, "mobilenet_v2", name="fixed.pth", ignore=["^center_loss\\."])
    loaded = load_network("mobilenet_v2", "fixed", in_channels=3, num_classes=4, **entry)
    assert loaded.report.ignored == ["center_loss.centers"]
    assert_same(loaded.model, reference)


class _Payload:
    """Pickles to a call that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_pickle_is_refused_and_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    state = dict(seeded("mobilenet_v2", 0, num_classes=3).state_dict())
    state["payload"] = _Payload(marker)
    entry = save_entry(tmp_path, state, "mobilenet_v2", name="evil.pth")
    with pytest.raises(InputDataError, match=r"evil.pth holds Python objects that torch.load\(weights_only=True\) "
                                             r"refuses"):
        load_network("mobilenet_v2", "evil", in_channels=3, num_classes=3, **entry)
    assert not marker.exists()
    # the training resume reads its checkpoints the same way
    from mfrs.nets import training as steps

    folder = tmp_path / "run"
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 1, "model": state}, folder / "checkpoints" / "epoch-001.pt")
    with pytest.raises(InputDataError, match="epoch-001.pt holds Python objects"):
        steps.read_checkpoint(folder / "checkpoints" / "epoch-001.pt")
    assert not marker.exists()
    # the payload is live: an unsafe load would have run it
    torch.load(entry["location"], weights_only=False)
    assert marker.exists()


def test_prefixes_and_canonical_names() -> None:
    state, found = strip_prefixes({"module.conv.weight": torch.zeros(1), "model.fc.bias": torch.zeros(1)})
    assert sorted(state) == ["conv.weight", "fc.bias"] and found == ["module.", "model."]
    with pytest.raises(InputDataError, match="both become 'fc.bias'"):
        strip_prefixes({"module.fc.bias": torch.zeros(1), "fc.bias": torch.zeros(1)})
    assert canonical("V1.BatchNorm_2.moving_mean") == "v1.bn_2.running_mean"
    assert canonical("logits.weight") == "@classifier.weight"
    assert canonical("last_linear.weight", classifier="logits", aliases=False) == "last_linear.weight"
