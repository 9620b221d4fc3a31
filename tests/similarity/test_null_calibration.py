"""Calibration on null data: family-wise error rates of the corrected p-values at their nominal level.

Families of smooth random brain-RDM time courses x random layer RDMs, with no relation
between them; each family is tested with label permutations (the block functions of
the stage). A corrected p controls the family-wise error when "p <= alpha somewhere
in the family" happens in about alpha of the families.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from mfrs.similarity.blocks import prepare_block, rdm_block
from mfrs.similarity.inference import permutation_p
from mfrs.similarity.nulls import draw_stimulus_permutations, null_block_labels

N_FAMILIES, N_STIM, N_TIME, N_LAYER, N_PERM, ALPHA = 300, 12, 20, 6, 200, 0.05
#: three binomial standard errors of a rate of ALPHA over N_FAMILIES families
TOLERANCE = 3 * np.sqrt(ALPHA * (1 - ALPHA) / N_FAMILIES)


def _null_family(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """r (time, layer) and its relabelling null (perm, time, layer) of one family with no true effect."""
    patterns = gaussian_filter1d(rng.standard_normal((N_TIME, N_STIM, 5)), sigma=2.0, axis=0)  # smooth over time
    brain = prepare_block(rdm_block(patterns, "correlation"), "spearman")  # (time, pair)
    layers = prepare_block(rdm_block(rng.standard_normal((N_LAYER, N_STIM, 8)), "correlation"), "spearman")
    r = np.clip(brain @ layers.T, -1.0, 1.0)
    null = null_block_labels(brain, layers, draw_stimulus_permutations(rng, N_STIM, N_PERM), "spearman")
    return r, null


@pytest.fixture(scope="module")
def null_results() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    hits: dict[str, list] = {"p_fwe": [], "p_cluster": [], "p_cluster_per_layer": [], "p": []}
    for _ in range(N_FAMILIES):
        r, null = _null_family(rng)
        res = permutation_p(r, null, fwe_axes=(0, 1), cluster_axis=0, cluster_alpha=ALPHA)
        per_layer = permutation_p(r, null, fwe_axes=(0, 1), cluster_axis=0, cluster_alpha=ALPHA,
                                  cluster_per_series=True)
        hits["p_fwe"].append((res["p_fwe"] <= ALPHA).any())
        hits["p_cluster"].append((res["p_cluster"] <= ALPHA).any())
        hits["p_cluster_per_layer"].append((per_layer["p_cluster"] <= ALPHA).any(axis=0))  # (layer,)
        hits["p"].append((res["p"] <= ALPHA).mean())
    return {k: np.asarray(v) for k, v in hits.items()}


@pytest.mark.parametrize("name", ["p_fwe", "p_cluster"])
def test_family_wise_error_at_nominal_level(null_results, name):
    """Over every time point and layer, p_fwe and p_cluster are <= .05 somewhere in about 5 % of the families."""
    rate = null_results[name].mean()
    assert abs(rate - ALPHA) <= TOLERANCE, f"{name}: family-wise error {rate:.3f}, nominal {ALPHA}"


def test_uncorrected_p_and_per_layer_clusters_are_calibrated_for_one_element_only(null_results):
    """p is exact per element and per-layer clusters per layer's time course; over the family both fail."""
    assert abs(null_results["p"].mean() - ALPHA) <= TOLERANCE
    per_layer = null_results["p_cluster_per_layer"]  # (family, layer)
    assert abs(per_layer.mean() - ALPHA) <= TOLERANCE  # one layer's time course: nominal
    assert per_layer.any(axis=1).mean() > ALPHA + 2 * TOLERANCE  # any of 6 layers: far above nominal


def test_signflip_family_wise_error_at_nominal_level():
    """Per-subject r symmetric around 0, smooth over time: p_signflip_fwe over time x layer holds its level."""
    from mfrs.similarity.group import draw_sign_flips, signflip_mean, signflip_null
    from mfrs.similarity.inference import family_max, p_against

    rng = np.random.default_rng(7)
    n_sub, hits, uncorrected = 10, [], []
    for _ in range(N_FAMILIES):
        r_sub = gaussian_filter1d(rng.standard_normal((n_sub, N_TIME, N_LAYER)), sigma=2.0, axis=1) * 0.1
        null = signflip_null(r_sub, draw_sign_flips(rng, n_sub, N_PERM))
        stat = signflip_mean(r_sub)
        hits.append((p_against(family_max(null, (0, 1)), stat) <= ALPHA).any())
        uncorrected.append((p_against(null, stat) <= ALPHA).mean())
    assert abs(np.mean(hits) - ALPHA) <= TOLERANCE, f"sign-flip family-wise error {np.mean(hits):.3f}"
    assert abs(np.mean(uncorrected) - ALPHA) <= TOLERANCE


def test_model_comparison_family_wise_error_at_nominal_level():
    """Two layer sets with the same distribution of per-subject r: compare_layer_sets holds its levels."""
    import xarray as xr

    from mfrs.similarity.model_comparison import compare_layer_sets

    rng = np.random.default_rng(11)
    n_sub, fwe, fdr = 10, [], []
    labels = [f"{w}/l{i}" for w in ("a", "b") for i in range(N_LAYER // 2)]
    for k in range(N_FAMILIES):
        r = gaussian_filter1d(rng.standard_normal((n_sub, N_TIME, N_LAYER)), sigma=2.0, axis=1) * 0.1
        da = xr.DataArray(r, dims=("subject", "time", "layer"),
                          coords={"layer": labels, "weights": ("layer", [x[0] for x in labels])})
        res = compare_layer_sets(da, {"weights": "a"}, {"weights": "b"}, n_signflips=N_PERM, n_bootstrap=0,
                                 seed=k, fwe_dims=("time", "contrast"))
        fwe.append(bool((res.p_signflip_fwe <= ALPHA).any()))
        fdr.append(bool((res.p_fdr <= ALPHA).any()))  # under the global null FDR = FWE
    assert abs(np.mean(fwe) - ALPHA) <= TOLERANCE, f"family-wise error {np.mean(fwe):.3f}"
    assert np.mean(fdr) <= ALPHA + TOLERANCE, f"false discovery rate {np.mean(fdr):.3f}"
