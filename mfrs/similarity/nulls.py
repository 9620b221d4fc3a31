"""Permutation nulls and cluster masses on plain numpy arrays (block layer)."""

from __future__ import annotations

import numpy as np

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import compare_block, n_pairs
from mfrs.similarity.scratch import scratch
from mfrs.similarity.types import Comparator, PermutationScheme

__all__ = ["draw_pair_permutations", "draw_stimulus_permutations", "null_block", "null_block_labels",
           "cluster_masses", "run_summary", "merge_run_summaries", "family_max", "p_against", "cluster_threshold",
           "cluster_p", "permutation_p"]


def draw_pair_permutations(rng: np.random.Generator, n_stimuli: int, n_permutations: int,
                           scheme: PermutationScheme) -> np.ndarray:
    """Pair-index maps of random permutations: ``-> (permutation, pair)`` int64.

    ``labels``: a uniform random stimulus permutation each, applied to rows and columns
    together. ``legacy_entries``: pair entries shuffled independently (the reference
    study's test; not a valid null for RDMs).
    """
    p = n_pairs(n_stimuli)
    out = np.empty((n_permutations, p), dtype=np.int64)
    for k in range(n_permutations):
        if scheme == "labels":
            K.permuted_pair_index(rng.permutation(n_stimuli).astype(np.int64), out[k])
        else:
            out[k] = rng.permutation(p)
    return out


def draw_stimulus_permutations(rng: np.random.Generator, n_stimuli: int, n_permutations: int) -> np.ndarray:
    """Random stimulus permutations: ``-> (permutation, stimulus)`` int32.

    Row ``k`` is the permutation that :func:`draw_pair_permutations` (``labels``) turns
    into its ``k``-th pair-index map for the same generator state; it takes
    ``n_stimuli`` integers instead of ``n_pairs`` per permutation.
    """
    return np.stack([rng.permutation(n_stimuli) for _ in range(n_permutations)]).astype(np.int32).reshape(
        n_permutations, n_stimuli)


def _stack_rows(rows: int, p: int, itemsize: int, max_bytes: int) -> int:
    return max(1, int(max_bytes // max(1, rows * p * itemsize)))


def null_block(brain: np.ndarray, model: np.ndarray, pair_perms: np.ndarray, method: Comparator,
               *, max_bytes: int = 64 << 20) -> np.ndarray:
    """Null comparisons of permuted brain RDMs with model RDMs, from pair-index maps.

    ``brain (B, pair), model (L, pair), pair_perms (K, pair) -> (K, B, L)`` where
    ``null[k] = compare(brain[:, perm_k], model)``. Inputs are already prepared
    (:func:`mfrs.similarity.blocks.prepare_block`), which commutes with permutation.
    The smaller side is gathered (permuting the model by the inverse permutation is
    the same number) by a Numba kernel, and several permutations are stacked into one
    GEMM. For stimulus relabelling prefer :func:`null_block_labels` (no (K, pair) table).
    """
    n_perm, p = pair_perms.shape
    b, m = brain.shape[0], model.shape[0]
    dtype = np.result_type(brain.dtype, model.dtype)
    out = np.empty((n_perm, b, m), dtype=dtype)
    if method == "kendall_tau_a":
        for k in range(n_perm):
            out[k] = compare_block(brain[:, pair_perms[k]], model, method, prepared=True)
        return out
    gather_brain = b <= m
    src = np.ascontiguousarray(brain if gather_brain else model, dtype=dtype)
    other = np.ascontiguousarray(model if gather_brain else brain, dtype=dtype)
    step = _stack_rows(src.shape[0], p, src.itemsize, max_bytes)
    stack = scratch("null_stack", (min(step, n_perm) * src.shape[0], p), dtype)  # reused: no page faults
    for start in range(0, n_perm, step):
        idx = np.ascontiguousarray(pair_perms[start : start + step], dtype=np.int64)
        if not gather_brain:
            idx = np.ascontiguousarray(np.argsort(idx, axis=1))
        k = idx.shape[0]
        st = stack[: k * src.shape[0]]
        K.gather_pairs(src, idx, st)
        _fill(out[start : start + k], st, other, gather_brain, b, m)
    return np.clip(out, -1.0, 1.0, out=out)


def _fill(out: np.ndarray, stack: np.ndarray, other: np.ndarray, gather_brain: bool, b: int, m: int) -> None:
    """One GEMM of a permuted stack against the other side into ``out (k, B, L)``."""
    k = out.shape[0]
    if gather_brain:
        np.matmul(stack, other.T, out=out.reshape(k * b, m))
    else:
        out[...] = (other @ stack.T).reshape(b, k, m).transpose(1, 0, 2)


def null_block_labels(brain: np.ndarray, model: np.ndarray, perms: np.ndarray, method: Comparator,
                      *, max_bytes: int = 64 << 20) -> np.ndarray:
    """Null comparisons under stimulus relabelling (rows and columns of the RDM together).

    ``brain (B, pair), model (L, pair), perms (K, stimulus) -> (K, B, L)``, the same
    numbers as :func:`null_block` with the pair maps of ``perms``. The smaller side is
    relabelled (the model by the inverse permutations) straight from its square
    matrix by :func:`mfrs.similarity._kernels.gather_relabelled`; stacks of
    permutations go through one GEMM each.
    """
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    n_perm, n = perms.shape
    p = brain.shape[1]
    if n_pairs(n) != p:
        raise ValueError(f"null_block_labels: permutations of {n} stimuli do not fit {p} pairs")
    if method == "kendall_tau_a":
        idx = np.empty((n_perm, p), np.int64)
        for k in range(n_perm):
            K.permuted_pair_index(perms[k], idx[k])
        return null_block(brain, model, idx, method, max_bytes=max_bytes)
    b, m = brain.shape[0], model.shape[0]
    dtype = np.result_type(brain.dtype, model.dtype)
    out = np.empty((n_perm, b, m), dtype=dtype)
    gather_brain = b <= m
    src = np.ascontiguousarray(brain if gather_brain else model, dtype=dtype)
    other = brain if not gather_brain else model
    other = other if other.dtype == dtype else other.astype(dtype)
    if not gather_brain:
        perms = np.ascontiguousarray(np.argsort(perms, axis=1))
    step = _stack_rows(src.shape[0], p, src.itemsize, max_bytes)
    stack = scratch("null_stack", (min(step, n_perm) * src.shape[0], p), dtype)  # reused: no page faults
    square = scratch("null_square", (n, n), dtype)
    for start in range(0, n_perm, step):
        chunk = perms[start : start + step]
        k = chunk.shape[0]
        st = stack[: k * src.shape[0]]
        K.gather_relabelled(src, chunk, square, st)
        _fill(out[start : start + k], st, other, gather_brain, b, m)
    return np.clip(out, -1.0, 1.0, out=out)


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


def family_max(null: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Per-permutation maximum over the family ``axes`` of ``null (perm, ...)`` (kept as size 1); NaN never wins."""
    return np.max(np.where(np.isnan(null), -np.inf, null), axis=tuple(1 + a for a in axes), keepdims=True)


def p_against(null_stat: np.ndarray, stat: np.ndarray) -> np.ndarray:
    """``(k + 1) / (n + 1)``, k the permutations whose ``null_stat (perm, ...)`` reaches ``stat``; NaN stat -> NaN."""
    k = (null_stat >= stat[None]).sum(axis=0)
    return np.where(np.isnan(stat), np.nan, (k + 1.0) / (null_stat.shape[0] + 1.0))


def cluster_threshold(null_stat: np.ndarray, alpha: float) -> np.ndarray:
    """Pointwise cluster-forming threshold: the ``1 - alpha`` quantile of ``null_stat (perm, ...)``."""
    return np.quantile(null_stat, 1.0 - alpha, axis=0)


def cluster_p(stat: np.ndarray, threshold: np.ndarray, null_max: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    """Cluster mass and its p: runs along ``axis`` of ``stat > threshold`` against ``null_max (perm, ...)``.

    ``null_max`` is the largest run mass per permutation of each series (``axis``
    dropped). Points outside clusters get p = 1; NaN statistics get NaN.
    """
    obs_t = np.moveaxis(stat, axis, -1)
    mass_at, _ = cluster_masses(np.nan_to_num(obs_t), obs_t > np.moveaxis(threshold, axis, -1))
    k = (null_max[..., None] >= mass_at[None]).sum(axis=0)
    p = np.where(mass_at > 0, (k + 1.0) / (null_max.shape[0] + 1.0), 1.0)
    return {"cluster_mass": np.moveaxis(mass_at, -1, axis),
            "p_cluster": np.where(np.isnan(stat), np.nan, np.moveaxis(p, -1, axis))}


def permutation_p(obs: np.ndarray, null: np.ndarray, *, fwe_axes: tuple[int, ...] = (),
                  cluster_axis: int | None = None, cluster_alpha: float = 0.05,
                  two_sided: bool = False) -> dict[str, np.ndarray]:
    """Permutation p-values of one family of statistics, ``(k + 1) / (n + 1)``.

    ``obs (...), null (perm, ...) -> p (...)`` and optionally ``p_fwe (...)`` (max
    statistic over ``fwe_axes`` of ``obs``, per permutation) and ``p_cluster`` /
    ``cluster_mass (...)``: runs along ``cluster_axis`` of points above the pointwise
    ``1 - cluster_alpha`` null quantile; each run's mass (sum of the statistic) is
    compared with the per-permutation largest run mass of the same series. NaN
    observations give NaN p; NaN nulls never count as extreme.
    """
    stat, null_s = (np.abs(obs), np.abs(null)) if two_sided else (obs, null)
    out = {"p": p_against(null_s, stat)}
    if fwe_axes:
        out["p_fwe"] = p_against(family_max(null_s, fwe_axes), stat)
    if cluster_axis is not None:
        thr = cluster_threshold(null_s, cluster_alpha)
        null_t = np.moveaxis(null_s, cluster_axis + 1, -1)
        _, null_max = cluster_masses(np.nan_to_num(null_t), null_t > np.moveaxis(thr, cluster_axis, -1)[None])
        out.update(cluster_p(stat, thr, null_max, cluster_axis))
    return out
