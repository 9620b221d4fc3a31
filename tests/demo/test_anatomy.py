"""The template subjects_dir: surfaces, BEM, and the whole-cortex parcellation read through MNE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfrs.demo.anatomy import (
    BEM_SOLUTION_FILE,
    NAMED_REGIONS,
    build_template_subjects_dir,
    parcellate,
)
from mfrs.errors import ConfigError

N_VERTICES = 10242


def _labels(subjects_dir: Path):
    import mne

    return mne.read_labels_from_annot("fsaverage", "aparc_sub", subjects_dir=subjects_dir,
                                      verbose="error")


def test_files_readable_by_mne(subjects_dir: Path) -> None:
    import mne

    fs = subjects_dir / "fsaverage"
    for hemi in ("lh", "rh"):
        for surf in ("white", "pial", "sphere", "sphere.reg", "inflated"):
            rr, tris = mne.read_surface(fs / "surf" / f"{hemi}.{surf}")
            assert rr.shape == (N_VERTICES, 3) and tris.shape == (20480, 3)
    sol = mne.read_bem_solution(fs / "bem" / BEM_SOLUTION_FILE, verbose="error")
    assert len(sol["surfs"]) == 1 and sol["surfs"][0]["ntri"] == 5120  # 1 layer, ico-4
    trans = mne.read_trans(fs / "bem" / "fsaverage-trans.fif")
    assert trans["from"] == mne.io.constants.FIFF.FIFFV_COORD_HEAD
    # the cortex lies inside the inner skull (what MEG forward models need)
    inner = sol["surfs"][0]
    white, _ = mne.read_surface(fs / "surf" / "lh.white")
    from scipy.spatial import Delaunay

    hull = Delaunay(inner["rr"])
    assert (hull.find_simplex(white / 1000.0) >= 0).all()


def test_parcellation_covers_every_vertex_once(subjects_dir: Path) -> None:
    labels = _labels(subjects_dir)
    for hemi in ("lh", "rh"):
        verts = np.concatenate([lab.vertices for lab in labels if lab.hemi == hemi])
        assert verts.size == N_VERTICES  # no vertex twice
        np.testing.assert_array_equal(np.sort(verts), np.arange(N_VERTICES))  # none missing


def test_region_sizes_near_target(subjects_dir: Path) -> None:
    # the fixture builds grid="ico4", region_size=12: count each region's ico-4 vertices
    labels = _labels(subjects_dir)
    sizes = np.array([np.count_nonzero(lab.vertices < 2562) for lab in labels])
    assert len(labels) == pytest.approx(2 * 2562 / 12, rel=0.05)
    assert np.median(sizes) == pytest.approx(12, rel=0.25)
    assert sizes.min() >= 6 and sizes.max() <= 18


def test_regions_are_contiguous_on_the_mesh(subjects_dir: Path) -> None:
    import mne
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    _, tris = mne.read_surface(subjects_dir / "fsaverage" / "surf" / "lh.white")
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    for lab in _labels(subjects_dir):
        if lab.hemi != "lh":
            continue
        inside = np.zeros(N_VERTICES, bool)
        inside[lab.vertices] = True
        e = edges[inside[edges[:, 0]] & inside[edges[:, 1]]]
        graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(N_VERTICES,) * 2)
        _n, comp = connected_components(graph, directed=False)
        assert np.unique(comp[lab.vertices]).size == 1, lab.name


def test_named_regions_where_they_lie_anatomically(subjects_dir: Path) -> None:
    labels = {lab.name: lab for lab in _labels(subjects_dir)}
    for hemi, sign in (("lh", -1.0), ("rh", 1.0)):
        centre = {n: labels[f"{n}-{hemi}"].pos.mean(axis=0) * 1000.0 for n in NAMED_REGIONS}
        for name, (x, _y, _z) in centre.items():
            assert np.sign(x) == sign, (name, hemi)
        assert centre["V1"][1] < -75  # occipital pole
        assert centre["OFA"][1] < centre["FFA"][1] < centre["STS"][1] + 20  # posterior -> anterior
        assert centre["FFA"][2] < 0  # ventral surface
        assert abs(centre["OFA"][0]) > abs(centre["V1"][0])  # lateral occipital
        assert abs(centre["STS"][0]) > 40 and centre["STS"][2] > centre["FFA"][2] + 10
        assert abs(centre["POS"][0]) < 20 and centre["POS"][2] > centre["V1"][2] + 10  # medial, above


def test_ico5_default_gives_about_448_regions() -> None:
    import nibabel as nib
    import nibabel.freesurfer

    from mfrs.demo.anatomy import _shipped_files

    sphere = nib.load(str(_shipped_files().nilearn_fsaverage5 / "sphere_left.gii.gz")).darrays[0].data
    labels = parcellate(np.asarray(sphere, float), grid="ico5", region_size=45, seed=0)
    sizes = np.bincount(labels)
    assert 210 <= sizes.size <= 240  # ~224 per hemisphere, ~448 in all
    assert np.median(sizes) == pytest.approx(45, rel=0.1)
    assert sizes.min() >= 30 and sizes.max() <= 60
    # deterministic for a seed
    np.testing.assert_array_equal(labels, parcellate(np.asarray(sphere, float), seed=0))


def test_source_space_and_morph_work_on_the_template(subjects_dir: Path) -> None:
    """What the MEG stage does with the template: oct5 source space, morph to the ico-4 grid."""
    import mne

    src = mne.setup_source_space("fsaverage", "oct5", subjects_dir=subjects_dir, add_dist=False,
                                 verbose="error")
    assert [s["nuse"] for s in src] == [1026, 1026]
    morph = mne.compute_source_morph(src, "fsaverage", "fsaverage", spacing=4,
                                     subjects_dir=subjects_dir, verbose="error")
    assert [v.size for v in morph.vertices_to] == [2562, 2562]
    data = np.ones((2052, 1))
    stc = mne.SourceEstimate(data, [s["vertno"] for s in src], 0.0, 1.0)
    # a constant field stays constant after smoothing onto the target grid
    np.testing.assert_allclose(morph.apply(stc).data, 1.0, rtol=1e-6)


def test_rebuild_is_skipped_when_complete(subjects_dir: Path) -> None:
    annot = subjects_dir / "fsaverage" / "label" / "lh.aparc_sub.annot"
    before = annot.stat().st_mtime_ns
    build_template_subjects_dir(subjects_dir, grid="ico4", region_size=12, seed=0)
    assert annot.stat().st_mtime_ns == before


def test_bad_region_size_is_a_config_error() -> None:
    sphere = np.random.default_rng(0).standard_normal((N_VERTICES, 3))
    with pytest.raises(ConfigError, match=r"region_size=5000 is out of range for grid='ico4'"):
        parcellate(sphere, grid="ico4", region_size=5000)
    with pytest.raises(ConfigError, match="grid='ico6' is not valid"):
        build_template_subjects_dir(Path("/nonexistent"), grid="ico6")  # type: ignore[arg-type]
