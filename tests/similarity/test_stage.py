"""The similarity stage on synthetic sources with a planted effect, on a real LocalCluster and Zarr."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from tests_support import write_complete_store

from mfrs.errors import ConfigError, InputDataError
from mfrs.pipeline import run_stage
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
from mfrs.stages import similarity as stage

from .reference import REFERENCE, max_run_mass_brute

N_STIM, N_SUB, N_TIME = 18, 3, 10
EFFECT = slice(3, 7)


def _Catalog(root):
    """The repository's real catalog, rooted where the inputs are written."""
    from tests_support import REPO

    from mfrs.catalog import load_catalog

    return load_catalog(REPO / "data_catalog.yaml", root=root)


def _write_inputs(root, n_sub=N_SUB):
    rng = np.random.default_rng(0)
    # layer 'l1' is the RDM of hidden 6-d patterns; region 'r1' shows those patterns at EFFECT times
    hidden = rng.standard_normal((N_STIM, 6))
    model = np.stack([rng.random(n_pairs(N_STIM)), REFERENCE["rdm:correlation"](hidden),
                      rng.random(n_pairs(N_STIM))])
    n_vert = [6, 5, 7]
    region = np.repeat(["r0", "r1", "r2"], n_vert)
    act = rng.standard_normal((n_sub, 1, N_STIM, N_TIME, region.size)).astype(np.float32)
    r1 = region == "r1"
    act[:, 0, :, EFFECT][..., r1] = hidden[None, :, None, :5] * 3 + act[:, 0, :, EFFECT][..., r1] * 0.3
    cats = np.repeat(["famous", "unfamiliar", "scrambled"], N_STIM // 3)
    sources = xr.Dataset(
        {"activity": (("subject", "signal", "stimulus", "time", "vertex"), act)},
        coords={"subject": [f"sub-{i + 1:02d}" for i in range(n_sub)], "signal": ["broadband"],
                "stimulus": [f"s{i:02d}" for i in range(N_STIM)], "category": ("stimulus", cats),
                "time": np.arange(N_TIME) * 0.01, "vertex": np.arange(region.size), "region": ("vertex", region),
                "hemi": ("vertex", ["lh"] * region.size)})
    write_complete_store(sources, root / "sources.zarr", "subject")
    models = xr.Dataset({"rdm": (("layer", "pair"), model.astype(np.float32))},
                        coords={"layer": ["l0", "l1", "l2"], "network": ("layer", ["net"] * 3),
                                "depth": ("layer", [0.0, 0.5, 1.0])})
    models = models.assign_coords(pair_coords(sources["stimulus"], with_coords=STORED_PAIR_COORDS))
    write_complete_store(models, root / "model_rdms.zarr", "layer")
    return sources, models


def test_stage_finds_planted_effect_and_resumes(tmp_path, local_client, caplog):
    sources, models = _write_inputs(tmp_path)
    cat = _Catalog(tmp_path)
    cfg = stage.Config(categories=["all", "famous"], region_block=2, time_block=4, n_permutations=19)
    plan = stage.plan(config=cfg, catalog=cat)
    assert plan.n_units == 2 * 3 and plan.memory_per_task > 0 and plan.flops > 0 and plan.seconds > 0
    run_stage(stage, config=cfg, catalog=cat, client=local_client)
    rsa = xr.open_zarr(tmp_path / "rsa.zarr").load()
    assert rsa.r.dims == ("subject", "signal", "category", "region", "time", "layer")
    group = rsa.r.sel(subject="group", signal="broadband", category="all")
    assert (group.sel(region="r1", layer="l1").isel(time=EFFECT) > 0.6).all()
    assert (abs(group.sel(region="r1", layer="l1").isel(time=slice(8, 10))) < 0.5).all()
    assert (abs(group.sel(region=["r0", "r2"])) < 0.5).all()
    assert (rsa.p.sel(signal="broadband", category="all", region="r1", layer="l1").isel(time=EFFECT) == 0.05).all()
    # independent oracle for one subject / time / region: scipy pdist + spearmanr
    x = sources.activity.sel(subject="sub-02", signal="broadband").isel(time=4)
    x = x.isel(vertex=np.flatnonzero(sources.region.values == "r1")).values
    expect = REFERENCE["compare:spearman"](REFERENCE["rdm:correlation"](x.astype(float)), models.rdm.values[1])
    got = float(rsa.r.sel(subject="sub-02", signal="broadband", category="all", region="r1", layer="l1").isel(time=4))
    assert got == pytest.approx(expect, abs=1e-4)
    assert (rsa.noise_ceiling_upper >= rsa.noise_ceiling_lower - 1e-6).all()
    # rerun: every block is complete and skipped, with the reason logged
    caplog.set_level("INFO", logger="mfrs")
    run_stage(stage, config=cfg, catalog=cat, client=local_client)
    assert sum("complete" in m and "skipping" in m for m in caplog.messages) == 6


def test_stage_avg_mode_windows(tmp_path, local_client):
    _write_inputs(tmp_path)
    cfg = stage.Config(mode="avg", window=0.03, step=0.02, categories=["all"], time_block=2)
    lay = stage.layout(xr.open_zarr(tmp_path / "sources.zarr"), cfg)
    assert lay.length == 3 and lay.starts.tolist() == [0, 2, 4, 6]
    np.testing.assert_allclose(lay.times, [0.01, 0.03, 0.05, 0.07])
    run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    rsa = xr.open_zarr(tmp_path / "rsa.zarr").load()
    assert rsa.sizes["time"] == 4 and not np.isnan(rsa.r).any()


def test_plan_refuses_what_cannot_fit(tmp_path):
    _write_inputs(tmp_path)
    cfg = stage.Config(exec={"worker_memory": "10MiB"})
    with pytest.raises(ConfigError, match="one task needs .* but a worker has 10.0 MiB"):
        stage.plan(config=cfg, catalog=_Catalog(tmp_path))


def test_stage_fwe_cluster_split_half_and_stored_rdms(tmp_path, local_client):
    import scipy.stats as ss

    from mfrs.similarity.seeds import unit_rng

    sources, models = _write_inputs(tmp_path)
    cfg = stage.Config(categories=["all"], region_block=3, time_block=N_TIME, n_permutations=19,
                       fwe_dims=["region", "time", "layer"], cluster=True, split_half=2, store_rdms="float16")
    plan = stage.plan(config=cfg, catalog=_Catalog(tmp_path))
    assert plan.seconds > 0 and any("calibration" in n for n in plan.notes)
    run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    rsa = xr.open_zarr(tmp_path / "rsa.zarr").load()
    sel = dict(signal="broadband", category="all")
    # the planted effect survives the max over the whole block and forms one significant cluster over time
    assert (rsa.p_fwe.sel(**sel, region="r1", layer="l1").isel(time=EFFECT) == 0.05).all()
    assert (rsa.p_fwe.sel(**sel) >= rsa.p.sel(**sel) - 1e-7).all()
    assert (rsa.p_cluster.sel(**sel, region="r1", layer="l1").isel(time=EFFECT) == 0.05).all()
    assert (rsa.cluster_mass.sel(**sel, region="r1", layer="l1").isel(time=EFFECT) > 2.4).all()
    # the whole family in one block: the same numbers as the scipy brute force over the family
    _, p_fwe, mass, p_cluster = _brute_force_family_stats(sources, models, 19)
    order = ("region", "time", "layer")
    np.testing.assert_allclose(rsa.p_fwe.sel(**sel).transpose(*order), p_fwe, atol=1e-6)
    np.testing.assert_allclose(rsa.cluster_mass.sel(**sel).transpose(*order), mass, atol=1e-4)
    np.testing.assert_allclose(rsa.p_cluster.sel(**sel).transpose(*order), p_cluster, atol=1e-6)
    assert "family" in rsa.p_cluster.attrs and rsa.r.attrs["units"] == "1"
    # stored RDMs: scipy pdist of each subject, and the subject mean as 'group'
    r1 = np.flatnonzero(sources.region.values == "r1")
    subj = [sources.activity.sel(subject=s, signal="broadband").isel(time=5, vertex=r1).values.astype(float)
            for s in sources.subject.values]
    pd = np.stack([REFERENCE["rdm:correlation"](x) for x in subj])
    stored = rsa.rdm.sel(signal="broadband", region="r1").isel(time=5)
    np.testing.assert_allclose(stored.sel(subject="sub-02").values, pd[1], atol=2e-3)
    np.testing.assert_allclose(stored.sel(subject="group").values, pd.mean(0), atol=2e-3)
    assert rsa.rdm.dtype == np.float16 and rsa.stimulus_a.size == n_pairs(N_STIM)
    # split-half ceiling: the same seeded splits, halves pooled from scipy ranks, compared by spearmanr
    rng = unit_rng(0, "noise_ceiling_split_half")
    splits = [rng.permutation(N_SUB) for _ in range(2)]
    ranks = np.stack([ss.rankdata(d) for d in pd])
    expect = np.mean([REFERENCE["compare:spearman"](ranks[s[:1]].mean(0), ranks[s[1:2]].mean(0)) for s in splits])
    got = float(rsa.noise_ceiling_split_half.sel(**sel, region="r1").isel(time=5))
    assert got == pytest.approx(expect, abs=1e-5)


def test_config_checks_and_worker_memory_default():
    assert stage.Config().exec.worker_memory is None  # default: the cluster's own limit (checked in run)
    with pytest.raises(ValueError, match="store_rdms needs 'all'"):
        stage.Config(categories=["famous"], store_rdms="float32")


def test_stage_region_selection_by_name_and_pattern(tmp_path, local_client):
    _write_inputs(tmp_path)
    cfg = stage.Config(regions=["r1", "r2*"], categories=["all"], time_block=5)
    assert stage.layout(xr.open_zarr(tmp_path / "sources.zarr"), cfg).regions == ["r1", "r2"]
    run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    rsa = xr.open_zarr(tmp_path / "rsa.zarr")
    assert list(rsa.region.values) == ["r1", "r2"]
    with pytest.raises(ConfigError, match=r"regions \['FFA-\*'\] match no region of sources"):
        stage.layout(xr.open_zarr(tmp_path / "sources.zarr"), stage.Config(regions=["FFA-*"]))


def _brute_force_family_stats(sources, models, n_perm, per_layer=False):
    """r, p_fwe over every region x time x layer, and cluster stats over time, by scipy loops.

    The cluster null is the largest run mass over every region and layer time course of
    the family per permutation (of each region x layer time course alone with ``per_layer``).
    """
    from scipy.spatial.distance import squareform

    from mfrs.similarity.nulls import draw_stimulus_permutations
    from mfrs.similarity.seeds import unit_rng

    perms = draw_stimulus_permutations(unit_rng(0, "permutation", "broadband", "all"), N_STIM, n_perm)
    region_of = sources.region.values
    act = sources.activity.sel(signal="broadband").values.astype(float)  # (subject, stimulus, time, vertex)
    obs = np.empty((3, N_TIME, 3))
    null = np.empty((n_perm, 3, N_TIME, 3))
    for g, reg in enumerate(["r0", "r1", "r2"]):
        v = region_of == reg
        for t in range(N_TIME):
            group = np.mean([REFERENCE["rdm:correlation"](act[s, :, t][:, v]) for s in range(N_SUB)], axis=0)
            square = squareform(group)
            for layer in range(3):
                obs[g, t, layer] = REFERENCE["compare:spearman"](group, models.rdm.values[layer])
                for k, perm in enumerate(perms):
                    permuted = squareform(square[np.ix_(perm, perm)], checks=False)
                    null[k, g, t, layer] = REFERENCE["compare:spearman"](permuted, models.rdm.values[layer])
    p_fwe = ((null.max(axis=(1, 2, 3))[:, None, None, None] >= obs[None]).sum(0) + 1) / (n_perm + 1)
    thr = np.quantile(null, 0.95, axis=0)
    mass = np.zeros_like(obs)
    p_cluster = np.ones_like(obs)
    series_max = np.array([[[max_run_mass_brute(null[k, g, :, layer], null[k, g, :, layer] > thr[g, :, layer])
                             for layer in range(3)] for g in range(3)] for k in range(n_perm)])
    for g in range(3):
        for layer in range(3):
            supra = obs[g, :, layer] > thr[g, :, layer]
            null_max = series_max[:, g, layer] if per_layer else series_max.max(axis=(1, 2))
            t = 0
            while t < N_TIME:  # each observed run: its mass at every point, p against the null maxima
                if supra[t]:
                    end = t
                    while end + 1 < N_TIME and supra[end + 1]:
                        end += 1
                    m = obs[g, t : end + 1, layer].sum()
                    mass[g, t : end + 1, layer] = m
                    p_cluster[g, t : end + 1, layer] = (np.sum(np.array(null_max) >= m) + 1) / (n_perm + 1)
                    t = end + 1
                else:
                    t += 1
    return obs, p_fwe, mass, p_cluster


@pytest.mark.parametrize(("cluster_family", "region_block", "time_block"),
                         [("fwe_dims", 1, 3), ("fwe_dims", 2, N_TIME), ("per_layer", 2, 3)])
def test_families_spanning_blocks_match_brute_force(tmp_path, local_client, caplog, cluster_family, region_block,
                                                    time_block):
    """p_fwe over every region x time x layer and clusters over time whose null spans the same family
    (or one time course with ``per_layer``), with families cut into blocks along regions and/or time."""
    from mfrs.store import ZarrStore

    sources, models = _write_inputs(tmp_path)
    cat = _Catalog(tmp_path)
    n_perm = 19
    cfg = stage.Config(categories=["all"], region_block=region_block, time_block=time_block, n_permutations=n_perm,
                       fwe_dims=["region", "time", "layer"], cluster=True, cluster_family=cluster_family)
    n_units = -(-3 // region_block) * -(-N_TIME // time_block)
    plan = stage.plan(config=cfg, catalog=cat, calibrated=False)
    assert plan.n_tasks == n_units + 1 and any("one final task merges them" in n for n in plan.notes)
    run_stage(stage, config=cfg, catalog=cat, client=local_client)
    rsa = xr.open_zarr(tmp_path / "rsa.zarr").load().sel(signal="broadband", category="all")
    obs, p_fwe, mass, p_cluster = _brute_force_family_stats(sources, models, n_perm,
                                                            per_layer=cluster_family == "per_layer")
    family = "time x region x layer" if cluster_family == "fwe_dims" else "time (one family per"
    assert rsa.p_cluster.attrs["family"].startswith(family) and rsa.p_fwe.attrs["family"].startswith(
        "region x time x layer") and rsa.p_cluster.attrs["units"] == "1"
    order = ("region", "time", "layer")
    np.testing.assert_allclose(rsa.r.sel(subject="group").transpose(*order), obs, atol=1e-4)
    np.testing.assert_allclose(rsa.p_fwe.transpose(*order), p_fwe, atol=1e-6)  # p is stored as float32
    assert (p_fwe[1, EFFECT, 1] == 1 / 20).all() and (p_fwe[[0, 2]] > 0.05).all()  # the planted effect survives
    np.testing.assert_allclose(rsa.cluster_mass.transpose(*order), mass, atol=1e-4)
    np.testing.assert_allclose(rsa.p_cluster.transpose(*order), p_cluster, atol=1e-6)
    assert mass[1, EFFECT, 1].min() > 2.4  # one cluster across the block edges at times 3 and 6
    assert (p_cluster[1, EFFECT, 1] == 1 / 20).all()  # and it survives the family-wide cluster null
    # resume: only the final task runs again when its mark is gone, with the same numbers
    store = ZarrStore.open(tmp_path / "rsa.zarr")
    (store.path / ".mfrs-complete" / "_final.json").unlink()
    assert store.status()["missing"] == ["final:cluster_mass,p_cluster,p_fwe"]
    caplog.set_level("INFO", logger="mfrs")
    run_stage(stage, config=cfg, catalog=cat, client=local_client)
    assert sum("skipping" in m for m in caplog.messages) == n_units and any("merging" in m for m in caplog.messages)
    again = xr.open_zarr(tmp_path / "rsa.zarr").load().sel(signal="broadband", category="all")
    np.testing.assert_array_equal(again.p_fwe, rsa.p_fwe)
    assert ZarrStore.open(tmp_path / "rsa.zarr").is_final_complete()


def test_run_reports_per_task_breakdown(tmp_path, local_client):
    _write_inputs(tmp_path)
    cfg = stage.Config(categories=["all", "famous"], region_block=2, time_block=5)
    run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    b = stage.last_breakdown()
    assert b["tasks"] == 2 * 2  # 2 region blocks x 2 time blocks, every one computed
    assert sum(b[p] for p in stage.TASK_PHASES) == pytest.approx(b["total"], rel=1e-6)
    assert sum(b[f"cpu_{p}"] for p in stage.TASK_PHASES) == pytest.approx(b["cpu_total"], rel=1e-6)
    assert 0 < b["kernel_fraction"] <= 1 and 0 < b["cpu_kernel_fraction"] <= 1
    values = (0.1, 0.0, 0.5, 0.05, 0.02, 0.67, 0.1, 0.0, 0.45, 0.04, 0.01, 0.6)
    line = stage.BREAKDOWN_FORMAT % ("region=0:2,time=0:5", *values)
    assert stage.parse_breakdown(line) == pytest.approx(dict(zip(stage.BREAKDOWN_KEYS, values)))
    assert stage.parse_breakdown(line.replace(" cpu_total=0.6000s", "")) is None  # a key missing: not a breakdown


def test_time_block_defaults_to_the_sources_time_chunk(tmp_path):
    from mfrs.store import ZarrStore

    _write_inputs(tmp_path)
    sources = ZarrStore.open(tmp_path / "sources.zarr").dataset(warn_incomplete=False)
    chunk = sources.activity.chunksizes["time"][0]
    assert stage.resolve(stage.Config(), sources).time_block == chunk
    assert stage.resolve(stage.Config(mode="avg"), sources).time_block == 64
    assert stage.resolve(stage.Config(time_block=3), sources).time_block == 3


@pytest.mark.parametrize("mode", ["raw", "avg"])
def test_reduce_block_without_zarr_matches_scipy(mode):
    """The stage's pure reduction on numpy patterns: every subject's r against scipy pdist + spearmanr."""
    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.families import families
    from mfrs.similarity.fused import model_matrix

    rng = np.random.default_rng(3)
    n_sub, n_stim, n_samp, sizes = 3, 12, 8, [4, 5]
    block = rng.standard_normal((n_sub, n_stim, n_samp, sum(sizes))).astype(np.float32)
    model = rng.random((2, n_pairs(n_stim))).astype(np.float32)
    cats = {"all": np.arange(n_stim), "famous": np.arange(0, n_stim, 2)}
    cfg = stage.Config(mode=mode, categories=list(cats), window=0.02, step=0.01)
    starts, length = (np.arange(n_samp), 1) if mode == "raw" else (np.array([0, 2, 4]), 4)
    spec = stage.BlockSpec(signals=["broadband"], regions=["a", "b"], region_sizes=sizes, starts=starts,
                           length=length, first_time=0, stim_index=cats, n_stimuli=n_stim)
    iu, ju = np.triu_indices(n_stim, 1)
    models = {}
    for c, idx in cats.items():
        keep = np.isin(iu, idx) & np.isin(ju, idx)
        models[c] = model_matrix(prepare_block(model[:, keep], "spearman"))  # the layers, as the stage prepares them
    res = stage.reduce_block(lambda s: block, spec, models, cfg, fam=families(cfg, 2, starts.size), n_subjects=n_sub)
    for c, idx in enumerate(cats.values()):
        keep = np.isin(iu, idx) & np.isin(ju, idx)
        for g, (lo, nv) in enumerate(((0, 4), (4, 5))):
            for t, a in enumerate(starts):
                x = block[1][idx][:, a : a + length, lo : lo + nv]
                feats = x[:, 0] if mode == "raw" else x.mean(axis=-1)
                expect = REFERENCE["compare:spearman"](REFERENCE["rdm:correlation"](feats.astype(float)),
                                                       model[1, keep])
                assert res["r"][1, 0, c, g, t, 1] == pytest.approx(expect, abs=1e-4)


def test_stage_refuses_model_rdms_of_another_stimulus_order(tmp_path, local_client):
    """Layer RDMs of the same stimuli in another order would give wrong r at the right pair count."""
    from tests_support import write_complete_store as write

    sources, models = _write_inputs(tmp_path)
    order = np.random.default_rng(3).permutation(N_STIM)
    moved = models.drop_vars([c for c in models.coords if models[c].dims == ("pair",)])
    write(moved.assign_coords(pair_coords(sources["stimulus"].isel(stimulus=order), with_coords=STORED_PAIR_COORDS)),
          tmp_path / "model_rdms.zarr", "layer")
    first = int(np.flatnonzero(order != np.arange(N_STIM))[0])
    with pytest.raises(InputDataError, match=rf"similarity: model_rdms \(.*model_rdms.zarr\) pairs other stimuli "
                       rf"than sources \(.*sources.zarr\): the same stimuli in another order; .* position {first}: "
                       rf"'s{order[first]:02d}' in model_rdms, 's{first:02d}' in sources\. rerun model_rdms"):
        run_stage(stage, config=stage.Config(categories=["all"]), catalog=_Catalog(tmp_path), client=local_client)
    assert not (tmp_path / "rsa.zarr").exists()  # refused before anything was written
