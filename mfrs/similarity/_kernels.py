"""Numba kernels of the similarity engine: bare loops over numpy arrays, writing into ``out``.

No xarray, Dask, I/O or argument checks here (see ``_wrappers``/``blocks`` for those).
Every kernel is compiled serially (one Numba thread): parallelism comes from Dask
workers, see :mod:`mfrs.similarity.threads`. ``cache=True`` keeps compile time out of
repeated runs.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_TOP = np.uint64(32)
_LOW32 = np.uint64(4294967295)
_SIGN32 = np.uint64(2147483648)


@njit(cache=True, nogil=True)
def _average_ranks_from_sorted(sorted_keys, sorted_order, out_row):
    """Write average ranks (1-based, ties averaged) given keys in sorted order."""
    n = sorted_keys.shape[0]
    i = 0
    while i < n:
        j = i
        k = sorted_keys[i]
        while j + 1 < n and sorted_keys[j + 1] == k:
            j += 1
        r = 0.5 * (i + j) + 1.0
        for m in range(i, j + 1):
            out_row[sorted_order[m]] = r
        i = j + 1


@njit(cache=True, nogil=True)
def _has_nan(v):
    for i in range(v.shape[0]):
        if v[i] != v[i]:
            return True
    return False


@njit(cache=True, nogil=True)
def rank_rows_sorted(x, out):
    """Average ranks of each row of ``x`` (rows, n) by a stable comparison sort; NaN rows -> NaN."""
    n = x.shape[1]
    for r in range(x.shape[0]):
        row = x[r]
        if _has_nan(row):
            out[r, :] = np.nan
            continue
        order = np.argsort(row, kind="mergesort")
        sorted_vals = np.empty(n, row.dtype)
        for i in range(n):
            sorted_vals[i] = row[order[i]]
        _average_ranks_from_sorted(sorted_vals, order, out[r])


@njit(cache=True, nogil=True)
def upper_sqdist(gram, sqnorm, out):
    """Squared Euclidean pair distances from Gram matrices: ``|x_i|^2 + |x_j|^2 - 2 g_ij``, clipped at 0.

    ``gram`` (batch, n, n), ``sqnorm`` (batch, n), ``out`` (batch, pairs).
    """
    n = gram.shape[1]
    for b in range(gram.shape[0]):
        p = 0
        for i in range(n - 1):
            for j in range(i + 1, n):
                v = sqnorm[b, i] + sqnorm[b, j] - 2.0 * gram[b, i, j]
                out[b, p] = v if v > 0.0 else 0.0
                p += 1


@njit(cache=True, nogil=True)
def add_cross_distances(kernel, scale, out):
    """Accumulate cross-validated distances: ``out[b, p] += scale * (k_ii + k_jj - k_ij - k_ji)``.

    ``kernel`` (batch, n, n) is ``A W B^T`` of two independent folds.
    """
    n = kernel.shape[1]
    for b in range(kernel.shape[0]):
        p = 0
        for i in range(n - 1):
            kii = kernel[b, i, i]
            for j in range(i + 1, n):
                out[b, p] += scale * (kii + kernel[b, j, j] - kernel[b, i, j] - kernel[b, j, i])
                p += 1


@njit(cache=True, nogil=True)
def permuted_pair_index(perm, out):
    """Pair index map of a stimulus permutation: ``d_perm[p(i, j)] = d[out[p(i, j)]]``.

    For ``D'[i, j] = D[perm[i], perm[j]]``; ``perm`` (n,), ``out`` (n(n-1)/2,).
    """
    n = perm.shape[0]
    p = 0
    for i in range(n - 1):
        a = np.int64(perm[i])
        for j in range(i + 1, n):
            b = np.int64(perm[j])
            lo = a if a < b else b
            hi = b if a < b else a
            out[p] = lo * n - (lo * (lo + 1)) // 2 + hi - lo - 1
            p += 1


@njit(cache=True, nogil=True)
def _count_inversions(y, buf):
    """Sort ``y`` in place (stable, bottom-up merge sort) and return the number of pairs i<j with y_i>y_j."""
    n = y.shape[0]
    inv = np.int64(0)
    width = 1
    src = y
    dst = buf
    in_buf = False
    while width < n:
        start = 0
        while start < n:
            mid = min(start + width, n)
            end = min(start + 2 * width, n)
            i = start
            j = mid
            k = start
            while i < mid and j < end:
                if src[j] < src[i]:
                    dst[k] = src[j]
                    inv += mid - i
                    j += 1
                else:
                    dst[k] = src[i]
                    i += 1
                k += 1
            while i < mid:
                dst[k] = src[i]
                i += 1
                k += 1
            while j < end:
                dst[k] = src[j]
                j += 1
                k += 1
            start += 2 * width
        src, dst = dst, src
        in_buf = not in_buf
        width *= 2
    if in_buf:
        y[:] = buf
    return inv


@njit(cache=True, nogil=True)
def _tie_pairs(sorted_vals):
    """Number of tied pairs in a sorted vector."""
    n = sorted_vals.shape[0]
    total = np.int64(0)
    i = 0
    while i < n:
        j = i
        while j + 1 < n and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        t = j - i + 1
        total += t * (t - 1) // 2
        i = j + 1
    return total


@njit(cache=True, nogil=True)
def kendall_tau_a(a, b, out):
    """Kendall's tau-a of every row of ``a`` (A, n) with every row of ``b`` (B, n) into ``out`` (A, B).

    Knight's O(n log n) algorithm; ties count as neither concordant nor discordant and the
    denominator is n(n-1)/2. Rows containing NaN give NaN.
    """
    n = a.shape[1]
    n0 = np.int64(n) * (n - 1) // 2
    buf = np.empty(n, np.float64)
    xs = np.empty(n, np.float64)
    ys = np.empty(n, np.float64)
    for ia in range(a.shape[0]):
        x = a[ia]
        x_nan = _has_nan(x)
        for ib in range(b.shape[0]):
            y = b[ib]
            if x_nan or _has_nan(y):
                out[ia, ib] = np.nan
                continue
            perm = np.argsort(y, kind="mergesort")
            xp = np.empty(n, np.float64)
            for m in range(n):
                xp[m] = x[perm[m]]
            order2 = np.argsort(xp, kind="mergesort")
            for m in range(n):
                idx = perm[order2[m]]
                xs[m] = x[idx]
                ys[m] = y[idx]
            n1 = _tie_pairs(xs)
            n3 = np.int64(0)
            i = 0
            while i < n:
                j = i
                while j + 1 < n and xs[j + 1] == xs[i] and ys[j + 1] == ys[i]:
                    j += 1
                t = j - i + 1
                n3 += t * (t - 1) // 2
                i = j + 1
            swaps = _count_inversions(ys, buf)
            n2 = _tie_pairs(ys)
            out[ia, ib] = (n0 - n1 - n2 + n3 - 2 * swaps) / n0


# --------------------------------------------------------------------------- fast paths
# Ranking: rows are packed into order-preserving (key << 32 | index) words, sorted by numpy's
# vectorised sort (one call for a whole batch, see blocks.rank_block), then swept here.


@njit(cache=True, nogil=True)
def pack_rank_keys(x, packed, has_nan):
    """Order-preserving keys of float32 rows packed with their index: ``(rows, n) -> (rows, n)`` uint64.

    ``-0.0`` ties with ``+0.0`` (as in :func:`scipy.stats.rankdata`); ``has_nan[r]`` is set
    when row ``r`` holds a NaN.
    """
    for r in range(x.shape[0]):
        row = x[r]
        bits = row.view(np.uint32)
        dst = packed[r]
        nan = False
        for i in range(row.shape[0]):
            v = row[i]
            nan |= v != v
            k = np.uint64(bits[i])
            k = np.uint64(0) if v == 0.0 else k
            k = ((~k) & _LOW32) if k >= _SIGN32 else (k | _SIGN32)
            dst[i] = (k << _TOP) | np.uint64(i)
        has_nan[r] = nan


@njit(cache=True, nogil=True)
def ranks_from_sorted(packed, center, out, ties):
    """Average ranks minus ``center`` from sorted packed words: ``(rows, n) -> out (rows, n)``.

    ``ties[r]`` receives ``sum(t^3 - t)`` over the tie groups of row ``r``, so that the
    sum of squared centred ranks is ``(n^3 - n - ties) / 12``.
    """
    n = packed.shape[1]
    for r in range(packed.shape[0]):
        srt = packed[r]
        o = out[r]
        tsum = 0.0
        i = 0
        while i < n:
            key = srt[i] >> _TOP
            if i + 1 < n and (srt[i + 1] >> _TOP) == key:
                j = i + 1
                while j + 1 < n and (srt[j + 1] >> _TOP) == key:
                    j += 1
                rank = 0.5 * (i + j) + 1.0 - center
                for q in range(i, j + 1):
                    o[srt[q] & _LOW32] = rank
                t = float(j - i + 1)
                tsum += t * t * t - t
                i = j + 1
            else:
                o[srt[i] & _LOW32] = i + 1.0 - center
                i += 1
        ties[r] = tsum


# reassociation lets LLVM vectorise the float64 sums (NaN/inf semantics are kept)
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def unit_rows(x, center, out):
    """Rows of ``x`` (R, F) scaled to unit norm, after removing their mean if ``center``: ``-> out (R, F)``.

    Sums in float64; a row without direction (constant, or zero when not centring) becomes NaN.
    """
    f = x.shape[1]
    for r in range(x.shape[0]):
        row = x[r]
        dst = out[r]
        mean = 0.0
        if center:
            for j in range(f):
                mean += row[j]
            mean /= f
        ss = 0.0
        for j in range(f):
            d = row[j] - mean
            ss += d * d
        inv = 1.0 / np.sqrt(ss) if ss > 0.0 else np.nan
        for j in range(f):
            dst[j] = (row[j] - mean) * inv


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def unit_patterns(x, center, out):
    """:func:`unit_rows` of every pattern of ``x`` (A, B, N, F), any strides: ``-> out (A * B, N, F)``.

    Reads views (a region's vertex slice, a time slice of a block) where they lie, so the
    caller never copies them into a contiguous array first.
    """
    nb = x.shape[1]
    for a in range(x.shape[0]):
        for b in range(nb):
            unit_rows(x[a, b], center, out[a * nb + b])


@njit(cache=True, nogil=True)
def upper_rows(square, offset, scale, absolute, out):
    """Like :func:`upper_pairs` but row segments at a time (vectorises): ``(batch, n, n) -> (batch, pairs)``."""
    n = square.shape[1]
    for b in range(square.shape[0]):
        p = 0
        for i in range(n - 1):
            m = n - i - 1
            src = square[b, i, i + 1:]
            dst = out[b, p:p + m]
            if absolute:
                for j in range(m):
                    dst[j] = offset + scale * abs(src[j])
            else:
                for j in range(m):
                    dst[j] = offset + scale * src[j]
            p += m


@njit(cache=True, nogil=True)
def gather_pairs(v, pair_perms, out):
    """Permuted copies of pair vectors: ``out[k * B + b] = v[b, pair_perms[k]]``.

    ``v`` (B, pairs), ``pair_perms`` (K, pairs), ``out`` (K * B, pairs).
    """
    nb = v.shape[0]
    p = v.shape[1]
    for k in range(pair_perms.shape[0]):
        idx = pair_perms[k]
        for b in range(nb):
            src = v[b]
            dst = out[k * nb + b]
            for q in range(p):
                dst[q] = src[idx[q]]


@njit(cache=True, nogil=True)
def gather_relabelled(v, perms, square, out):
    """Pair vectors of stimulus-relabelled RDMs: ``out[k * B + b][p(i, j)] = D_b[perm_k[i], perm_k[j]]``.

    ``v`` (B, pairs), ``perms`` (K, n) stimulus permutations, ``square`` (n, n) scratch,
    ``out`` (K * B, pairs). Each RDM is expanded to its square once, so every gathered
    value comes from one cached row ``D_b[perm_k[i]]`` (no pair-index table is needed).
    """
    nb = v.shape[0]
    n = square.shape[0]
    for b in range(nb):
        src = v[b]
        p = 0
        for i in range(n - 1):
            square[i, i] = 0.0
            for j in range(i + 1, n):
                square[i, j] = src[p]
                square[j, i] = src[p]
                p += 1
        for k in range(perms.shape[0]):
            perm = perms[k]
            dst = out[k * nb + b]
            p = 0
            for i in range(n - 1):
                row = square[perm[i]]
                for j in range(i + 1, n):
                    dst[p] = row[perm[j]]
                    p += 1


@njit(cache=True, nogil=True)
def row_dots(a, b, out):
    """``out[r] = sum_p a[r, p] * b[r % len(b), p]`` accumulated in float64: ``(R, P), (R' | R, P) -> (R,)``."""
    nb = b.shape[0]
    for r in range(a.shape[0]):
        x = a[r]
        y = b[r % nb]
        s = 0.0
        for p in range(x.shape[0]):
            s += np.float64(x[p]) * np.float64(y[p])
        out[r] = s


@njit(cache=True, nogil=True)
def mean_first_axis(x, out):
    """Mean over the first axis accumulated in float64: ``(S, R, P) -> out (R, P)``."""
    ns = x.shape[0]
    acc = np.empty(x.shape[2], np.float64)
    for r in range(x.shape[1]):
        acc[:] = 0.0
        for s in range(ns):
            src = x[s, r]
            for p in range(acc.shape[0]):
                acc[p] += src[p]
        dst = out[r]
        for p in range(acc.shape[0]):
            dst[p] = acc[p] / ns


@njit(cache=True, nogil=True)
def leave_one_out_pools(v, w, center, integer_ranks, loo, total):
    """Pools of subjects' RDM vectors: ``total[t] = sum_s b[s, t]`` and ``loo[s, t] = total[t] - b[s, t]``.

    ``v (S, T, P)``, ``w (S, T)`` -> ``loo (S, T, P)``, ``total (T, P)``. With
    ``integer_ranks`` the pooled vectors are ``b = rint(2 * (v * w + center))``: twice the
    raw ranks recovered exactly from prepared (centred, unit-norm) Spearman vectors, so
    that ties in sums of ranks stay exact ties; otherwise ``b = v``. Sums in float64.
    Pools are correlation-compared, so their scale (a sum, not a mean) does not matter.
    """
    n_sub, n_t, p = v.shape
    acc = np.empty(p, np.float64)
    for t in range(n_t):
        acc[:] = 0.0
        for s in range(n_sub):
            src = v[s, t]
            if integer_ranks:
                ws = w[s, t]
                for q in range(p):
                    acc[q] += np.floor(2.0 * (src[q] * ws + center) + 0.5)
            else:
                for q in range(p):
                    acc[q] += src[q]
        dst = total[t]
        for q in range(p):
            dst[q] = acc[q]
        for s in range(n_sub):
            src = v[s, t]
            out = loo[s, t]
            if integer_ranks:
                ws = w[s, t]
                for q in range(p):
                    out[q] = acc[q] - np.floor(2.0 * (src[q] * ws + center) + 0.5)
            else:
                for q in range(p):
                    out[q] = acc[q] - src[q]
