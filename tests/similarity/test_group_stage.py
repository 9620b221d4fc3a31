"""Group statistics stored by the similarity stage, against slow independent references.

Subject bootstrap (a scipy loop over the same seeded draws), the sign-flip test
(brute-force enumeration of all 2^6 sign vectors of 6 subjects) and FDR
(:func:`scipy.stats.false_discovery_control`), with families cut into blocks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.stats as ss
import xarray as xr

from mfrs.pipeline import run_stage
from mfrs.stages import similarity as stage

from .reference import REFERENCE
from .test_stage import EFFECT, N_TIME, _Catalog, _write_inputs

N_SUB6, N_BOOT = 6, 20
ORDER = ("region", "time", "layer")


def _subject_rdms(sources):
    """scipy RDMs ``(subject, region, time, pair)`` of the broadband sources."""
    act = sources.activity.sel(signal="broadband").values.astype(float)  # (subject, stimulus, time, vertex)
    region_of = sources.region.values
    return np.stack([[[REFERENCE["rdm:correlation"](act[s, :, t][:, region_of == reg]) for t in range(N_TIME)]
                      for reg in ("r0", "r1", "r2")] for s in range(N_SUB6)])


@pytest.fixture(scope="module", params=[("time", "layer"), ("region", "time", "layer")], ids=["per_region", "all"])
def group_run(request, tmp_path_factory, local_client):
    """The stage with 2 regions x 4 times per block: families (and time courses) span blocks."""
    root = tmp_path_factory.mktemp("group")
    sources, models = _write_inputs(root, n_sub=N_SUB6)
    cfg = stage.Config(categories=["all"], region_block=2, time_block=4, n_permutations=19,
                       fwe_dims=list(request.param), n_bootstrap=N_BOOT, n_signflips=100, fdr=True,
                       contrast={"a": {"layer": "l1"}, "b": {"layer": "l2"}})
    plan = stage.plan(config=cfg, catalog=_Catalog(root), calibrated=False)
    assert plan.n_tasks == 2 * 3 + 1 and any("group statistics" in n and "peak_latency" in n for n in plan.notes)
    run_stage(stage, config=cfg, catalog=_Catalog(root), client=local_client)
    rsa = xr.open_zarr(root / "rsa.zarr").load().sel(signal="broadband", category="all")
    return sources, models, rsa, request.param


def test_bootstrap_cis_equal_a_slow_loop_with_the_same_seeds(group_run):
    from mfrs.similarity.seeds import unit_rng

    sources, models, rsa, _ = group_run
    rdms = _subject_rdms(sources)
    # the stage's draws: half the subjects (3 of 6) with replacement, seeded per (signal, category)
    draws = unit_rng(0, "bootstrap", "broadband", "all").integers(0, N_SUB6, size=(N_BOOT, N_SUB6 // 2))
    boot = np.empty((N_BOOT, 3, N_TIME, 3))
    for b, drawn in enumerate(draws):
        mean_rdm = rdms[drawn].mean(axis=0)  # RSA recomputed on the resampled subject-mean RDM
        for g in range(3):
            for t in range(N_TIME):
                for layer in range(3):
                    boot[b, g, t, layer] = REFERENCE["compare:spearman"](mean_rdm[g, t], models.rdm.values[layer])
    low, high = np.quantile(boot, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(rsa.r_ci_low.transpose(*ORDER), low, atol=1e-4)
    np.testing.assert_allclose(rsa.r_ci_high.transpose(*ORDER), high, atol=1e-4)
    times = rsa.time.values
    latency = times[boot.argmax(axis=2)]  # (sample, region, layer), over all times (blocks of 4 joined)
    np.testing.assert_allclose(rsa.peak_latency_ci_low.transpose("region", "layer"),
                               np.quantile(latency, 0.025, axis=0), atol=1e-9)
    np.testing.assert_allclose(rsa.peak_latency_ci_high.transpose("region", "layer"),
                               np.quantile(latency, 0.975, axis=0), atol=1e-9)
    best = boot.max(axis=2).argmax(axis=-1)  # (sample, region)
    np.testing.assert_allclose(rsa.best_layer_ci_low, np.quantile(best, 0.025, axis=0))
    np.testing.assert_allclose(rsa.best_layer_ci_high, np.quantile(best, 0.975, axis=0))
    group = rsa.r.sel(subject="group").transpose(*ORDER).values
    np.testing.assert_array_equal(rsa.best_layer, group.max(axis=1).argmax(axis=-1))
    np.testing.assert_allclose(rsa.peak_latency.transpose("region", "layer"), times[group.argmax(axis=1)])
    # the planted effect: r1 peaks inside EFFECT with layer l1, whatever the resample
    assert rsa.best_layer.sel(region="r1") == 1 and rsa.best_layer_ci_low.sel(region="r1") == 1
    assert times[EFFECT.start] <= float(rsa.peak_latency_ci_low.sel(region="r1", layer="l1"))
    assert float(rsa.peak_latency_ci_high.sel(region="r1", layer="l1")) <= times[EFFECT.stop - 1]
    assert rsa.peak_latency.attrs["units"] == "s" and "bootstrap" in rsa.r_ci_low.attrs["description"]


def test_signflip_equals_brute_force_enumeration_over_six_subjects(group_run):
    _, _, rsa, fwe_dims = group_run
    r_sub = rsa.r.drop_sel(subject="group").transpose("subject", *ORDER).values.astype(float)
    obs = r_sub.mean(axis=0)
    signs = np.array(list(itertools.product([1, -1], repeat=N_SUB6)))  # all 64, identity included
    null = np.einsum("fs,s...->f...", signs, r_sub) / N_SUB6
    p = (null >= obs[None] - 1e-9).sum(axis=0) / 64
    axes = tuple(1 + ORDER.index(d) for d in fwe_dims)
    fmax = null.max(axis=axes, keepdims=True)  # the family's max per sign vector
    p_fwe = (fmax >= obs[None] - 1e-9).sum(axis=0) / 64
    np.testing.assert_allclose(rsa.p_signflip.transpose(*ORDER), p, atol=1e-6)
    np.testing.assert_allclose(rsa.p_signflip_fwe.transpose(*ORDER), p_fwe, atol=1e-6)
    assert (p_fwe[1, EFFECT, 1] == 1 / 64).all()  # every subject's r is positive at the planted effect
    assert "exact" in rsa.p_signflip.attrs["description"] and rsa.p_signflip_fwe.attrs["family"].startswith(
        " x ".join(fwe_dims))


def test_fdr_equals_scipy_over_each_family(group_run):
    _, _, rsa, fwe_dims = group_run
    for name, source in (("p_fdr", "p"), ("p_signflip_fdr", "p_signflip")):
        families = [rsa.region.values] if "region" in fwe_dims else [[r] for r in rsa.region.values]
        for regions in families:  # one family: every time x layer (x region when in fwe_dims)
            p = rsa[source].sel(region=regions).values.astype(float)
            expect = ss.false_discovery_control(p.ravel(), method="bh").reshape(p.shape)
            np.testing.assert_allclose(rsa[name].sel(region=regions).values, expect, atol=1e-6)
    assert "false discovery rate" in rsa.p_fdr.attrs["family"]


def test_group_numbers_do_not_depend_on_the_blocks(group_run, tmp_path, local_client):
    """Seeds per (signal, category): one block holding everything gives the numbers of 2 regions x 4 times."""
    _, _, rsa, fwe_dims = group_run
    _write_inputs(tmp_path, n_sub=N_SUB6)
    cfg = stage.Config(categories=["all"], region_block=3, time_block=N_TIME, n_permutations=19,
                       fwe_dims=list(fwe_dims), n_bootstrap=N_BOOT, n_signflips=100, fdr=True)
    run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    whole = xr.open_zarr(tmp_path / "rsa.zarr").load().sel(signal="broadband", category="all")
    for name in ("r_ci_low", "r_ci_high", "peak_latency", "peak_latency_ci_low", "peak_latency_ci_high",
                 "best_layer", "best_layer_ci_low", "best_layer_ci_high", "p_signflip", "p_signflip_fwe", "p_fdr",
                 "p_signflip_fdr"):
        np.testing.assert_allclose(whole[name], rsa[name], atol=1e-6, err_msg=name)


def test_fdr_needs_a_family_and_a_test():
    with pytest.raises(ValueError, match="fdr corrects the p of n_permutations or n_signflips over the fwe_dims"):
        stage.Config(fdr=True, fwe_dims=[], n_permutations=10)
    with pytest.raises(ValueError, match="set fwe_dims"):
        stage.Config(fdr=True, fwe_dims=["time"])
    assert stage.Config(fdr=True, n_signflips=10).cluster_family == "fwe_dims"


def test_stored_contrast_equals_enumeration_scipy_and_a_bootstrap_loop(group_run):
    """compare_*: per-subject r of l1 minus l2, two-sided sign flips over all 2^6 signs, paired t, FDR, CI."""
    from mfrs.similarity.seeds import unit_rng

    _, _, rsa, fwe_dims = group_run
    order = ("region", "time", "contrast")
    r_sub = rsa.r.drop_sel(subject="group").transpose("subject", "region", "time", "layer").values.astype(float)
    d = r_sub[..., [1]] - r_sub[..., [2]]  # (subject, region, time, contrast)
    assert rsa.layer_a.values.tolist() == ["l1"] and rsa.layer_b.values.tolist() == ["l2"]
    np.testing.assert_allclose(rsa.compare_difference.transpose(*order), d.mean(axis=0), atol=1e-6)
    signs = np.array(list(itertools.product([1, -1], repeat=N_SUB6)))
    null = np.abs(np.einsum("fs,s...->f...", signs, d) / N_SUB6)
    obs = np.abs(d.mean(axis=0))
    np.testing.assert_allclose(rsa.compare_p_signflip.transpose(*order), (null >= obs - 1e-9).sum(axis=0) / 64,
                               atol=1e-6)
    axes = tuple(1 + ("region", "time", "layer").index(f) for f in fwe_dims)
    p_fwe = (null.max(axis=axes, keepdims=True) >= obs - 1e-9).sum(axis=0) / 64
    np.testing.assert_allclose(rsa.compare_p_signflip_fwe.transpose(*order), p_fwe, atol=1e-6)
    np.testing.assert_allclose(rsa.compare_p_ttest.transpose(*order),
                               ss.ttest_rel(r_sub[..., [1]], r_sub[..., [2]], axis=0).pvalue, atol=1e-6)
    p = rsa.compare_p_signflip.transpose(*order).values.astype(float)
    families = [slice(None)] if "region" in fwe_dims else [slice(g, g + 1) for g in range(3)]
    for f in families:
        q = ss.false_discovery_control(p[f].ravel(), method="bh").reshape(p[f].shape)
        np.testing.assert_allclose(rsa.compare_p_fdr.transpose(*order).values[f], q, atol=1e-6)
    draws = unit_rng(0, "contrast_bootstrap", "broadband", "all").integers(0, N_SUB6, (N_BOOT, N_SUB6))
    boot = np.stack([d[idx].mean(axis=0) for idx in draws])
    np.testing.assert_allclose(rsa.compare_ci_low.transpose(*order), np.quantile(boot, 0.025, axis=0), atol=1e-6)
    np.testing.assert_allclose(rsa.compare_ci_high.transpose(*order), np.quantile(boot, 0.975, axis=0), atol=1e-6)
    # the planted effect: l1 beats l2 in r1 at every subject
    assert (rsa.compare_p_signflip.sel(region="r1").isel(time=EFFECT) == 2 / 64).all()
    assert rsa.compare_p_signflip_fwe.attrs["family"].startswith(" x ".join(fwe_dims).replace("layer", "contrast"))


def test_contrast_needs_sign_flips_and_paired_sets(tmp_path, local_client):
    with pytest.raises(ValueError, match="set n_signflips"):
        stage.Config(contrast={"a": {"layer": "l1"}, "b": {"layer": "l2"}})
    _write_inputs(tmp_path, n_sub=N_SUB6)
    from mfrs.errors import ConfigError

    cfg = stage.Config(categories=["all"], n_signflips=10, contrast={"a": {"network": "net"}, "b": {"layer": "l2"}})
    with pytest.raises(ConfigError, match="selects 3 layers and b=.* 1"):
        run_stage(stage, config=cfg, catalog=_Catalog(tmp_path), client=local_client)
    assert not (tmp_path / "rsa.zarr").exists()  # refused before anything was written
