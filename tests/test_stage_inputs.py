"""The runner (:func:`mfrs.pipeline.run_stage`, the door the CLI uses) opens the stores every registered
stage declares as inputs through the store layer, so an incomplete, damaged or missing input is refused,
by name, before the stage computes anything (issue 11)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from mfrs.catalog import load_catalog
from mfrs.errors import StoreError
from mfrs.pipeline import STAGES, PipelineConfig, run_stage, stage_config
from mfrs.provenance import make_provenance
from mfrs.store import ZarrStore

REPO = Path(__file__).resolve().parent.parent


def _input_store(path: Path, *, damaged: bool) -> None:
    """A store of two units: one missing (``damaged=False``), or both written and one chunk deleted."""
    template = xr.Dataset({"x": (("unit",), da.zeros(4, chunks=2, dtype="float32"))}, coords={"unit": np.arange(4)})
    store = ZarrStore.create(path, template, unit_dims=("unit",), entry_name=path.name,
                             provenance=make_provenance(stage="writer", config={}, inputs={}, seed=0))
    units = store.units() if damaged else store.units()[:1]
    for unit in units:
        store.write_unit(unit, xr.Dataset({"x": (("unit",), np.ones(2, "float32"))},
                                          coords={"unit": unit.labels["unit"]}))
    if damaged:
        chunk = path / "x" / "c" / "1"
        assert chunk.is_file()
        chunk.unlink()


def _stage_inputs(name: str, root: Path) -> tuple[Any, Any, Any, list[str]]:
    """The stage module, its default config (no cluster to ask for memory), the catalog under ``root``
    and the zarr stores the stage declares as inputs."""
    module = importlib.import_module(STAGES[name])
    catalog = load_catalog(REPO / "data_catalog.yaml", root=root)
    exec_fields = module.Config.model_fields["exec"].annotation.model_fields
    section = {"exec": {"worker_memory": "1GB"}} if "worker_memory" in exec_fields else {}
    cfg = stage_config(module, PipelineConfig(stages=[name], config={name: section}))
    stores = [entry for entry in module.inputs(cfg, catalog) if catalog.entry(entry).kind == "zarr"]
    return module, cfg, catalog, stores


#: Registered stages that read stores (the others read folders or nothing).
READS_STORES = [name for name in sorted(STAGES) if _stage_inputs(name, REPO / ".mfrs-data")[3]]


def test_the_store_readers_are_found() -> None:
    assert {"meg", "activations", "model_rdms", "similarity", "sensor_rsa", "searchlight"} <= set(READS_STORES)


@pytest.mark.parametrize("damaged", [False, True], ids=["incomplete", "damaged"])
@pytest.mark.parametrize("name", READS_STORES)
def test_a_stage_refuses_a_bad_input_store_by_name(name: str, damaged: bool, tmp_path: Path) -> None:
    module, cfg, catalog, stores = _stage_inputs(name, tmp_path)
    for entry in stores:
        _input_store(catalog.path(entry), damaged=damaged)
    why = "chunk .* missing|missing" if damaged else "not complete"
    with pytest.raises(StoreError, match=rf"stage '{name}' cannot read store .*\(catalog entry '{stores[0]}'\).*{why}"):
        run_stage(module, config=cfg, catalog=catalog, client=None)


#: The stage that writes each store a stage reads (what the hand-written maps of each stage used to say);
#: ``images`` names no writer: the images stage's default config writes no dataset.
WRITERS = {"stimuli": "stimuli", "epochs": "meg", "sources": "meg", "model_rdms": "model_rdms",
           "activations": "activations", "images": None}


def _refused_as_missing(name: str, entry: str, writer: str | None) -> str:
    first = (rf"run the '{writer}' stage first \(`mfrs run <pipeline> --stages {writer}`\)" if writer else
             rf"run the stage that writes '{entry}' first \(`mfrs status <pipeline>`")
    return rf"stage '{name}': its input store .*\(catalog entry '{entry}'\) does not exist; {first}"


@pytest.mark.parametrize("name", READS_STORES)
def test_a_missing_input_store_names_the_stage_that_writes_it(name: str, tmp_path: Path) -> None:
    module, cfg, catalog, stores = _stage_inputs(name, tmp_path)
    with pytest.raises(StoreError, match=_refused_as_missing(name, stores[0], WRITERS[stores[0].split("/")[0]])):
        run_stage(module, config=cfg, catalog=catalog, client=None)


def test_the_writer_comes_from_the_pipeline_configs(tmp_path: Path) -> None:
    """In a pipeline, the images stage's datasets say which stage writes ``images/faces``."""
    from mfrs.pipeline import load_pipeline, stage_module

    pipe = load_pipeline("faces")
    train = stage_module("train")
    catalog = load_catalog(REPO / "data_catalog.yaml", root=tmp_path)
    with pytest.raises(StoreError, match=_refused_as_missing("train", "images/faces", "images")):
        run_stage(train, config=stage_config(train, pipe), catalog=catalog, client=None, pipeline=pipe)
