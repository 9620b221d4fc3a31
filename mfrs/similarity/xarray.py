"""The xarray-facing layer of the similarity engine: labelled RDMs, comparisons, ceilings and statistics.

As flox keeps ``aggregations`` / ``core`` / ``xarray``, the engine has three layers:
Numba kernels (:mod:`mfrs.similarity._kernels`), numpy blocks (:mod:`~mfrs.similarity.blocks`,
:mod:`~mfrs.similarity.nulls`, :mod:`~mfrs.similarity.fused`, with every p-value in
:mod:`~mfrs.similarity.inference`), and this module, which matches dims by name, checks
labelled inputs and wraps the blocks with :func:`xarray.apply_ufunc`.

Pairs: the ``pair`` dim is the upper triangle (i < j) row by row, the order of
:func:`scipy.spatial.distance.pdist`. Pair coords ``stimulus_a`` and ``stimulus_b``
name the two stimuli (plus ``category_a``/``category_b`` when the stimuli have a
``category`` coord), so subsets are selections, never reorderings. :func:`pair_coords`
is the one function that makes them, for every store that holds RDMs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import (
    compare_block,
    compare_paired_block,
    crossnobis_block,
    n_pairs,
    n_stimuli_of_pairs,
    noise_ceiling_block,
    pool_block,
    prepare_block,
    rdm_block,
    triu_pairs,
)
from mfrs.similarity.group import draw_bootstrap_weights, percentile_ci
from mfrs.similarity.inference import permutation_p
from mfrs.similarity.nulls import draw_bootstrap_pairs, draw_pair_permutations, null_block
from mfrs.similarity.seeds import unit_rng
from mfrs.similarity.threads import single_threaded
from mfrs.similarity.types import (
    COMPARATORS,
    DISSIMILARITIES,
    Alternative,
    BootstrapOver,
    ClusterFamily,
    Comparator,
    Dissimilarity,
    PermutationScheme,
    Pooling,
)

__all__ = ["STORED_PAIR_COORDS", "pair_coords", "stimuli_of", "to_square", "to_pairs", "subset_pairs", "category_pairs",
           "check_same_pairs", "compute_rdms", "compare_rdms", "noise_ceiling", "permutation_test", "bootstrap"]

#: Stimulus coords that every stored RDM (``model_rdms``, ``rsa``'s ``rdm``) pairs besides the labels.
STORED_PAIR_COORDS = ("category",)

#: Largest null distribution permutation_test holds in memory (use the stage beyond).
_MAX_NULL_BYTES = 2 << 30


# ----------------------------------------------------------------------------- pairs
def pair_coords(stimuli: xr.DataArray | Sequence[Hashable] | np.ndarray, *, pair_dim: str = "pair",
                with_coords: Sequence[str] | None = None) -> dict[str, tuple]:
    """Coordinates of the ``pair`` dim for stimuli in dataset order.

    ``(stimulus,) -> {name: (pair_dim, values)}``. Every coord along a stimulus
    DataArray (e.g. ``category``) gives ``<name>_a`` and ``<name>_b``.

    Parameters
    ----------
    stimuli : xarray.DataArray or sequence
        The stimulus labels (a DataArray also brings its coords along the stimulus dim).
    with_coords : sequence of str, optional
        Only these stimulus coords are paired (the stores pass :data:`STORED_PAIR_COORDS`);
        None: every coord along the stimulus dim.

    Examples
    --------
    >>> pair_coords(["f1", "f2", "u1"])["stimulus_b"][1].tolist()
    ['f2', 'u1', 'u1']
    >>> stim = xr.DataArray(["f1", "u1"], dims="stimulus", name="stimulus",
    ...                     coords={"category": ("stimulus", ["famous", "unfamiliar"]), "file": ("stimulus", ["a", "b"])})
    >>> sorted(pair_coords(stim, with_coords=STORED_PAIR_COORDS))
    ['category_a', 'category_b', 'stimulus_a', 'stimulus_b']
    """
    iu, ju = triu_pairs(len(stimuli))
    coords: dict[str, tuple] = {}
    values = {"stimulus": np.asarray(stimuli)}
    if isinstance(stimuli, xr.DataArray):
        for name, c in stimuli.coords.items():
            if name != stimuli.name and c.dims == stimuli.dims and (with_coords is None or name in with_coords):
                values[str(name)] = np.asarray(c.values)
    for name, v in values.items():
        coords[f"{name}_a"] = (pair_dim, v[iu])
        coords[f"{name}_b"] = (pair_dim, v[ju])
    return coords


def stimuli_of(rdm: xr.DataArray, *, coord: str = "stimulus", pair_dim: str = "pair") -> np.ndarray:
    """A stimulus coord in stimulus order, read back from its pair coords ``<coord>_a``/``<coord>_b``.

    ``coord="stimulus"`` (the labels) gives positions when the RDM has no pair coords.

    Examples
    --------
    >>> stim = xr.DataArray(["f1", "f2", "u1"], dims="stimulus", name="stimulus",
    ...                     coords={"category": ("stimulus", ["famous", "famous", "unfamiliar"])})
    >>> v = xr.DataArray([1.0, 2.0, 3.0], dims="pair", coords=pair_coords(stim))
    >>> stimuli_of(v, coord="category").tolist()
    ['famous', 'famous', 'unfamiliar']
    """
    n = n_stimuli_of_pairs(rdm.sizes[pair_dim])
    if f"{coord}_a" not in rdm.coords:
        if coord == "stimulus":
            return np.arange(n)
        raise InputDataError(f"stimuli_of: the RDM has no {coord!r}_a/{coord!r}_b pair coords; compute it from "
                             f"data whose stimulus dim carries a {coord!r} coord")
    a, b = rdm[f"{coord}_a"].values, rdm[f"{coord}_b"].values
    return np.concatenate([a[:1], b[: n - 1]])


def to_square(rdm: xr.DataArray, *, pair_dim: str = "pair", diagonal: float = 0.0) -> xr.DataArray:
    """Pair vectors -> symmetric square matrices: ``(..., pair) -> (..., stimulus_a, stimulus_b)``.

    Examples
    --------
    >>> v = xr.DataArray([1.0, 2.0, 3.0], dims="pair", coords=pair_coords(["a", "b", "c"]))
    >>> to_square(v).values.tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]
    """
    stimuli = stimuli_of(rdm, pair_dim=pair_dim)
    n = len(stimuli)
    iu, ju = triu_pairs(n)
    data = rdm.transpose(..., pair_dim).values
    sq = np.full(data.shape[:-1] + (n, n), diagonal, dtype=data.dtype)
    sq[..., iu, ju] = data
    sq[..., ju, iu] = data
    batch = [d for d in rdm.dims if d != pair_dim]
    coords = {k: v for k, v in rdm.coords.items() if pair_dim not in v.dims}
    coords.update(stimulus_a=stimuli, stimulus_b=stimuli)
    return xr.DataArray(sq, dims=(*batch, "stimulus_a", "stimulus_b"), coords=coords, name=rdm.name, attrs=rdm.attrs)


def to_pairs(square: xr.DataArray, *, dims: tuple[str, str] = ("stimulus_a", "stimulus_b"),
             pair_dim: str = "pair") -> xr.DataArray:
    """Square matrices -> pair vectors (upper triangle): ``(..., stimulus_a, stimulus_b) -> (..., pair)``."""
    for d in dims:
        if d not in square.dims:
            raise InputDataError(f"to_pairs: the square RDM has dims {tuple(square.dims)}, not {d!r}; "
                                 "pass dims=(row_dim, col_dim)")
    n = square.sizes[dims[0]]
    iu, ju = triu_pairs(n)
    data = square.transpose(..., *dims).values[..., iu, ju]
    batch = [d for d in square.dims if d not in dims]
    stim = square[dims[0]] if dims[0] in square.coords else list(range(n))
    coords: dict[Hashable, Any] = {k: v for k, v in square.coords.items() if not set(v.dims) & set(dims)}
    coords.update(pair_coords(np.asarray(stim), pair_dim=pair_dim))
    return xr.DataArray(data, dims=(*batch, pair_dim), coords=coords, name=square.name, attrs=square.attrs)


def subset_pairs(rdm: xr.DataArray, stimuli: Sequence[Hashable] | np.ndarray, *, pair_dim: str = "pair") -> xr.DataArray:
    """The pairs among a subset of stimuli, in the dataset's order: ``(..., pair) -> (..., pair')``.

    Parameters
    ----------
    stimuli : sequence or boolean mask
        Stimulus labels to keep, or a boolean mask over the stimulus order.
    """
    order = stimuli_of(rdm, pair_dim=pair_dim)
    sel = np.asarray(stimuli)
    if sel.dtype == bool:
        if sel.shape != order.shape:
            raise InputDataError(f"subset_pairs: mask of length {sel.size} for {order.size} stimuli")
        keep = sel
    else:
        missing = sorted(set(sel.tolist()) - set(order.tolist()), key=str)
        if missing:
            raise InputDataError(f"subset_pairs: stimuli {missing[:5]} are not in this RDM "
                                 f"(it has {order.size} stimuli, e.g. {order[:3].tolist()})")
        keep = np.isin(order, sel)
    iu, ju = triu_pairs(order.size)
    return rdm.isel({pair_dim: np.flatnonzero(keep[iu] & keep[ju])})


def category_pairs(rdm: xr.DataArray, category: str, *, pair_dim: str = "pair") -> xr.DataArray:
    """The pairs whose two stimuli both belong to ``category`` (needs ``category_a/_b`` coords)."""
    if "category_a" not in rdm.coords:
        raise InputDataError("category_pairs: the RDM has no 'category_a'/'category_b' pair coords; compute it "
                             "from data whose stimulus dim carries a 'category' coord")
    mask = (rdm["category_a"] == category) & (rdm["category_b"] == category)
    if not bool(mask.any()):
        raise InputDataError(f"category_pairs: no pair has both stimuli in category {category!r}; "
                             f"categories present: {sorted(set(rdm['category_a'].values.tolist()))}")
    return rdm.isel({pair_dim: np.flatnonzero(mask.values)})


def check_same_pairs(a: xr.DataArray, b: xr.DataArray, *, pair_dim: str = "pair", what: str = "compare_rdms") -> None:
    """Raise InputDataError unless ``a`` and ``b`` describe the same stimulus pairs."""
    for name, x in (("a", a), ("b", b)):
        if pair_dim not in x.dims:
            raise InputDataError(f"{what}: {name} has dims {tuple(x.dims)}, no {pair_dim!r} dim; "
                                 "make RDMs with compute_rdms or to_pairs")
    if a.sizes[pair_dim] != b.sizes[pair_dim]:
        raise InputDataError(f"{what}: a has {a.sizes[pair_dim]} pairs and b {b.sizes[pair_dim]}; compare RDMs of "
                             "the same stimuli (use subset_pairs to select a common subset)")
    for c in ("stimulus_a", "stimulus_b"):
        if c in a.coords and c in b.coords and not np.array_equal(a[c].values, b[c].values):
            raise InputDataError(f"{what}: a and b list different stimuli in pair coord {c!r}; "
                                 "reorder or subset one of them so both follow the same stimulus order")


# ----------------------------------------------------------------------------- RDMs
def _check_dims(data: xr.DataArray, dims: Sequence[str], what: str) -> None:
    missing = [d for d in dims if d not in data.dims]
    if missing:
        raise InputDataError(f"{what}: dims {missing} are not in the data, whose dims are {tuple(data.dims)}; "
                             "name existing dims (dims are matched by name, never by position)")


def compute_rdms(
    data: xr.DataArray,
    *,
    stimulus_dim: str = "stimulus",
    feature_dims: str | Sequence[str],
    metric: Dissimilarity = "correlation",
    fold_dim: str | None = None,
    precision: np.ndarray | xr.DataArray | None = None,
) -> xr.DataArray:
    """Representational dissimilarity matrices, as pair vectors.

    ``(..., stimulus, *feature_dims) -> (..., pair)``: every other dim is a batch dim
    (Dask-backed input stays lazy, one task per batch chunk).

    Parameters
    ----------
    data : xarray.DataArray
        Response patterns. The stimulus dim and the feature dims must each be one chunk.
    stimulus_dim : str
        The dim whose pairs the RDM describes; its coord labels (and coords such as
        ``category``) become the ``stimulus_a``/``stimulus_b`` pair coords.
    feature_dims : str or sequence of str
        Dims flattened into the pattern of a stimulus (e.g. ``"vertex"``).
    metric : Dissimilarity
        ``correlation`` (1 - r), ``abs_correlation`` (1 - |r|), ``euclidean``,
        ``sqeuclidean``, ``cosine`` (as :func:`scipy.spatial.distance.pdist`), or
        ``crossnobis`` (rsatoolbox's definition; needs ``fold_dim``).
    fold_dim : str, optional
        For ``crossnobis``: the dim of independent measurement folds.
    precision : array (feature, feature), optional
        For ``crossnobis``: noise precision matrix over the flattened features
        (identity if None).

    Returns
    -------
    xarray.DataArray
        Dims ``(..., pair)``, float32 for float32 input, float64 otherwise. A constant
        pattern gives NaN for all its pairs under ``correlation``/``abs_correlation``
        (an all-zero pattern under ``cosine``); NaN inputs propagate.

    Examples
    --------
    >>> x = xr.DataArray(np.eye(3), dims=("stimulus", "vertex"), coords={"stimulus": ["a", "b", "c"]})
    >>> compute_rdms(x, feature_dims="vertex", metric="euclidean").round(3).values.tolist()
    [1.414, 1.414, 1.414]
    """
    feature_dims = (feature_dims,) if isinstance(feature_dims, str) else tuple(feature_dims)
    if metric not in DISSIMILARITIES:
        raise ConfigError(f"compute_rdms: metric={metric!r} is not one of {DISSIMILARITIES}")
    core = [stimulus_dim, *feature_dims]
    if metric == "crossnobis":
        if fold_dim is None:
            raise ConfigError("compute_rdms: metric='crossnobis' needs fold_dim=<dim of independent folds>")
        core = [fold_dim, *core]
        if data.sizes[fold_dim] < 2:
            raise InputDataError(f"compute_rdms: crossnobis needs at least 2 folds along {fold_dim!r}, "
                                 f"got {data.sizes[fold_dim]}")
    elif fold_dim is not None or precision is not None:
        raise ConfigError(f"compute_rdms: fold_dim/precision only apply to metric='crossnobis', not {metric!r}")
    _check_dims(data, core, "compute_rdms")
    n_feat = int(np.prod([data.sizes[d] for d in feature_dims]))
    w = None if precision is None else np.asarray(precision, dtype=np.float64)
    if w is not None and w.shape != (n_feat, n_feat):
        raise InputDataError(f"compute_rdms: precision has shape {w.shape}, expected ({n_feat}, {n_feat}) "
                             f"for the flattened feature dims {feature_dims}")
    n = data.sizes[stimulus_dim]
    dtype = np.float32 if data.dtype == np.float32 and metric != "crossnobis" else np.float64

    def _block(x: np.ndarray) -> np.ndarray:
        x = x.reshape(*x.shape[: x.ndim - len(feature_dims)], n_feat)
        with single_threaded():
            if metric == "crossnobis":
                return crossnobis_block(x, w)
            return rdm_block(x, metric).astype(dtype, copy=False)

    stim = data[stimulus_dim] if stimulus_dim in data.coords else np.arange(n)
    attrs = {"metric": metric, "features": ",".join(feature_dims)}
    if data.chunks is None:
        # in memory: the kernel on a view of the values, one DataArray built around its result
        batch = [d for d in data.dims if d not in core]
        coords = {k: c.variable for k, c in data.coords.items() if not set(c.dims) & set(core)}
        return xr.DataArray(_block(data.transpose(*batch, *core).values), dims=(*batch, "pair"),
                            coords={**coords, **pair_coords(stim)}, name="rdm", attrs=attrs)
    out = xr.apply_ufunc(
        _block, data, input_core_dims=[core], output_core_dims=[["pair"]],
        dask="parallelized", output_dtypes=[dtype], dask_gufunc_kwargs={"output_sizes": {"pair": n_pairs(n)}},
    )
    out = out.assign_coords(pair_coords(stim))
    out.name = "rdm"
    out.attrs = attrs
    return out


# ----------------------------------------------------------------------------- comparisons
def compare_rdms(a: xr.DataArray, b: xr.DataArray, *, method: Comparator = "spearman",
                 pair_dim: str = "pair") -> xr.DataArray:
    """Compare every RDM of ``a`` with every RDM of ``b`` (outer product over batch dims).

    ``(A..., pair), (B..., pair) -> (A..., B...)``, e.g. brain ``(region, time)`` x model
    ``(layer,)`` -> ``(region, time, layer)``. ``a`` may be Dask-backed (one task per
    chunk; the pair dim must be one chunk); ``b`` is loaded into memory.

    Parameters
    ----------
    method : Comparator
        ``spearman`` (average ranks for ties, as :func:`scipy.stats.spearmanr`),
        ``pearson``, ``kendall_tau_a``, ``rho_a`` (rsatoolbox), ``cosine``.

    Returns
    -------
    xarray.DataArray
        The comparison values. A vector containing NaN gives NaN; a constant vector
        gives NaN for ``spearman``/``pearson`` (all-zero for ``cosine``) and 0 for
        ``kendall_tau_a``/``rho_a``, whose denominators do not depend on the data.

    Examples
    --------
    >>> a = xr.DataArray([[1.0, 2, 3], [3, 2, 1]], dims=("time", "pair"))
    >>> b = xr.DataArray([[1.0, 2, 4]], dims=("layer", "pair"))
    >>> compare_rdms(a, b).values.round(12).tolist()
    [[1.0], [-1.0]]
    """
    if method not in COMPARATORS:
        raise ConfigError(f"compare_rdms: method={method!r} is not one of {COMPARATORS}")
    check_same_pairs(a, b, pair_dim=pair_dim)
    b_batch = [d for d in b.dims if d != pair_dim]
    clash = [d for d in b_batch if d in a.dims]
    if clash:
        raise ConfigError(f"compare_rdms: a and b share the batch dims {clash}; the result is an outer product, "
                          f"so rename one side, e.g. b.rename({{{clash[0]!r}: {str(clash[0]) + '_model'!r}}})")
    b = b.transpose(*b_batch, pair_dim).compute()
    b_shape = tuple(b.sizes[d] for d in b_batch)
    b_prepared = prepare_block(b.values.reshape(-1, b.sizes[pair_dim]), method)

    def _block(x: np.ndarray, _b: np.ndarray) -> np.ndarray:
        with single_threaded():
            out = compare_block(prepare_block(x, method), b_prepared, method, prepared=True)
        return out.reshape(*x.shape[:-1], *b_shape)

    dtype = np.float32 if a.dtype == np.float32 and b.dtype == np.float32 else np.float64
    out = xr.apply_ufunc(
        _block, a, b, input_core_dims=[[pair_dim], [*b_batch, pair_dim]], output_core_dims=[b_batch],
        dask="parallelized", output_dtypes=[dtype],
        dask_gufunc_kwargs={"output_sizes": dict(zip(b_batch, b_shape, strict=True))},
    )
    out.name = "r"
    out.attrs = {"method": method}
    return out


# ----------------------------------------------------------------------------- noise ceiling
def noise_ceiling(
    rdms: xr.DataArray,
    *,
    subject_dim: str = "subject",
    method: Comparator = "spearman",
    pooling: Pooling = "normalized",
    n_bootstrap: int = 0,
    seed: int = 0,
    pair_dim: str = "pair",
) -> xr.Dataset:
    """Leave-one-out noise ceiling, and optionally a split-half bootstrap.

    ``(subject, ..., pair) -> (...)``.

    Parameters
    ----------
    rdms : xarray.DataArray
        One RDM per subject (and per batch element, e.g. region x time).
    method : Comparator
        Comparator used for the ceiling (the one used for the models).
    pooling : Pooling
        ``normalized`` (rsatoolbox's ``pool_rdm``; matches ``boot_noise_ceiling``) or
        ``mean`` (the raw mean of the subjects' RDMs, as the reference study).
    n_bootstrap : int
        Number of random split halves (0 = none). Each split compares the pool of one
        half of the subjects with the pool of the other half; the same splits serve
        every batch element (seeded by ``seed``, so chunking does not matter).

    Returns
    -------
    xarray.Dataset
        ``lower`` (mean over subjects of each subject vs the pool of the others),
        ``upper`` (each subject vs the pool of all); with ``n_bootstrap``:
        ``split_half`` (mean split-half r), ``split_half_sd``, ``split_half_low``/
        ``split_half_high`` (2.5 and 97.5 percentiles).
    """
    if method not in COMPARATORS:
        raise ConfigError(f"noise_ceiling: method={method!r} is not one of {COMPARATORS}")
    if subject_dim not in rdms.dims or pair_dim not in rdms.dims:
        raise InputDataError(f"noise_ceiling: needs dims {subject_dim!r} and {pair_dim!r}, the RDMs have "
                             f"{tuple(rdms.dims)}")
    n_sub = rdms.sizes[subject_dim]
    if n_sub < 2 or (n_bootstrap and n_sub < 4):
        raise InputDataError(f"noise_ceiling: {n_sub} subject(s) along {subject_dim!r}; leave-one-out needs 2, "
                             "split halves need 4")

    def _loo(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with single_threaded():
            lower, upper = noise_ceiling_block(np.moveaxis(x, -2, 0), method, pooling)
        return lower.mean(axis=0), upper.mean(axis=0)

    core = [[subject_dim, pair_dim]]
    lower, upper = xr.apply_ufunc(_loo, rdms, input_core_dims=core, output_core_dims=[[], []],
                                  dask="parallelized", output_dtypes=[np.float64, np.float64])
    out = xr.Dataset({"lower": lower, "upper": upper})
    if n_bootstrap:
        rng = unit_rng(seed, "noise_ceiling_split_half")
        splits = np.stack([rng.permutation(n_sub) for _ in range(n_bootstrap)])
        half = n_sub // 2

        def _split(x: np.ndarray) -> np.ndarray:
            with single_threaded():
                normed = pool_block(np.moveaxis(x, -2, 0), method, pooling)
                r = np.empty((n_bootstrap,) + normed.shape[1:-1])
                for i, s in enumerate(splits):
                    a = normed[s[:half]].mean(axis=0)
                    b = normed[s[half : 2 * half]].mean(axis=0)
                    r[i] = compare_paired_block(a, b, method)
            return np.moveaxis(r, 0, -1)

        r = xr.apply_ufunc(_split, rdms, input_core_dims=core, output_core_dims=[["split"]], dask="parallelized",
                           output_dtypes=[np.float64], dask_gufunc_kwargs={"output_sizes": {"split": n_bootstrap}})
        out["split_half"] = r.mean("split")
        out["split_half_sd"] = r.std("split", ddof=1)
        out["split_half_low"] = r.quantile(0.025, "split").drop_vars("quantile")
        out["split_half_high"] = r.quantile(0.975, "split").drop_vars("quantile")
    out.attrs = {"method": method, "pooling": pooling, "n_subjects": n_sub, "n_bootstrap": n_bootstrap}
    return out


# ----------------------------------------------------------------------------- statistics
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
    if "p_cluster" in ds and cluster_dim is not None:
        over = cluster_dim if cluster_family == "per_layer" else " x ".join(dict.fromkeys([cluster_dim, *fwe_dims]))
        ds["p_cluster"].attrs = {"description": f"cluster-mass p, clusters along {cluster_dim}, largest null cluster "
                                 f"mass over {over}", "units": "1", "family": over}
    ds["p"].attrs = {"description": "uncorrected permutation p, (k + 1) / (n + 1)", "units": "1", "family": "none"}
    return ds




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
                idx = draw_bootstrap_pairs(rng, n)
                boots[k] = compare_block(a[:, idx], b[:, idx], method).reshape(*a_shape, *b_shape)
        coords = {**{k: v for k, v in data.coords.items() if pair_dim not in v.dims},
                  **{k: v for k, v in model.coords.items() if pair_dim not in v.dims}}
        est = xr.DataArray(full.reshape(*a_shape, *b_shape), dims=a_dims + b_dims, coords=coords)
    elif over == "subject_rdms":
        if model is None or subject_dim not in data.dims:
            raise ConfigError(f"bootstrap: over='subject_rdms' needs subject RDMs with a {subject_dim!r} dim (data has "
                              f"{tuple(data.dims)}) and model=<model RDMs (layer, pair)>")
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
