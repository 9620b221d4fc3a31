"""Template anatomy: an fsaverage subjects_dir assembled from files shipped in wheels.

Surfaces come from nilearn's fsaverage5 (ico-5 topology, vertex i = fsaverage
vertex i), the inner skull, head, fiducials and head->MRI transform from
``mne/data/fsaverage``. A whole-cortex parcellation of compact regions is
written as FreeSurfer ``.annot`` files, so that the real-data code path
(``mne.read_labels_from_annot``) is the one every stage uses.

Layout written under ``dest/fsaverage``::

    surf/{lh,rh}.{white,pial,sphere,sphere.reg,inflated}
    bem/inner_skull.surf, bem/outer_skin.surf
    bem/fsaverage-{head,fiducials,trans}.fif
    bem/fsaverage-5120-bem.fif, bem/fsaverage-5120-bem-sol.fif   (1 layer, ico-4)
    label/{lh,rh}.aparc_sub.annot
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mfrs.errors import ConfigError, InputDataError

__all__ = [
    "BEM_FILE",
    "BEM_SOLUTION_FILE",
    "GRID_SIZES",
    "HEMIS",
    "NAMED_REGIONS",
    "PARCELLATION",
    "SUBJECT",
    "TRANS_FILE",
    "Grid",
    "Hemi",
    "build_template_subjects_dir",
    "parcellate",
    "read_parcellation",
    "template_is_complete",
]

log = logging.getLogger(__name__)

#: Target grid on which regions are counted: ico-4 (2,562 vertices per hemisphere) or ico-5 (10,242).
Grid = Literal["ico4", "ico5"]
Hemi = Literal["lh", "rh"]
HEMIS: tuple[Hemi, ...] = ("lh", "rh")
GRID_SIZES: dict[str, int] = {"ico4": 2562, "ico5": 10242}

SUBJECT = "fsaverage"
PARCELLATION = "aparc_sub"
BEM_FILE = "fsaverage-5120-bem.fif"
BEM_SOLUTION_FILE = "fsaverage-5120-bem-sol.fif"
TRANS_FILE = "fsaverage-trans.fif"

#: Named regions and where they lie, fsaverage surface RAS in mm (left hemisphere; x mirrored for rh).
#: V1: calcarine cortex at the occipital pole; OFA: lateral occipital (inferior occipital gyrus);
#: FFA: ventral occipito-temporal cortex (mid fusiform gyrus); STS: posterior superior temporal sulcus;
#: POS: parieto-occipital sulcus (cuneus/precuneus), where the alpha rhythm is strongest.
NAMED_REGIONS: dict[str, tuple[float, float, float]] = {
    "V1": (-10.0, -96.0, 0.0),
    "OFA": (-40.0, -80.0, -10.0),
    "FFA": (-38.0, -55.0, -20.0),
    "STS": (-52.0, -45.0, 8.0),
    "POS": (-8.0, -70.0, 28.0),
}

_NILEARN_NAMES = {"white": "white", "pial": "pial", "sphere": "sphere", "inflated": "infl"}
_HEMI_WORD = {"lh": "left", "rh": "right"}
_MARKER = ".mfrs-anatomy.json"


@dataclass(frozen=True)
class _Sources:
    nilearn_fsaverage5: Path
    mne_fsaverage: Path


def _shipped_files() -> _Sources:
    """Locate the template files inside the installed nilearn and mne wheels."""
    paths = []
    for module, sub in (("nilearn", "datasets/data/fsaverage5"), ("mne", "data/fsaverage")):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise InputDataError(
                f"the template anatomy needs the package {module!r}, which is not installed; "
                "install mfrs with its MEG extra: pip install 'mfrs[meg]'"
            )
        path = Path(spec.origin).parent / sub
        if not path.is_dir():
            raise InputDataError(
                f"{path} is missing from the installed {module!r} package; reinstall it "
                f"(pip install --force-reinstall {module})"
            )
        paths.append(path)
    return _Sources(*paths)


def _read_gifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.load(str(path))
    assert isinstance(img, nib.GiftiImage), f"{path} is not a GIFTI surface"
    return np.asarray(img.darrays[0].data, np.float64), np.asarray(img.darrays[1].data, np.int32)


def _write_surfaces(src: _Sources, surf_dir: Path) -> None:
    import nibabel.freesurfer as fs

    surf_dir.mkdir(parents=True, exist_ok=True)
    for hemi in HEMIS:
        for fs_name, nl_name in _NILEARN_NAMES.items():
            out = surf_dir / f"{hemi}.{fs_name}"
            if out.exists():
                continue
            rr, tris = _read_gifti(src.nilearn_fsaverage5 / f"{nl_name}_{_HEMI_WORD[hemi]}.gii.gz")
            fs.write_geometry(str(out), rr, tris)
        # fsaverage is its own registration target: sphere.reg == sphere (mne's morph reads it)
        reg = surf_dir / f"{hemi}.sphere.reg"
        if not reg.exists():
            shutil.copyfile(surf_dir / f"{hemi}.sphere", reg)


def _write_bem(src: _Sources, subjects_dir: Path) -> None:
    import mne

    bem_dir = subjects_dir / SUBJECT / "bem"
    bem_dir.mkdir(parents=True, exist_ok=True)
    for name in ("fsaverage-head.fif", "fsaverage-fiducials.fif", TRANS_FILE):
        if not (bem_dir / name).exists():
            shutil.copyfile(src.mne_fsaverage / name, bem_dir / name)
    for fif, surf in (("fsaverage-inner_skull-bem.fif", "inner_skull.surf"),
                      ("fsaverage-head.fif", "outer_skin.surf")):
        if not (bem_dir / surf).exists():
            s = mne.read_bem_surfaces(src.mne_fsaverage / fif, verbose="error")[0]
            mne.write_surface(bem_dir / surf, s["rr"] * 1000.0, s["tris"], overwrite=True,
                              verbose="error")
    if not (bem_dir / BEM_SOLUTION_FILE).exists():
        # single-layer (MEG only) BEM on the ico-4 downsampled inner skull: 5120 triangles
        model = mne.make_bem_model(SUBJECT, ico=4, conductivity=(0.3,),
                                   subjects_dir=subjects_dir, verbose="error")
        mne.write_bem_surfaces(bem_dir / BEM_FILE, model, overwrite=True, verbose="error")
        solution = mne.make_bem_solution(model, verbose="error")
        mne.write_bem_solution(bem_dir / BEM_SOLUTION_FILE, solution, overwrite=True,
                               verbose="error")


def parcellate(
    sphere: np.ndarray,
    *,
    grid: Grid = "ico5",
    region_size: int = 45,
    seed: int = 0,
) -> np.ndarray:
    """Split one hemisphere into compact regions of about ``region_size`` grid vertices.

    Regions are the cells of a k-means partition of the unit sphere restricted to
    the target grid (the first 2,562 or 10,242 vertices of an ico-5 sphere);
    every other vertex joins the region of its nearest grid vertex. Cells of a
    k-means partition on the sphere are spherical Voronoi cells, hence contiguous.

    Parameters
    ----------
    sphere : ndarray, shape (vertex, 3)
        Sphere coordinates of the hemisphere (any radius), ico-5 ordering.
    grid : {"ico4", "ico5"}
        Grid on which region sizes are counted.
    region_size : int
        Target number of grid vertices per region.
    seed : int
        Seed of the k-means initialisation.

    Returns
    -------
    ndarray of int, shape (vertex,)
        Region index 0..n_regions-1 of every vertex: ``(vertex,) -> (vertex,)``.
    """
    from scipy.spatial import cKDTree

    n_grid = GRID_SIZES[grid]
    if sphere.shape[0] < n_grid:
        raise ConfigError(
            f"grid={grid!r} needs at least {n_grid} sphere vertices, the surface has "
            f"{sphere.shape[0]}; use grid='ico4' or a finer surface"
        )
    if not 1 <= region_size <= n_grid // 4:
        raise ConfigError(
            f"region_size={region_size} is out of range for grid={grid!r}: use 1..{n_grid // 4}"
        )
    unit = sphere / np.linalg.norm(sphere, axis=1, keepdims=True)
    points = unit[:n_grid]
    n_regions = max(4, round(n_grid / region_size))
    rng = np.random.default_rng(seed)
    centers = points[rng.choice(n_grid, n_regions, replace=False)]
    # spherical k-means (Lloyd iterations with renormalised centres)
    for _ in range(50):
        assign = cKDTree(centers).query(points)[1]
        sums = np.zeros_like(centers)
        np.add.at(sums, assign, points)
        counts = np.bincount(assign, minlength=n_regions)
        empty = counts == 0
        sums[empty] = centers[empty]
        new = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        if np.allclose(new, centers, atol=1e-7):
            break
        centers = new
    grid_labels = _balance(points, centers, n_grid / n_regions)
    # relabel so that region indices follow the order of first appearance (stable names)
    _, first = np.unique(grid_labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty(n_regions, dtype=np.int64)
    remap[order] = np.arange(n_regions)
    grid_labels = remap[grid_labels]
    if n_grid == sphere.shape[0]:
        return grid_labels
    nearest = cKDTree(points).query(unit)[1]
    return grid_labels[nearest]


def _balance(points: np.ndarray, centers: np.ndarray, target: float,
             n_iter: int = 200) -> np.ndarray:
    """Assign points to centres by a power diagram whose weights even out the cell sizes.

    Plain k-means cells on a sphere vary about two-fold in size; raising the weight of
    small cells and lowering that of large ones (a capacity-constrained Voronoi
    partition) keeps each cell convex on the sphere, hence contiguous.
    """
    weights = np.zeros(len(centers))
    point_area = 4.0 * np.pi / len(points)  # unit sphere area per grid point: the step scale
    score = 2.0 * points @ centers.T  # -(squared chord distance) + 2
    for _ in range(n_iter):
        assign = np.argmax(score + weights, axis=1)
        counts = np.bincount(assign, minlength=len(centers))
        if np.abs(counts - target).max() <= max(1.0, 0.15 * target):
            break
        weights += 0.1 * point_area * (target - counts) / target
    return assign


def _name_regions(labels: np.ndarray, pial: np.ndarray, hemi: Hemi) -> list[str]:
    """Names of the regions: ``r###`` except the anatomically placed named ones."""
    n = int(labels.max()) + 1
    names = [f"r{i:03d}" for i in range(n)]
    centroids = np.stack([pial[labels == i].mean(axis=0) for i in range(n)])
    taken: set[int] = set()
    for name, target in NAMED_REGIONS.items():
        xyz = np.array(target) * (1.0 if hemi == "lh" else np.array([-1.0, 1.0, 1.0]))
        # the region holding the surface vertex nearest the target; the next nearest if taken
        vertex = int(np.argmin(np.linalg.norm(pial - xyz, axis=1)))
        candidates = [int(labels[vertex])] + list(
            np.argsort(np.linalg.norm(centroids - xyz, axis=1)))
        region = next(c for c in candidates if c not in taken)
        taken.add(region)
        names[region] = name
    return names


def _colors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    colors: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()
    while len(colors) < n:
        r, g, b = (int(v) for v in rng.integers(20, 236, 3))
        if (r, g, b) not in seen:
            seen.add((r, g, b))
            colors.append((r, g, b))
    ctab = np.zeros((n, 5), dtype=np.int32)
    ctab[:, :3] = colors
    return ctab


def _write_parcellation(subjects_dir: Path, *, grid: Grid, region_size: int, seed: int) -> None:
    import nibabel.freesurfer as fs

    surf_dir = subjects_dir / SUBJECT / "surf"
    label_dir = subjects_dir / SUBJECT / "label"
    label_dir.mkdir(parents=True, exist_ok=True)
    for k, hemi in enumerate(HEMIS):
        sphere, _ = fs.read_geometry(str(surf_dir / f"{hemi}.sphere"))
        pial, _ = fs.read_geometry(str(surf_dir / f"{hemi}.pial"))
        labels = parcellate(sphere, grid=grid, region_size=region_size, seed=seed + k)
        names = _name_regions(labels, pial, hemi)
        fs.write_annot(str(label_dir / f"{hemi}.{PARCELLATION}.annot"), labels,
                       _colors(len(names), seed + 10 + k), names, fill_ctab=True)


def read_parcellation(subjects_dir: Path) -> dict[Hemi, tuple[np.ndarray, list[str]]]:
    """Per hemisphere, the region name index of every vertex and the region names.

    Reads the ``aparc_sub`` annotation written by :func:`build_template_subjects_dir`.

    Returns
    -------
    dict
        ``hemi -> (labels (vertex,) int, names list[str])``.
    """
    import nibabel.freesurfer as fs

    out: dict[Hemi, tuple[np.ndarray, list[str]]] = {}
    for hemi in HEMIS:
        path = Path(subjects_dir) / SUBJECT / "label" / f"{hemi}.{PARCELLATION}.annot"
        if not path.exists():
            raise InputDataError(
                f"parcellation file {path} is missing; build the template anatomy first "
                "(mfrs run demo --stages demo_data)"
            )
        labels, _, names = fs.read_annot(str(path))
        out[hemi] = (np.asarray(labels), [n.decode() if isinstance(n, bytes) else n for n in names])
    return out


def _params(grid: str, region_size: int, seed: int) -> dict[str, object]:
    return {"grid": grid, "region_size": int(region_size), "seed": int(seed), "version": 2}


def template_is_complete(dest: Path, *, grid: Grid = "ico5", region_size: int = 45,
                         seed: int = 0) -> bool:
    """True when ``dest`` holds a finished template built with these parameters."""
    marker = Path(dest) / SUBJECT / _MARKER
    try:
        return bool(marker.exists() and json.loads(marker.read_text()) == _params(
            grid, region_size, seed))
    except json.JSONDecodeError:
        return False


def build_template_subjects_dir(
    dest: Path,
    *,
    grid: Grid = "ico5",
    region_size: int = 45,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a template fsaverage subjects_dir with a whole-cortex parcellation.

    Idempotent: files already present are kept; the parcellation is rewritten
    only when ``grid``, ``region_size`` or ``seed`` differ from the ones it
    was built with.

    Parameters
    ----------
    dest : Path
        The subjects_dir to fill (created if needed); ``dest/fsaverage`` is written.
    grid : {"ico4", "ico5"}
        Grid on which region sizes are counted (ico-5: about 448 regions of 45 vertices).
    region_size : int
        Target number of grid vertices per region.
    seed : int
        Seed of the parcellation.
    overwrite : bool
        Rewrite every file of an earlier template build.

    Returns
    -------
    Path
        ``dest``, the subjects_dir.

    Raises
    ------
    InputDataError
        ``dest/fsaverage`` exists but was not written by this function (a real
        FreeSurfer fsaverage is never modified).
    """
    if grid not in GRID_SIZES:
        raise ConfigError(f"grid={grid!r} is not valid; expected one of {sorted(GRID_SIZES)}")
    dest = Path(dest)
    subject_dir = dest / SUBJECT
    params = _params(grid, region_size, seed)
    marker = subject_dir / _MARKER
    if marker.exists():
        if json.loads(marker.read_text()) == params and not overwrite:
            log.info("anatomy: %s is complete with %s, skipping", subject_dir, params)
            return dest
        reason = "overwrite requested" if overwrite else "built with other parameters"
        log.info("anatomy: %s %s, rebuilding with %s", subject_dir, reason, params)
        if overwrite:
            shutil.rmtree(subject_dir)
    elif subject_dir.exists() and any(subject_dir.iterdir()):
        raise InputDataError(
            f"{subject_dir} exists and was not written by mfrs (no {_MARKER}); the template "
            "anatomy never modifies a real FreeSurfer subject. Point the catalog entry 'anatomy' "
            "at an empty folder for the demo, or remove the folder")
    subject_dir.mkdir(parents=True, exist_ok=True)
    # written first: a build that stops half-way is recognised as ours and redone
    marker.write_text(json.dumps({"complete": False}))
    src = _shipped_files()
    _write_surfaces(src, subject_dir / "surf")
    _write_bem(src, dest)
    log.info("anatomy: writing parcellation %s with %s", PARCELLATION, params)
    _write_parcellation(dest, grid=grid, region_size=region_size, seed=seed)
    marker.write_text(json.dumps(params))
    return dest
