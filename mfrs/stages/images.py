"""Image datasets: training sets from their folder layouts to Zarr, with identity-aware splits and face crops.

Each dataset of the stage config becomes one ``zarr`` catalog entry (its
``output``) holding ``image (item, y, x[, channel])`` uint8 and ``status (item,)``
(``"ok"``, ``"ok: <note>"`` or ``"failed: <file>: <reason>"``), with coords
``label`` (int, identities in natural order), ``identity``, ``split``
(train | valid | test), ``source_file`` (relative to its source) and ``source``
(catalog entry). ``attrs["failed"]`` lists the failed items with their reasons,
``attrs["identities"]`` the identity of each label.

The run streams: the listing is made first (directory scans and annotation
files only), splits are decided from the seed, then one dask task per item
chunk reads, crops and writes its chunk; the chunk's completion mark is
written after its data, so a killed run resumes with the missing chunks only.
The study's variants (CelebA with and without the MEG identities, the ImageNet
subset with and without face classes) are datasets that ``extends`` another
and add or drop identities.

Example (a pipeline's ``config.images`` section)::

    seed: 0
    datasets:
      - output: images/celeba
        source: celeba_raw
        layout: celeba
        split: {mode: per_identity, train: null, valid: 2, test: 2}
        crop: {mode: face, size: 224, color: gray}
      - extends: images/celeba
        output: images/celeba_no_meg
        drop_identities: ["2880", "4262"]
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from pydantic import ConfigDict, Field, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import ConfigError, StageFailures
from mfrs.images.convert import STATUS_WIDTH, convert_items, image_shape
from mfrs.images.faces import CropSpec, cascade_path
from mfrs.images.readers import list_images
from mfrs.images.repartition import SplitSpec, merge_listings, repartition, select_identities
from mfrs.images.types import Layout
from mfrs.provenance import fingerprint, make_provenance
from mfrs.runner import run_units
from mfrs.stage import Plan, Settings, StageConfig
from mfrs.store import Unit, ZarrStore

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["NAME", "Config", "DatasetSpec", "AddSource", "inputs", "outputs", "plan", "run",
           "landmark_file", "list_sources", "prepare_listing", "build_template", "convert_dataset"]

NAME = "images"
log = logging.getLogger(__name__)

_SOURCE_KINDS = ("images", "folder")
#: Rows kept in ``attrs["failed"]`` (the ``status`` variable has every item, whatever the count).
FAILED_TABLE_MAX = 10_000
#: Rough cost of one item on one core (decode + detect + crop), for plans.
_SECONDS_PER_ITEM = {"face": 0.012, "center": 0.003, "none": 0.003}


class AddSource(Settings):
    """Images of another source added to a dataset (e.g. the MEG famous identities)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    source: str = Field(description="catalog entry of the folder")
    layout: Layout
    identities: list[str] | None = Field(None, description="only these identities of it (None: all)")


class DatasetSpec(Settings):
    """One image dataset written by the stage."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    output: str = Field(description="catalog entry written (kind zarr), e.g. 'images/celeba'")
    source: str = Field(description="catalog entry of the image folder (kind images or folder)")
    layout: Layout
    identities: list[str] | None = Field(None, description="keep only these identities/classes")
    drop_identities: list[str] = Field(default_factory=list, description="identities/classes left out")
    add: list[AddSource] = Field(default_factory=list)
    split: SplitSpec = SplitSpec()
    crop: CropSpec = CropSpec()
    landmarks: str | None = Field(None, description="catalog entry (kind weights) of an eye cascade "
                                                    "used to align faces; None: no alignment")
    chunk_items: int = Field(256, ge=1, le=65536, description="items per Zarr chunk (one task each)")


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


class Config(StageConfig):
    """Settings of the images stage: a seed and the datasets to write."""

    seed: int = Field(0, description="root seed of every split and shuffle")
    datasets: list[DatasetSpec] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _resolve_extends(cls, data: Any) -> Any:
        """``extends: <output>`` copies that dataset's settings; the keys given override them."""
        if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
            return data
        resolved: dict[str, dict[str, Any]] = {}
        out = []
        for i, raw in enumerate(data["datasets"]):
            if not isinstance(raw, dict):
                out.append(raw)
                continue
            raw = dict(raw)
            base_name = raw.pop("extends", None)
            if base_name is not None:
                if base_name not in resolved:
                    known = ", ".join(repr(k) for k in resolved) or "none"
                    raise ValueError(f"datasets[{i}].extends: no earlier dataset has output {base_name!r} "
                                     f"(earlier outputs: {known}); list the base dataset first.")
                raw = _merge(resolved[base_name], raw)
            if "output" in raw:
                resolved[str(raw["output"])] = raw
            out.append(raw)
        return {**data, "datasets": out}

    @model_validator(mode="after")
    def _unique_outputs(self) -> Config:
        outs = [d.output for d in self.datasets]
        dup = sorted({o for o in outs if outs.count(o) > 1})
        if dup:
            raise ValueError(f"several datasets write the same output {dup}; give each its own entry name")
        return self


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read: every source, added source and landmark model."""
    names = set()
    for d in cfg.datasets:
        names.add(d.source)
        names.update(a.source for a in d.add)
        if d.landmarks:
            names.add(d.landmarks)
    return sorted(names)


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written: one per dataset."""
    return [d.output for d in cfg.datasets]


# --------------------------------------------------------------------------- listing
def _source_root(catalog: Catalog, name: str, *, dataset: str) -> Path:
    entry = catalog.entry(name)
    if entry.kind not in _SOURCE_KINDS:
        raise ConfigError(f"images dataset {dataset!r}: source {name!r} is a catalog entry of kind "
                          f"{entry.kind!r}; an image folder entry has kind {' or '.join(_SOURCE_KINDS)}.")
    return entry.path


def landmark_file(catalog: Catalog, name: str) -> Path:
    """The local file of a landmark-model entry: a path, or ``package:<module>/<path inside it>``.

    ``package:cv2/data/haarcascade_eye.xml`` names the eye cascade inside OpenCV's wheel.
    """
    path = catalog.entry(name).path
    if not path.is_file():
        raise ConfigError(f"catalog entry {name!r}: landmark model {path} does not exist; fix its location "
                          "(an eye cascade such as package:cv2/data/haarcascade_eye.xml).")
    return path


def list_sources(spec: DatasetSpec, catalog: Catalog) -> dict[str, xr.Dataset]:
    """The raw listing of the dataset's source and of each added source, by catalog entry name."""
    listings = {spec.source: list_images(_source_root(catalog, spec.source, dataset=spec.output),
                                         spec.layout, entry=spec.source)}
    for extra in spec.add:
        if extra.source in listings:
            raise ConfigError(f"images dataset {spec.output!r}: source {extra.source!r} is added twice; "
                              "list each source once.")
        ls = list_images(_source_root(catalog, extra.source, dataset=spec.output), extra.layout,
                         entry=extra.source)
        if extra.identities is not None:
            ls = select_identities(ls, keep=extra.identities, what=f"catalog entry {extra.source!r}")
        listings[extra.source] = ls
    return listings


def prepare_listing(spec: DatasetSpec, catalog: Catalog, *, seed: int,
                    sources: dict[str, xr.Dataset] | None = None) -> xr.Dataset:
    """List, select, split, label and order the items of one dataset (no image is decoded).

    Parameters
    ----------
    spec : DatasetSpec
    catalog : Catalog
    seed : int
    sources : dict, optional
        Listings from :func:`list_sources` (made here when not given).

    Returns
    -------
    xarray.Dataset
        Over ``(item,)``: ``source_file``, ``identity``, ``split``, ``label``, ``source``,
        ``path`` (absolute file path), and CelebA's ``attributes`` for a single CelebA source.
    """
    merged = merge_listings(sources if sources is not None else list_sources(spec, catalog))
    roots = merged.attrs["roots"]
    merged["path"] = ("item", np.asarray([os.path.join(roots[s], f) for s, f in
                                          zip(merged.source.values, merged.source_file.values)], dtype=str))
    return repartition(merged, spec.split, seed=seed, keep=spec.identities, drop=spec.drop_identities,
                       what=f"the sources of images dataset {spec.output!r}")


def build_template(listing: xr.Dataset, spec: DatasetSpec) -> xr.Dataset:
    """The store's template: dask-backed ``image`` and ``status`` with every coordinate.

    ``(item,)`` listing -> Dataset with ``image (item, y, x[, channel])`` and ``status (item,)``.
    """
    import dask.array as da

    n = listing.sizes["item"]
    shape = image_shape(spec.crop)
    dims = ("item", "y", "x") if spec.crop.color == "gray" else ("item", "y", "x", "channel")
    chunk = min(spec.chunk_items, max(n, 1))
    coords: dict[str, Any] = {
        "item": listing.item.values,
        "label": ("item", listing.label.values.astype(np.int64)),
        "identity": ("item", listing.identity.values.astype(str)),
        "split": ("item", listing.split.values.astype(str)),
        "source_file": ("item", listing.source_file.values.astype(str)),
        "source": ("item", listing.source.values.astype(str)),
    }
    if spec.crop.color == "rgb":
        coords["channel"] = ["red", "green", "blue"]
    if "attributes" in listing:
        coords["attribute"] = listing.attribute.values
        coords["attributes"] = (("item", "attribute"), listing.attributes.values.astype(np.int8))
    order = np.argsort(listing.label.values, kind="stable")
    labels, first = np.unique(listing.label.values[order], return_index=True)
    identities = listing.identity.values[order][first].astype(str).tolist()
    image = da.zeros((n, *shape), chunks=(chunk, *shape), dtype=np.uint8)
    status = da.full((n,), "", chunks=(chunk,), dtype=f"<U{STATUS_WIDTH}")
    return xr.Dataset(
        {"image": (dims, image, {"description": f"{spec.crop.color} pixel values 0-255, "
                                                f"{spec.crop.mode} crop"}),
         "status": ("item", status, {"description": "'ok', 'ok: <note>' or 'failed: <file>: <reason>'"})},
        coords=coords,
        attrs={"identities": identities, "n_classes": len(labels),
               "dropped_identities": listing.attrs.get("dropped_identities", {}),
               "layout": spec.layout, "sources": listing.attrs.get("roots", {})},
    )


def _input_fingerprints(spec: DatasetSpec, sources: dict[str, xr.Dataset], catalog: Catalog) -> dict[str, str]:
    """Per input: its file names, identities and file sizes (not the split, which is a parameter)."""
    result = {}
    for name, listing in sources.items():
        root = listing.attrs["root"]
        files = listing.source_file.values.astype(str)
        sizes = [os.stat(p).st_size if os.path.exists(p) else -1 for p in (os.path.join(root, f) for f in files)]
        result[name] = fingerprint({"files": files, "identities": listing.identity.values.astype(str),
                                    "sizes": np.asarray(sizes, dtype=np.int64)})
    if spec.crop.mode == "face":
        result["opencv:" + Path(spec.crop.cascade).name] = fingerprint(cascade_path(spec.crop.cascade).read_bytes())
    if spec.landmarks:
        result[spec.landmarks] = fingerprint(landmark_file(catalog, spec.landmarks).read_bytes())
    return result


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class _UnitTask:
    store: ZarrStore
    unit: Unit
    paths: tuple[str, ...]
    crop: CropSpec
    landmarks: str | None
    dims: tuple[str, ...]


def _convert_unit(task: _UnitTask) -> int:
    images, status = convert_items(task.paths, task.crop, landmarks=task.landmarks)
    data = xr.Dataset({"image": (task.dims, images), "status": ("item", status)},
                      coords={"item": np.asarray(task.unit.labels["item"], dtype=np.int64)})
    task.store.write_unit(task.unit, data)
    return int(sum(1 for s in status if not s.startswith("ok")))


def _record_failures(store: ZarrStore, name: str) -> int:
    """Put the table of failed items into ``attrs["failed"]``; return how many failed."""
    ds = xr.open_zarr(store.path, chunks={}, consolidated=True)
    # Items of unfinished units read as "" and are not failures.
    status = ds.status
    failed = np.flatnonzero(((status != "") & ~status.str.startswith("ok")).compute().values)
    table = []
    if len(failed):
        rows = ds[["status"]].isel(item=failed[:FAILED_TABLE_MAX]).compute()
        for item, src, reason in zip(rows.item.values, rows.source_file.values, rows.status.values):
            table.append({"item": int(item), "source_file": str(src), "reason": str(reason)})
    store.update_attrs(failed=table, n_failed=int(len(failed)))
    if table:
        log.warning("images dataset %r: %d of %d items failed (first: %s); the table is in "
                    "attrs['failed'] of %s", name, len(failed), ds.sizes["item"], table[0]["reason"], store.path)
    return int(len(failed))


def convert_dataset(spec: DatasetSpec, *, catalog: Catalog, client: Client, seed: int,
                    overwrite: bool = False) -> ZarrStore:
    """Write (or resume) the store of one dataset.

    Parameters
    ----------
    spec : DatasetSpec
    catalog : Catalog
    client : distributed.Client
    seed : int
    overwrite : bool
        Delete an existing store first.

    Returns
    -------
    ZarrStore
        The complete store.

    Raises
    ------
    StageFailures
        Some chunks could not be written (the others are complete; rerun to resume).
    """
    entry = catalog.entry(spec.output)
    if entry.kind != "zarr":
        raise ConfigError(f"images dataset output {spec.output!r} is a catalog entry of kind {entry.kind!r}; "
                          "it must be a zarr entry (or a sub-path of one, like 'images/celeba').")
    sources = list_sources(spec, catalog)
    listing = prepare_listing(spec, catalog, seed=seed, sources=sources)
    template = build_template(listing, spec)
    landmarks = str(landmark_file(catalog, spec.landmarks)) if spec.landmarks else None
    provenance = make_provenance(stage=NAME, config={"seed": seed, "dataset": spec},
                                 inputs=_input_fingerprints(spec, sources, catalog), seed=seed, client=client)
    store = ZarrStore.create(entry.path, template, unit_dims=("item",), provenance=provenance,
                             overwrite=overwrite, entry_name=spec.output)
    units = store.units()
    missing = [u for u in units if not store.is_complete(u)]
    for u in units:
        if u not in missing:
            log.info("images %s: unit %s complete, skipping", spec.output, u.key)
    for u in missing:
        log.info("images %s: unit %s not marked complete in %s, converting", spec.output, u.key, store.path)
    paths = listing.path.values.astype(str)
    dims = tuple(template.image.dims)
    work = [_UnitTask(store, u, tuple(paths[u.region["item"]]), spec.crop, landmarks, dims) for u in missing]
    try:
        if work:
            run_units(client, _convert_unit, work, key=lambda t: t.unit.key,
                      description=f"images {spec.output}", stage=NAME)
    except StageFailures:
        _record_failures(store, spec.output)
        raise
    _record_failures(store, spec.output)
    return store


# --------------------------------------------------------------------------- stage API
def plan(*, config: Config, catalog: Catalog) -> Plan:
    """What converting every dataset reads, writes and costs (lists the folders, decodes nothing)."""
    result = Plan(stage=NAME)
    for spec in config.datasets:
        listing = prepare_listing(spec, catalog, seed=config.seed)
        n = listing.sizes["item"]
        n_units = -(-n // spec.chunk_items)
        missing = n_units
        path = catalog.path(spec.output)
        if (path / "zarr.json").exists():
            try:
                missing = len(ZarrStore.open(path, entry_name=spec.output).missing_units())
            except Exception:  # a damaged store is reported by run(); the plan assumes all work remains
                missing = n_units
        item_bytes = int(np.prod(image_shape(spec.crop)))
        sizes = [os.stat(p).st_size for p in listing.path.values[:1000] if os.path.exists(p)]
        mean_file = float(np.mean(sizes)) if sizes else 0.0
        result.reads[spec.source] = result.reads.get(spec.source, 0) + int(mean_file * n)
        result.writes[spec.output] = n * (item_bytes + 4 * STATUS_WIDTH)
        result.n_units += n_units
        result.n_tasks += missing
        # A chunk of output plus a few decoded source images (up to 4k x 3k RGB).
        result.memory_per_task = max(result.memory_per_task,
                                     spec.chunk_items * (item_bytes + 4 * STATUS_WIDTH) + 4 * 36_000_000)
        result.seconds += n * (missing / max(n_units, 1)) * _SECONDS_PER_ITEM[spec.crop.mode]
        result.notes.append(f"{spec.output}: {n} items of {len(np.unique(listing.identity.values))} identities "
                            f"from {spec.source} ({spec.layout}), {missing}/{n_units} chunks to do")
    return result


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Write every dataset of ``config`` (idempotent: complete chunks are skipped)."""
    if not config.datasets:
        log.info("images: no datasets in the stage config, nothing to do")
        return
    for spec in config.datasets:
        convert_dataset(spec, catalog=catalog, client=client, seed=config.seed, overwrite=overwrite)
