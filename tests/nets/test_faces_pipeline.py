"""The ``faces`` pipeline end to end on the demo's MEG, and the generated identity folders it starts from.

Oracle of the training: verification on identities the network never saw. For every pair of
held-out images, the cosine of their embeddings (the classifier's input) should be higher for
one identity than for two; scikit-learn's ROC AUC of that ranking must be higher for the trained
network than for the untrained seed it started from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from tests_support import run_mfrs

from mfrs.errors import StoreError
from mfrs.pipeline import run_stage


def verification_auc(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, size: int) -> float:
    """ROC AUC of embedding cosines for same-identity pairs against different-identity pairs."""
    from sklearn.metrics import roc_auc_score

    from mfrs.nets.losses import final_linear
    from mfrs.nets.preprocess import prepare_images

    captured = {}
    handle = final_linear(model)[1].register_forward_pre_hook(lambda m, a: captured.__setitem__("x", a[0]))
    with torch.no_grad():
        model.eval()(prepare_images(images, size=size, in_channels=1, mean=[0.3612], std=[0.3056]))
    handle.remove()
    emb = captured["x"].numpy()
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(len(labels), 1)
    return float(roc_auc_score(labels[i] == labels[j], np.sum(emb[i] * emb[j], axis=1)))


@pytest.mark.slow
def test_faces_pipeline_trained_network_beats_its_seed_on_held_out_identities(demo_run, tmp_path: Path) -> None:
    from mfrs.nets.weights import load_network

    demo_root, _ = demo_run
    root = tmp_path / "faces"
    root.mkdir()
    shutil.copytree(demo_root / "stimuli.zarr", root / "stimuli.zarr")
    (root / "sources.zarr").symlink_to(demo_root / "sources.zarr")  # read only: similarity reads it
    run_mfrs("run", "faces", root=root)

    images = xr.open_zarr(root / "images" / "faces.zarr")
    split = images["split"].values.astype(str)
    train_ids = set(images["identity"].values[split == "train"].astype(str))
    test_ids = set(images["identity"].values[split == "test"].astype(str))
    assert len(test_ids) == 16 and not train_ids & test_ids  # held-out identities
    held_out = split == "test"
    pixels, labels = images["image"].values[held_out], images["label"].values[held_out]

    entry = json.loads((root / "trained" / "faces" / "weights.json").read_text())
    trained = load_network("mobilenet_v2", "trained/faces", in_channels=1, entry_params=entry["params"],
                           location=entry["location"]).model
    seed = load_network("mobilenet_v2", "untrained-seed0", in_channels=1,
                        num_classes=entry["params"]["num_classes"]).model
    auc_trained = verification_auc(trained, pixels, labels, 48)
    auc_seed = verification_auc(seed, pixels, labels, 48)
    assert auc_trained > auc_seed + 0.02, (auc_trained, auc_seed)

    metrics = [json.loads(line) for line in (root / "trained" / "faces" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 8 and metrics[-1]["train_loss"] < metrics[0]["train_loss"]

    rsa = xr.open_zarr(root / "rsa.zarr")
    assert set(rsa["weights"].values.astype(str)) == {"trained-faces", "untrained-seed0"}
    group = rsa["r"].sel(subject="group").values
    assert np.isfinite(group).all() and np.abs(group).max() > 0
    acts = xr.open_zarr(root / "activations" / "mobilenet_v2" / "trained-faces.zarr")
    assert acts.sizes["stimulus"] == xr.open_zarr(root / "stimuli.zarr").sizes["stimulus"]

    # a rerun of the training finds every epoch done: nothing is trained or rewritten
    record = root / "trained" / "faces" / "weights.json"
    stamp = record.stat().st_mtime_ns
    run_mfrs("run", "faces", "--stages", "train", root=root)
    assert record.stat().st_mtime_ns == stamp
    assert len((root / "trained" / "faces" / "metrics.jsonl").read_text().splitlines()) == 8


def test_identity_folders_are_generated_once_and_never_mixed(nets_catalog) -> None:
    import yaml

    from mfrs.catalog import load_catalog
    from mfrs.stages import face_identities as identities

    raw = yaml.safe_load(nets_catalog.source.read_text())
    raw["entries"]["face_identities"] = {"kind": "images", "location": "face_identities"}
    nets_catalog.source.write_text(yaml.safe_dump(raw))
    catalog = load_catalog(nets_catalog.source)
    cfg = identities.Config(n_identities=3, images_per_identity=4, size=32, seed=5)
    assert run_stage(identities, config=cfg, catalog=catalog, client=None)["written"]
    folder = catalog.path("face_identities")
    assert sorted(p.name for p in folder.iterdir()) == ["lfw000", "lfw001", "lfw002", "provenance.json"]
    from PIL import Image

    views = [np.asarray(Image.open(p)) for p in sorted((folder / "lfw001").glob("*.png"))]
    assert len(views) == 4 and views[0].shape == (32, 32)
    assert not np.array_equal(views[0], views[1])  # each view its own pose and lighting
    # a view is much closer to another view of the same face than to another face
    other = np.asarray(Image.open(folder / "lfw002" / "0000.png")).astype(float)
    from skimage.data import lfw_subset
    from skimage.transform import resize

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    face = resize(lfw_subset()[1], (32, 32))
    assert corr(views[0], np.fliplr(face)) > 0.5 or corr(views[0], face) > 0.5
    assert max(corr(views[0], face), corr(views[0], np.fliplr(face))) > corr(other, face)

    stamp = (folder / "lfw000" / "0000.png").stat().st_mtime_ns
    assert not run_stage(identities, config=cfg, catalog=catalog, client=None)["written"]  # same settings: nothing to do
    assert (folder / "lfw000" / "0000.png").stat().st_mtime_ns == stamp
    with pytest.raises(StoreError, match=r"holds another identity set; rerun with --overwrite"):
        run_stage(identities, config=cfg.model_copy(update={"seed": 6}), catalog=catalog, client=None)
    assert run_stage(identities, config=cfg.model_copy(update={"seed": 6}), catalog=catalog, client=None, overwrite=True)["written"]


def test_train_output_folder_as_weights_needs_a_finished_training(nets_catalog) -> None:
    from mfrs.stages.activations import NetworkSpec, weights_entry, weights_label

    spec = NetworkSpec(network="sphereface20", weights="trained")
    assert weights_label(spec, nets_catalog) == "trained"
    with pytest.raises(StoreError, match=r"holds no finished training \(no weights.json\); run the train stage"):
        weights_entry("trained", nets_catalog)
