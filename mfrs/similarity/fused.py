"""The fused block kernel: brain RDMs of one region x time block for all subjects, reduced at once.

``(subject, time, stimulus, feature)`` patterns -> RDMs -> ranks -> r against every
layer, the subject-mean RDM's r, leave-one-out (and split-half) noise ceilings and
permutation nulls; only these reductions leave the function, never the RDM movie
(unless a ``rdm_sink`` asks for the RDMs).

Fast path (``spearman``, ``pearson``, ``cosine``): a time batch of RDMs for every
subject is made with one ``syrk`` each, prepared (ranked, centred, unit norm) in one
batched call, and compared with all layers in **one** GEMM against the layers'
``(pair, layer)`` matrix. The noise ceiling reuses the prepared vectors: the pool of
a set of subjects is a weighted sum of them (for Spearman the weights are the norms
of the centred ranks, which restores the raw ranks up to a constant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import (
    compare_block,
    noise_ceiling_block,
    prepare_block,
    rdm_block,
    rdm_into,
    spearman_prepare,
)
from mfrs.similarity.inference import family_max, p_against
from mfrs.similarity.nulls import null_block, null_block_labels, null_block_labels_torch
from mfrs.similarity.scratch import scratch
from mfrs.similarity.types import FAST_METHODS, Comparator, Dissimilarity, Pooling

__all__ = ["rsa_block", "model_matrix", "FAST_METHODS"]

#: ``rdm_sink(t0, rdms)``: receives the raw RDMs ``(subject, time_batch, pair)`` of times ``t0:``
#: (a reused buffer: copy what you keep).
RdmSink = Callable[[int, np.ndarray], None]


def model_matrix(prepared: np.ndarray) -> np.ndarray:
    """Prepared layer RDMs ``(layer, pair)`` laid out for the fused GEMM (Fortran order, same values).

    Pass the result as ``model`` to :func:`rsa_block` to avoid a transposed copy per call.
    """
    return np.asfortranarray(prepared)


def _prepare(v: np.ndarray, method: Comparator) -> tuple[np.ndarray, np.ndarray]:
    """Prepared rows and the pooling weight of each row (``(..., pair) -> (..., pair), (...)``)."""
    if method == "spearman":
        return spearman_prepare(v)
    return prepare_block(v, method), np.ones(v.shape[:-1])


def _pool_base(u: np.ndarray, w: np.ndarray, method: Comparator) -> np.ndarray:
    """Vectors whose sums are the pooled normalised RDMs (up to a constant and a positive scale).

    For Spearman: twice the raw ranks, exact integers recovered from ``u * w + (n + 1) / 2``,
    so that ties in sums of ranks stay exact ties (float rounding would break them).
    """
    if method != "spearman":
        return u
    n = u.shape[-1]
    return np.rint(2.0 * (u * w[..., None].astype(u.dtype) + np.asarray((n + 1) / 2.0, u.dtype)))


def _rowdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise inner products ``(..., pair), (..., pair) -> (...)``; ``b`` may broadcast over a's first dim."""
    shape = a.shape[:-1]
    a2 = np.ascontiguousarray(a.reshape(-1, a.shape[-1]))
    b2 = np.ascontiguousarray(b.reshape(-1, b.shape[-1]), dtype=a2.dtype)
    out = np.empty(a2.shape[0])
    K.row_dots(a2, b2, out)
    return np.clip(out, -1.0, 1.0).reshape(shape)


def _ceiling(rdms: np.ndarray, u: np.ndarray, w: np.ndarray, method: Comparator,
             pooling: Pooling) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out lower/upper per subject ``(subject, time)`` from prepared vectors ``u (subject, time, pair)``.

    The pools (of raw RDMs for ``mean``, of normalised ones otherwise) are formed by one
    Numba pass into reused buffers and prepared in place.
    """
    n_sub, tb, p = u.shape
    base, weights = (rdms, np.ones((n_sub, tb))) if pooling == "mean" else (u, w)
    loo = scratch("ceiling_loo", u.shape, u.dtype)
    total = scratch("ceiling_total", (tb, p), u.dtype)
    K.leave_one_out_pools(base, np.ascontiguousarray(weights, dtype=np.float64), (p + 1) / 2.0,
                          pooling != "mean" and method == "spearman", loo, total)
    loo_u, all_u = _prepare_in_place(loo, method), _prepare_in_place(total, method)
    return _rowdot(u, loo_u), _rowdot(u, all_u[None])


def _prepare_in_place(v: np.ndarray, method: Comparator) -> np.ndarray:
    """Prepared vectors of ``v``, written over it where the comparator allows."""
    if method == "spearman":
        return spearman_prepare(v, out=v)[0]
    return _prepare(v, method)[0]


def _split_half(rdms: np.ndarray, u: np.ndarray, w: np.ndarray, method: Comparator, pooling: Pooling,
                splits: np.ndarray) -> np.ndarray:
    """Split-half r ``(split, time)``: pool of one half of the subjects against the other half."""
    half = rdms.shape[0] // 2
    base = rdms if pooling == "mean" else _pool_base(u, w, method)
    out = np.empty((splits.shape[0], rdms.shape[1]))
    for i, s in enumerate(splits):
        a = base[s[:half]].sum(axis=0, dtype=np.float64).astype(u.dtype)
        b = base[s[half : 2 * half]].sum(axis=0, dtype=np.float64).astype(u.dtype)
        out[i] = _rowdot(_prepare(a, method)[0], _prepare(b, method)[0])
    return out


def _fast_batch(x: np.ndarray, metric: Dissimilarity, method: Comparator, model_t: np.ndarray,
                r_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RDMs, their prepared vectors and r against the layers for one time batch, in reused buffers.

    ``(subject, tb, stimulus, feature) -> rdms (subject, tb, pair)``, prepared vectors
    ``u (subject + 1, tb, pair)`` and pooling weights ``w (subject + 1, tb)`` (the group
    mean RDM last); ``r_out (subject + 1, tb, layer)`` receives r. The arrays live in
    per-thread scratch buffers, valid until the next call.
    """
    n_sub, tb = x.shape[:2]
    n = x.shape[2]
    p = n * (n - 1) // 2
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    both = scratch("fused_rdms", (n_sub + 1, tb, p), dtype)  # subject RDMs, then the group mean RDM
    rdm_into(x, metric, both[:n_sub])
    K.mean_first_axis(both[:n_sub], both[n_sub])
    if method == "spearman":
        u, w = spearman_prepare(both, out=scratch("fused_u", both.shape, dtype))
    else:
        u, w = _prepare(both, method)
    flat = u.reshape(-1, p)
    rr = scratch("fused_r", (flat.shape[0], model_t.shape[1]), flat.dtype)
    np.matmul(flat, model_t if model_t.dtype == flat.dtype else model_t.astype(flat.dtype), out=rr)
    np.clip(rr, -1.0, 1.0, out=rr)
    r_out[...] = rr.reshape(n_sub + 1, tb, -1)
    return both[:n_sub], u, w


def _bootstrap_r(rdms: np.ndarray, weights: np.ndarray, model: np.ndarray, method: Comparator,
                 samples_at_once: int = 16) -> np.ndarray:
    """r of bootstrap samples' mean RDMs: ``(subject, tb, pair), (sample, subject) -> (sample, tb, layer)``.

    Samples go through in groups so that at most ``samples_at_once`` x tb RDMs are held.
    """
    out = np.empty((weights.shape[0], rdms.shape[1], model.shape[0]), np.float32)
    flat = rdms.reshape(rdms.shape[0], -1)
    for start in range(0, weights.shape[0], samples_at_once):
        w = weights[start : start + samples_at_once].astype(rdms.dtype)
        means = (w @ flat).reshape(w.shape[0], *rdms.shape[1:])  # (samples, tb, pair)
        out[start : start + w.shape[0]] = compare_block(prepare_block(means, method), model, method, prepared=True)
    return out


def rsa_block(
    x: np.ndarray,
    model: np.ndarray,
    *,
    metric: Dissimilarity = "correlation",
    method: Comparator = "spearman",
    pooling: Pooling = "normalized",
    pair_perms: np.ndarray | None = None,
    perms: np.ndarray | None = None,
    time_batch: int = 8,
    ceiling: bool = True,
    splits: np.ndarray | None = None,
    return_null: bool = False,
    rdm_sink: RdmSink | None = None,
    boot_weights: np.ndarray | None = None,
    null_device: str | None = None,
) -> dict[str, np.ndarray]:
    """RSA of one block, all subjects, reduced on the fly.

    ``(subject, time, stimulus, feature), (layer, pair) -> r (subject + 1, time, layer)``
    (the last row is the subject-mean RDM), ``noise_ceiling_lower``/``_upper (time,)``,
    with ``splits``: ``noise_ceiling_split_half (time,)``, and with permutations:
    ``p`` and ``p_fwe_layer (time, layer)`` of the subject-mean RDM (the same
    permutations for every time point and layer) and, if ``return_null``,
    ``null (perm, time, layer)``.

    Parameters
    ----------
    model : ndarray
        Layer RDMs already passed through :func:`mfrs.similarity.blocks.prepare_block`
        for ``method`` (done once per stage, not per block); ideally through
        :func:`model_matrix` too.
    pair_perms, perms : ndarray, optional
        Permutations as pair-index maps ``(perm, pair)`` or, cheaper, as stimulus
        permutations ``(perm, stimulus)`` (relabelling rows and columns together).
    time_batch : int
        Time points whose RDMs are held at once: memory is about
        ``4 * (subject + 1) * time_batch * pair * 4`` bytes (see
        :func:`mfrs.stages.similarity.block_memory`).
    splits : ndarray (split, subject), optional
        Subject permutations for the split-half noise ceiling: the first half of each
        row against the second half.
    rdm_sink : callable, optional
        Called as ``rdm_sink(t0, rdms)`` with each batch's raw RDMs ``(subject, batch, pair)``.
    boot_weights : ndarray (sample, subject), optional
        Subject bootstrap (:func:`mfrs.similarity.group.draw_bootstrap_weights`): RSA of
        each sample's weighted mean RDM against every layer, returned as
        ``boot_r (sample, time, layer)``.
    null_device : str, optional
        A torch device (``"cuda"`` on a GPU worker) for the label-permutation null
        (:func:`mfrs.similarity.nulls.null_block_labels_torch`); None: numpy on this core.
    """
    n_sub, n_time = x.shape[:2]
    n_layer = model.shape[0]
    fast = method in FAST_METHODS
    model_t = model.T  # (pair, layer), a view for the fast methods; C-contiguous when model came from model_matrix
    r = np.empty((n_sub + 1, n_time, n_layer), np.float32)
    lower = np.full(n_time, np.nan, np.float32)
    upper = np.full(n_time, np.nan, np.float32)
    split_half = np.full(n_time, np.nan, np.float32) if splits is not None else None
    n_perm = len(perms) if perms is not None else (len(pair_perms) if pair_perms is not None else 0)
    null_all = np.empty((n_perm, n_time, n_layer), np.float32) if n_perm else None
    boot_r = np.empty((len(boot_weights), n_time, n_layer), np.float32) if boot_weights is not None else None
    for t0 in range(0, n_time, time_batch):
        tb = slice(t0, min(t0 + time_batch, n_time))
        if fast:
            rdms, u, w = _fast_batch(x[:, tb], metric, method, model_t, r[:, tb])
            group_u = u[-1]
            if rdm_sink is not None:
                rdm_sink(t0, rdms)
            if ceiling and n_sub >= 2:
                lo, up = _ceiling(rdms, u[:-1], w[:-1], method, pooling)
                lower[tb], upper[tb] = lo.mean(axis=0), up.mean(axis=0)
            if split_half is not None and splits is not None and n_sub >= 2:
                split_half[tb] = _split_half(rdms, u[:-1], w[:-1], method, pooling, splits).mean(axis=0)
        else:
            rdms = rdm_block(x[:, tb], metric)  # (subject, tb, pair)
            if rdm_sink is not None:
                rdm_sink(t0, rdms)
            group = rdms.mean(axis=0, dtype=np.float64).astype(rdms.dtype)[None]
            both = np.concatenate([rdms, group], axis=0)
            prepared = prepare_block(both, method)
            r[:, tb] = compare_block(prepared, model, method, prepared=True)
            group_u = prepared[-1]
            if ceiling and n_sub >= 2:
                lo, up = noise_ceiling_block(rdms, method, pooling)
                lower[tb], upper[tb] = lo.mean(axis=0), up.mean(axis=0)
            if split_half is not None:
                raise ValueError(f"rsa_block: the split-half noise ceiling needs one of {FAST_METHODS}, "
                                 f"not {method!r}")
        if boot_r is not None and boot_weights is not None:
            boot_r[:, tb] = _bootstrap_r(rdms, boot_weights, model, method)
        if null_all is not None:
            if perms is not None and null_device is not None:
                null_all[:, tb] = null_block_labels_torch(group_u, model, perms, method, device=null_device)
            elif perms is not None:
                null_all[:, tb] = null_block_labels(group_u, model, perms, method)
            elif pair_perms is not None:
                null_all[:, tb] = null_block(group_u, model, pair_perms, method)
    out = {"r": r, "noise_ceiling_lower": lower, "noise_ceiling_upper": upper}
    if boot_r is not None:
        out["boot_r"] = boot_r
    if split_half is not None:
        out["noise_ceiling_split_half"] = split_half
    if null_all is not None:
        obs = r[-1]
        out["p"] = p_against(null_all, obs).astype(np.float32)
        out["p_fwe_layer"] = p_against(family_max(null_all, (1,)), obs).astype(np.float32)
        if return_null:
            out["null"] = null_all
    return out
