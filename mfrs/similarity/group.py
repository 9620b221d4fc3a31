"""Group statistics across subjects on plain numpy arrays (block layer).

Two group inferences besides the stimulus relabelling of the subject-mean RDM:

- **subject bootstrap** as the reference study did it: each sample draws half the
  subjects with replacement and recomputes RSA on the mean RDM of the drawn subjects
  (not a mean of per-subject r), giving percentile intervals of r, of each region's
  peak latency and of its best layer. :func:`draw_bootstrap_weights` makes the draws,
  :func:`mfrs.similarity.fused.rsa_block` the sample r (``boot_weights``), and
  :func:`peak_summary` / :func:`merge_peaks` the peak of a time course cut into blocks.
- **sign flips** of per-subject r (:func:`draw_sign_flips`, :func:`signflip_null`):
  under the null each subject's r is symmetric around 0, so the mean r with random
  signs is its null; all ``2^n - 1`` non-identity flips when that is no more than asked
  (an exact test).

The p-values of both come from :mod:`mfrs.similarity.inference`.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np

__all__ = ["draw_bootstrap_weights", "draw_sign_flips", "signflip_null", "signflip_mean", "signflip_test",
           "percentile_ci", "peak_summary",
           "merge_peaks"]


def draw_bootstrap_weights(rng: np.random.Generator, n_subjects: int, n_samples: int,
                           fraction: float = 0.5) -> np.ndarray:
    """Subject weights of bootstrap samples: ``-> (sample, subject)``, each row summing to 1.

    Each sample draws ``round(fraction * n_subjects)`` subjects (at least 1) with
    replacement; a subject's weight is how often it was drawn over the sample size,
    so ``weights @ rdms`` is the mean RDM of the drawn subjects.

    Examples
    --------
    >>> w = draw_bootstrap_weights(np.random.default_rng(0), 4, 3)
    >>> w.shape, bool(np.allclose(w.sum(axis=1), 1.0)), sorted(set((w * 2).ravel().tolist())) <= [0.0, 1.0, 2.0]
    ((3, 4), True, True)
    """
    size = max(1, int(round(fraction * n_subjects)))
    draws = rng.integers(0, n_subjects, size=(n_samples, size))
    weights = np.zeros((n_samples, n_subjects))
    np.add.at(weights, (np.repeat(np.arange(n_samples), size), draws.ravel()), 1.0)
    return weights / size


def draw_sign_flips(rng: np.random.Generator, n_subjects: int, n_flips: int) -> np.ndarray:
    """Sign vectors ``(flip, subject)`` of +-1 for a sign-flip test, never the identity.

    When ``2^n_subjects - 1 <= n_flips`` every non-identity sign vector is returned once
    (then ``(k + 1) / (n + 1)`` is the exact enumeration p); otherwise ``n_flips``
    random ones (a vector of all +1 may be drawn, as in any Monte Carlo permutation test).

    Examples
    --------
    >>> draw_sign_flips(np.random.default_rng(0), 2, 100).tolist()
    [[1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]
    """
    if 2**n_subjects - 1 <= n_flips:
        every = np.array(list(itertools.product([1.0, -1.0], repeat=n_subjects)))
        return every[1:]  # the first is all +1
    return rng.choice(np.array([1.0, -1.0]), size=(n_flips, n_subjects))


def signflip_null(r_sub: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """Mean over subjects of sign-flipped r: ``(subject, ...), (flip, subject) -> (flip, ...)``.

    Summed subject by subject in a fixed order, so a flip and its negation give exactly
    opposite means and :func:`signflip_mean` (no flip) is exactly reached by the flips
    that tie with it (two-sided tests count them, as an enumeration does). NaN r of a
    subject makes that element NaN (as the observed mean).
    """
    n_sub = r_sub.shape[0]
    flat = r_sub.reshape(n_sub, -1).astype(np.float64)
    out = np.zeros((flips.shape[0], flat.shape[1]))
    for s in range(n_sub):
        out += flips[:, s : s + 1] * flat[s]
    return (out / n_sub).reshape(flips.shape[0], *r_sub.shape[1:])


def signflip_mean(r_sub: np.ndarray) -> np.ndarray:
    """The observed mean over subjects, computed as :func:`signflip_null` does: ``(subject, ...) -> (...)``."""
    return signflip_null(r_sub, np.ones((1, r_sub.shape[0])))[0]


def signflip_test(values: np.ndarray, flips: np.ndarray, *, axes: tuple[int, ...] = (), two_sided: bool = False,
                  family_null: np.ndarray | None = None, max_bytes: int = 64 << 20) -> dict[str, np.ndarray]:
    """Sign-flip test of the mean of ``values (subject, ...)`` over subjects.

    Returns ``p (...)`` and, with family ``axes`` (of the dims after ``subject``),
    ``p_fwe (...)`` against the per-flip family maximum ``family_max (flip, ...)`` (size 1
    along ``axes``), which is also returned; ``family_null`` replaces it when the family
    spans more than ``values`` (its maximum over every part). The null goes through in
    chunks of flips of about ``max_bytes``; what is kept is the count per element and the
    family maximum per flip. ``two_sided`` compares ``|mean|``.
    """
    from mfrs.similarity.inference import count_extreme, family_max, p_against, p_from_counts

    stat = signflip_mean(values)
    stat = np.abs(stat) if two_sided else stat
    k, maxima = np.zeros(stat.shape), []
    step = max(1, max_bytes // (8 * max(1, stat.size)))
    for start in range(0, len(flips), step):
        null = signflip_null(values, flips[start : start + step])
        null = np.abs(null) if two_sided else null
        k += count_extreme(null, stat)
        if axes:
            maxima.append(family_max(null, axes))
    out = {"stat": stat, "p": p_from_counts(k, len(flips), stat)}
    if axes:
        out["family_max"] = np.concatenate(maxima)
        out["p_fwe"] = p_against(out["family_max"] if family_null is None else family_null, stat)
    return out


def percentile_ci(samples: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis: ``(sample, ...) -> low (...), high (...)`` (NaN samples ignored)."""
    q = ((1 - ci) / 2, 1 - (1 - ci) / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN elements stay NaN
        low, high = np.nanquantile(samples, q, axis=0)
    return low, high


def peak_summary(r: np.ndarray, t0: int) -> tuple[np.ndarray, np.ndarray]:
    """Peak of time courses in a block of times: ``(..., time, layer) -> value (..., layer), index (..., layer)``.

    ``index`` is the position of the (first) maximum along the whole time axis (``t0``
    the block's first position); NaN never wins; an all-NaN course gives -inf and index -1.
    """
    v = np.where(np.isnan(r), -np.inf, r)
    idx = v.argmax(axis=-2)
    value = np.take_along_axis(v, idx[..., None, :], axis=-2)[..., 0, :]
    return value, np.where(np.isfinite(value), idx + t0, -1)


def merge_peaks(values: np.ndarray, index: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Peak over time blocks held, in time order, along ``axis``: the first maximum, as ``argmax`` on the whole axis."""
    values, index = np.moveaxis(values, axis, 0), np.moveaxis(index, axis, 0)
    best = values.argmax(axis=0)  # first block holding the maximum
    return (np.take_along_axis(values, best[None], axis=0)[0], np.take_along_axis(index, best[None], axis=0)[0])
