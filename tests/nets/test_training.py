"""Training: losses, the loop on a tiny real-image set, checkpoints, resume, the stage on a cluster."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from nets_helpers import write_faces

from mfrs.errors import StoreError
from mfrs.nets import training as steps
from mfrs.nets.losses import FaceLoss, margin_logits
from mfrs.nets.weights import load_network, sha256_file
from mfrs.pipeline import run_stage
from mfrs.stages import train as training

BASE = dict(network="mobilenet_v2", images="faces", output="trained", input_size=32, optimizer="adam",
            lr=2e-3, weight_decay=0.0, epochs=2, batch_size=5, step_size=1, gamma=0.5, seed=3)


def test_margin_logits_match_the_formulas() -> None:
    rng = np.random.default_rng(0)
    cos = rng.uniform(-0.99, 0.99, size=(5, 4))
    cos[4, 2] = -0.95  # theta + m > pi: the monotone extension
    labels = np.array([0, 3, 1, 1, 2])
    s, m = 30.0, 0.5
    arc = margin_logits(torch.tensor(cos), torch.tensor(labels), kind="arcface", margin=m, scale=s).numpy()
    cosf = margin_logits(torch.tensor(cos), torch.tensor(labels), kind="cosface", margin=0.35, scale=s).numpy()
    for i, y in enumerate(labels):
        theta = math.acos(cos[i, y])
        want = math.cos(theta + m) if theta + m < math.pi else cos[i, y] - math.sin(math.pi - m) * m
        assert arc[i, y] == pytest.approx(s * want, rel=1e-9)
        assert cosf[i, y] == pytest.approx(s * (cos[i, y] - 0.35), rel=1e-9)
        others = [j for j in range(4) if j != y]
        np.testing.assert_allclose(arc[i, others], s * cos[i, others])
        np.testing.assert_allclose(cosf[i, others], s * cos[i, others])


def test_margin_loss_uses_cosines_of_the_classifier() -> None:
    torch.manual_seed(0)
    fc = torch.nn.Linear(6, 3)
    feats, labels = torch.randn(4, 6), torch.tensor([0, 1, 2, 1])
    loss = FaceLoss("cosface", fc, margin=0.2, scale=10.0)
    cos = (feats / feats.norm(dim=1, keepdim=True)) @ (fc.weight / fc.weight.norm(dim=1, keepdim=True)).T
    logits = 10.0 * cos.clone()
    logits[torch.arange(4), labels] -= 10.0 * 0.2
    torch.testing.assert_close(loss(fc(feats), feats, labels), torch.nn.functional.cross_entropy(logits, labels))


def test_loss_falls_and_resume_continues_the_same_run(nets_catalog, tmp_path) -> None:
    images = write_faces(nets_catalog, n_per_class=6, n_valid=1)
    cfg = training.Config(**BASE)
    full = training.train(cfg, images_path=images, output_dir=tmp_path / "full", images_entry="faces")
    assert full["epochs_run"] == 2 and full["weights"]
    metrics = steps.read_metrics(tmp_path / "full")
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert [m["lr"] for m in metrics] == pytest.approx([2e-3, 1e-3])  # step LR
    assert {"valid_loss", "valid_accuracy", "seconds"} <= set(metrics[0])

    # interrupted after one epoch, then resumed: the same run, bit for bit
    part = training.train(cfg, images_path=images, output_dir=tmp_path / "part", images_entry="faces",
                          stop_after=1)
    assert part["epochs_run"] == 1 and part["weights"] is None
    assert steps.last_checkpoint(tmp_path / "part").name == "epoch-001.pt"
    rest = training.train(cfg, images_path=images, output_dir=tmp_path / "part", images_entry="faces")
    assert rest["epochs_run"] == 1 and rest["last_epoch"] == 2
    resumed = steps.read_metrics(tmp_path / "part")
    assert [m["train_loss"] for m in resumed] == [m["train_loss"] for m in metrics]
    a = torch.load(full["weights"], weights_only=True)
    b = torch.load(rest["weights"], weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the final weights load through the weights module with the recorded entry
    entry = json.loads((tmp_path / "full" / "weights.json").read_text())
    assert entry["params"]["sha256"] == sha256_file(tmp_path / "full" / "weights.pth")
    loaded = load_network("mobilenet_v2", "faces_mnv2", in_channels=1, entry_params=entry["params"],
                          location=entry["location"])
    assert loaded.num_classes == 4 and loaded.reinitialised == []

    # raising epochs continues; changing a setting that matters is refused
    more = training.train(cfg.model_copy(update={"epochs": 3}), images_path=images,
                          output_dir=tmp_path / "full", images_entry="faces")
    assert more["epochs_run"] == 1 and more["last_epoch"] == 3
    with pytest.raises(StoreError, match="checkpoints of other settings.*--overwrite"):
        training.train(cfg.model_copy(update={"lr": 0.1}), images_path=images, output_dir=tmp_path / "full",
                       images_entry="faces")


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adamw"])
def test_other_optimizers_step(nets_catalog, tmp_path, optimizer: str) -> None:
    images = write_faces(nets_catalog, n_per_class=2, n_valid=0)
    lr = 2e-3 if optimizer == "adamw" else 0.05
    cfg = training.Config(**{**BASE, "optimizer": optimizer, "lr": lr, "epochs": 1, "batch_size": 4,
                              "network": "sphereface20"})
    result = training.train(cfg, images_path=images, output_dir=tmp_path, images_entry="faces")
    before = load_network("sphereface20", "untrained-seed3", in_channels=1, num_classes=4).model.state_dict()
    after = torch.load(result["weights"], weights_only=True)
    assert not torch.equal(before["conv1_1.weight"], after["conv1_1.weight"])
    assert np.isfinite(steps.read_metrics(tmp_path)[0]["train_loss"])


def test_stage_trains_with_arcface_on_the_gpu_worker(nets_catalog, local_client) -> None:
    from mfrs.cluster import gpu_workers

    write_faces(nets_catalog, n_per_class=4, n_valid=1)
    cfg = training.Config(**{**BASE, "network": "sphereface20", "loss": "arcface", "scale": 16.0,
                             "margin": 0.2, "epochs": 3, "lr": 1e-3, "batch_size": 4})
    result = run_stage(training, config=cfg, catalog=nets_catalog, client=local_client)
    record = result["sphereface20->trained"]
    assert record["worker"] == gpu_workers(local_client)[0]
    out = nets_catalog.path("trained")
    metrics = steps.read_metrics(out)
    assert len(metrics) == 3 and metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert json.loads((out / "provenance.json").read_text())["stage"] == "train"
    # a second run finds every epoch done and trains nothing
    again = run_stage(training, config=cfg, catalog=nets_catalog, client=local_client)
    assert again["sphereface20->trained"]["epochs_run"] == 0


def test_pairwise_loss_trains_on_identity_batches_and_center_loss_resumes(nets_catalog, tmp_path, caplog) -> None:
    """Triplet loss on P x K batches of the training split; the center loss's centres live in the
    checkpoint, so an interrupted run resumes bit for bit. Without CUDA the log says CPU."""
    import logging

    images = write_faces(nets_catalog, n_per_class=6, n_valid=2)
    cfg = training.Config(**{**BASE, "loss": "triplet", "batch_size": 8, "images_per_identity": 2})
    with caplog.at_level(logging.INFO, logger="mfrs"):
        training.train(cfg, images_path=images, output_dir=tmp_path / "triplet", images_entry="faces")
    cpu_line = "train: no CUDA device visible in this process, running on the CPU"
    assert (cpu_line in caplog.text) == (not torch.cuda.is_available())
    metrics = steps.read_metrics(tmp_path / "triplet")
    assert [m["train_accuracy"] for m in metrics] == [None, None]  # no classifier is trained
    assert all(np.isfinite(m["train_loss"]) and np.isfinite(m["valid_loss"]) for m in metrics)

    center = training.Config(**{**BASE, "loss": "center", "center_weight": 0.1})
    full = training.train(center, images_path=images, output_dir=tmp_path / "c1", images_entry="faces")
    training.train(center, images_path=images, output_dir=tmp_path / "c2", images_entry="faces", stop_after=1)
    rest = training.train(center, images_path=images, output_dir=tmp_path / "c2", images_entry="faces")
    last = [steps.read_checkpoint(p / "checkpoints" / "epoch-002.pt") for p in (tmp_path / "c1", tmp_path / "c2")]
    assert last[0]["loss"]["centers"].abs().sum() > 0
    assert torch.equal(last[0]["loss"]["centers"], last[1]["loss"]["centers"])
    a, b = (torch.load(r["weights"], weights_only=True) for r in (full, rest))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_identity_batches_stay_in_their_split() -> None:
    labels = np.repeat(np.arange(6), 5)
    split = np.tile(["train", "train", "train", "valid", "test"], 6)
    train_idx = np.flatnonzero(split == "train")
    got = list(steps.identity_batches(train_idx, labels, batch_size=6, per_identity=3,
                                         rng=np.random.default_rng(1)))
    flat = np.concatenate(got)
    assert sorted(flat.tolist()) == train_idx.tolist()  # every training item once, nothing else
    for b in got:
        counts = np.bincount(labels[b])
        assert (counts[counts > 0] >= 2).all() and (counts > 0).sum() >= 2  # positives and negatives


def test_block_shuffle_batches_cover_each_item_once() -> None:
    idx = np.arange(3, 50)
    got = list(steps.batches(idx, 8, batch_size=5, shuffle_chunks=2, rng=np.random.default_rng(0),
                                drop_last=False))
    flat = np.concatenate(got)
    assert sorted(flat.tolist()) == idx.tolist() and flat.tolist() != idx.tolist()
    assert all(len(np.unique(b // 8)) <= 3 for b in got)  # a batch touches few store chunks
    dropped = list(steps.batches(idx, 8, batch_size=5, shuffle_chunks=2, rng=None, drop_last=True))
    assert all(len(b) == 5 for b in dropped) and len(dropped) == 47 // 5


def test_trained_weights_feed_the_activations_stage(nets_catalog, tmp_path, local_client) -> None:
    """Weights written by training, added to the catalog as training says, run in the activations stage."""
    import yaml
    from nets_helpers import write_stimuli

    from mfrs.catalog import load_catalog
    from mfrs.stages import activations

    images = write_faces(nets_catalog, n_per_class=2, n_valid=0)
    cfg = training.Config(**{**BASE, "network": "sphereface20", "epochs": 1, "batch_size": 4})
    out = nets_catalog.path("trained")
    training.train(cfg, images_path=images, output_dir=out, images_entry="faces")
    raw = yaml.safe_load(nets_catalog.source.read_text())
    raw["entries"]["weights_sphereface20_faces"] = json.loads((out / "weights.json").read_text())
    nets_catalog.source.write_text(yaml.safe_dump(raw))
    catalog = load_catalog(nets_catalog.source)
    write_stimuli(catalog)
    acts = activations.Config(networks=[{"network": "sphereface20", "weights": "weights_sphereface20_faces",
                                         "input_size": 32}], layer_kinds=["linear"], batch_size=6)
    run_stage(activations, config=acts, catalog=catalog, client=local_client)
    ds = catalog.open("activations/sphereface20/faces")
    assert ds["fc6"].shape == (6, 4)  # the trained 4-class head, not a 1000-class default
    model = load_network("sphereface20", "untrained-seed0", in_channels=1, num_classes=4).model
    model.load_state_dict(torch.load(out / "weights.pth", weights_only=True))
    from mfrs.nets.preprocess import prepare_images

    x = prepare_images(catalog.open("stimuli")["image"].values, size=32, in_channels=1, mean=[0.3612],
                       std=[0.3056])
    with torch.no_grad():
        np.testing.assert_allclose(ds["fc6"].values, model.eval()(x).numpy(), rtol=1e-4, atol=1e-4)
