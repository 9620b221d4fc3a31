"""The images stage end to end on a real local dask cluster and real Zarr stores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from image_trees import (
    CELEBA_ATTRS,
    lfw_faces,
    truncate,
    write_catalog,
    write_celeba_tree,
    write_class_tree,
    write_identity_tree,
    write_imagenet_tree,
)
from PIL import Image

from mfrs.catalog import load_catalog
from mfrs.errors import ConfigError, StoreError
from mfrs.pipeline import run_stage
from mfrs.stages import images as stage
from mfrs.store import MARKER_DIR, ZarrStore


def _catalog(tmp_path: Path, **sources: Path):
    entries = {name: ("images", path) for name, path in sources.items()}
    entries["images"] = ("zarr", tmp_path / "out")
    entries["eye_model"] = ("weights", _eye_cascade())
    return load_catalog(write_catalog(tmp_path / "catalog.yaml", entries))


def _eye_cascade() -> str:
    return "package:cv2/data/haarcascade_eye.xml"  # the eye cascade inside OpenCV's wheel


def _config(*datasets: dict, seed: int = 0) -> stage.Config:
    return stage.Config.model_validate({"seed": seed, "datasets": list(datasets)})


def _markers(store_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((store_path / MARKER_DIR).glob("*.json"))}


def test_identity_folders_with_face_crops(tmp_path: Path, local_client) -> None:
    sizes = {"alice": 7, "bob": 6, "carol": 8}
    write_identity_tree(tmp_path / "vgg", sizes, suffix=".jpg", kind="canvas")
    catalog = _catalog(tmp_path, vgg=tmp_path / "vgg")
    cfg = _config({"output": "images/vgg", "source": "vgg", "layout": "identity_folders",
                   "split": {"train": None, "valid": 1, "test": 2}, "crop": {"size": 40, "margin": 0.0},
                   "chunk_items": 4})
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    ds = catalog.open("images/vgg").compute()
    assert ds.image.dims == ("item", "y", "x") and ds.image.shape == (21, 40, 40)
    assert ds.image.dtype == np.uint8
    assert all(f.split("/")[0] == i for f, i in zip(ds.source_file.values, ds.identity.values))
    counts = Counter(zip(ds.identity.values.tolist(), ds.split.values.tolist()))
    for ident, n in sizes.items():
        assert (counts[(ident, "valid")], counts[(ident, "test")], counts[(ident, "train")]) == (1, 2, n - 3)
    assert ds.attrs["identities"] == ["alice", "bob", "carol"]
    assert dict(zip(ds.identity.values.tolist(), ds.label.values.tolist())) == {"alice": 0, "bob": 1, "carol": 2}
    ok = np.char.startswith(ds.status.values.astype(str), "ok")
    assert ok.sum() >= 17
    for row in ds.attrs["failed"]:
        assert "no face found" in row["reason"] and row["source_file"] in row["reason"]
    assert ds.attrs["n_failed"] == int((~ok).sum())
    # Planted effect: each crop looks like its own LFW face more than like the others.
    faces = np.stack([np.asarray(Image.fromarray(f).resize((40, 40), Image.Resampling.BILINEAR), float)
                      for f in lfw_faces()])
    names = sorted(sizes)
    own, other = [], []
    for img, ident, src, good in zip(ds.image.values, ds.identity.values, ds.source_file.values, ok):
        if not good:
            continue
        index = (7 * names.index(ident) + int(Path(src).stem)) % 100
        r = np.array([np.corrcoef(img.ravel().astype(float), f.ravel())[0, 1] for f in faces])
        own.append(r[index])
        other.append(np.median(np.delete(r, index)))
    assert np.mean(own) > np.mean(other) + 0.3
    assert ds.attrs["provenance"]["stage"] == "images"


def test_celeba_corrupt_files_are_recorded_and_the_rest_converts(tmp_path: Path, local_client) -> None:
    written = write_celeba_tree(tmp_path / "celeba", [5, 12, 40, 7], 6)
    img_dir = tmp_path / "celeba" / "img_align_celeba"
    truncate(img_dir / "000004.jpg", 0.4)
    (img_dir / "000009.jpg").write_bytes(b"this is not a jpeg")
    (img_dir / "000015.jpg").unlink()
    catalog = _catalog(tmp_path, celeba=tmp_path / "celeba")
    cfg = _config({"output": "images/celeba", "source": "celeba", "layout": "celeba",
                   "split": {"train": None, "valid": 1, "test": 1},
                   "crop": {"mode": "center", "size": 25}, "chunk_items": 5})
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    ds = catalog.open("images/celeba").compute()
    assert ds.sizes["item"] == 24
    failed = {row["source_file"]: row["reason"] for row in ds.attrs["failed"]}
    assert set(failed) == {f"img_align_celeba/{n}" for n in ("000004.jpg", "000009.jpg", "000015.jpg")}
    assert "truncated" in failed["img_align_celeba/000004.jpg"].lower()
    assert "cannot decode image" in failed["img_align_celeba/000009.jpg"]
    assert "file not found" in failed["img_align_celeba/000015.jpg"]
    assert all(str(img_dir / Path(f).name) in reason for f, reason in failed.items())
    for img, src, status, attrs in zip(ds.image.values, ds.source_file.values, ds.status.values,
                                       ds.attributes.values):
        name = Path(src).name
        k = int(Path(src).stem)
        assert attrs.tolist() == [1 if (k >> a) & 1 else -1 for a in range(len(CELEBA_ATTRS))]
        if src in failed:
            assert status.startswith("failed: ") and not img.any()
        else:
            assert status == "ok"
            np.testing.assert_array_equal(img, np.asarray(Image.open(img_dir / name).convert("L")))
    assert dict(zip(ds.source_file.values, ds.identity.values)) == {
        f"img_align_celeba/{n}": str(i) for n, (i, _) in written.items()}


def test_variants_differ_exactly_by_the_listed_identities(tmp_path: Path, local_client) -> None:
    write_celeba_tree(tmp_path / "celeba", [5, 12, 40, 7, 99], 5)
    write_identity_tree(tmp_path / "meg", {"700": 4}, suffix=".png")
    catalog = _catalog(tmp_path, celeba=tmp_path / "celeba", meg_famous=tmp_path / "meg")
    base = {"output": "images/celeba", "source": "celeba", "layout": "celeba",
            "split": {"train": None, "valid": 1, "test": 1}, "crop": {"mode": "center", "size": 25},
            "chunk_items": 8}
    cfg = _config(base,
                  {"extends": "images/celeba", "output": "images/celeba_no_meg", "drop_identities": [12, "40"]},
                  {"extends": "images/celeba", "output": "images/celeba_meg",
                   "add": [{"source": "meg_famous", "layout": "identity_folders"}]}, seed=4)
    assert stage.outputs(cfg, catalog) == ["images/celeba", "images/celeba_no_meg", "images/celeba_meg"]
    assert stage.inputs(cfg, catalog) == ["celeba", "meg_famous"]
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    full = catalog.open("images/celeba").compute()
    without = catalog.open("images/celeba_no_meg").compute()
    added = catalog.open("images/celeba_meg").compute()
    assert set(full.identity.values) - set(without.identity.values) == {"12", "40"}
    assert set(without.identity.values) < set(full.identity.values)
    assert set(added.identity.values) - set(full.identity.values) == {"700"}
    assert set(full.identity.values) < set(added.identity.values)
    assert Counter(added.source.values.tolist()) == {"celeba": 25, "meg_famous": 4}
    # the items the variants share keep their split and pixels
    for variant in (without, added):
        shared = variant.where(variant.source == "celeba", drop=True)
        ref = full.set_index(item="source_file").sel(item=shared.source_file.values)
        assert shared.split.values.tolist() == ref.split.values.tolist()
        np.testing.assert_array_equal(shared.image.values, ref.image.values)
    assert "attributes" not in added.coords  # the added source has none
    assert added.attrs["identities"] == ["5", "7", "12", "40", "99", "700"]


def test_imagenet_given_split_rgb_and_class_subset(tmp_path: Path, local_client) -> None:
    written = write_imagenet_tree(tmp_path / "inet", ["n01", "n02", "n03"], 4, 2)
    write_class_tree(tmp_path / "objects", {"cat": 3, "dog": 2})
    catalog = _catalog(tmp_path, inet=tmp_path / "inet", objects=tmp_path / "objects")
    cfg = _config({"output": "images/inet", "source": "inet", "layout": "imagenet",
                   "identities": ["n01", "n03"], "split": {"mode": "given"},
                   "crop": {"mode": "center", "size": 24, "color": "rgb"}},
                  {"output": "images/objects", "source": "objects", "layout": "class_folders",
                   "split": {"mode": "disjoint_identities", "train": 1, "valid": 1, "test": 0},
                   "crop": {"mode": "none", "size": 25}})
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    ds = catalog.open("images/inet").compute()
    assert ds.image.dims == ("item", "y", "x", "channel") and ds.image.shape == (12, 24, 24, 3)
    assert list(ds.channel.values) == ["red", "green", "blue"]
    expected = {f: c for f, c in written.items() if c in ("n01", "n03")}
    assert dict(zip(ds.source_file.values, ds.identity.values)) == expected
    for f, s in zip(ds.source_file.values, ds.split.values):
        assert s == ("train" if "/train/" in f else "valid")
    assert set(ds.status.values) == {"ok"}
    objects = catalog.open("images/objects").compute()
    assert {s: set(objects.identity.values[objects.split.values == s]) for s in ("train", "valid")} in (
        {"train": {"cat"}, "valid": {"dog"}}, {"train": {"dog"}, "valid": {"cat"}})


def test_rerun_skips_complete_units_and_changed_settings_need_overwrite(tmp_path: Path, local_client,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    write_identity_tree(tmp_path / "ids", {"a": 4, "b": 5})
    catalog = _catalog(tmp_path, ids=tmp_path / "ids")
    spec = {"output": "images/ids", "source": "ids", "layout": "identity_folders",
            "split": {"train": None, "valid": 1, "test": 0}, "crop": {"mode": "none", "size": 25},
            "chunk_items": 3}
    run_stage(stage, config=_config(spec), catalog=catalog, client=local_client)
    path = catalog.path("images/ids")
    before = _markers(path)
    assert len(before) == 3
    caplog.clear()
    run_stage(stage, config=_config(spec), catalog=catalog, client=local_client)
    assert _markers(path) == before
    assert sum("complete, skipping" in r.getMessage() for r in caplog.records) == 3
    assert stage.plan(config=_config(spec), catalog=catalog).n_tasks == 0
    changed = {**spec, "crop": {"mode": "none", "size": 20}}
    with pytest.raises(StoreError, match="exists with another layout .* Rerun with --overwrite"):
        run_stage(stage, config=_config(changed), catalog=catalog, client=local_client)
    with pytest.raises(StoreError, match="was made with other parameters"):
        run_stage(stage, config=_config(spec, seed=1), catalog=catalog, client=local_client)
    run_stage(stage, config=_config(changed), catalog=catalog, client=local_client, overwrite=True)
    assert catalog.open("images/ids").image.shape == (9, 20, 20)


_CHILD = """
import json, sys, time
from distributed import Client, LocalCluster
from mfrs.catalog import load_catalog
from mfrs.pipeline import run_stage
from mfrs.stages import images as stage

convert = stage.convert_items
def slow(*args, **kwargs):  # slow enough to be killed half-way
    time.sleep(0.5)
    return convert(*args, **kwargs)
stage.convert_items = slow

if __name__ == "__main__":
    cfg = stage.Config.model_validate(json.loads(sys.argv[2]))
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        run_stage(stage, config=cfg, catalog=load_catalog(sys.argv[1]), client=client)
"""


def test_a_killed_conversion_resumes_without_duplicates(tmp_path: Path, local_client) -> None:
    written = write_identity_tree(tmp_path / "ids", {f"p{i}": 6 for i in range(5)})
    catalog = _catalog(tmp_path, ids=tmp_path / "ids")
    spec = {"seed": 2, "datasets": [{"output": "images/ids", "source": "ids", "layout": "identity_folders",
                                     "split": {"train": None, "valid": 1, "test": 1},
                                     "crop": {"mode": "none", "size": 25}, "chunk_items": 3}]}
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(catalog.source), json.dumps(spec)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = catalog.path("images/ids")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(list((path / MARKER_DIR).glob("*.json"))) < 3:
            assert proc.poll() is None, "the conversion ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = _markers(path)
    assert 3 <= len(first) < 10
    run_stage(stage, config=stage.Config.model_validate(spec), catalog=catalog, client=local_client)
    after = _markers(path)
    assert len(after) == 10
    assert all(after[k] == v for k, v in first.items())  # finished units were not redone
    ds = catalog.open("images/ids").compute()
    assert ds.sizes["item"] == 30
    assert len(set(ds.source_file.values)) == 30 and set(ds.source_file.values) == set(written)
    for img, src in zip(ds.image.values, ds.source_file.values):
        np.testing.assert_array_equal(img, written[src])
    assert set(ds.status.values) == {"ok"}


def test_config_errors_name_the_problem(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="no earlier dataset has output 'images/celeb'"):
        _config({"output": "images/celeba", "source": "c", "layout": "celeba"},
                {"extends": "images/celeb", "output": "images/x"})
    with pytest.raises(ValidationError, match=r"several datasets write the same output \['images/a'\]"):
        _config({"output": "images/a", "source": "c", "layout": "celeba"},
                {"output": "images/a", "source": "d", "layout": "celeba"})
    write_identity_tree(tmp_path / "ids", {"a": 2})
    catalog = _catalog(tmp_path, ids=tmp_path / "ids")
    with pytest.raises(ConfigError, match="source 'eye_model' is a catalog entry of kind 'weights'"):
        stage.prepare_listing(stage.DatasetSpec(output="images/x", source="eye_model", layout="celeba"),
                              catalog, seed=0)
    with pytest.raises(ConfigError, match="output 'ids' is a catalog entry of kind 'images'; it must be a zarr"):
        stage.convert_dataset(stage.DatasetSpec(output="ids", source="ids", layout="identity_folders"),
                              catalog=catalog, client=None, seed=0)


def test_pipeline_section_validates_and_provenance_holds_only_the_dataset(tmp_path: Path, local_client) -> None:
    import yaml

    from mfrs.pipeline import load_pipeline, stage_config, stage_module

    write_identity_tree(tmp_path / "ids", {"a": 3, "b": 3})
    catalog = _catalog(tmp_path, ids=tmp_path / "ids")
    section = {"datasets": [{"output": "images/ids", "source": "ids", "layout": "identity_folders",
                             "landmarks": "eye_model", "split": {"valid": 0, "test": 0},
                             "crop": {"mode": "face", "size": 32, "no_face": "center"}}]}
    pipe_file = tmp_path / "p.yaml"
    pipe_file.write_text(yaml.safe_dump({"seed": 7, "stages": ["images"], "config": {"images": section}}))
    cfg = stage_config(stage_module("images"), load_pipeline(pipe_file))
    assert cfg.seed == 7 and cfg.datasets[0].landmarks == "eye_model"
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    prov = ZarrStore.open(catalog.path("images/ids")).provenance
    assert set(prov["parameters"]) == {"seed", "dataset"}
    assert set(prov["parameters"]["dataset"]) == set(stage.DatasetSpec.model_fields)
    assert set(prov["inputs"]) == {"ids", "eye_model", "opencv:haarcascade_frontalface_default.xml"}
    statuses = set(catalog.open("images/ids").status.values)
    assert statuses <= {"ok", "ok: no face found, centre crop", "ok: eyes not found, not aligned"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stages": ["images"], "config": {"images": {"datasetz": []}}}))
    with pytest.raises(ConfigError, match=r"config\.images\.datasetz: Extra inputs are not permitted\. "
                                          r"Did you mean 'datasets'\?"):
        load_pipeline(bad)
