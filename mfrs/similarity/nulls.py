"""Permutation nulls and cluster masses on plain numpy arrays (block layer)."""

from __future__ import annotations

import numpy as np

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import compare_block, n_pairs
from mfrs.similarity.scratch import scratch
from mfrs.similarity.types import Comparator, PermutationScheme

__all__ = ["draw_pair_permutations", "draw_stimulus_permutations", "null_block", "null_block_labels",
           "cluster_masses", "permutation_p"]


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


def cluster_masses(values: np.ndarray, supra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masses of runs of supra-threshold points along the last axis.

    ``(..., time), (..., time) -> mass_at (..., time), max_mass (...)``: ``mass_at`` is
    the summed value of the run containing each point (0 outside runs), ``max_mass``
    the largest run mass of each series (0 if none).
    """
    shape = values.shape
    v = values.reshape(-1, shape[-1])
    s = supra.reshape(-1, shape[-1]).astype(bool)
    starts = s & ~np.concatenate([np.zeros((s.shape[0], 1), bool), s[:, :-1]], axis=1)
    cid = np.cumsum(starts, axis=1) * s
    n_c = int(cid.max()) + 1 if cid.size else 1
    masses = np.zeros((v.shape[0], n_c))
    rows = np.broadcast_to(np.arange(v.shape[0])[:, None], cid.shape)
    np.add.at(masses, (rows[s], cid[s]), v[s])
    mass_at = np.take_along_axis(masses, cid, axis=1) * s
    return mass_at.reshape(shape), masses[:, 1:].max(axis=1, initial=0.0).reshape(shape[:-1])


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
    n_perm = null.shape[0]
    stat, null_s = (np.abs(obs), np.abs(null)) if two_sided else (obs, null)
    invalid = np.isnan(stat)

    def _p(k: np.ndarray) -> np.ndarray:
        return np.where(invalid, np.nan, (k + 1.0) / (n_perm + 1.0))

    out = {"p": _p((null_s >= stat[None]).sum(axis=0))}
    if fwe_axes:
        axes = tuple(1 + a for a in fwe_axes)
        max_null = np.nanmax(np.where(np.isnan(null_s), -np.inf, null_s), axis=axes, keepdims=True)
        out["p_fwe"] = _p((max_null >= stat[None]).sum(axis=0))
    if cluster_axis is not None:
        thr = np.quantile(null_s, 1.0 - cluster_alpha, axis=0)
        obs_t = np.moveaxis(stat, cluster_axis, -1)
        null_t = np.moveaxis(null_s, cluster_axis + 1, -1)
        thr_t = np.moveaxis(thr, cluster_axis, -1)
        mass_at, _ = cluster_masses(np.nan_to_num(obs_t), obs_t > thr_t)
        _, null_max = cluster_masses(np.nan_to_num(null_t), null_t > thr_t[None])
        k = (null_max[..., None] >= mass_at[None]).sum(axis=0)
        p_cl = np.where(mass_at > 0, (k + 1.0) / (n_perm + 1.0), 1.0)
        out["cluster_mass"] = np.moveaxis(mass_at, -1, cluster_axis)
        out["p_cluster"] = np.where(invalid, np.nan, np.moveaxis(p_cl, -1, cluster_axis))
    return out
