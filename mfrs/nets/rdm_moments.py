"""Model RDMs from per-stimulus moments accumulated over unit chunks (plain numpy, no labels).

A layer ``X (stimulus, unit)`` is read in unit chunks; each chunk adds to the row sums
``s``, the row sums of squares ``q`` and the Gram matrix ``G = X X^T`` (float64). Every
dissimilarity of :data:`mfrs.nets.types.RdmMetric` is a function of ``(s, q, G, p)``, so
the layer is never whole in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mfrs.nets.types import RdmMetric

__all__ = ["Moments", "rdm_from_moments"]


@dataclass
class Moments:
    """Running moments of ``n`` stimulus patterns.

    Parameters
    ----------
    n : int
        Number of stimuli.
    center : bool
        Subtract a per-stimulus shift (the mean of its first chunk) before accumulating.
        Correlation is invariant to it, and it removes most of the cancellation in
        ``G/p - m m^T``; do not use it for cosine or Euclidean distances.
    """

    n: int
    center: bool = False
    units: int = 0
    sums: np.ndarray = field(init=False)
    sumsq: np.ndarray = field(init=False)
    gram: np.ndarray = field(init=False)
    shift: np.ndarray | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.sums = np.zeros(self.n)
        self.sumsq = np.zeros(self.n)
        self.gram = np.zeros((self.n, self.n))

    def add(self, chunk: np.ndarray) -> None:
        """Accumulate ``(stimulus, unit_chunk)`` values."""
        if chunk.shape[0] != self.n:
            raise ValueError(f"chunk has {chunk.shape[0]} stimuli, expected {self.n}")
        x = np.asarray(chunk, dtype=np.float64)
        if self.center:
            if self.shift is None:
                self.shift = x.mean(axis=1, keepdims=True)
            x = x - self.shift
        self.units += x.shape[1]
        self.sums += x.sum(axis=1)
        self.sumsq += np.einsum("ij,ij->i", x, x)
        self.gram += x @ x.T


def rdm_from_moments(m: Moments, metric: RdmMetric) -> np.ndarray:
    """The RDM of the accumulated patterns, as a pair vector.

    ``Moments`` of ``(stimulus, unit)`` -> ``(pair,)`` float64 in
    :func:`scipy.spatial.distance.pdist` order (``np.triu_indices(n, 1)``); the values
    equal ``pdist(X, metric)`` (``abs_correlation``: ``1 - |r|``). A constant pattern
    gives NaN for correlation and cosine, as in scipy.

    Examples
    --------
    >>> import numpy as np; from scipy.spatial.distance import pdist
    >>> x = np.random.default_rng(0).normal(size=(4, 50))
    >>> m = Moments(4, center=True); m.add(x[:, :20]); m.add(x[:, 20:])
    >>> bool(np.allclose(rdm_from_moments(m, "correlation"), pdist(x, "correlation")))
    True
    """
    iu, ju = np.triu_indices(m.n, 1)
    g = m.gram[iu, ju]
    if metric in ("correlation", "abs_correlation"):
        p = m.units
        mean = m.sums / p
        var = m.sumsq / p - mean**2
        cov = g / p - mean[iu] * mean[ju]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.clip(cov / np.sqrt(var[iu] * var[ju]), -1.0, 1.0)
        return 1.0 - (np.abs(r) if metric == "abs_correlation" else r)
    if metric == "cosine":
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1.0 - np.clip(g / np.sqrt(m.sumsq[iu] * m.sumsq[ju]), -1.0, 1.0)
    sq = np.maximum(m.sumsq[iu] + m.sumsq[ju] - 2.0 * g, 0.0)
    if metric == "sqeuclidean":
        return sq
    if metric == "euclidean":
        return np.sqrt(sq)
    raise ValueError(f"unknown metric {metric!r}")
