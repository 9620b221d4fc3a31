"""Zarr stores: templates, per-unit region writes, completion marks and resume.

A store is created once from an xarray *template* (dask-backed variables whose
chunks become the Zarr chunks) with only its metadata written. Work is split
into *units*: one chunk along the store's ``unit_dims`` (a subject, a region
block x time block, a batch of stimuli). A task writes one unit's region and,
only after the data are written, a completion mark
``<store>/.mfrs-complete/<unit>.json`` carrying the store's fingerprint. A unit
without its mark is missing, whatever its chunks hold, so a killed worker never
leaves a unit that looks complete, and a rerun writes exactly what is missing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import warnings
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import StoreError
from mfrs.provenance import fingerprint

__all__ = ["ZarrStore", "Unit", "MARKER_DIR", "load_small_coords"]

log = logging.getLogger("mfrs.store")

MARKER_DIR = ".mfrs-complete"
_FINAL_MARKER = "_final.json"
_STORE_ATTR = "mfrs_store"

# Zarr v3 warns on fixed-width string coords and consolidated metadata, both of which
# xarray uses by design; the stores stay readable by zarr-python and xarray.
warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
warnings.filterwarnings("ignore", message=f".*Object at {MARKER_DIR} is not recognized.*")


@dataclass(frozen=True)
class Unit:
    """One unit of work of a store: a chunk along its unit dims.

    Attributes
    ----------
    key : str
        Stable, human-readable name (``subject=sub-01``, ``region=0:32,time=100:200``).
    index : tuple of int
        Chunk index along each unit dim.
    region : dict
        Dim -> slice of the store that the unit covers.
    labels : dict
        Dim -> coordinate values covered.
    """

    key: str
    index: tuple[int, ...]
    region: dict[str, slice] = field(hash=False, compare=False)
    labels: dict[str, list] = field(hash=False, compare=False)

    @property
    def marker_name(self) -> str:
        """File name of the unit's completion mark."""
        return re.sub(r"[^A-Za-z0-9_.=,-]+", "_", self.key) + ".json"


def _variable_chunks(template: xr.Dataset) -> dict[str, dict[str, tuple[int, ...]]]:
    chunks: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, var in template.data_vars.items():
        if var.chunks is None:
            raise StoreError(
                f"template variable {name!r} is not dask-backed, so it has no chunks to store; "
                f"build it with dask.array (e.g. dask.array.zeros(shape, chunks=..., dtype=...))."
            )
        chunks[name] = dict(zip(var.dims, var.chunks))
    return chunks


def _unit_chunks(template: xr.Dataset, unit_dims: tuple[str, ...]) -> dict[str, list[int]]:
    per_var = _variable_chunks(template)
    result: dict[str, list[int]] = {}
    for dim in unit_dims:
        if dim not in template.dims:
            raise StoreError(f"unit dim {dim!r} is not a dimension of the template {tuple(template.dims)}.")
        seen = {name: c[dim] for name, c in per_var.items() if dim in c}
        if not seen:
            raise StoreError(f"no template variable has the unit dim {dim!r}.")
        distinct = set(seen.values())
        if len(distinct) > 1:
            raise StoreError(
                f"template variables are chunked differently along unit dim {dim!r}: {seen}; "
                "chunk them alike so a unit is a whole chunk of every variable."
            )
        result[dim] = [int(c) for c in distinct.pop()]
    return result


def _structure(ds: xr.Dataset) -> dict[str, Any]:
    """What must match for a store to be resumed: variables, dims, shapes, dtypes, index coords."""
    return {
        "dims": {str(k): int(v) for k, v in ds.sizes.items()},
        "variables": {str(k): [list(map(str, v.dims)), str(v.dtype)] for k, v in ds.data_vars.items()},
        # Index coords by fingerprint: a store of 10^5 items keeps zarr.json small.
        "coords": {
            str(k): fingerprint(np.asarray(v.values).astype(str))
            for k, v in ds.coords.items() if k in ds.dims
        },
    }


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("final_variables", []) != new.get("final_variables", []):
        return f"final variables differ ({old.get('final_variables', [])} vs {new.get('final_variables', [])})"
    for part in ("dims", "variables", "coords"):
        if old.get(part) != new.get(part):
            keys = sorted(set(old.get(part, {})) | set(new.get(part, {})))
            diffs = [k for k in keys if old.get(part, {}).get(k) != new.get(part, {}).get(k)]
            return f"{part} differ ({', '.join(diffs[:5])})"
    return "structure differs"


class ZarrStore:
    """A Zarr store written unit by unit.

    Use :meth:`create` to make or resume one and :meth:`open` to read one.
    Instances hold only paths and small metadata, so they pickle cheaply into
    dask tasks, where :meth:`write_unit` is called.
    """

    def __init__(self, path: str | Path, *, unit_dims: tuple[str, ...], unit_chunks: dict[str, list[int]],
                 coords: dict[str, list], fingerprint: str, structure: dict[str, Any],
                 entry_name: str | None = None, final_variables: tuple[str, ...] = ()):
        self.path = Path(path)
        # Layout read once at open: write_unit checks against it without touching the store.
        self._sizes: dict[str, int] = dict(structure["dims"])
        self._variables: dict[str, tuple[tuple[str, ...], np.dtype]] = {
            name: (tuple(dims), np.dtype(dtype)) for name, (dims, dtype) in structure["variables"].items()}
        self.unit_dims = tuple(unit_dims)
        self.unit_chunks = {k: list(v) for k, v in unit_chunks.items()}
        self._coords = coords
        self.fingerprint = fingerprint
        self.entry_name = entry_name
        self.final_variables = tuple(final_variables)
        self._all_units_seen_complete = False  # marks are never removed while final variables are written

    def __repr__(self) -> str:
        return f"ZarrStore({str(self.path)!r}, unit_dims={self.unit_dims})"

    @property
    def _label(self) -> str:
        return f"store {self.path}" + (f" (catalog entry {self.entry_name!r})" if self.entry_name else "")

    # ----------------------------------------------------------------- create/open
    @classmethod
    def create(cls, path: str | Path, template: xr.Dataset, *, unit_dims: tuple[str, ...],
               provenance: dict[str, Any], overwrite: bool = False,
               entry_name: str | None = None, final_variables: tuple[str, ...] = ()) -> ZarrStore:
        """Create the store from ``template``, or reopen it to resume.

        Parameters
        ----------
        path : str or Path
            Where the store lives (a local folder).
        template : xarray.Dataset
            Dask-backed data variables with every coordinate; the dask chunks become
            the Zarr chunks. No data are computed or written.
        unit_dims : tuple of str
            The dims whose chunks are the units of work.
        provenance : dict
            From :func:`mfrs.provenance.make_provenance`; its ``fingerprint`` decides
            whether an existing store may be resumed.
        overwrite : bool
            Delete an existing store first (finished units included).
        entry_name : str, optional
            Catalog entry name, for messages.
        final_variables : tuple of str
            Variables that units do not write; :meth:`write_final` fills them once
            every unit is complete.

        Returns
        -------
        ZarrStore

        Raises
        ------
        StoreError
            An existing store has another structure or was made with other
            parameters or inputs, and ``overwrite`` is False.
        """
        path = Path(path)
        unit_chunks = _unit_chunks(template, tuple(unit_dims))
        structure = _structure(template)
        unknown = sorted(set(final_variables) - set(template.data_vars))
        if unknown:
            raise StoreError(f"final variables {unknown} are not data variables of the template.")
        if final_variables:  # absent otherwise, so stores made before final variables existed still resume
            structure["final_variables"] = sorted(final_variables)
        fp = provenance["fingerprint"]
        label = f"store {path}" + (f" (catalog entry {entry_name!r})" if entry_name else "")
        if path.exists() and overwrite:
            log.warning("%s: --overwrite given, deleting it with its finished units", label)
            shutil.rmtree(path)
        if path.exists():
            if not (path / "zarr.json").exists():
                if (path / MARKER_DIR).exists() and any((path / MARKER_DIR).iterdir()):
                    raise StoreError(f"{label} has completion marks but no zarr.json: it is damaged. "
                                     "Move it away or rerun with --overwrite.")
                log.info("%s: metadata was never written completely, creating it again", label)
                shutil.rmtree(path)
            else:
                existing = cls.open(path, entry_name=entry_name)
                old_prov = existing.provenance
                old_struct = existing._attrs().get(_STORE_ATTR, {}).get("structure")
                if old_struct != structure:
                    raise StoreError(
                        f"{label} exists with another layout ({_describe_difference(old_struct or {}, structure)})"
                        " than this run would write. Rerun with --overwrite to replace it, or point the "
                        "catalog entry at a new location."
                    )
                if old_prov.get("fingerprint") != fp:
                    changed = sorted(
                        k for k in ("parameters", "inputs", "seed")
                        if old_prov.get(k) != provenance.get(k)
                    )
                    raise StoreError(
                        f"{label} was made with other {', '.join(changed) or 'settings'} "
                        f"(fingerprint {old_prov.get('fingerprint')} vs {fp}). Its finished units are kept. "
                        "Rerun with --overwrite to recompute everything with the new settings, or point "
                        "the catalog entry at a new location."
                    )
                missing = [u.key for u in existing.missing_units()]
                log.info("%s: resuming, %d of %d units complete; not marked complete, to compute: %s%s",
                         label, len(existing.units()) - len(missing), len(existing.units()),
                         ", ".join(missing[:10]) or "none", " ..." if len(missing) > 10 else "")
                return existing

        attrs = dict(template.attrs)
        attrs["provenance"] = provenance
        attrs[_STORE_ATTR] = {"unit_dims": list(unit_dims), "unit_chunks": unit_chunks,
                              "structure": structure, "format": 1}
        encoding = {name: {"chunks": tuple(max(c) for c in var.chunks)}
                    for name, var in template.data_vars.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        # Coordinates are written now, with the metadata: lazy ones (e.g. read from another
        # store) would otherwise be left as fill values by to_zarr(compute=False).
        tmp = template.assign_coords({name: coord.compute() for name, coord in template.coords.items()})
        tmp.attrs = attrs
        for var in tmp.variables.values():
            # Encodings read from another store (fixed string widths, codecs) would truncate
            # longer labels or clash with the chunks here: the template's values decide.
            var.encoding = {}
        tmp.to_zarr(path, mode="w-", compute=False, consolidated=True, encoding=encoding, zarr_format=3)
        (path / MARKER_DIR).mkdir(exist_ok=True)
        log.info("%s: created (%d units over %s)", label,
                 int(np.prod([len(v) for v in unit_chunks.values()])), ", ".join(unit_dims))
        return cls.open(path, entry_name=entry_name)

    @classmethod
    def open(cls, path: str | Path, *, entry_name: str | None = None) -> ZarrStore:
        """Open an existing store written by mfrs.

        Raises
        ------
        StoreError
            No store at ``path``, or not one written by mfrs.
        """
        path = Path(path)
        label = f"store {path}" + (f" (catalog entry {entry_name!r})" if entry_name else "")
        if not (path / "zarr.json").exists():
            raise StoreError(f"{label} does not exist (no zarr.json). Run the stage that writes it "
                             "(see `mfrs status`).")
        try:
            ds = xr.open_zarr(path, chunks=None, consolidated=True)
        except Exception as exc:  # zarr raises many types for damaged metadata
            raise StoreError(f"{label} cannot be read as Zarr: {exc}. Move it away or rerun with --overwrite.") from exc
        meta = ds.attrs.get(_STORE_ATTR)
        if meta is None:
            raise StoreError(f"{label} was not written by mfrs (no '{_STORE_ATTR}' attribute).")
        unit_dims = tuple(meta["unit_dims"])
        coords = {d: np.asarray(ds[d].values).tolist() if d in ds.coords else list(range(ds.sizes[d]))
                  for d in unit_dims}
        return cls(path, unit_dims=unit_dims, unit_chunks=meta["unit_chunks"], coords=coords,
                   fingerprint=ds.attrs.get("provenance", {}).get("fingerprint", ""),
                   structure=meta["structure"], entry_name=entry_name,
                   final_variables=tuple(meta["structure"].get("final_variables", ())))

    def _attrs(self) -> dict[str, Any]:
        return json.loads((self.path / "zarr.json").read_text()).get("attributes", {})

    @property
    def provenance(self) -> dict[str, Any]:
        """The store's provenance record."""
        return self._attrs().get("provenance", {})

    # ----------------------------------------------------------------- units
    def units(self) -> list[Unit]:
        """Every unit of the store, in chunk order."""
        bounds = {}
        for dim in self.unit_dims:
            edges = np.concatenate([[0], np.cumsum(self.unit_chunks[dim])]).astype(int)
            bounds[dim] = list(zip(edges[:-1], edges[1:]))
        units = []
        for index in product(*(range(len(bounds[d])) for d in self.unit_dims)):
            region, labels, parts = {}, {}, []
            for dim, i in zip(self.unit_dims, index):
                start, stop = bounds[dim][i]
                region[dim] = slice(int(start), int(stop))
                labels[dim] = self._coords[dim][start:stop]
                if stop - start == 1:
                    parts.append(f"{dim}={labels[dim][0]}")
                else:
                    parts.append(f"{dim}={start}:{stop}")
            units.append(Unit(",".join(parts), tuple(index), region, labels))
        return units

    def _marker(self, unit: Unit) -> Path:
        return self.path / MARKER_DIR / unit.marker_name

    def is_complete(self, unit: Unit) -> bool:
        """True when ``unit`` has a completion mark of this store's fingerprint."""
        marker = self._marker(unit)
        try:
            return json.loads(marker.read_text()).get("fingerprint") == self.fingerprint
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    def missing_units(self) -> list[Unit]:
        """Units without a valid completion mark."""
        return [u for u in self.units() if not self.is_complete(u)]

    def is_final_complete(self) -> bool:
        """True when the final variables are written (always True for a store without any)."""
        if not self.final_variables:
            return True
        try:
            return json.loads((self.path / MARKER_DIR / _FINAL_MARKER).read_text()).get(
                "fingerprint") == self.fingerprint
        except (FileNotFoundError, json.JSONDecodeError):
            return False

    def status(self) -> dict[str, Any]:
        """Counts and keys of complete and missing units (``final`` is listed as missing until written)."""
        units = self.units()
        missing = [u.key for u in units if not self.is_complete(u)]
        complete = len(units) - len(missing)
        if not self.is_final_complete():
            missing.append("final:" + ",".join(self.final_variables))
        return {"path": str(self.path), "units": len(units), "complete": complete, "missing": missing}

    # ----------------------------------------------------------------- writing
    def write_unit(self, unit: Unit, data: xr.Dataset) -> None:
        """Write ``data`` into the region of ``unit``, then mark the unit complete.

        Parameters
        ----------
        unit : Unit
            From :meth:`units` or :meth:`missing_units`.
        data : xarray.Dataset
            Every data variable of the store but the final ones, covering exactly
            ``unit.region``; its coordinates along the unit dims must equal the store's.

        Raises
        ------
        StoreError
            Missing variables, a wrong shape, or coordinates that do not match.
        """
        self._write_region(unit, data, set(self._variables) - set(self.final_variables))
        self._mark(self._marker(unit), unit.key)

    def write_final(self, unit: Unit, data: xr.Dataset) -> None:
        """Write the final variables of ``unit``'s region; every unit must be complete.

        Call :meth:`mark_final` once every unit's final variables are written.

        Raises
        ------
        StoreError
            Units are still missing, or ``data`` does not hold exactly the final variables.
        """
        if not self.final_variables:
            raise StoreError(f"{self._label} declares no final variables; write units with write_unit.")
        if not self._all_units_seen_complete:  # checked once, not once per unit (one file read per mark)
            missing = self.missing_units()
            if missing:
                raise StoreError(f"{self._label}: final variables {list(self.final_variables)} need every unit, "
                                 f"but {len(missing)} are missing ({', '.join(u.key for u in missing[:3])}); rerun "
                                 "the stage to compute them first.")
            self._all_units_seen_complete = True
        self._write_region(unit, data, set(self.final_variables))

    def mark_final(self) -> None:
        """Mark the final variables written (after :meth:`write_final` for every unit)."""
        self._mark(self.path / MARKER_DIR / _FINAL_MARKER, "final")

    def _write_region(self, unit: Unit, data: xr.Dataset, expected_vars: set[str]) -> None:
        missing = sorted(expected_vars - set(data.data_vars))
        extra = sorted(set(data.data_vars) - expected_vars)
        if missing or extra:
            raise StoreError(
                f"{self._label}, unit {unit.key}: data variables do not match the store "
                f"(missing {missing}, unexpected {extra}). To drop the unexpected ones write "
                f".drop_vars({extra})."
            )
        for dim, sl in unit.region.items():
            expected = unit.labels[dim]
            if data.sizes.get(dim) != sl.stop - sl.start:
                raise StoreError(f"{self._label}, unit {unit.key}: dim {dim!r} has size {data.sizes.get(dim)}, "
                                 f"the unit covers {sl.stop - sl.start}.")
            if dim in data.coords and np.asarray(data[dim].values).tolist() != expected:
                raise StoreError(f"{self._label}, unit {unit.key}: {dim} labels {np.asarray(data[dim].values)[:5]}... "
                                 f"do not match the store's {expected[:5]}...; never rely on positional order, "
                                 f"select with .sel({dim}=...) first.")
        for name, var in data.data_vars.items():
            want = self._variables[name][0]
            if tuple(var.dims) != want:
                if set(var.dims) != set(want):
                    raise StoreError(f"{self._label}, unit {unit.key}: variable {name!r} has dims {var.dims}, "
                                     f"the store has {want}.")
                data[name] = var.transpose(*want)
            for dim in want:
                if dim not in unit.region and data.sizes[dim] != self._sizes[dim]:
                    raise StoreError(f"{self._label}, unit {unit.key}: variable {name!r} has {dim}="
                                     f"{data.sizes[dim]}, the store has {self._sizes[dim]}.")
        payload = data.drop_vars(list(data.coords)).drop_attrs()
        region = {d: unit.region.get(d, slice(0, self._sizes[d])) for d in payload.dims}
        for name in payload.data_vars:
            payload[name] = payload[name].astype(self._variables[name][1], copy=False)
        payload.to_zarr(self.path, region=region, mode="r+", consolidated=False)

    def _mark(self, marker: Path, key: str) -> None:
        marker.parent.mkdir(exist_ok=True)
        tmp = marker.with_suffix(f".tmp-{os.getpid()}")
        record = {"unit": key, "fingerprint": self.fingerprint, "host": socket.gethostname(),
                  "pid": os.getpid(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(tmp, "w") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, marker)

    def update_attrs(self, **attrs: Any) -> None:
        """Add summary attributes after the units are written (e.g. a table of failed items).

        ``provenance`` and the store's own bookkeeping cannot be changed this way.
        """
        import zarr

        reserved = {"provenance", _STORE_ATTR} & set(attrs)
        if reserved:
            raise StoreError(f"{self._label}: attributes {sorted(reserved)} are written only at creation.")
        group = zarr.open_group(self.path, mode="r+", zarr_format=3, use_consolidated=False)
        group.attrs.update(attrs)
        zarr.consolidate_metadata(self.path, zarr_format=3)

    # ----------------------------------------------------------------- reading
    def dataset(self, *, warn_incomplete: bool = True) -> xr.Dataset:
        """The store as a lazy, dask-backed Dataset (one dask chunk per Zarr chunk)."""
        if warn_incomplete:
            missing = self.missing_units()
            if missing:
                log.warning("%s: %d of %d units are not complete (%s%s); they read as fill values",
                            self._label, len(missing), len(self.units()),
                            ", ".join(u.key for u in missing[:3]), "..." if len(missing) > 3 else "")
            elif not self.is_final_complete():
                log.warning("%s: final variables %s are not written yet; they read as fill values",
                            self._label, list(self.final_variables))
        return load_small_coords(xr.open_zarr(self.path, chunks={}, consolidated=True))


#: Coordinates up to this many elements are read into memory when a store is opened.
EAGER_COORD_LIMIT = 2_000_000


def load_small_coords(ds: xr.Dataset, limit: int = EAGER_COORD_LIMIT) -> xr.Dataset:
    """``ds`` with every non-index coordinate of at most ``limit`` elements in memory (data stay lazy).

    Labels such as layer metadata, ``hemi`` or ``category`` then select and compare
    (``.sel``, ``.where``) without a dask compute each time.
    """
    small = {name: c.variable.load() for name, c in ds.coords.items()
             if name not in ds.indexes and c.size <= limit}
    return ds.assign_coords(small) if small else ds
