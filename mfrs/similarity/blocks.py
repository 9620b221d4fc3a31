"""Block functions: one block of RDM work on plain numpy arrays (no labels, no Dask).

Shapes are stated with dim names for readability only; the arrays carry none.
``...`` are batch dims (e.g. region x time of one block). float32 input is computed
in float32 (the fast path); anything else in float64.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from mfrs.errors import InputDataError
from mfrs.similarity import _kernels as K
from mfrs.similarity.scratch import scratch
from mfrs.similarity.types import Comparator, Dissimilarity, Pooling

__all__ = [
    "n_pairs",
    "n_stimuli_of_pairs",
    "triu_pairs",
    "as_float",
    "normalize_patterns",
    "rdm_block",
    "rdm_into",
    "crossnobis_block",
    "rank_block",
    "spearman_prepare",
    "prepare_block",
    "compare_block",
    "compare_paired_block",
    "pool_block",
    "noise_ceiling_block",
]

#: Largest batch of Gram matrices held at once (428 stimuli -> 16 x 0.7 MB).
_GRAM_BATCH = 16


def n_pairs(n: int) -> int:
    """Number of pairs i < j among ``n`` stimuli."""
    return n * (n - 1) // 2


def n_stimuli_of_pairs(p: int) -> int:
    """Invert :func:`n_pairs`; raise InputDataError if ``p`` is not a triangle number."""
    n = int(round((1 + math.sqrt(1 + 8 * p)) / 2))
    if n_pairs(n) != p:
        raise InputDataError(f"a pair vector of length {p} is not the upper triangle of any square "
                             "matrix (expected n(n-1)/2 values); check that the 'pair' dim is complete")
    return n


@functools.lru_cache(maxsize=8)
def triu_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, 1)`` (the pair order), computed once per ``n`` and read-only.

    Examples
    --------
    >>> [a.tolist() for a in triu_pairs(3)]
    [[0, 0, 1], [1, 2, 2]]
    """
    iu, ju = np.triu_indices(n, 1)
    iu.flags.writeable = ju.flags.writeable = False
    return iu, ju


def as_float(x: np.ndarray) -> np.ndarray:
    """Return ``x`` as float32 if it is float32, else float64 (C-contiguous)."""
    x = np.asarray(x)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    return np.ascontiguousarray(x, dtype=dtype)


def normalize_patterns(x: np.ndarray, *, center: bool, out: np.ndarray | None = None) -> np.ndarray:
    """Scale each pattern to unit norm (after removing its mean if ``center``).

    ``(..., stimulus, feature) -> (..., stimulus, feature)``. A constant (or, with
    ``center=False``, all-zero) pattern has no direction: its row becomes NaN, so every
    dissimilarity involving it is NaN.

    Parameters
    ----------
    out : ndarray, optional
        C-contiguous array of ``x``'s shape and float dtype to write into.
    """
    x = as_float(x)
    res = np.empty_like(x) if out is None else out
    f = x.shape[-1]
    K.unit_rows(x.reshape(-1, f), center, res.reshape(-1, f))
    return res


def _gram_upper(z: np.ndarray, offset: float, scale: float, absolute: bool, out: np.ndarray) -> None:
    """``out[b] = offset + scale * f(z_b z_b^T)`` above the diagonal, one BLAS ``syrk`` per matrix.

    ``z (batch, stimulus, feature) -> out (batch, pair)``: ``syrk`` computes only one triangle
    (half the FLOPs of a GEMM) into a reused square buffer, which one Numba pass turns into
    the pair vector while it is still in cache.
    """
    from scipy.linalg import blas

    syrk = blas.ssyrk if z.dtype == np.float32 else blas.dsyrk
    n = z.shape[1]
    square = scratch("gram", (1, n, n), z.dtype)
    for b in range(z.shape[0]):
        # square[0].T is Fortran-ordered: its lower triangle is square[0]'s upper one, row by row
        syrk(1.0, z[b].T, trans=1, lower=1, c=square[0].T, overwrite_c=1)
        K.upper_rows(square, offset, scale, absolute, out[b : b + 1])


def rdm_block(x: np.ndarray, metric: Dissimilarity) -> np.ndarray:
    """Pair vectors of the RDMs of a batch of pattern matrices.

    ``(..., stimulus, feature) -> (..., pair)``, pairs i < j row by row (pdist order).

    Parameters
    ----------
    x : ndarray
        Patterns; float32 stays float32 except for the Euclidean metrics, whose Gram
        trick is done in float64 to avoid cancellation.
    metric : Dissimilarity
        Any but ``crossnobis`` (see :func:`crossnobis_block`).
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = as_float(x)
    *batch, n, _ = x.shape
    out = np.empty((*batch, n_pairs(n)), dtype=x.dtype)
    rdm_into(x, metric, out)
    return out


def rdm_into(x: np.ndarray, metric: Dissimilarity, out: np.ndarray) -> None:
    """:func:`rdm_block` writing into ``out`` ``(..., pair)`` (C-contiguous, the dtype of ``as_float(x)``).

    A float32/float64 ``x`` of up to 4 dims is read where it lies (any strides: views of a
    larger block are not copied) by the correlation and cosine metrics.
    """
    x = np.asarray(x)
    n, f = x.shape[-2:]
    if metric in ("correlation", "abs_correlation", "cosine") and x.dtype in (np.float32, np.float64) \
            and x.ndim <= 4:
        x4 = x.reshape((1,) * (4 - x.ndim) + x.shape) if x.ndim < 4 else x  # views only
        z = scratch("patterns", (x4.shape[0] * x4.shape[1], n, f), x.dtype)
        K.unit_patterns(x4, metric != "cosine", z)
        _gram_upper(z, 1.0, -1.0, metric == "abs_correlation", out.reshape(z.shape[0], n_pairs(n)))
        return
    x = as_float(x)
    flat = x.reshape(-1, n, f)
    out = out.reshape(flat.shape[0], n_pairs(n))
    if metric in ("correlation", "abs_correlation", "cosine"):
        z = normalize_patterns(flat, center=metric != "cosine", out=scratch("patterns", flat.shape, flat.dtype))
        _gram_upper(z, 1.0, -1.0, metric == "abs_correlation", out)
    elif metric in ("euclidean", "sqeuclidean"):
        for start in range(0, flat.shape[0], _GRAM_BATCH):
            sl = slice(start, start + _GRAM_BATCH)
            x64 = flat[sl].astype(np.float64)
            d2 = np.empty((x64.shape[0], out.shape[1]))
            gram = np.ascontiguousarray(np.stack([a @ a.T for a in x64]))
            K.upper_sqdist(gram, np.einsum("bnf,bnf->bn", x64, x64), d2)
            out[sl] = np.sqrt(d2) if metric == "euclidean" else d2
    else:
        raise ValueError(f"rdm_block does not compute metric {metric!r}")


def crossnobis_block(x: np.ndarray, precision: np.ndarray | None) -> np.ndarray:
    """Cross-validated Mahalanobis (crossnobis) RDMs, rsatoolbox's definition.

    ``(..., fold, stimulus, feature), (feature, feature) -> (..., pair)``. For each fold k
    the mean pattern of the other folds A and the fold's patterns B give
    ``K = A W B^T`` and ``d_ij = (K_ii + K_jj - K_ij - K_ji) / n_feature``; the RDM is
    the mean over folds. ``W`` is the noise precision (identity when None).
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    *batch, n_fold, n, f = x.shape
    flat = x.reshape(-1, n_fold, n, f)
    w = np.eye(f) if precision is None else np.asarray(precision, dtype=np.float64)
    out = np.zeros((flat.shape[0], n_pairs(n)))
    total = flat.sum(axis=1)
    for k in range(n_fold):
        train = (total - flat[:, k]) / (n_fold - 1)
        kernel = np.ascontiguousarray(np.matmul(train @ w, flat[:, k].transpose(0, 2, 1)))
        K.add_cross_distances(kernel, 1.0 / (f * n_fold), out)
    return out.reshape(*batch, out.shape[1])


#: Rows ranked per numpy sort call (bounds the packed-key scratch: rows x pairs x 8 bytes).
_RANK_ROWS = 8


def _rank_f32(flat: np.ndarray, center: float, out: np.ndarray) -> np.ndarray:
    """Ranks minus ``center`` of float32 rows into ``out``; returns tie sums ``sum(t^3 - t)`` (NaN rows: NaN)."""
    rows, n = flat.shape
    ties = np.empty(rows)
    packed = scratch("rank_keys", (min(rows, _RANK_ROWS), n), np.uint64)
    nan = np.empty(rows, np.bool_)
    for start in range(0, rows, _RANK_ROWS):
        stop = min(start + _RANK_ROWS, rows)
        buf = packed[: stop - start]
        K.pack_rank_keys(flat[start:stop], buf, nan[start:stop])
        buf.sort(axis=-1)  # numpy's vectorised (AVX-512 where present) sort of 64-bit words
        K.ranks_from_sorted(buf, center, out[start:stop], ties[start:stop])
    out[nan] = np.nan
    ties[nan] = np.nan
    return ties


def rank_block(v: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged like :func:`scipy.stats.rankdata`).

    ``(..., pair) -> (..., pair)``; a vector containing NaN ranks to all-NaN.
    float32 packs (key, index) words and sorts them with numpy's vectorised sort;
    float64 uses a stable comparison sort.
    """
    v = as_float(v)
    flat = v.reshape(-1, v.shape[-1])
    out = np.empty_like(flat)
    if v.dtype == np.float32:
        _rank_f32(flat, 0.0, out)
    else:
        K.rank_rows_sorted(flat, out)
    return out.reshape(v.shape)


def spearman_prepare(v: np.ndarray, *, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Centred unit-norm ranks and the norm of the centred ranks.

    ``(..., pair) -> (..., pair), (...)``. The ranks are ``prepared * norm + (n + 1) / 2``;
    a constant or NaN vector gives a NaN row (norm 0 or NaN).

    Parameters
    ----------
    out : ndarray, optional
        C-contiguous array of ``v``'s shape and float dtype receiving the prepared rows;
        may be ``v`` itself (ranked in place).
    """
    v = as_float(v)
    flat = v.reshape(-1, v.shape[-1])
    n = flat.shape[1]
    res = np.empty_like(flat) if out is None else out.reshape(flat.shape)
    if v.dtype == np.float32:
        # float32 RDMs of 10^5 values nearly always hold ties, so the norm is known only after ranking
        ties = _rank_f32(flat, (n + 1) / 2.0, res)
        norm = np.sqrt(np.maximum((float(n) ** 3 - n - ties) / 12.0, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            res *= np.where(norm > 0, 1.0 / norm, np.nan).astype(res.dtype)[:, None]
    else:
        K.rank_rows_sorted(flat, res)
        res -= (n + 1) / 2.0
        norm = np.sqrt(np.einsum("rp,rp->r", res, res))
        with np.errstate(invalid="ignore", divide="ignore"):
            res /= np.where(norm > 0, norm, np.nan)[:, None]
    return res.reshape(v.shape), norm.reshape(v.shape[:-1])


def _unit(v: np.ndarray, *, center: bool) -> np.ndarray:
    if center:
        v = v - v.mean(axis=-1, keepdims=True)
    norm = np.sqrt(np.einsum("...p,...p->...", v, v, dtype=np.float64))[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.where(norm > 0, norm, np.nan).astype(v.dtype)


def prepare_block(v: np.ndarray, method: Comparator) -> np.ndarray:
    """Transform RDM vectors so that the comparison is one inner product.

    ``(..., pair) -> (..., pair)``: ``spearman`` centred unit-norm ranks; ``pearson``
    centred unit-norm values; ``cosine`` unit-norm values; ``rho_a`` centred ranks scaled
    by ``sqrt((n^3 - n) / 12)``; ``kendall_tau_a`` returned unchanged (not an inner
    product). A constant vector (zero for cosine) becomes NaN.
    """
    v = as_float(v)
    if method == "spearman":
        return spearman_prepare(v)[0]
    if method == "pearson":
        return _unit(v, center=True)
    if method == "cosine":
        return _unit(v, center=False)
    if method == "rho_a":
        n = v.shape[-1]
        r = rank_block(v)
        r -= (n + 1) / 2
        r /= np.asarray(math.sqrt((n**3 - n) / 12.0), dtype=r.dtype)
        return r
    if method == "kendall_tau_a":
        return v
    raise ValueError(f"unknown comparator {method!r}")


def compare_block(a: np.ndarray, b: np.ndarray, method: Comparator, *, prepared: bool = False) -> np.ndarray:
    """Compare every vector of ``a`` with every vector of ``b``.

    ``(..., pair), (model, pair) -> (..., model)``.

    Parameters
    ----------
    prepared : bool
        Both inputs already went through :func:`prepare_block` (saves the ranking).
    """
    if not prepared:
        a, b = prepare_block(a, method), prepare_block(b, method)
    a2 = a.reshape(-1, a.shape[-1])
    if method == "kendall_tau_a":
        out = np.empty((a2.shape[0], b.shape[0]))
        K.kendall_tau_a(a2.astype(np.float64), np.asarray(b, np.float64), out)
    else:
        dtype = np.result_type(a2.dtype, b.dtype)
        out = np.clip(a2.astype(dtype, copy=False) @ b.astype(dtype, copy=False).T, -1.0, 1.0)
    return out.reshape(*a.shape[:-1], b.shape[0])


def compare_paired_block(a: np.ndarray, b: np.ndarray, method: Comparator) -> np.ndarray:
    """Compare ``a[i]`` with ``b[i]`` elementwise: ``(..., pair), (..., pair) -> (...)``."""
    a, b = np.broadcast_arrays(as_float(a), as_float(b))
    if method == "kendall_tau_a":
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        out = np.empty(a2.shape[0])
        one = np.empty((1, 1))
        for i in range(a2.shape[0]):
            K.kendall_tau_a(a2[i : i + 1].astype(np.float64), b2[i : i + 1].astype(np.float64), one)
            out[i] = one[0, 0]
        return out.reshape(a.shape[:-1])
    pa, pb = prepare_block(a, method), prepare_block(b, method)
    return np.clip(np.einsum("...p,...p->...", pa, pb, dtype=np.float64), -1.0, 1.0)


def pool_block(v: np.ndarray, method: Comparator, pooling: Pooling, axis: int = 0) -> np.ndarray:
    """Normalise RDM vectors for pooling (no averaging yet): ``(..., pair) -> (..., pair)``.

    ``normalized`` follows rsatoolbox's ``pool_rdm``: ranks for rank comparators, z-scores
    for pearson, RMS-scaled vectors for cosine; ``mean`` leaves raw dissimilarities.
    """
    v = as_float(v)
    if pooling == "mean":
        return v
    if method in ("spearman", "rho_a", "kendall_tau_a"):
        return rank_block(v)
    if method == "pearson":
        c = v - v.mean(axis=-1, keepdims=True)
        return c / c.std(axis=-1, keepdims=True)
    if method == "cosine":
        return v / np.sqrt(np.mean(v * v, axis=-1, keepdims=True))
    raise ValueError(f"unknown comparator {method!r}")


def noise_ceiling_block(v: np.ndarray, method: Comparator, pooling: Pooling) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out noise ceiling per subject.

    ``(subject, ..., pair) -> lower (subject, ...), upper (subject, ...)``: lower compares
    each subject with the pool of the others, upper with the pool of all subjects.
    Average over subjects for the ceiling.
    """
    n_sub = v.shape[0]
    if n_sub < 2:
        raise InputDataError(f"a noise ceiling needs at least 2 subjects, got {n_sub}")
    normed = pool_block(v, method, pooling)
    total = normed.sum(axis=0, dtype=np.float64)
    upper = compare_paired_block(v, (total / n_sub)[None], method)
    loo = (total[None] - normed) / (n_sub - 1)
    lower = compare_paired_block(v, loo.astype(normed.dtype), method)
    return lower, upper
