"""Zarr stores: templates, per-unit region writes, completion marks and resume.

A store is created once from an xarray *template* (dask-backed variables whose
chunks become the Zarr chunks) with only its metadata written. Work is split
into *units*: one chunk along the store's ``unit_dims`` (a subject, a region
block x time block, a batch of stimuli). A task writes one unit's region and,
only after the data are written, a completion mark
``<store>/.mfrs-complete/<unit>.json`` carrying the store's fingerprint. A unit
without its mark is missing, whatever its chunks hold, so a killed worker never
leaves a unit that looks complete, and a rerun writes exactly what is missing.

Trust (issue 10): new stores carry a crc32c checksum on every chunk; a mark
records the digest of every chunk the unit wrote and the content digests of the
input stores the unit was computed from (:meth:`ZarrStore.depends_on`). A unit
whose recorded chunk is gone, or whose inputs have changed since, counts as not
complete; rewriting a unit first removes its mark. The runner opens a stage's
inputs with :func:`open_input`, which refuses incomplete or damaged inputs by name, and
:meth:`ZarrStore.dataset` reads chunks so that a corrupt one is an error naming
the store, the chunk and the unit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from mfrs.errors import StoreError
from mfrs.provenance import fingerprint

if TYPE_CHECKING:
    from mfrs.catalog import Catalog

__all__ = ["ZarrStore", "Unit", "MARKER_DIR", "open_input", "open_inputs", "open_as_they_are", "ZARR_NOISE", "ignore_zarr_noise", "quiet_zarr", "chunk_codecs", "load_small_coords"]

log = logging.getLogger(__name__)

MARKER_DIR = ".mfrs-complete"
_FINAL_MARKER = "_final.json"
_STORE_ATTR = "mfrs_store"

#: Warnings zarr-python gives on what xarray writes by design (fixed-width string coords, consolidated
#: metadata) and on the completion-mark folder; the stores stay readable by zarr-python and xarray.
ZARR_NOISE = (".*does not have a Zarr V3 specification.*", ".*Consolidated metadata is currently not part.*",
              f".*Object at {MARKER_DIR} is not recognized.*")


def ignore_zarr_noise() -> None:
    """Hide the :data:`ZARR_NOISE` warnings in this process (the CLI and every cluster worker call it)."""
    for message in ZARR_NOISE:
        warnings.filterwarnings("ignore", message=message)


@contextmanager
def quiet_zarr() -> Iterator[None]:
    """Hide the :data:`ZARR_NOISE` warnings inside the block only.

    Examples
    --------
    >>> import warnings
    >>> with quiet_zarr():
    ...     warnings.warn("Consolidated metadata is currently not part of the Zarr format 3 specification")
    """
    with warnings.catch_warnings():
        ignore_zarr_noise()
        yield


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


def chunk_codecs() -> tuple:
    """Bytes-to-bytes codecs of new stores: zstd, then a crc32c checksum verified on every read."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    return (ZstdCodec(), Crc32cCodec())


def _file_digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()


def _variable_chunks(template: xr.Dataset) -> dict[str, dict[str, tuple[int, ...]]]:
    chunks: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, var in template.data_vars.items():
        if var.chunks is None:
            raise StoreError(
                f"template variable {name!r} is not dask-backed, so it has no chunks to store; "
                f"build it with dask.array (e.g. dask.array.zeros(shape, chunks=..., dtype=...))."
            )
        chunks[str(name)] = {str(dim): c for dim, c in zip(var.dims, var.chunks)}
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


def provenance_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two provenance records, as ``parameter: old → new`` lines."""
    from mfrs.provenance import parameter_changes

    changes = parameter_changes(old.get("parameters"), new.get("parameters"))
    changes += [f"input {k}" for k in sorted(set(old.get("inputs", {})) | set(new.get("inputs", {})))
                if old.get("inputs", {}).get(k) != new.get("inputs", {}).get(k)]
    if old.get("seed") != new.get("seed"):
        changes.append(f"seed: {old.get('seed')} → {new.get('seed')}")
    return changes


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("final_variables", []) != new.get("final_variables", []):
        return f"final variables differ ({old.get('final_variables', [])} vs {new.get('final_variables', [])})"
    for part in ("dims", "variables", "coords"):
        if old.get(part) != new.get(part):
            keys = sorted(set(old.get(part, {})) | set(new.get(part, {})))
            diffs = [k for k in keys if old.get(part, {}).get(k) != new.get(part, {}).get(k)]
            return f"{part} differ ({', '.join(diffs[:5])})"
    return "structure differs"


def _write_metadata(path: Path, template: xr.Dataset, *, unit_dims: tuple[str, ...], unit_chunks: dict[str, Any],
                    structure: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Write a new store's metadata and coordinates (no data): the template's chunks become the Zarr chunks."""
    attrs = dict(template.attrs)
    attrs["provenance"] = provenance
    attrs[_STORE_ATTR] = {"unit_dims": list(unit_dims), "unit_chunks": unit_chunks,
                          "structure": structure, "format": 1}
    encoding = {name: {"chunks": tuple(max(c) for c in var_chunks.values()), "compressors": chunk_codecs()}
                for name, var_chunks in _variable_chunks(template).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Coordinates are written now, with the metadata: lazy ones (e.g. read from another
    # store) would otherwise be left as fill values by to_zarr(compute=False).
    tmp = template.assign_coords({name: coord.compute() for name, coord in template.coords.items()})
    tmp.attrs = attrs
    for var in tmp.variables.values():
        # Encodings read from another store (fixed string widths, codecs) would truncate
        # longer labels or clash with the chunks here: the template's values decide.
        var.encoding = {}
    with quiet_zarr():
        tmp.to_zarr(path, mode="w-", compute=False, consolidated=True, encoding=encoding, zarr_format=3)
    (path / MARKER_DIR).mkdir(exist_ok=True)


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
        self._inputs: dict[str, str] = {}  # input store (relative path) -> content digest read this run
        self._input_cache: dict[str, str | None] = {}
        self._chunk_layout: dict[str, dict[str, Any]] | None = None

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
        label = f"store {path}" + (f" (catalog entry {entry_name!r})" if entry_name else "")
        if path.exists() and overwrite:
            log.warning("%s: --overwrite given, deleting it with its finished units", label)
            shutil.rmtree(path)
        existing = cls._resumable(path, structure=structure, provenance=provenance, entry_name=entry_name,
                                  label=label)
        if existing is not None:
            return existing
        _write_metadata(path, template, unit_dims=tuple(unit_dims), unit_chunks=unit_chunks, structure=structure,
                        provenance=provenance)
        log.info("%s: created (%d units over %s)", label,
                 int(np.prod([len(v) for v in unit_chunks.values()])), ", ".join(unit_dims))
        return cls.open(path, entry_name=entry_name)

    @classmethod
    def _resumable(cls, path: Path, *, structure: dict[str, Any], provenance: dict[str, Any],
                   entry_name: str | None, label: str) -> ZarrStore | None:
        """The existing store at ``path`` when this run may resume it; None when there is none (a store
        whose metadata was never written completely is removed); StoreError when it differs."""
        if not path.exists():
            return None
        if not (path / "zarr.json").exists():
            if (path / MARKER_DIR).exists() and any((path / MARKER_DIR).iterdir()):
                raise StoreError(f"{label} has completion marks but no zarr.json: it is damaged. "
                                 "Move it away or rerun with --overwrite.")
            log.info("%s: metadata was never written completely, creating it again", label)
            shutil.rmtree(path)
            return None
        existing = cls.open(path, entry_name=entry_name)
        old_prov = existing.provenance
        old_struct = existing._attrs().get(_STORE_ATTR, {}).get("structure")
        if old_struct != structure:
            raise StoreError(
                f"{label} exists with another layout ({_describe_difference(old_struct or {}, structure)})"
                " than this run would write. Rerun with --overwrite to replace it, or point the "
                "catalog entry at a new location."
            )
        fp = provenance["fingerprint"]
        if old_prov.get("fingerprint") != fp:
            changes = provenance_changes(old_prov, provenance)
            kinds = [k for k in ("parameters", "inputs", "seed") if old_prov.get(k) != provenance.get(k)]
            raise StoreError(
                f"{label} was made with other {', '.join(kinds) or 'settings'}: "
                f"{'; '.join(changes) or 'see its provenance'} "
                f"(fingerprint {old_prov.get('fingerprint')} vs {fp}). Its finished units are kept. "
                "Rerun with --overwrite to recompute everything with the new settings, or point "
                "the catalog entry at a new location."
            )
        missing = [u.key for u in existing.missing_units()]
        log.info("%s: resuming, %d of %d units complete; not marked complete, to compute: %s%s",
                 label, len(existing.units()) - len(missing), len(existing.units()),
                 ", ".join(missing[:10]) or "none", " ..." if len(missing) > 10 else "")
        return existing

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
            with quiet_zarr():
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

    def _read_mark(self, marker: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(marker.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) else None

    # ------------------------------------------------------------ chunks and inputs
    def _layout(self) -> dict[str, dict[str, Any]]:
        """Variable -> dims, shape, chunk shape and chunk key separator, from its zarr.json."""
        if self._chunk_layout is None:
            layout = {}
            for name, (dims, _) in self._variables.items():
                meta = json.loads((self.path / name / "zarr.json").read_text())
                enc = meta.get("chunk_key_encoding", {})
                layout[name] = {"dims": dims, "shape": tuple(meta["shape"]),
                                "chunks": tuple(meta["chunk_grid"]["configuration"]["chunk_shape"]),
                                "separator": enc.get("configuration", {}).get("separator", "/"),
                                "prefix": enc.get("name", "default") == "default"}
            self._chunk_layout = layout
        return self._chunk_layout

    def _chunk_key(self, name: str, index: tuple[int, ...]) -> str:
        lay = self._layout()[name]
        parts = (["c"] if lay["prefix"] else []) + [str(i) for i in index]
        return f"{name}/" + (lay["separator"].join(parts) if parts else "0")

    def unit_chunk_keys(self, unit: Unit, variables: set[str] | None = None) -> list[str]:
        """Keys (relative to the store) of every chunk of ``unit`` in ``variables`` (default: the unit's)."""
        names = sorted(variables if variables is not None else set(self._variables) - set(self.final_variables))
        keys = []
        for name in names:
            lay = self._layout()[name]
            ranges = []
            for dim, size, chunk in zip(lay["dims"], lay["shape"], lay["chunks"]):
                sl = unit.region.get(dim)
                ranges.append(range(sl.start // chunk, math.ceil(sl.stop / chunk)) if sl is not None
                              else range(math.ceil(size / chunk)))
            keys += [self._chunk_key(name, idx) for idx in product(*ranges)]
        return keys

    def unit_of_chunk(self, key: str) -> Unit | None:
        """The unit whose region holds chunk ``key`` (``variable/c/i/j...``)."""
        name = key.split("/", 1)[0]
        lay = self._layout().get(name)
        if lay is None:
            return None
        index = [int(i) for i in re.split(r"[./]", key.split("/", 1)[1]) if i.isdigit()]
        units = self.units()
        if all(d in lay["dims"] for d in self.unit_dims) and len(index) == len(lay["dims"]):
            # a unit is one chunk along each unit dim: its index is the chunk's index there
            want = tuple(index[lay["dims"].index(d)] for d in self.unit_dims)
            return next((u for u in units if u.index == want), None)
        return next((u for u in units if key in self.unit_chunk_keys(u, {name})), None)

    def content_digest(self) -> str:
        """Digest of what the store holds now: each complete unit's chunk digests (or write time)."""
        parts = []
        for unit in self.units():
            record = self._read_mark(self._marker(unit))
            if record and record.get("fingerprint") == self.fingerprint:
                parts.append([unit.key, record.get("content") or record.get("written")])
        final = self._read_mark(self.path / MARKER_DIR / _FINAL_MARKER)
        if final and final.get("fingerprint") == self.fingerprint:
            parts.append(["final", final.get("content") or final.get("written")])
        return fingerprint({"fingerprint": self.fingerprint, "units": parts})

    def depends_on(self, *inputs: ZarrStore) -> None:
        """Record that the units written from now on are computed from ``inputs`` (as they are now).

        Each later completion mark carries the inputs' content digests; when an
        input changes (a unit of it recomputed), the units computed from it count
        as stale, so ``status``/``plan`` show them and ``run`` recomputes them.
        """
        for store in inputs:
            self._inputs[os.path.relpath(store.path, self.path)] = store.content_digest()

    def _current_input(self, rel: str) -> str | None:
        if rel in self._inputs:
            return self._inputs[rel]
        if rel not in self._input_cache:
            try:
                self._input_cache[rel] = ZarrStore.open(self.path / rel).content_digest()
            except StoreError:  # the input is gone: results cannot be checked against it, keep them
                self._input_cache[rel] = None
        return self._input_cache[rel]

    def unit_problem(self, unit: Unit, *, digests: bool = False) -> str | None:
        """Why ``unit`` does not count as complete (None when it does).

        Not marked, marked for other settings, a recorded chunk missing (or, with
        ``digests``, changed on disk), or an input changed since it was computed.
        """
        record = self._read_mark(self._marker(unit))
        if record is None:
            return "not marked complete"
        if record.get("fingerprint") != self.fingerprint:
            return "marked for other settings"
        for key, digest in record.get("chunks", {}).items():
            chunk = self.path / key
            if not chunk.exists():
                return f"chunk {key} is missing"
            if digests and _file_digest(chunk) != digest:
                return f"chunk {key} is corrupt (its digest differs from the one written with the mark)"
        for rel, digest in record.get("inputs", {}).items():
            current = self._current_input(rel)
            if current is not None and current != digest:
                return f"stale: input {os.path.normpath(self.path / rel)} changed since it was computed"
        return None

    def is_complete(self, unit: Unit) -> bool:
        """True when ``unit`` has a mark of this fingerprint, its chunks are there and its inputs unchanged."""
        return self.unit_problem(unit) is None

    def missing_units(self) -> list[Unit]:
        """Units without a valid completion mark."""
        return [u for u in self.units() if not self.is_complete(u)]

    def verify(self) -> dict[str, str]:
        """Unit key -> problem for every marked unit whose chunks are missing or corrupt (reads every chunk)."""
        problems = {}
        for unit in self.units():
            if self._read_mark(self._marker(unit)) is None:
                continue
            why = self.unit_problem(unit, digests=True)
            if why and why.startswith("chunk"):
                problems[unit.key] = why
        return problems

    def unmark(self, unit: Unit) -> None:
        """Remove ``unit``'s mark (and the final one), so that the next run recomputes it."""
        self._marker(unit).unlink(missing_ok=True)
        (self.path / MARKER_DIR / _FINAL_MARKER).unlink(missing_ok=True)

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
        """Counts and keys of complete and missing units (``final`` is listed as missing until written).

        ``problems`` maps each missing unit that has a mark to why it does not count
        (a chunk missing, stale inputs, other settings).
        """
        units = self.units()
        problems = {u.key: self.unit_problem(u) for u in units}
        missing = [k for k, why in problems.items() if why]
        complete = len(units) - len(missing)
        if self.final_variables and (missing or not self.is_final_complete()):  # merged from every unit
            missing.append("final:" + ",".join(self.final_variables))
        return {"path": str(self.path), "units": len(units), "complete": complete, "missing": missing,
                "tasks": len(units) + bool(self.final_variables),
                "problems": {k: why for k, why in problems.items() if why and why != "not marked complete"}}

    def check_complete(self, *, stage: str, writer: str) -> None:
        """Refuse (StoreError) to serve as an input of ``stage`` unless every unit is complete and intact.

        The message names the store, the units and why, and the command that completes them.
        """
        problems = {u.key: why for u in self.units() if (why := self.unit_problem(u))}
        if not self.is_final_complete():
            problems["final:" + ",".join(self.final_variables)] = "not written"
        if not problems:
            return
        shown = "; ".join(f"{k}: {why}" for k, why in list(problems.items())[:6])
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        damaged = any(why.startswith("chunk") for why in problems.values())
        fix = "Run `mfrs status --verify --repair` to unmark the damaged units, then " if damaged else "Run "
        raise StoreError(
            f"stage {stage!r} cannot read {self._label}: {len(problems)} of {len(self.units())} unit(s) are "
            f"not complete: {shown}{more}. {fix}`mfrs run <pipeline> --stages {writer}` to complete them, "
            "then this stage again."
        )

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
        self.unmark(unit)  # a unit being rewritten is not complete until its new mark
        self._write_region(unit, data, set(self._variables) - set(self.final_variables))
        chunks = {key: _file_digest(self.path / key) for key in self.unit_chunk_keys(unit)
                  if (self.path / key).exists()}  # chunks of fill values only are not written
        self._mark(self._marker(unit), unit.key, chunks=chunks, inputs=self._inputs)

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
        names = {str(v) for v in data.data_vars}
        missing = sorted(expected_vars - names)
        extra = sorted(names - expected_vars)
        if missing or extra:
            raise StoreError(
                f"{self._label}, unit {unit.key}: data variables do not match the store "
                f"(missing {missing}, unexpected {extra}). To drop the unexpected ones write "
                f".drop_vars({extra})."
            )
        for dim, sl in unit.region.items():
            expected = unit.labels[dim]
            if dim not in data.dims:  # no variable has this unit dim (their dims are checked against the store below)
                continue
            if data.sizes.get(dim) != sl.stop - sl.start:
                raise StoreError(f"{self._label}, unit {unit.key}: dim {dim!r} has size {data.sizes.get(dim)}, "
                                 f"the unit covers {sl.stop - sl.start}.")
            if dim in data.coords and np.asarray(data[dim].values).tolist() != expected:
                raise StoreError(f"{self._label}, unit {unit.key}: {dim} labels {np.asarray(data[dim].values)[:5]}... "
                                 f"do not match the store's {expected[:5]}...; never rely on positional order, "
                                 f"select with .sel({dim}=...) first.")
        for name, var in data.data_vars.items():
            want = self._variables[str(name)][0]
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
        region = {str(d): unit.region.get(str(d), slice(0, self._sizes[str(d)])) for d in payload.dims}
        for name in payload.data_vars:
            payload[name] = payload[name].astype(self._variables[str(name)][1], copy=False)
        with quiet_zarr():
            payload.to_zarr(self.path, region=region, mode="r+", consolidated=False)

    def _mark(self, marker: Path, key: str, *, chunks: dict[str, str] | None = None,
              inputs: dict[str, str] | None = None) -> None:
        marker.parent.mkdir(exist_ok=True)
        tmp = marker.with_suffix(f".tmp-{os.getpid()}")
        record = {"unit": key, "fingerprint": self.fingerprint, "host": socket.gethostname(),
                  "pid": os.getpid(), "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if chunks is not None:
            record["chunks"] = dict(sorted(chunks.items()))
            record["content"] = fingerprint({"fingerprint": self.fingerprint, "chunks": record["chunks"]})
        if inputs:
            record["inputs"] = dict(sorted(inputs.items()))
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
        with quiet_zarr():
            ds = xr.open_zarr(self.path, chunks={}, consolidated=True)
        for name, var in ds.data_vars.items():
            # read chunk by chunk through _read_chunk (errors name store, chunk and unit); a variable
            # that xarray decodes to another dtype keeps xarray's reading
            if name in self._variables and var.dtype == self._variables[name][1]:
                ds[name] = var.copy(data=self._lazy(name))
        return load_small_coords(ds)

    def _lazy(self, name: str) -> Any:
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph

        lay = self._layout()[name]
        chunks = tuple(tuple(min(c, size - i) for i in range(0, size, c)) or (0,)
                       for size, c in zip(lay["shape"], lay["chunks"]))
        token = fingerprint([str(self.path), name, self.fingerprint,
                             (self.path / name / "zarr.json").stat().st_mtime_ns])
        graph_name = f"mfrs-read-{name}-{token}"
        dsk: dict[Any, Any] = {(graph_name, *idx): (_read_chunk, str(self.path), name, list(idx), self.entry_name)
               for idx in product(*(range(len(c)) for c in chunks))}
        graph = HighLevelGraph.from_collections(graph_name, dsk, dependencies=())
        return da.Array(graph, graph_name, chunks, dtype=self._variables[name][1])


def _zarr_array(path: str, name: str) -> Any:
    import zarr

    key = (path, name, (Path(path) / name / "zarr.json").stat().st_mtime_ns)
    if key not in _ARRAYS:
        if len(_ARRAYS) > 64:
            _ARRAYS.clear()
        _ARRAYS[key] = zarr.open_array(Path(path) / name, mode="r", zarr_format=3)
    return _ARRAYS[key]


_ARRAYS: dict[tuple[str, str, int], Any] = {}


def _read_chunk(path: str, name: str, index: list[int], entry_name: str | None) -> np.ndarray:
    """One chunk of a variable; a missing recorded chunk or a failed checksum is a StoreError naming both."""
    arr = _zarr_array(path, name)
    sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, arr.chunks, arr.shape))
    store: ZarrStore | None = None
    try:
        store = _store(path, entry_name) if not _chunk_exists(path, name, arr, index) else None
        if store is not None:  # absent: fine for a chunk of fill values, damage for one recorded by its unit
            key = store._chunk_key(name, tuple(index))
            unit = store.unit_of_chunk(key)
            record = store._read_mark(store._marker(unit)) if unit else None
            if unit and record and key in record.get("chunks", {}):
                raise StoreError(f"{store._label}: chunk {key} of unit {unit.key} is missing (it was written "
                                 "and marked complete). Run `mfrs status --verify --repair`, then rerun the "
                                 "stage that writes the store.")
        return arr[sl]
    except StoreError:
        raise
    except Exception as exc:  # a checksum mismatch, a truncated chunk: name the chunk and unit
        store = store or _store(path, entry_name)
        key = store._chunk_key(name, tuple(index))
        unit = store.unit_of_chunk(key)
        raise StoreError(f"{store._label}: chunk {key} of unit {unit.key if unit else '?'} is corrupt "
                         f"({type(exc).__name__}: {exc}). Run `mfrs status --verify --repair`, then rerun the "
                         "stage that writes the store.") from exc


def _store(path: str, entry_name: str | None) -> ZarrStore:
    """The store at ``path``, opened once per process (per version of its metadata)."""
    key = (path, entry_name, (Path(path) / "zarr.json").stat().st_mtime_ns)
    if key not in _STORES:
        if len(_STORES) > 64:
            _STORES.clear()
        _STORES[key] = ZarrStore.open(path, entry_name=entry_name)
    return _STORES[key]


_STORES: dict[tuple[str, str | None, int], ZarrStore] = {}


def _chunk_exists(path: str, name: str, arr: Any, index: list[int]) -> bool:
    enc = arr.metadata.chunk_key_encoding
    return (Path(path) / name / enc.encode_chunk_key(tuple(index))).exists()


def open_inputs(names: Iterable[str], *, catalog: Catalog, stage: str,
                writers: Mapping[str, str] | None = None) -> dict[str, ZarrStore]:
    """Open the Zarr stores among a stage's declared inputs, each refused unless complete, intact and current.

    The one way the stores a stage reads (``inputs(cfg, catalog)`` of :class:`mfrs.stage.Stage`) are
    opened, by the runner (:func:`mfrs.pipeline.run_stage`) before the stage's ``run``:
    :func:`open_input` for every ``zarr`` entry. Entries of other kinds (BIDS, FreeSurfer, image
    folders, weights) are files the stage reads itself and are left out.

    Parameters
    ----------
    names : iterable of str
        The declared input entries.
    catalog : Catalog
    stage : str
        The stage that reads them.
    writers : mapping, optional
        Entry -> the stage that writes it, for the message when a store does not exist yet (an
        existing store names its writer in its provenance).

    Returns
    -------
    dict
        Entry name -> :class:`ZarrStore`, in the order declared.

    Raises
    ------
    StoreError
        A store is missing, or units are missing, damaged or stale.
    """
    stores = {}
    for name in names:
        entry = catalog.entry(name)
        if entry.kind == "zarr":
            stores[name] = open_input(entry.path, entry_name=name, stage=stage, writer=(writers or {}).get(name))
    return stores


def open_as_they_are(names: Iterable[str], *, catalog: Catalog) -> dict[str, ZarrStore]:
    """The Zarr stores among ``names`` as they are, for sizes: each must exist, units may be missing.

    What a stage's ``plan`` reads its input stores' shapes from; its ``run`` gets them from the
    runner (:func:`mfrs.pipeline.run_stage`) through :func:`open_inputs`, checked complete.

    Raises
    ------
    StoreError
        A store does not exist or was not written by mfrs.
    """
    return {name: ZarrStore.open(catalog.path(name), entry_name=name)
            for name in names if catalog.entry(name).kind == "zarr"}


def open_input(path: str | Path, *, entry_name: str, stage: str, writer: str | None = None) -> ZarrStore:
    """Open a store a stage reads, refusing it unless every unit is complete and intact.

    Parameters
    ----------
    path : str or Path
        The store.
    entry_name : str
        Its catalog entry, for messages.
    stage : str
        The stage that reads it.
    writer : str, optional
        The stage that writes it (named in the command of the message); default: the stage its
        provenance names, or, for a store not written yet, "the stage that writes it".

    Raises
    ------
    StoreError
        The store does not exist, or units are missing, damaged or stale; the message
        names them and the command that completes them.
    """
    path = Path(path)
    if not (path / "zarr.json").exists():
        first = (f"run the {writer!r} stage first (`mfrs run <pipeline> --stages {writer}`)" if writer else
                 f"run the stage that writes {entry_name!r} first (`mfrs status <pipeline>` lists each stage's outputs)")
        raise StoreError(f"stage {stage!r}: its input store {path} (catalog entry {entry_name!r}) does not exist; "
                         f"{first}.")
    store = ZarrStore.open(path, entry_name=entry_name)
    store.check_complete(stage=stage, writer=writer or str(store.provenance.get("stage") or "<its stage>"))
    return store


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
