"""Every p-value and family-wise computation of the similarity engine (block layer, plain numpy).

One home for: permutation p ``(k + 1) / (n + 1)``, the max statistic over a family,
cluster masses along one axis and their family-wise null (the largest cluster mass
over every series of the family, per permutation), run summaries that let a family
cut into blocks be merged exactly, and Benjamini-Hochberg FDR. The nulls themselves
are made in :mod:`mfrs.similarity.nulls` (stimulus relabelling) and
:mod:`mfrs.similarity.group` (subject sign flips); whatever the null, its p-values
come from here.

Conventions: ``null (perm, ...)`` is aligned with ``stat (...)``; NaN statistics give
NaN p; NaN nulls never count as extreme.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "p_against",
    "p_from_counts",
    "count_extreme",
    "family_max",
    "fwe_p",
    "cluster_threshold",
    "cluster_masses",
    "run_summary",
    "merge_run_summaries",
    "cluster_p",
    "cluster_family_axes",
    "permutation_p",
    "fdr_bh",
    "paired_t_p",
    "RUN_PARTS",
]

#: Parts of a :func:`run_summary`, in the order :func:`merge_run_summaries` takes them.
RUN_PARTS: tuple[str, ...] = ("inner", "left", "right", "full")


def p_against(null_stat: np.ndarray, stat: np.ndarray) -> np.ndarray:
    """``(k + 1) / (n + 1)``, k the permutations whose ``null_stat (perm, ...)`` reaches ``stat``.

    ``null_stat`` may hold size-1 dims (a family maximum kept with ``keepdims``) that
    broadcast against ``stat``. NaN ``stat`` -> NaN.

    Examples
    --------
    >>> p_against(np.array([[0.1], [0.5], [0.9]]), np.array([0.6])).tolist()
    [0.5]
    """
    return p_from_counts(count_extreme(null_stat, stat), null_stat.shape[0], stat)


def count_extreme(null_stat: np.ndarray, stat: np.ndarray) -> np.ndarray:
    """How many of ``null_stat (perm, ...)`` reach ``stat`` (NaN nulls never do): the k of :func:`p_from_counts`.

    Sum it over chunks of a null too large to hold at once.
    """
    return (null_stat >= stat[None]).sum(axis=0)


def p_from_counts(k: np.ndarray, n_null: int, stat: np.ndarray) -> np.ndarray:
    """``(k + 1) / (n_null + 1)`` where ``stat`` is a number, NaN where it is NaN (k from :func:`count_extreme`)."""
    return np.where(np.isnan(stat), np.nan, (np.asarray(k) + 1.0) / (n_null + 1.0))


def family_max(null: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Per-permutation maximum over the family ``axes`` of ``null (perm, ...)`` (kept as size 1); NaN never wins.

    ``axes`` index the dims after ``perm`` (0 = the first dim of the statistic).
    """
    if not axes:
        return null
    return np.max(np.where(np.isnan(null), -np.inf, null), axis=tuple(1 + a for a in axes), keepdims=True)


def fwe_p(null: np.ndarray, stat: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Family-wise p by the max statistic: ``stat`` against the per-permutation maximum of ``null`` over ``axes``.

    ``null (perm, ...)`` is the null itself, or per-block maxima of it over the parts of
    the family (a maximum of block maxima is the family maximum), the blocks along
    ``axes`` and size 1 where a block spans the family (see :func:`family_max`).

    Examples
    --------
    >>> null = np.array([[0.2, 0.9], [0.1, 0.3], [0.5, 0.4]])  # (perm, time)
    >>> fwe_p(null, np.array([0.8, 0.45]), axes=(0,)).tolist()
    [0.5, 0.75]
    """
    return p_against(family_max(null, axes), stat)


def cluster_threshold(null_stat: np.ndarray, alpha: float) -> np.ndarray:
    """Pointwise cluster-forming threshold: the ``1 - alpha`` quantile of ``null_stat (perm, ...)``."""
    return np.quantile(null_stat, 1.0 - alpha, axis=0)


def _runs(values: np.ndarray, supra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run ids along the last axis (0 outside runs) and the mass of each run: ``(S, T) -> (S, T), (S, 1 + runs)``."""
    starts = supra & ~np.concatenate([np.zeros((supra.shape[0], 1), bool), supra[:, :-1]], axis=1)
    cid = np.cumsum(starts, axis=1) * supra
    n_c = int(cid.max()) + 1 if cid.size else 1
    masses = np.zeros((values.shape[0], n_c))
    rows = np.broadcast_to(np.arange(values.shape[0])[:, None], cid.shape)
    np.add.at(masses, (rows[supra], cid[supra]), values[supra])
    return cid, masses


def cluster_masses(values: np.ndarray, supra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masses of runs of supra-threshold points along the last axis.

    ``(..., time), (..., time) -> mass_at (..., time), max_mass (...)``: ``mass_at`` is
    the summed value of the run containing each point (0 outside runs), ``max_mass``
    the largest run mass of each series (0 if none).
    """
    shape = values.shape
    s = supra.reshape(-1, shape[-1]).astype(bool)
    cid, masses = _runs(values.reshape(-1, shape[-1]), s)
    mass_at = np.take_along_axis(masses, cid, axis=1) * s
    return mass_at.reshape(shape), masses[:, 1:].max(axis=1, initial=0.0).reshape(shape[:-1])


def run_summary(values: np.ndarray, supra: np.ndarray) -> dict[str, np.ndarray]:
    """What a time block contributes to the largest run mass of a longer series.

    ``(..., time), (..., time) -> (...)`` each: ``inner`` the largest mass of the runs
    touching neither end of the block (0 if none), ``left``/``right`` the mass of the
    run touching the first/last point (NaN if that point is not supra-threshold) and
    ``full`` 1.0 when every point is supra-threshold (then ``left == right`` is the
    block's total). :func:`merge_run_summaries` joins runs across block edges exactly.
    """
    shape = values.shape
    v = np.nan_to_num(values.reshape(-1, shape[-1]))
    s = supra.reshape(-1, shape[-1]).astype(bool)
    cid, masses = _runs(v, s)
    rows = np.arange(v.shape[0])
    first, last = cid[:, 0], cid[:, -1]
    left = np.where(first > 0, masses[rows, first], np.nan)
    right = np.where(last > 0, masses[rows, last], np.nan)
    ids = np.arange(masses.shape[1])[None]
    inner_ok = (ids > 0) & (ids != first[:, None]) & (ids != last[:, None])
    inner = np.where(inner_ok, masses, -np.inf).max(axis=1, initial=0.0)
    full = s.all(axis=1).astype(float)
    return {k: a.reshape(shape[:-1]) for k, a in
            (("inner", inner), ("left", left), ("right", right), ("full", full))}


def merge_run_summaries(inner: np.ndarray, left: np.ndarray, right: np.ndarray, full: np.ndarray,
                        axis: int = -1) -> np.ndarray:
    """Largest run mass of series cut into consecutive blocks, from each block's :func:`run_summary`.

    The arrays hold the blocks, in time order, along ``axis``; the result drops it.
    The same number as :func:`cluster_masses` on the whole series.
    """
    inner, left, right, full = (np.moveaxis(np.asarray(a, float), axis, 0) for a in (inner, left, right, full))
    best = np.zeros(inner.shape[1:])
    open_run = np.full(inner.shape[1:], np.nan)  # mass of the run reaching the end of the blocks so far
    for b in range(inner.shape[0]):
        is_full = full[b] > 0
        joined = np.where(np.isnan(open_run), 0.0, open_run) + np.where(np.isnan(left[b]), 0.0, left[b])
        closes = ~is_full & ~(np.isnan(open_run) & np.isnan(left[b]))
        best = np.where(closes, np.maximum(best, joined), best)
        best = np.where(is_full, best, np.maximum(best, inner[b]))
        open_run = np.where(is_full, joined, right[b])
    return np.maximum(best, np.where(np.isnan(open_run), 0.0, open_run))


def cluster_p(stat: np.ndarray, threshold: np.ndarray, null_max: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    """Cluster mass and its p: runs along ``axis`` of ``stat > threshold`` against ``null_max (perm, ...)``.

    ``null_max`` is the largest run mass per permutation over each family (``axis``
    dropped; dims of size 1 where the family spans them, see :func:`family_max`).
    Points outside clusters get p = 1; NaN statistics get NaN.
    """
    obs_t = np.moveaxis(stat, axis, -1)
    mass_at, _ = cluster_masses(np.nan_to_num(obs_t), obs_t > np.moveaxis(threshold, axis, -1))
    k = (null_max[..., None] >= mass_at[None]).sum(axis=0)
    p = np.where(mass_at > 0, (k + 1.0) / (null_max.shape[0] + 1.0), 1.0)
    return {"cluster_mass": np.moveaxis(mass_at, -1, axis),
            "p_cluster": np.where(np.isnan(stat), np.nan, np.moveaxis(p, -1, axis))}


def cluster_family_axes(fwe_axes: tuple[int, ...], cluster_axis: int, per_series: bool) -> tuple[int, ...]:
    """Axes of the statistic (``cluster_axis`` dropped) over which the largest null cluster mass is maximised.

    The family of the cluster test is the family of ``p_fwe`` with clusters formed
    along ``cluster_axis``; with ``per_series`` every series along ``cluster_axis``
    is its own family (no max over other axes).
    """
    if per_series:
        return ()
    return tuple(a - (a > cluster_axis) for a in fwe_axes if a != cluster_axis)


def permutation_p(obs: np.ndarray, null: np.ndarray, *, fwe_axes: tuple[int, ...] = (),
                  cluster_axis: int | None = None, cluster_alpha: float = 0.05,
                  cluster_per_series: bool = False, two_sided: bool = False) -> dict[str, np.ndarray]:
    """Permutation p-values of one family of statistics, ``(k + 1) / (n + 1)``.

    ``obs (...), null (perm, ...) -> p (...)`` and optionally ``p_fwe (...)`` (max
    statistic over ``fwe_axes`` of ``obs``, per permutation) and ``p_cluster`` /
    ``cluster_mass (...)``: runs along ``cluster_axis`` of points above the pointwise
    ``1 - cluster_alpha`` null quantile; each run's mass (sum of the statistic) is
    compared with the per-permutation largest run mass over every series of the family
    (``fwe_axes`` besides ``cluster_axis``), or of its own series with
    ``cluster_per_series``. NaN observations give NaN p; NaN nulls never count as extreme.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> res = permutation_p(np.array([3.0, 0.0]), rng.standard_normal((99, 2)), fwe_axes=(0,))
    >>> res["p_fwe"].round(2).tolist()
    [0.01, 0.76]
    """
    stat, null_s = (np.abs(obs), np.abs(null)) if two_sided else (obs, null)
    out = {"p": p_against(null_s, stat)}
    if fwe_axes:
        out["p_fwe"] = fwe_p(null_s, stat, fwe_axes)
    if cluster_axis is not None:
        thr = cluster_threshold(null_s, cluster_alpha)
        null_t = np.moveaxis(null_s, cluster_axis + 1, -1)
        _, null_max = cluster_masses(np.nan_to_num(null_t), null_t > np.moveaxis(thr, cluster_axis, -1)[None])
        null_max = family_max(null_max, cluster_family_axes(fwe_axes, cluster_axis, cluster_per_series))
        out.update(cluster_p(stat, thr, null_max, cluster_axis))
    return out


def fdr_bh(p: np.ndarray, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q) over the family ``axes`` (all axes when None).

    The same numbers as :func:`scipy.stats.false_discovery_control` (``method='bh'``)
    on each family; NaN p are left out of their family and stay NaN.

    Examples
    --------
    >>> fdr_bh(np.array([0.01, 0.04, 0.03, 0.5])).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(p, dtype=float)
    axes = tuple(range(p.ndim)) if axes is None else tuple(axes)
    rest = [a for a in range(p.ndim) if a not in axes]
    moved = np.moveaxis(p, rest + list(axes), list(range(p.ndim)))
    flat = moved.reshape(int(np.prod([p.shape[a] for a in rest], dtype=int)), -1)
    out = np.full(flat.shape, np.nan)
    for i, row in enumerate(flat):
        ok = np.flatnonzero(~np.isnan(row))
        m = ok.size
        if m == 0:
            continue
        order = ok[np.argsort(row[ok], kind="stable")]
        scaled = row[order] * m / np.arange(1, m + 1)
        out[i, order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return np.moveaxis(out.reshape(moved.shape), list(range(p.ndim)), rest + list(axes))


def paired_t_p(d: np.ndarray, *, axis: int = 0, two_sided: bool = True) -> np.ndarray:
    """p of a one-sample t test of paired differences ``d`` (subjects along ``axis``) against 0.

    ``t = mean(d) / sqrt(var(d, ddof=1) / n)`` with ``n - 1`` degrees of freedom, as
    :func:`scipy.stats.ttest_1samp` and rsatoolbox's ``Result.test_pairwise('t-test')``
    of fixed models evaluated per subject; ``two_sided=False`` asks whether the mean
    exceeds 0. NaN where any difference is NaN.
    """
    from scipy import stats

    d = np.moveaxis(np.asarray(d, dtype=float), axis, 0)
    n = d.shape[0]
    with np.errstate(all="ignore"):
        t = d.mean(axis=0) / np.sqrt(np.maximum(d.var(axis=0, ddof=1), np.finfo(float).eps) / n)
    p = 2 * stats.t.sf(np.abs(t), n - 1) if two_sided else stats.t.sf(t, n - 1)
    return np.where(np.isnan(t), np.nan, p)
