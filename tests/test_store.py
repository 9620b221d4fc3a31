"""Zarr stores: templates, unit writes from dask tasks, completion marks, resume, refusal to overwrite."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from mfrs.errors import StoreError
from mfrs.provenance import make_provenance
from mfrs.store import MARKER_DIR, ZarrStore

SUBJECTS = ["sub-01", "sub-02", "sub-03"]


def _template(n_time: int = 6, time_chunk: int = 3) -> xr.Dataset:
    data = da.zeros((3, 4, n_time), chunks=(1, 4, time_chunk), dtype="float32")
    return xr.Dataset({"activity": (("subject", "stimulus", "time"), data)},
                      coords={"subject": SUBJECTS, "stimulus": ["f001", "f002", "u001", "s001"],
                              "time": np.linspace(0, 0.5, n_time)})


def _prov(**config):
    return make_provenance(stage="test", config=config, inputs={"x": "abc"}, seed=1)


def _part(unit, value):
    n_t = unit.region["time"].stop - unit.region["time"].start if "time" in unit.region else 6
    subj = unit.labels["subject"]
    return xr.Dataset({"activity": (("subject", "stimulus", "time"), np.full((len(subj), 4, n_t), value, "float32"))},
                      coords={"subject": subj})


def test_units_follow_chunks_and_labels(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(), unit_dims=("subject", "time"), provenance=_prov())
    keys = [u.key for u in store.units()]
    assert keys[:2] == ["subject=sub-01,time=0:3", "subject=sub-01,time=3:6"]
    assert len(keys) == 6
    assert store.units()[3].region == {"subject": slice(1, 2), "time": slice(3, 6)}


def test_only_metadata_is_written_at_creation(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(), unit_dims=("subject",), provenance=_prov())
    assert np.isnan(store.dataset(warn_incomplete=False).activity.values).all()
    assert len(store.missing_units()) == 3
    assert store.provenance["stage"] == "test" and store.provenance["seed"] == 1
    assert {"numpy", "xarray", "zarr", "dask"} <= set(store.provenance["versions"])


def test_write_marks_complete_and_resume_keeps_finished_units(tmp_path):
    path = tmp_path / "s.zarr"
    store = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    store.write_unit(store.units()[1], _part(store.units()[1], 2.0))
    again = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    assert [u.key for u in again.missing_units()] == ["subject=sub-01", "subject=sub-03"]
    values = again.dataset(warn_incomplete=False).activity.sel(subject="sub-02").values
    assert (values == 2.0).all()


def test_data_without_a_mark_counts_as_missing(tmp_path):
    """A worker killed between writing data and writing the mark leaves a unit that is redone."""
    path = tmp_path / "s.zarr"
    store = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    unit = store.units()[0]
    _part(unit, 5.0).drop_vars("subject").to_zarr(path, region={"subject": slice(0, 1)}, mode="r+")
    assert not store.is_complete(unit)
    (path / MARKER_DIR / unit.marker_name).write_text("{trunc")  # a half-written mark is no mark
    assert not store.is_complete(unit)


def test_other_parameters_are_refused_without_overwrite(tmp_path):
    path = tmp_path / "s.zarr"
    store = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov(k=1))
    store.write_unit(store.units()[0], _part(store.units()[0], 1.0))
    with pytest.raises(StoreError, match=r"made with other parameters.*finished units are kept.*--overwrite"):
        ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov(k=2))
    assert ZarrStore.open(path).is_complete(store.units()[0])
    fresh = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov(k=2), overwrite=True)
    assert len(fresh.missing_units()) == 3


def test_other_layout_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    with pytest.raises(StoreError, match=r"another layout \(dims differ \(time\)\)"):
        ZarrStore.create(path, _template(n_time=9), unit_dims=("subject",), provenance=_prov())


def test_marks_of_an_older_fingerprint_do_not_count(tmp_path):
    path = tmp_path / "s.zarr"
    store = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    unit = store.units()[0]
    store.write_unit(unit, _part(unit, 1.0))
    marker = path / MARKER_DIR / unit.marker_name
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "fingerprint": "0000"}))
    assert not store.is_complete(unit)


def test_write_checks_labels_variables_and_sizes(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(), unit_dims=("subject",), provenance=_prov())
    unit = store.units()[0]
    wrong_label = _part(unit, 1.0).assign_coords(subject=["sub-02"])
    with pytest.raises(StoreError, match=r"subject labels .* do not match.*\.sel\(subject=\.\.\.\)"):
        store.write_unit(unit, wrong_label)
    with pytest.raises(StoreError, match=r"unexpected \['extra'\].*\.drop_vars\(\['extra'\]\)"):
        store.write_unit(unit, _part(unit, 1.0).assign(extra=(("subject",), [1.0])))
    short = _part(unit, 1.0).isel(stimulus=slice(0, 2))
    with pytest.raises(StoreError, match=r"has stimulus=2, the store has 4"):
        store.write_unit(unit, short)
    assert not store.is_complete(unit)


def test_transposed_data_is_written_by_name(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(), unit_dims=("subject",), provenance=_prov())
    unit = store.units()[2]
    values = np.arange(24, dtype="float32").reshape(4, 6, 1)
    part = xr.Dataset({"activity": (("stimulus", "time", "subject"), values)}, coords={"subject": ["sub-03"]})
    store.write_unit(unit, part)
    got = store.dataset(warn_incomplete=False).activity.sel(subject="sub-03").values
    np.testing.assert_array_equal(got, values[:, :, 0])


def test_parallel_unit_writes_from_dask_tasks(tmp_path, local_client):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(n_time=12, time_chunk=2),
                             unit_dims=("subject", "time"), provenance=_prov())

    def write(unit):
        value = 10 * unit.index[0] + unit.index[1]
        store.write_unit(unit, _part(unit, value))
        return unit.key

    from mfrs.runner import run_units

    done = run_units(local_client, write, store.units(), key=lambda u: u.key, description="test")
    assert len(done) == 18 and not store.missing_units()
    ds = store.dataset()
    for unit in store.units():
        block = ds.activity.isel(unit.region).values
        assert (block == 10 * unit.index[0] + unit.index[1]).all()


def test_half_written_metadata_is_recreated(tmp_path):
    path = tmp_path / "s.zarr"
    (path / "activity").mkdir(parents=True)  # a crash before zarr.json was written
    store = ZarrStore.create(path, _template(), unit_dims=("subject",), provenance=_prov())
    assert len(store.missing_units()) == 3


def test_template_must_be_dask_backed(tmp_path):
    eager = _template().compute()
    with pytest.raises(StoreError, match=r"not dask-backed.*dask\.array\.zeros"):
        ZarrStore.create(tmp_path / "s.zarr", eager, unit_dims=("subject",), provenance=_prov())


def test_summary_attributes_are_added_after_the_units(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template(), unit_dims=("subject",), provenance=_prov())
    store.update_attrs(failed=[{"item": 3, "reason": "truncated"}], n_failed=1)
    ds = store.dataset(warn_incomplete=False)
    assert ds.attrs["n_failed"] == 1 and ds.attrs["failed"][0]["reason"] == "truncated"
    assert ds.attrs["provenance"]["stage"] == "test"
    with pytest.raises(StoreError, match=r"\['provenance'\] are written only at creation"):
        store.update_attrs(provenance={})


def test_store_metadata_stays_small_for_many_items(tmp_path):
    n = 20000
    template = xr.Dataset({"x": (("item",), da.zeros(n, chunks=1000, dtype="float32"))},
                          coords={"item": [f"identity-{i:06d}/image.jpg" for i in range(n)]})
    store = ZarrStore.create(tmp_path / "s.zarr", template, unit_dims=("item",), provenance=_prov())
    assert (store.path / "zarr.json").stat().st_size < 50_000


def test_lazy_coordinates_of_the_template_are_stored(tmp_path):
    """Coords read lazily from another store (dask-backed) must be written with the metadata."""
    template = _template().assign_coords(
        category=("stimulus", da.from_array(np.array(["famous", "famous", "unfamiliar", "scrambled"]), chunks=2)),
        depth=("stimulus", da.from_array(np.array([0.0, 0.5, 0.75, 1.0]), chunks=2)))
    store = ZarrStore.create(tmp_path / "s.zarr", template, unit_dims=("subject",), provenance=_prov())
    ds = store.dataset(warn_incomplete=False)
    assert list(ds.category.values) == ["famous", "famous", "unfamiliar", "scrambled"]
    np.testing.assert_array_equal(ds.depth.values, [0.0, 0.5, 0.75, 1.0])


def _template_with_final() -> xr.Dataset:
    t = _template()
    return t.assign(total=(("subject", "stimulus", "time"), da.zeros((3, 4, 6), chunks=(1, 4, 3), dtype="float32")))


def test_final_variables_are_written_after_every_unit(tmp_path):
    store = ZarrStore.create(tmp_path / "s.zarr", _template_with_final(), unit_dims=("subject",), provenance=_prov(),
                             final_variables=("total",))
    units = store.units()
    store.write_unit(units[0], _part(units[0], 1.0))  # units hold every variable but the final one
    with pytest.raises(StoreError, match=r"need every unit, but 2 are missing \(subject=sub-02"):
        store.write_final(units[0], _part(units[0], 0.0).rename(activity="total"))
    for u in units[1:]:
        store.write_unit(u, _part(u, float(units.index(u) + 1)))
    status = store.status()
    assert status["missing"] == ["final:total"] and status["complete"] == 3 and not store.is_final_complete()
    with pytest.raises(StoreError, match=r"missing \['total'\], unexpected \['activity'\]"):
        store.write_final(units[0], _part(units[0], 0.0))
    for i, u in enumerate(units):
        store.write_final(u, _part(u, 10.0 * (i + 1)).rename(activity="total"))
    store.mark_final()
    reopened = ZarrStore.open(store.path)
    assert reopened.is_final_complete() and reopened.status()["missing"] == []
    ds = reopened.dataset().load()
    np.testing.assert_array_equal(ds.total.sel(subject="sub-03"), 30.0)
    np.testing.assert_array_equal(ds.activity.sel(subject="sub-02"), 2.0)


def test_other_final_variables_are_refused_on_resume(tmp_path):
    ZarrStore.create(tmp_path / "s.zarr", _template_with_final(), unit_dims=("subject",), provenance=_prov())
    with pytest.raises(StoreError, match=r"final variables differ \(\[\] vs \['total'\]\)"):
        ZarrStore.create(tmp_path / "s.zarr", _template_with_final(), unit_dims=("subject",), provenance=_prov(),
                         final_variables=("total",))
