"""``permutation_test`` and ``bootstrap``: statistics on RSA results (xarray-facing layer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import compare_block, n_stimuli_of_pairs, prepare_block
from mfrs.similarity.compare import check_same_pairs
from mfrs.similarity.inference import permutation_p
from mfrs.similarity.nulls import draw_pair_permutations, null_block
from mfrs.similarity.seeds import unit_rng
from mfrs.similarity.threads import single_threaded
from mfrs.similarity.types import (
    COMPARATORS,
    Alternative,
    BootstrapOver,
    ClusterFamily,
    Comparator,
    PermutationScheme,
)

__all__ = ["permutation_test", "bootstrap"]

#: Largest null distribution permutation_test holds in memory (use the stage beyond).
_MAX_NULL_BYTES = 2 << 30


def _flat(x: xr.DataArray, pair_dim: str) -> tuple[np.ndarray, list[str], tuple[int, ...]]:
    batch = [str(d) for d in x.dims if d != pair_dim]
    arr = x.transpose(*batch, pair_dim).values
    return arr.reshape(-1, x.sizes[pair_dim]), batch, arr.shape[:-1]


def permutation_test(
    brain: xr.DataArray,
    model: xr.DataArray,
    *,
    method: Comparator = "spearman",
    n_permutations: int = 1000,
    seed: int = 0,
    scheme: PermutationScheme = "labels",
    alternative: Alternative = "greater",
    fwe_dims: Sequence[str] = (),
    cluster_dim: str | None = None,
    cluster_alpha: float = 0.05,
    cluster_family: ClusterFamily = "fwe_dims",
    pair_dim: str = "pair",
) -> xr.Dataset:
    """Permutation test of brain-model RDM comparisons.

    ``(A..., pair), (B..., pair) -> (A..., B...)``. Each permutation relabels the
    stimuli (rows and columns together) and the same permutations serve every
    element, so max-statistics over dims are valid.

    Parameters
    ----------
    n_permutations : int
        Random permutations drawn from ``seed`` (one SeedSequence for the test).
    scheme : PermutationScheme
        ``labels`` (exact condition-label permutations) or ``legacy_entries`` (the
        reference study's entry shuffling, only to reproduce old numbers).
    fwe_dims : sequence of str
        Dims of the result (e.g. ``("time", "layer")``) over which the family-wise
        error is controlled by the max statistic.
    cluster_dim : str, optional
        Dim (e.g. ``"time"``) along which runs of points above the pointwise
        ``1 - cluster_alpha`` null quantile form clusters; each cluster's mass (sum of
        r) is compared with the null of the largest cluster mass per permutation.
    cluster_family : ClusterFamily
        ``fwe_dims``: that largest cluster mass is taken over every series of the
        ``fwe_dims`` family (e.g. every layer), so ``p_cluster`` controls the
        family-wise error as ``p_fwe`` does; ``per_layer``: over each series along
        ``cluster_dim`` alone.

    Returns
    -------
    xarray.Dataset
        ``r``, ``p`` (uncorrected, ``(k + 1) / (n + 1)``), and ``p_fwe`` /
        ``p_cluster`` + ``cluster_mass`` when asked. NaN r gives NaN p.
    """
    if method not in COMPARATORS:
        raise ConfigError(f"permutation_test: method={method!r} is not one of {COMPARATORS}")
    if scheme not in ("labels", "legacy_entries"):
        raise ConfigError(f"permutation_test: scheme={scheme!r} is not 'labels' or 'legacy_entries'")
    if n_permutations < 1:
        raise ConfigError(f"permutation_test: n_permutations={n_permutations} must be at least 1")
    check_same_pairs(brain, model, pair_dim=pair_dim, what="permutation_test")
    a, a_dims, a_shape = _flat(brain, pair_dim)
    b, b_dims, b_shape = _flat(model, pair_dim)
    dims = a_dims + b_dims
    clash = set(a_dims) & set(b_dims)
    if clash:
        raise ConfigError(f"permutation_test: brain and model share dims {sorted(clash)}; rename one side")
    for d in [*fwe_dims, *([cluster_dim] if cluster_dim else [])]:
        if d not in dims:
            raise ConfigError(f"permutation_test: {d!r} is not a dim of the result {tuple(dims)}")
    n_bytes = n_permutations * a.shape[0] * b.shape[0] * 8
    if n_bytes > _MAX_NULL_BYTES:
        raise ConfigError(f"permutation_test: the null would hold {n_bytes / 2**30:.1f} GiB; test fewer elements "
                          "per call (e.g. one region) or run the similarity stage, which reduces per block")
    n = n_stimuli_of_pairs(a.shape[1])
    rng = unit_rng(seed, "permutation_test", scheme)
    with single_threaded():
        pa, pb = prepare_block(a, method), prepare_block(b, method)
        r = compare_block(pa, pb, method, prepared=True)
        perms = draw_pair_permutations(rng, n, n_permutations, scheme)
        null = null_block(pa, pb, perms, method)
    shape = (*a_shape, *b_shape)
    r = r.reshape(shape)
    res = permutation_p(r, null.reshape(n_permutations, *shape), fwe_axes=tuple(dims.index(d) for d in fwe_dims),
                        cluster_axis=dims.index(cluster_dim) if cluster_dim else None, cluster_alpha=cluster_alpha,
                        cluster_per_series=cluster_family == "per_layer", two_sided=alternative == "two-sided")
    coords = {**{k: v for k, v in brain.coords.items() if pair_dim not in v.dims},
              **{k: v for k, v in model.coords.items() if pair_dim not in v.dims}}
    ds = xr.Dataset({"r": (dims, r), **{k: (dims, v) for k, v in res.items()}}, coords=coords)
    ds.attrs = {"method": method, "n_permutations": n_permutations, "seed": seed, "scheme": scheme,
                "alternative": alternative, "fwe_dims": ",".join(fwe_dims), "cluster_dim": cluster_dim or "",
                "cluster_family": cluster_family}
    fam = " x ".join(fwe_dims)
    if "p_fwe" in ds:
        ds["p_fwe"].attrs = {"description": f"family-wise p, max statistic over {fam}", "units": "1", "family": fam}
    if "p_cluster" in ds:
        over = cluster_dim if cluster_family == "per_layer" else " x ".join(dict.fromkeys([cluster_dim, *fwe_dims]))
        ds["p_cluster"].attrs = {"description": f"cluster-mass p, clusters along {cluster_dim}, largest null cluster "
                                 f"mass over {over}", "units": "1", "family": over}
    ds["p"].attrs = {"description": "uncorrected permutation p, (k + 1) / (n + 1)", "units": "1", "family": "none"}
    return ds


def _bootstrap_pairs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pair indices of a stimulus bootstrap sample, dropping pairs of a stimulus with itself."""
    idx = np.sort(rng.integers(0, n, size=n))
    i, j = np.triu_indices(n, 1)
    lo, hi = idx[i], idx[j]
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    return lo * n - lo * (lo + 1) // 2 + hi - lo - 1


def bootstrap(
    data: xr.DataArray,
    model: xr.DataArray | None = None,
    *,
    over: BootstrapOver,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    method: Comparator = "spearman",
    sample_size: int | None = None,
    subject_dim: str = "subject",
    time_dim: str = "time",
    layer_dim: str = "layer",
    pair_dim: str = "pair",
) -> xr.Dataset:
    """Bootstrap confidence intervals for r, for the peak latency and for the best layer.

    ``over="subjects"``: ``data`` is r ``(subject, ...)``; each sample averages r over
    subjects drawn with replacement (``sample_size`` of them, default all).
    ``over="stimuli"``: ``data`` are brain RDMs ``(..., pair)``, ``model`` the model RDMs
    ``(layer, pair)``; each sample draws stimuli with replacement and compares the RDMs
    on the pairs of distinct drawn stimuli.
    ``over="subject_rdms"``: ``data`` are subject RDMs ``(subject, ..., pair)``; each sample
    draws ``sample_size`` subjects (default half) with replacement and compares the mean
    RDM of the drawn subjects with ``model``, as the reference study (and the similarity
    stage's ``n_bootstrap``) did; ``r`` is the subject-mean RDM's.

    Returns
    -------
    xarray.Dataset
        ``r`` (estimate on all data), ``r_low``/``r_high``; with a time dim:
        ``peak_latency`` (time of the max of r) and its ``_low``/``_high``; with a layer
        dim: ``best_layer`` (position of the max over layers), its ``_low``/``_high``
        (positions) and ``best_layer_frequency`` (share of samples where each layer wins).
    """
    if not 0 < ci < 1:
        raise ConfigError(f"bootstrap: ci={ci} must lie strictly between 0 and 1")
    rng = unit_rng(seed, "bootstrap", over)
    if over == "subjects":
        if subject_dim not in data.dims:
            raise InputDataError(f"bootstrap: over='subjects' needs a {subject_dim!r} dim; data has {tuple(data.dims)}")
        x = data.transpose(subject_dim, ...)
        n_sub = x.sizes[subject_dim]
        size = sample_size or n_sub
        vals = x.values
        draws = rng.integers(0, n_sub, size=(n_bootstrap, size))
        boots = np.stack([vals[d].mean(axis=0) for d in draws])
        est = x.mean(subject_dim)
    elif over == "stimuli":
        if model is None:
            raise ConfigError("bootstrap: over='stimuli' needs model=<model RDMs (layer, pair)>")
        check_same_pairs(data, model, pair_dim=pair_dim, what="bootstrap")
        a, a_dims, a_shape = _flat(data, pair_dim)
        b, b_dims, b_shape = _flat(model, pair_dim)
        n = n_stimuli_of_pairs(a.shape[1])
        with single_threaded():
            full = compare_block(a, b, method)
            boots = np.empty((n_bootstrap, *a_shape, *b_shape))
            for k in range(n_bootstrap):
                idx = _bootstrap_pairs(rng, n)
                boots[k] = compare_block(a[:, idx], b[:, idx], method).reshape(*a_shape, *b_shape)
        coords = {**{k: v for k, v in data.coords.items() if pair_dim not in v.dims},
                  **{k: v for k, v in model.coords.items() if pair_dim not in v.dims}}
        est = xr.DataArray(full.reshape(*a_shape, *b_shape), dims=a_dims + b_dims, coords=coords)
    elif over == "subject_rdms":
        if model is None or subject_dim not in data.dims:
            raise ConfigError(f"bootstrap: over='subject_rdms' needs subject RDMs with a {subject_dim!r} dim (data has "
                              f"{tuple(data.dims)}) and model=<model RDMs (layer, pair)>")
        from mfrs.similarity.group import draw_bootstrap_weights

        check_same_pairs(data, model, pair_dim=pair_dim, what="bootstrap")
        x = data.transpose(subject_dim, ..., pair_dim)
        n_sub = x.sizes[subject_dim]
        b, b_dims, b_shape = _flat(model, pair_dim)
        a_dims, a_shape = [str(d) for d in x.dims[1:-1]], x.shape[1:-1]
        vals = x.values.reshape(n_sub, -1)
        weights = draw_bootstrap_weights(rng, n_sub, n_bootstrap, (sample_size or max(1, round(n_sub / 2))) / n_sub)
        with single_threaded():
            pb = prepare_block(b, method)
            full = compare_block(prepare_block(vals.mean(axis=0).reshape(-1, x.shape[-1]), method), pb, method,
                                 prepared=True)
            boots = np.stack([compare_block(prepare_block((w @ vals).reshape(-1, x.shape[-1]), method), pb, method,
                                            prepared=True).reshape(*a_shape, *b_shape) for w in weights])
        coords = {**{k: v for k, v in x.coords.items() if pair_dim not in v.dims and subject_dim not in v.dims},
                  **{k: v for k, v in model.coords.items() if pair_dim not in v.dims}}
        est = xr.DataArray(full.reshape(*a_shape, *b_shape), dims=a_dims + b_dims, coords=coords)
    else:
        raise ConfigError(f"bootstrap: over={over!r} is not 'subjects', 'stimuli' or 'subject_rdms'")
    from mfrs.similarity.group import percentile_ci

    dims = list(est.dims)
    boot = xr.DataArray(boots, dims=["sample", *dims], coords=est.coords)
    low, high = percentile_ci(boots, ci)
    out = xr.Dataset({"r": est, "r_low": (dims, low), "r_high": (dims, high)})
    if time_dim in dims:
        times = est[time_dim].values if time_dim in est.coords else np.arange(est.sizes[time_dim])
        out["peak_latency"] = xr.DataArray(times[est.fillna(-np.inf).argmax(time_dim).values],
                                           dims=[d for d in dims if d != time_dim])
        lat = times[boot.fillna(-np.inf).argmax(time_dim).values]
        lat_low, lat_high = percentile_ci(lat, ci)
        out["peak_latency_low"] = (out["peak_latency"].dims, lat_low)
        out["peak_latency_high"] = (out["peak_latency"].dims, lat_high)
    if layer_dim in dims:
        out["best_layer"] = est.fillna(-np.inf).argmax(layer_dim)
        pos = boot.fillna(-np.inf).argmax(layer_dim)
        pos_low, pos_high = percentile_ci(pos.values, ci)
        out["best_layer_low"] = (pos.dims[1:], pos_low)
        out["best_layer_high"] = (pos.dims[1:], pos_high)
        n_layer = est.sizes[layer_dim]
        freq = (pos.values[..., None] == np.arange(n_layer)).mean(axis=0)
        out["best_layer_frequency"] = ([d for d in dims if d != layer_dim] + [layer_dim], freq)
    out.attrs = {"over": over, "n_bootstrap": n_bootstrap, "seed": seed, "ci": ci}
    return out
