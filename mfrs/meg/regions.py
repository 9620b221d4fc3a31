"""The ``vertex`` coordinate: fsaverage grid vertices labelled with their parcellation region."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.meg.types import GRID_VERTICES

__all__ = ["vertex_table"]


def vertex_table(subjects_dir: Path, parcellation: str, grid: str, *,
                 drop: list[str] | tuple[str, ...] = ("unknown",)) -> xr.Dataset:
    """Grid vertices sorted by region, read with ``mne.read_labels_from_annot``.

    Parameters
    ----------
    subjects_dir : Path
        Holds ``fsaverage/label/{lh,rh}.<parcellation>.annot``.
    parcellation : str
        Annotation name (``aparc_sub``).
    grid : {"ico4", "ico5"}
        Target grid; ico-k vertices are the first ``10 * 4**k + 2`` fsaverage vertices.
    drop : sequence of str
        Region name prefixes left out (the medial-wall ``unknown`` labels).

    Returns
    -------
    xarray.Dataset
        Dim ``vertex`` (position in the concatenated lh+rh grid, unique) with coords
        ``hemi``, ``region`` and ``fs_vertex`` (fsaverage vertex number within its
        hemisphere), sorted by hemisphere, region, fs_vertex; variable ``row``: the
        row of the lh-then-rh morph output each vertex takes.
    """
    import mne

    n = GRID_VERTICES[grid]
    try:
        labels = mne.read_labels_from_annot("fsaverage", parcellation, hemi="both",
                                            subjects_dir=subjects_dir, verbose="error")
    except Exception as exc:  # noqa: BLE001 - missing/corrupt annot: one clear message
        raise InputDataError(
            f"cannot read parcellation {parcellation!r} of fsaverage in {subjects_dir}/fsaverage/label "
            f"({type(exc).__name__}: {exc}); set params.parcellation of the 'anatomy' entry") from exc
    rows, hemis, regions, fs_vertices = [], [], [], []
    for label in labels:
        if any(label.name.startswith(p) for p in drop):
            continue
        verts = np.sort(label.vertices[label.vertices < n])
        offset = 0 if label.hemi == "lh" else n
        rows.append(verts + offset)
        fs_vertices.append(verts)
        hemis += [label.hemi] * len(verts)
        regions += [label.name] * len(verts)
    if not rows:
        raise InputDataError(f"parcellation {parcellation!r} in {subjects_dir} has no region left "
                             f"after dropping {list(drop)}")
    row = np.concatenate(rows)
    order = np.lexsort((np.concatenate(fs_vertices), np.array(regions), np.array(hemis)))
    row = row[order]
    if len(np.unique(row)) != len(row):
        raise InputDataError(f"parcellation {parcellation!r} in {subjects_dir}: labels overlap")
    return xr.Dataset(
        {"row": ("vertex", row)},
        coords={"vertex": row, "hemi": ("vertex", np.array(hemis)[order]),
                "region": ("vertex", np.array(regions)[order]),
                "fs_vertex": ("vertex", np.concatenate(fs_vertices)[order])},
    )
