"""The data catalog: loading, location resolution, environment expansion, lazy opening."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mfrs.catalog import load_catalog
from mfrs.errors import CatalogError, StoreError

REPO = Path(__file__).resolve().parent.parent


def test_repository_catalog_names_every_stage_entry(catalog):
    from mfrs.pipeline import STAGES

    assert {"stimulus_images", "stimuli", "ds000117", "anatomy", "epochs", "sources", "activations",
            "model_rdms", "rsa"} <= set(catalog.names)
    assert "stimuli" in STAGES


def test_relative_locations_resolve_under_the_root(catalog, tmp_path):
    assert catalog.path("stimuli") == tmp_path / "data" / "stimuli.zarr"
    assert catalog.entry("stimulus_images").uri == "embedded://skimage-lfw"
    assert not catalog.entry("stimulus_images").is_local


def test_sub_entries_name_stores_below_a_folder_entry(catalog, tmp_path):
    entry = catalog.entry("activations/mobilenet_v2/imagenet")
    assert entry.path == tmp_path / "data" / "activations" / "mobilenet_v2" / "imagenet.zarr"
    assert entry.kind == "zarr"


def test_environment_variables_expand_with_defaults(tmp_path, monkeypatch):
    cat = tmp_path / "cat.yaml"
    cat.write_text("root: ${MFRS_TEST_ROOT:-fallback}\nentries:\n  x: {kind: zarr, location: \"${MFRS_TEST_SUB}/x.zarr\"}\n")
    monkeypatch.setenv("MFRS_TEST_SUB", "sub")
    assert load_catalog(cat).path("x") == tmp_path / "fallback" / "sub" / "x.zarr"
    monkeypatch.setenv("MFRS_TEST_ROOT", str(tmp_path / "elsewhere"))
    assert load_catalog(cat).path("x") == tmp_path / "elsewhere" / "sub" / "x.zarr"


def test_data_root_environment_variable_moves_every_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("MFRS_DATA_ROOT", str(tmp_path / "study"))
    cat = load_catalog(REPO / "data_catalog.yaml")
    assert cat.path("sources") == tmp_path / "study" / "sources.zarr"


def test_open_is_lazy_and_labelled(catalog):
    import dask.array as da

    from mfrs.provenance import make_provenance
    from mfrs.store import ZarrStore

    template = xr.Dataset({"image": (("stimulus", "y", "x"), da.zeros((4, 2, 2), chunks=(2, 2, 2), dtype="uint8"))},
                          coords={"stimulus": ["f001", "f002", "u001", "s001"]})
    store = ZarrStore.create(catalog.path("stimuli"), template, unit_dims=("stimulus",),
                             provenance=make_provenance(stage="t", config={}, inputs={}, seed=0))
    for unit in store.units():
        store.write_unit(unit, xr.Dataset({"image": (("stimulus", "y", "x"), np.full((2, 2, 2), 7, "uint8"))},
                                          coords={"stimulus": unit.labels["stimulus"]}))
    import mfrs

    ds = mfrs.open("stimuli", catalog=catalog)
    assert isinstance(ds.image.data, da.Array)
    assert list(ds.stimulus.values) == ["f001", "f002", "u001", "s001"]
    assert int(ds.image.sum()) == 7 * 16


def test_open_of_a_store_not_yet_written_says_which_entry(catalog):
    with pytest.raises(StoreError, match=r"catalog entry 'sources'.*does not exist"):
        catalog.open("sources")


def test_open_of_a_non_zarr_entry_is_refused(catalog):
    with pytest.raises(CatalogError, match="kind 'bids'"):
        catalog.open("ds000117")


def test_package_locations_resolve_to_files_inside_installed_wheels(tmp_path):
    import cv2

    cat = tmp_path / "cat.yaml"
    cat.write_text("entries:\n  eyes: {kind: weights, location: 'package:cv2/data/haarcascade_eye.xml'}\n"
                   "  gone: {kind: weights, location: 'package:no_such_pkg_xyz/w.pth'}\n")
    loaded = load_catalog(cat)
    assert loaded.path("eyes") == Path(cv2.data.haarcascades) / "haarcascade_eye.xml"
    assert loaded.path("eyes").is_file()
    with pytest.raises(CatalogError, match=r"'gone'.*package 'no_such_pkg_xyz'.*not installed"):
        loaded.path("gone")
