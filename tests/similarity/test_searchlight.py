"""The searchlight stage on small synthetic sources and surfaces (real Zarr, real LocalCluster), against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import cdist, pdist
from scipy.stats import spearmanr
from tests_support import write_complete_store

from mfrs.pipeline import run_stage
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
from mfrs.stages import searchlight as stage

N_STIM, N_SUB, N_TIME, N_HEMI = 12, 3, 6, 50
EFFECT = slice(2, 4)


def _catalog(root):
    from tests_support import REPO

    from mfrs.catalog import load_catalog

    return load_catalog(REPO / "data_catalog.yaml", root=root)


def _write_inputs(root):
    import nibabel.freesurfer as fs

    rng = np.random.default_rng(2)
    surf = root / "demo" / "subjects" / "fsaverage" / "surf"  # where the catalog's 'anatomy' entry points
    surf.mkdir(parents=True)
    positions = {}
    for hemi in ("lh", "rh"):
        positions[hemi] = rng.uniform(0, 40, (N_HEMI + 10, 3))  # more surface vertices than grid vertices
        fs.write_geometry(str(surf / f"{hemi}.white"), positions[hemi], np.array([[0, 1, 2]], dtype=np.int32))
    fs_vertex = np.tile(np.arange(N_HEMI), 2)
    hemi = np.repeat(["lh", "rh"], N_HEMI)
    hidden = rng.standard_normal((N_STIM, 4))
    act = rng.standard_normal((N_SUB, 1, N_STIM, N_TIME, 2 * N_HEMI)).astype(np.float32)
    planted = np.flatnonzero(np.linalg.norm(positions["lh"][:N_HEMI] - positions["lh"][0], axis=1) < 12)
    pattern = 3 * hidden @ rng.standard_normal((4, planted.size))  # (stimulus, planted vertex)
    act[:, 0, :, EFFECT][..., planted] += pattern[None, :, None]
    sources = xr.Dataset(
        {"activity": (("subject", "signal", "stimulus", "time", "vertex"), act)},
        coords={"subject": [f"sub-{i + 1:02d}" for i in range(N_SUB)], "signal": ["broadband"],
                "stimulus": [f"s{i:02d}" for i in range(N_STIM)],
                "category": ("stimulus", np.repeat(["famous", "unfamiliar", "scrambled"], N_STIM // 3)),
                "time": np.arange(N_TIME) * 0.01, "vertex": np.arange(2 * N_HEMI), "hemi": ("vertex", hemi),
                "region": ("vertex", np.repeat(["a-lh", "a-rh"], N_HEMI)), "fs_vertex": ("vertex", fs_vertex)})
    write_complete_store(sources, root / "sources.zarr", "subject")
    from .reference import REFERENCE

    model = np.stack([rng.random(n_pairs(N_STIM)), REFERENCE["rdm:correlation"](pattern)])
    models = xr.Dataset({"rdm": (("layer", "pair"), model.astype(np.float32))},
                        coords={"layer": ["l0", "l1"], "network": ("layer", ["net"] * 2)})
    models = models.assign_coords(pair_coords(sources["stimulus"], with_coords=STORED_PAIR_COORDS))
    write_complete_store(models, root / "model_rdms.zarr", "layer")
    grid_pos = np.concatenate([positions["lh"][:N_HEMI], positions["rh"][:N_HEMI]])
    return sources, models, grid_pos


def test_searchlight_patches_and_r_equal_brute_force(tmp_path, local_client):
    sources, models, pos = _write_inputs(tmp_path)
    cfg = stage.Config(radius=12.0, centres="ico1", centre_block=16, time_block=4, n_permutations=9)
    cat = _catalog(tmp_path)
    plan = stage.plan(config=cfg, catalog=cat)
    assert plan.n_units == 6 * 2 and plan.memory_per_task > 0 and plan.seconds > 0  # 84 centres, 6 times
    run_stage(stage, config=cfg, catalog=cat, client=local_client)
    out = xr.open_zarr(tmp_path / "searchlight.zarr").load()
    assert out.r.dims == ("subject", "signal", "category", "vertex", "time", "layer")
    # centres: the ico1 vertices (the first 42 of each hemisphere)
    centres = np.flatnonzero(sources.fs_vertex.values < 42)
    assert out.vertex.values.tolist() == centres.tolist()
    np.testing.assert_allclose(np.c_[out.x, out.y, out.z], pos[centres])
    # patches: brute force over every pair of grid vertices
    d = cdist(pos, pos)
    same = sources.hemi.values[:, None] == sources.hemi.values[None, :]
    brute = [np.flatnonzero((d[c] <= 12.0) & same[c]) for c in centres]
    geo = stage.geometry(sources, cfg, str(tmp_path / "demo" / "subjects"))
    assert [p.tolist() for p in geo.patches] == [b.tolist() for b in brute]
    assert out.n_vertices.values.tolist() == [b.size for b in brute]
    rng = np.random.default_rng(0)
    for _ in range(6):
        k = int(rng.integers(centres.size))
        t, layer = int(rng.integers(N_TIME)), str(rng.choice(out.layer.values))
        x = sources.activity.sel(signal="broadband").isel(time=t, vertex=brute[k]).values.astype(float)
        rdms = np.stack([pdist(x[s], "correlation") for s in range(N_SUB)])
        model = models.rdm.sel(layer=layer).values
        cell = dict(signal="broadband", category="all", layer=layer, vertex=int(centres[k]))
        for s in range(N_SUB):
            got = float(out.r.isel(subject=s).sel(**cell).isel(time=t))
            assert got == pytest.approx(spearmanr(rdms[s], model)[0], abs=1e-4)
        got = float(out.r.sel(subject="group", **cell).isel(time=t))
        assert got == pytest.approx(spearmanr(rdms.mean(axis=0), model)[0], abs=1e-4)
    # the planted patch: the group r of the hidden layer peaks at the effect, above every centre off it
    g = out.r.sel(subject="group", signal="broadband", category="all", layer="l1")
    assert float(g.sel(vertex=0).isel(time=EFFECT).min()) > float(g.sel(vertex=0).isel(time=[0, 1, 4, 5]).max())
    far = d[0, centres] > 30
    assert float(g.sel(vertex=0).isel(time=EFFECT).min()) > float(g.isel(vertex=far, time=EFFECT).max())
    assert ((out.p_fwe >= out.p - 1e-7) | out.p.isnull()).all() and out.p_fwe.attrs["family"].startswith("layer")
    undefined = out.r.sel(subject="group").isnull().any(["signal", "category", "time", "layer"])
    assert (undefined == (out.n_vertices < 2)).all()  # one vertex: no correlation distance


def test_searchlight_plan_sizes_the_study_without_data():
    from mfrs.stages.similarity import calibrate

    cal = calibrate(428, 30, 72, "correlation", "spearman", n_sub=2, n_time=2)
    plan = stage.searchlight_plan(20484, 1101, 16, seconds_per_rdm=cal["seconds_per_rdm"])
    assert plan.n_units == 81 * 18  # 256 centres x 64 times per task
    assert plan.writes["searchlight"] == 4 * 20484 * 1101 * (17 * 72 + 2)
    assert 0 < plan.memory_per_task < 8 * 2**30 and plan.seconds > 0


def test_searchlight_refuses_model_rdms_of_another_stimulus_order(tmp_path, local_client):
    from mfrs.errors import InputDataError

    sources, models, _ = _write_inputs(tmp_path)
    reversed_ = sources["stimulus"].isel(stimulus=slice(None, None, -1))
    moved = models.drop_vars([c for c in models.coords if models[c].dims == ("pair",)])
    write_complete_store(moved.assign_coords(pair_coords(reversed_, with_coords=STORED_PAIR_COORDS)),
                         tmp_path / "model_rdms.zarr", "layer")
    with pytest.raises(InputDataError, match=r"searchlight: model_rdms \(.*\) pairs other stimuli than sources "
                       rf"\(.*\): the same stimuli in another order; .* position 0: 's{N_STIM - 1:02d}' in model_rdms"):
        run_stage(stage, config=stage.Config(radius=12.0, centres="ico1"), catalog=_catalog(tmp_path), client=local_client)
    assert not (tmp_path / "searchlight.zarr").exists()
