"""Model RDMs: one RDM per network layer, from the activations stores, chunk by chunk over units.

Stage ``model_rdms``. Reads every ``activations/<network>/<weights>`` store named in its
config and writes ``model_rdms``: ``rdm (layer, pair)`` float32 with the ``layer`` coords
of design.md (``network``, ``name``, ``depth``, ``kind``, ``weights``, ``units``), the
stimulus coords of the activations, and the pair coords of every stored RDM
(:func:`mfrs.similarity.pair_coords`: ``stimulus_a``/``stimulus_b``, ``category_a``/``category_b``;
pairs in the order of ``scipy.spatial.distance.pdist``). Stores written before pair labels
hold positions ``pair_i``/``pair_j`` instead; :func:`mfrs.results.labelled` reads those as labels.
:func:`check_stimuli` is how the stages that read ``model_rdms`` (similarity, sensor_rsa, searchlight)
refuse layer RDMs of other stimuli, or another order, than their brain data.
One task per group of layers accumulates per-stimulus sums and the Gram matrix over unit chunks,
so a layer of 10^6 units is never whole in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from pydantic import Field

from mfrs.catalog import Catalog
from mfrs.errors import ConfigError, InputDataError, StoreError
from mfrs.nets.rdm_moments import Moments, rdm_from_moments
from mfrs.nets.types import LayerKind, Network, RdmMetric
from mfrs.provenance import make_provenance
from mfrs.runner import run_units
from mfrs.stage import ExecSettings, Plan, Settings, StageConfig
from mfrs.store import Unit, ZarrStore

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["NAME", "NetworkRef", "Exec", "Config", "inputs", "outputs", "plan", "run", "layer_rdm", "check_stimuli"]

NAME = "model_rdms"
log = logging.getLogger(__name__)
_STIMULUS_COORDS = ("stimulus", "category", "condition", "file")
_LAYER_COORDS = ("network", "name", "depth", "kind", "weights", "units")


class NetworkRef(Settings):
    """An activations store, named as in the activations stage config."""

    network: Network
    weights: str = "untrained-seed0"


def _default_refs() -> list[NetworkRef]:
    return [NetworkRef(network="mobilenet_v2", weights="weights_mobilenet_v2_imagenet"),
            NetworkRef(network="mobilenet_v2", weights="untrained-seed0")]


class Exec(ExecSettings):
    """Execution settings of the model_rdms stage: the same numbers whatever their values."""

    unit_chunk: int = Field(65536, ge=1, description="units read at once (float64 copy: n x unit_chunk x 8 B)")
    layers_per_task: int = Field(32, ge=1, description="layers of one activations store per task")


class Config(StageConfig):
    """Settings of the model_rdms stage."""

    networks: list[NetworkRef] = Field(default_factory=_default_refs, min_length=1)
    metric: RdmMetric = "correlation"
    layer_kinds: list[LayerKind] | None = Field(None, description="only layers of these kinds; None: all stored")
    exec: Exec = Exec()

    @classmethod
    def pipeline_section(cls, sections: Mapping[str, Mapping[str, Any]], *, name: str) -> dict[str, Any]:
        """This stage's section; ``networks`` defaults to the activations section's (network, weights)."""
        section = dict(sections.get(name, {}))
        acts = sections.get("activations", {})
        if "networks" not in section and "networks" in acts:
            section["networks"] = [{"network": s["network"], "weights": s.get("weights", "untrained-seed0")}
                                   for s in acts["networks"]]
        return section


def _entries(cfg: Config, catalog: Catalog) -> list[str]:
    from mfrs.stages.activations import NetworkSpec, weights_label

    names = [f"activations/{r.network}/{weights_label(NetworkSpec(network=r.network, weights=r.weights), catalog)}"
             for r in cfg.networks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"stage model_rdms: {dup} named more than once in networks.")
    return names


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read: the activations stores of ``networks``."""
    return _entries(cfg, catalog)


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return ["model_rdms"]


# ----------------------------------------------------------------------------- numerics
def layer_rdm(values: Any, *, metric: RdmMetric, unit_chunk: int) -> np.ndarray:
    """RDM of one layer read ``unit_chunk`` units at a time.

    ``values``: anything with ``.shape`` and ``values[:, a:b]`` convertible to a
    ``(stimulus, units)`` array (a lazily loaded xarray DataArray, a zarr array, numpy)
    -> ``(pair,)`` float64 in
    ``pdist`` order.
    """
    n, p = values.shape
    moments = Moments(n, center=metric in ("correlation", "abs_correlation"))
    for start in range(0, p, unit_chunk):
        moments.add(np.asarray(values[:, start:start + unit_chunk]))
    return rdm_from_moments(moments, metric)


# ----------------------------------------------------------------------------- template and tasks
@dataclass(frozen=True)
class _Job:
    store: ZarrStore
    source: str  # activations store path
    layers: tuple[tuple[Unit, str], ...]  # (model_rdms unit, activations variable)
    metric: RdmMetric
    unit_chunk: int


def _compute(job: _Job) -> list[str]:
    """RDMs of a group of layers of one activations store, each written as soon as it is done."""
    acts = xr.open_zarr(job.source, chunks=None, consolidated=True)
    done = []
    for unit, variable in job.layers:
        rdm = layer_rdm(acts[variable], metric=job.metric, unit_chunk=job.unit_chunk)
        layer_id = unit.labels["layer"][0]
        data = xr.Dataset({"rdm": (("layer", "pair"), rdm[None, :].astype("float32"))},
                          coords={"layer": [layer_id]})
        job.store.write_unit(unit, data)
        done.append(layer_id)
    return done


def _sources(stores: Mapping[str, ZarrStore]) -> list[tuple[str, ZarrStore, xr.Dataset]]:
    """(entry, store, dataset) per activations store; refused unless all hold the same stimuli in the same order."""
    sources = [(name, store, store.dataset(warn_incomplete=False)) for name, store in stores.items()]
    first = sources[0][2]
    for name, _, ds in sources[1:]:
        if ds["stimulus"].values.tolist() != first["stimulus"].values.tolist():
            raise StoreError(f"stage model_rdms: {name!r} has other stimuli (or order) than "
                             f"{sources[0][0]!r}; rerun the activations stage for both with the same stimuli.")
    return sources


def _layers(sources: list[tuple[str, ZarrStore, xr.Dataset]], kinds: list[LayerKind] | None
            ) -> tuple[xr.Dataset, list[tuple[str, str]]]:
    """The concatenated layer index and (source path, variable) per layer."""
    indices, where = [], []
    for _, store, ds in sources:
        # plain values: a coordinate read from Zarr carries its fixed string width in .encoding,
        # which to_zarr would reuse and truncate longer names of other stores
        index = xr.Dataset(coords={c: ("layer", ds[c].values) for c in ("layer", *_LAYER_COORDS)})
        if kinds is not None:
            index = index.isel(layer=np.isin(index["kind"].values, kinds))
        indices.append(index)
        where += [(str(store.path), str(n)) for n in index["name"].values]
    return xr.concat(indices, dim="layer"), where


def _template(sources: list[tuple[str, ZarrStore, xr.Dataset]], index: xr.Dataset) -> xr.Dataset:
    import dask.array as da

    from mfrs.similarity.blocks import n_pairs
    from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords

    stim = sources[0][2]
    p = n_pairs(stim.sizes["stimulus"])
    rdm = da.zeros((index.sizes["layer"], p), chunks=(1, p), dtype="float32")
    coords: dict[str, Any] = {c: ("stimulus", stim[c].values) for c in _STIMULUS_COORDS if c in stim.coords}
    coords.update({c: ("layer", index[c].values) for c in ("layer", *_LAYER_COORDS)})
    coords.update(pair_coords(stim["stimulus"], with_coords=STORED_PAIR_COORDS))
    return xr.Dataset({"rdm": (("layer", "pair"), rdm)}, coords=coords)


def plan(*, config: Config, catalog: Catalog) -> Plan:
    """Sizes of the model_rdms stage."""
    # sizes from the stores as they are (``run`` gets them checked complete)
    sources = _sources({name: ZarrStore.open(catalog.path(name), entry_name=name) for name in _entries(config, catalog)})
    index, _ = _layers(sources, config.layer_kinds)
    n = sources[0][2].sizes["stimulus"]
    units = int(index["units"].sum())
    reads = {name: int(ds.nbytes) for name, _, ds in sources}
    return Plan(stage=NAME, reads=reads, writes={"model_rdms": 4 * index.sizes["layer"] * n * (n - 1) // 2},
                n_tasks=-(-index.sizes["layer"] // config.exec.layers_per_task), n_units=index.sizes["layer"],
                memory_per_task=8 * n * (2 * min(config.exec.unit_chunk, int(index["units"].max())) + 2 * n),
                flops=2.0 * n * n * units, seconds=2.0 * n * n * units / 2e9,
                notes=[f"{index.sizes['layer']} layers, {n} stimuli, metric {config.metric}"])


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Create or resume ``model_rdms`` and compute every missing layer (tasks of ``layers_per_task``)."""
    sources = _sources(inputs)
    index, where = _layers(sources, config.layer_kinds)
    template = _template(sources, index)
    provenance = make_provenance(
        stage=NAME, config=config, seed=None, client=client,
        inputs={name: store.provenance.get("fingerprint", "") for name, store, _ in sources})
    store = ZarrStore.create(catalog.path("model_rdms"), template, unit_dims=("layer",),
                             provenance=provenance, overwrite=overwrite, entry_name="model_rdms")
    store.depends_on(*(st for _, st, _ in sources))  # layers computed from other activations count as stale
    by_layer = dict(zip(index["layer"].values.tolist(), where))
    groups: dict[str, list[tuple[Unit, str]]] = {}
    for unit in store.units():
        if store.is_complete(unit):
            log.info("model_rdms: %s complete, skipping", unit.key)
            continue
        log.info("model_rdms: %s not marked complete, computing", unit.key)
        path, variable = by_layer[unit.labels["layer"][0]]
        groups.setdefault(path, []).append((unit, variable))
    if not groups:
        log.info("model_rdms: all %d layers of %s complete, nothing to do", len(by_layer), store.path)
        return
    jobs = [_Job(store, path, tuple(todo[k:k + config.exec.layers_per_task]), config.metric, config.exec.unit_chunk)
            for path, todo in groups.items() for k in range(0, len(todo), config.exec.layers_per_task)]
    log.info("model_rdms: %d of %d layers to compute in %d tasks",
             sum(len(t) for t in groups.values()), len(by_layer), len(jobs))
    run_units(client, _compute, jobs, key=lambda j: f"{j.layers[0][0].key}+{len(j.layers) - 1}",
              description=NAME, stage=NAME)


def check_stimuli(models: xr.Dataset, data: xr.Dataset, *, stage: str, data_entry: str, catalog: Catalog) -> None:
    """Refuse a ``model_rdms`` store whose pairs are not of ``data``'s stimuli in ``data``'s order.

    The layer RDMs are compared pair by pair with RDMs of ``data`` (``sources`` or ``epochs``), so
    both must pair the same stimulus labels in the same order; the same stimuli in another order are
    refused too (rerunning ``model_rdms`` is cheaper than trusting a reordering). The order of
    ``model_rdms`` is the one its pair coords ``stimulus_a``/``stimulus_b`` imply
    (:func:`mfrs.similarity.stimuli_of`); a store written before pair labels is read as
    :func:`mfrs.results.labelled` reads it.

    Parameters
    ----------
    models, data : xarray.Dataset
        The opened ``model_rdms`` store and the brain data store (coord ``stimulus``).
    stage : str
        The stage that reads both (named in the error).
    data_entry : str
        The catalog entry of ``data``; with ``catalog`` it names both stores' paths in the error.

    Raises
    ------
    InputDataError
        On another pair count, a store without stimulus labels, other stimuli or another order.
    """
    from mfrs.results.stores import pair_labels
    from mfrs.similarity.blocks import n_pairs
    from mfrs.similarity.xarray import stimuli_of

    models_at, data_at = f"model_rdms ({catalog.path(NAME)})", f"{data_entry} ({catalog.path(data_entry)})"
    todo = (f"rerun model_rdms on activations of the stimuli of {data_entry} (mfrs run PIPELINE --stages "
            "model_rdms --overwrite), or rerun the meg stage with the stimuli model_rdms used")
    want = np.asarray(data["stimulus"].values).astype(str)
    if models.sizes["pair"] != n_pairs(want.size):
        raise InputDataError(f"{stage}: {models_at} has {models.sizes['pair']} pairs but {data_at} has {want.size} "
                             f"stimuli ({n_pairs(want.size)} pairs); {todo}")
    labelled = pair_labels(models)
    if "stimulus_a" not in labelled.coords:
        raise InputDataError(f"{stage}: {models_at} carries no stimulus labels (no stimulus_a/stimulus_b pair "
                             f"coords, nor stimulus with pair_i/pair_j), so its pairs cannot be matched to the "
                             f"stimuli of {data_at}; {todo}")
    got = stimuli_of(labelled["rdm"]).astype(str)
    if np.array_equal(got, want):
        return
    i = int(np.flatnonzero(got != want)[0])
    other = sorted(set(got.tolist()) - set(want.tolist()))
    how = (f"it has {len(other)} stimuli that {data_entry} lacks (e.g. {other[0]!r})" if other
           else "the same stimuli in another order")
    raise InputDataError(f"{stage}: {models_at} pairs other stimuli than {data_at}: {how}; the first difference is "
                         f"at position {i}: {str(got[i])!r} in model_rdms, {str(want[i])!r} in {data_entry}. {todo}")
