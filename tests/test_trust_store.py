"""Trust in the store layer: checksummed chunks, damage named by store, chunk and unit, inputs checked
at the door, units that follow their inputs, honest fingerprints (issue 10)."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from mfrs.errors import StoreError
from mfrs.provenance import make_provenance
from mfrs.store import MARKER_DIR, ZarrStore, open_input

SUBJECTS = ["sub-01", "sub-02", "sub-03"]


def _template() -> xr.Dataset:
    data = da.zeros((3, 4, 6), chunks=(1, 4, 3), dtype="float32")
    return xr.Dataset({"activity": (("subject", "stimulus", "time"), data)},
                      coords={"subject": SUBJECTS, "stimulus": ["f001", "f002", "u001", "s001"],
                              "time": np.linspace(0, 0.5, 6)})


def _data(unit, seed: float) -> xr.Dataset:
    rng = np.random.default_rng(int(seed * 1000))
    subj = unit.labels["subject"]
    return xr.Dataset({"activity": (("subject", "stimulus", "time"), rng.standard_normal((len(subj), 4, 6))
                                    .astype("float32"))}, coords={"subject": subj})


def _full_store(path, seed: float = 1.0, **config) -> ZarrStore:
    store = ZarrStore.create(path, _template(), unit_dims=("subject",),
                             provenance=make_provenance(stage="test", config=config, inputs={}, seed=1))
    for i, unit in enumerate(store.units()):
        store.write_unit(unit, _data(unit, seed + i))
    return store


def _flip(path, offset: int = 12, n: int = 16) -> None:
    raw = bytearray(path.read_bytes())
    for k in range(offset, min(offset + n, len(raw))):
        raw[k] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_new_stores_checksum_every_chunk_and_marks_record_their_chunks(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    codecs = [c["name"] for c in json.loads((store.path / "activity" / "zarr.json").read_text())["codecs"]]
    assert "crc32c" in codecs
    mark = json.loads((store.path / MARKER_DIR / store.units()[1].marker_name).read_text())
    assert sorted(mark["chunks"]) == ["activity/c/1/0/0", "activity/c/1/0/1"]
    for key in mark["chunks"]:
        assert (store.path / key).is_file()


def test_a_corrupt_chunk_is_an_error_naming_store_chunk_and_unit(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    expected = _data(store.units()[0], 1.0)["activity"].values[0]
    _flip(store.path / "activity" / "c" / "1" / "0" / "1")
    ds = ZarrStore.open(store.path, entry_name="sources").dataset()
    np.testing.assert_array_equal(ds["activity"].isel(subject=0).values, expected)  # intact units still read
    with pytest.raises(StoreError, match=r"s\.zarr.*'sources'.*chunk activity/c/1/0/1 of unit subject=sub-02 "
                                         r"is corrupt.*status --verify --repair"):
        ds["activity"].load()
    assert ZarrStore.open(store.path).verify() == {
        "subject=sub-02": "chunk activity/c/1/0/1 is corrupt (its digest differs from the one written with the mark)"}


def test_a_missing_chunk_of_a_complete_unit_is_not_read_as_fill_values(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    (store.path / "activity" / "c" / "2" / "0" / "0").unlink()
    store = ZarrStore.open(store.path, entry_name="sources")
    assert [u.key for u in store.missing_units()] == ["subject=sub-03"]
    assert store.status()["problems"] == {"subject=sub-03": "chunk activity/c/2/0/0 is missing"}
    with pytest.raises(StoreError, match=r"chunk activity/c/2/0/0 of unit subject=sub-03 is missing"):
        store.dataset(warn_incomplete=False)["activity"].load()
    with pytest.raises(StoreError, match=r"stage 'similarity' cannot read store .*s\.zarr \(catalog entry 'sources'\): "
                                         r"1 of 3 unit\(s\).*subject=sub-03: chunk activity/c/2/0/0 is missing.*"
                                         r"status --verify --repair.*mfrs run <pipeline> --stages meg"):
        open_input(store.path, entry_name="sources", stage="similarity", writer="meg")


def test_incomplete_inputs_are_refused_at_the_door(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    (store.path / MARKER_DIR / store.units()[1].marker_name).unlink()
    with pytest.raises(StoreError, match=r"cannot read .*'sources'.*subject=sub-02: not marked complete.*"
                                         r"`mfrs run <pipeline> --stages meg`"):
        open_input(store.path, entry_name="sources", stage="similarity", writer="meg")
    with pytest.raises(StoreError, match=r"input store .*nothing\.zarr.*does not exist; run the 'meg' stage first.*--stages meg"):
        open_input(tmp_path / "nothing.zarr", entry_name="sources", stage="similarity", writer="meg")


def test_repair_unmarks_so_the_unit_is_recomputed(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    _flip(store.path / "activity" / "c" / "0" / "0" / "0")
    store = ZarrStore.open(store.path)
    assert store.is_complete(store.units()[0])  # a cheap check cannot see corruption; verify can
    store.unmark(store.units()[0])
    assert [u.key for u in store.missing_units()] == ["subject=sub-01"]
    store.write_unit(store.units()[0], _data(store.units()[0], 1.0))
    assert store.verify() == {}
    np.testing.assert_array_equal(store.dataset()["activity"].isel(subject=0).values,
                                  _data(store.units()[0], 1.0)["activity"].values[0])


def test_rewriting_a_unit_first_removes_its_mark(tmp_path):
    store = _full_store(tmp_path / "s.zarr")
    unit = store.units()[0]
    bad = _data(unit, 9.0).rename({"activity": "other"})
    with pytest.raises(StoreError, match="data variables do not match"):
        store.write_unit(unit, bad)  # fails after the rewrite began: the old mark must not survive
    assert not store.is_complete(unit)
    assert not (store.path / MARKER_DIR / unit.marker_name).exists()


def test_results_follow_their_inputs(tmp_path):
    sources = _full_store(tmp_path / "sources.zarr")
    rsa = ZarrStore.create(tmp_path / "rsa.zarr", _template(), unit_dims=("subject",),
                           provenance=make_provenance(stage="rsa", config={}, inputs={}, seed=1))
    rsa.depends_on(sources)
    for unit in rsa.units():
        rsa.write_unit(unit, _data(unit, 5.0))
    rsa = ZarrStore.open(rsa.path)
    assert rsa.missing_units() == []

    sources.write_unit(sources.units()[1], _data(sources.units()[1], 2.0))  # recomputed, same numbers
    assert ZarrStore.open(rsa.path).missing_units() == []

    sources.write_unit(sources.units()[1], _data(sources.units()[1], 7.0))  # recomputed, other numbers
    rsa = ZarrStore.open(rsa.path)
    assert len(rsa.missing_units()) == 3
    assert all(why.startswith("stale: input") and "sources.zarr" in why for why in rsa.status()["problems"].values())
    rsa.depends_on(ZarrStore.open(sources.path))
    rsa.write_unit(rsa.units()[0], _data(rsa.units()[0], 5.0))
    assert [u.key for u in ZarrStore.open(rsa.path).missing_units()] == ["subject=sub-02", "subject=sub-03"]


def test_execution_settings_are_not_fingerprinted_science_parameters_are_named():
    from mfrs.stages.similarity import Config

    base = make_provenance(stage="similarity", config=Config(), inputs={"sources": "a"}, seed=0)
    execution = make_provenance(stage="similarity", config=Config(exec={"worker_memory": "1GB", "time_batch": 3}),
                                inputs={"sources": "a"}, seed=0)
    science = make_provenance(stage="similarity", config=Config(n_permutations=10), inputs={"sources": "a"}, seed=0)
    assert execution["fingerprint"] == base["fingerprint"]
    assert execution["execution"] == {"worker_memory": "1GB", "time_batch": 3}
    assert science["fingerprint"] != base["fingerprint"]


def test_a_changed_parameter_is_named_when_a_store_is_refused(tmp_path):
    path = tmp_path / "s.zarr"
    ZarrStore.create(path, _template(), unit_dims=("subject",),
                     provenance=make_provenance(stage="t", config={"alpha": 1, "beta": {"k": 2}}, inputs={}, seed=1))
    with pytest.raises(StoreError, match=r"made with other parameters: beta\.k: 2 → 3 "):
        ZarrStore.create(path, _template(), unit_dims=("subject",),
                         provenance=make_provenance(stage="t", config={"alpha": 1, "beta": {"k": 3}}, inputs={},
                                                    seed=1))
