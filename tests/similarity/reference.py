"""One reference table: each similarity kernel/function and its independent equivalent.

Read by the tests (``tests/similarity``) and the benchmark (``benchmarks/bench_similarity.py``).
Every entry takes plain numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.stats as ss
from numba import njit
from scipy.spatial.distance import pdist


def _rsa_dataset(x: np.ndarray):
    import rsatoolbox

    return rsatoolbox.data.Dataset(x, obs_descriptors={"conds": np.arange(x.shape[0])})


def rsatoolbox_calc_rdm(x: np.ndarray, method: str = "correlation") -> np.ndarray:
    """rsatoolbox ``calc_rdm`` of one (stimulus, feature) matrix -> (pair,)."""
    import rsatoolbox

    return rsatoolbox.rdm.calc_rdm(_rsa_dataset(x), method=method, descriptor="conds").get_vectors()[0]


def rsatoolbox_crossnobis(x: np.ndarray, precision: np.ndarray | None) -> np.ndarray:
    """rsatoolbox crossnobis of (fold, stimulus, feature) -> (pair,)."""
    import rsatoolbox

    n_fold, n, _ = x.shape
    ds = rsatoolbox.data.Dataset(
        x.reshape(n_fold * n, -1),
        obs_descriptors={"conds": np.tile(np.arange(n), n_fold), "fold": np.repeat(np.arange(n_fold), n)},
    )
    rdm = rsatoolbox.rdm.calc_rdm_crossnobis(ds, descriptor="conds", noise=precision, cv_descriptor="fold")
    return rdm.get_vectors()[0]


def rsatoolbox_compare(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    """rsatoolbox ``compare`` of (A, pair) with (B, pair) -> (A, B)."""
    import rsatoolbox

    return rsatoolbox.rdm.compare(rsatoolbox.rdm.RDMs(a), rsatoolbox.rdm.RDMs(b), method=method)


def rsatoolbox_noise_ceiling(rdms: np.ndarray, method: str) -> tuple[float, float]:
    """rsatoolbox ``boot_noise_ceiling`` (leave one out) of (subject, pair) -> (lower, upper)."""
    import rsatoolbox

    lo, up = rsatoolbox.inference.boot_noise_ceiling(rsatoolbox.rdm.RDMs(rdms), method=method)
    return float(lo), float(up)


def mne_rsa_rdm(x: np.ndarray) -> np.ndarray:
    """mne-rsa ``compute_rdm`` (correlation distance) of (stimulus, feature) -> (pair,)."""
    import mne_rsa

    return mne_rsa.compute_rdm(x, metric="correlation")


def numpy_gemm_rdms(x: np.ndarray) -> np.ndarray:
    """Plain batched numpy baseline: (batch, stimulus, feature) -> (batch, pair), 1 - r via one GEMM."""
    z = x - x.mean(axis=-1, keepdims=True)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    iu = np.triu_indices(x.shape[-2], 1)
    return 1.0 - np.matmul(z, z.transpose(0, 2, 1))[:, iu[0], iu[1]]


def scipy_per_pair_rdm(x: np.ndarray) -> np.ndarray:
    """The reference study's loop: one scipy call per pair of stimuli -> (pair,)."""
    n = x.shape[0]
    return np.array([1.0 - ss.pearsonr(x[i], x[j])[0] for i in range(n) for j in range(i + 1, n)])


def kendall_tau_a_brute(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall tau-a by the definition: sum of sign products over pairs / (n(n-1)/2)."""
    sa = np.sign(a[:, None] - a[None, :])
    sb = np.sign(b[:, None] - b[None, :])
    n = a.size
    return float(np.triu(sa * sb, 1).sum() / (n * (n - 1) / 2))


def rho_a_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """rho-a from scipy ranks: 12 sum(ra_c rb_c) / (n^3 - n)."""
    ra, rb = ss.rankdata(a), ss.rankdata(b)
    n = a.size
    return float(12 * np.sum((ra - ra.mean()) * (rb - rb.mean())) / (n**3 - n))


def cosine_scipy(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - pdist(np.stack([a, b]), "cosine")[0])


#: kernel / function name -> independent equivalent on numpy arrays.
REFERENCE: dict[str, Callable] = {
    # RDMs: (stimulus, feature) -> (pair,)
    "rdm:correlation": lambda x: pdist(x, "correlation"),
    "rdm:abs_correlation": lambda x: 1.0 - np.abs(1.0 - pdist(x, "correlation")),
    "rdm:euclidean": lambda x: pdist(x, "euclidean"),
    "rdm:sqeuclidean": lambda x: pdist(x, "sqeuclidean"),
    "rdm:cosine": lambda x: pdist(x, "cosine"),
    "rdm:correlation:rsatoolbox": lambda x: rsatoolbox_calc_rdm(x, "correlation"),
    "rdm:correlation:mne_rsa": mne_rsa_rdm,
    "rdm:correlation:numpy_gemm": lambda x: numpy_gemm_rdms(x[None])[0],
    "rdm:correlation:scipy_per_pair": scipy_per_pair_rdm,
    "rdm:crossnobis": rsatoolbox_crossnobis,
    # ranking: (pair,) -> (pair,)
    "rank": ss.rankdata,
    # group RDM: (subject, time, pair) -> (time, pair)
    "mean:first_axis": lambda x: np.mean(np.asarray(x, np.float64), axis=0),
    # comparators: (pair,), (pair,) -> float
    "compare:spearman": lambda a, b: float(ss.spearmanr(a, b)[0]),
    "compare:pearson": lambda a, b: float(ss.pearsonr(a, b)[0]),
    "compare:kendall_tau_a": kendall_tau_a_brute,
    "compare:rho_a": rho_a_scipy,
    "compare:cosine": cosine_scipy,
    # rsatoolbox names of our comparators, for the cross-check with rsatoolbox.compare
    "compare:rsatoolbox": {"spearman": "spearman", "pearson": "corr", "kendall_tau_a": "tau-a",
                           "rho_a": "rho-a", "cosine": "cosine"},
    "noise_ceiling:rsatoolbox": rsatoolbox_noise_ceiling,
}


def max_run_mass_brute(values, supra) -> float:
    """The largest sum over a run of consecutive supra-threshold points (0 if none), by a plain scan."""
    best, run = 0.0, None
    for v, s in zip(values, supra):
        if s:
            run = (run or 0.0) + v
        elif run is not None:
            best, run = max(best, run), None
    return best if run is None else max(best, run)


# --------------------------------------------------------------------------- alternatives the engine dropped
# Kernels kept as references of the benchmark (benchmarks/bench_similarity.py) only: an LSD radix ranking
# (slower than numpy's sort of packed words) and the element-wise triangle copy (slower than row segments).
TOP, LOW32, SIGN32, DIGIT = np.uint64(32), np.uint64(4294967295), np.uint64(2147483648), np.uint64(2047)


@njit(cache=True, nogil=True)
def _packed_float32_keys(row, packed, counts):
    """Pack order-preserving uint32 keys of float32 ``row`` with their index into uint64.

    Fills the three 11-bit digit histograms ``counts`` (3, 2048) on the way; returns True
    if a NaN is seen.
    """
    bits = row.view(np.uint32)
    counts[:, :] = 0
    has_nan = False
    for i in range(row.shape[0]):
        v = row[i]
        if v != v:
            has_nan = True
        k = np.uint64(bits[i])
        if v == 0.0:  # -0.0 ties with +0.0, as in scipy.stats.rankdata
            k = np.uint64(0)
        if k >= SIGN32:
            k = (~k) & LOW32
        else:
            k = k | SIGN32
        counts[0, k & DIGIT] += 1
        counts[1, (k >> np.uint64(11)) & DIGIT] += 1
        counts[2, (k >> np.uint64(22)) & DIGIT] += 1
        packed[i] = (k << TOP) | np.uint64(i)
    return has_nan


@njit(cache=True, nogil=True)
def rank_rows_f32(x, out):
    """Average ranks of each row of float32 ``x`` (rows, n) into ``out`` (rows, n); NaN rows -> NaN.

    LSD radix sort on (key << 32 | index) words, 3 passes of 11 bits, passes whose digit is
    shared by every key skipped; then one sweep averaging the ranks of equal keys.
    """
    n = x.shape[1]
    a = np.empty(n, np.uint64)
    b = np.empty(n, np.uint64)
    counts = np.empty((3, 2048), np.int64)
    for r in range(x.shape[0]):
        if _packed_float32_keys(x[r], a, counts):
            out[r, :] = np.nan
            continue
        src = a
        dst = b
        for p in range(3):
            shift = np.uint64(32 + 11 * p)
            if counts[p, (src[0] >> shift) & DIGIT] == n:
                continue
            total = 0
            for d in range(2048):
                c = counts[p, d]
                counts[p, d] = total
                total += c
            for i in range(n):
                v = src[i]
                d = (v >> shift) & DIGIT
                j = counts[p, d]
                counts[p, d] = j + 1
                dst[j] = v
            src, dst = dst, src
        orow = out[r]
        i = 0
        while i < n:
            j = i
            k = src[i] >> TOP
            while j + 1 < n and (src[j + 1] >> TOP) == k:
                j += 1
            rank = 0.5 * (i + j) + 1.0
            for m in range(i, j + 1):
                orow[src[m] & LOW32] = rank
            i = j + 1


@njit(cache=True, nogil=True)
def upper_pairs(square, offset, scale, absolute, out):
    """Pair vectors of a batch of square matrices: ``out[b, p] = offset + scale * f(square[b, i, j])``.

    ``square`` (batch, n, n) is read above the diagonal only (i < j, row by row, the order
    of ``scipy.spatial.distance.pdist``); ``f`` is ``abs`` when ``absolute`` else identity.
    """
    n = square.shape[1]
    for b in range(square.shape[0]):
        p = 0
        for i in range(n - 1):
            for j in range(i + 1, n):
                v = square[b, i, j]
                if absolute:
                    v = abs(v)
                out[b, p] = offset + scale * v
                p += 1
