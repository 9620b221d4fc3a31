"""Cortical searchlight patches: the source vertices within a radius of each centre, on the white surface.

Vertex positions are those of the FreeSurfer ``white`` surface of the template the
``sources`` grid lives on (``<subjects_dir>/<subject>/surf/<hemi>.white``, mm);
a patch holds every grid vertex of the centre's hemisphere whose Euclidean distance
to the centre is at most ``radius`` (the centre included). The RSA of the patches
is :func:`mfrs.similarity.sets.rsa_of_sets`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mfrs.errors import InputDataError

__all__ = ["surface_positions", "patches", "centre_indices"]


def surface_positions(subjects_dir: str | Path, subject: str, hemi: np.ndarray, fs_vertex: np.ndarray) -> np.ndarray:
    """Positions ``(vertex, 3)`` in mm of grid vertices on the ``white`` surface of ``subject``.

    ``hemi`` (``lh``/``rh``) and ``fs_vertex`` (vertex number within the hemisphere) are
    the ``sources`` store's vertex coords.
    """
    import nibabel.freesurfer as fs

    hemi = np.asarray(hemi).astype(str)
    fs_vertex = np.asarray(fs_vertex, dtype=np.int64)
    out = np.full((hemi.size, 3), np.nan)
    for h in np.unique(hemi):
        path = Path(subjects_dir) / subject / "surf" / f"{h}.white"
        if not path.exists():
            raise InputDataError(f"searchlight: {path} does not exist; the 'anatomy' catalog entry must hold "
                                 f"{subject}'s FreeSurfer surfaces (the template the sources grid is on)")
        coords, _ = fs.read_geometry(str(path))
        sel = hemi == h
        if fs_vertex[sel].max() >= len(coords):
            raise InputDataError(f"searchlight: sources has {h} vertex {fs_vertex[sel].max()} but {path} has "
                                 f"{len(coords)} vertices; point 'anatomy' at the template sources was made on")
        out[sel] = coords[fs_vertex[sel]]
    return out


def patches(positions: np.ndarray, hemi: np.ndarray, centres: np.ndarray, radius: float) -> list[np.ndarray]:
    """Sorted vertex indices within ``radius`` (mm, Euclidean) of each centre, in the centre's hemisphere.

    Examples
    --------
    >>> pos = np.array([[0.0, 0, 0], [5, 0, 0], [12, 0, 0], [1, 0, 0]])
    >>> [p.tolist() for p in patches(pos, np.array(["lh", "lh", "lh", "rh"]), np.array([0, 2]), 10.0)]
    [[0, 1], [1, 2]]
    """
    from scipy.spatial import cKDTree

    hemi = np.asarray(hemi).astype(str)
    out: list[np.ndarray] = [np.empty(0, np.int64)] * len(centres)
    for h in np.unique(hemi[centres]):
        members = np.flatnonzero(hemi == h)
        tree = cKDTree(positions[members])
        which = np.flatnonzero(hemi[centres] == h)
        for k, found in zip(which, tree.query_ball_point(positions[centres[which]], r=radius)):
            out[k] = np.sort(members[np.asarray(found, dtype=np.int64)])
    return out


def centre_indices(fs_vertex: np.ndarray, grid: str | None) -> np.ndarray:
    """Indices of the vertices used as centres: all (``grid`` None) or those of a coarser ico grid.

    ico-k vertices are the first ``10 * 4**k + 2`` of each fsaverage hemisphere.

    >>> centre_indices(np.array([0, 5, 11, 40, 100]), "ico1").tolist()
    [0, 1, 2, 3]
    """
    fs_vertex = np.asarray(fs_vertex)
    if grid is None:
        return np.arange(fs_vertex.size)
    n = 10 * 4 ** int(grid.removeprefix("ico")) + 2
    return np.flatnonzero(fs_vertex < n)
