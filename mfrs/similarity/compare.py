"""``compare_rdms``: every batch element of one RDM set against every one of another."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import compare_block, prepare_block
from mfrs.similarity.threads import single_threaded
from mfrs.similarity.types import COMPARATORS, Comparator

__all__ = ["compare_rdms", "check_same_pairs"]


def check_same_pairs(a: xr.DataArray, b: xr.DataArray, *, pair_dim: str = "pair", what: str = "compare_rdms") -> None:
    """Raise InputDataError unless ``a`` and ``b`` describe the same stimulus pairs."""
    for name, x in (("a", a), ("b", b)):
        if pair_dim not in x.dims:
            raise InputDataError(f"{what}: {name} has dims {tuple(x.dims)}, no {pair_dim!r} dim; "
                                 "make RDMs with compute_rdms or pairs.to_pairs")
    if a.sizes[pair_dim] != b.sizes[pair_dim]:
        raise InputDataError(f"{what}: a has {a.sizes[pair_dim]} pairs and b {b.sizes[pair_dim]}; compare RDMs of "
                             "the same stimuli (use pairs.subset_pairs to select a common subset)")
    for c in ("stimulus_a", "stimulus_b"):
        if c in a.coords and c in b.coords and not np.array_equal(a[c].values, b[c].values):
            raise InputDataError(f"{what}: a and b list different stimuli in pair coord {c!r}; "
                                 "reorder or subset one of them so both follow the same stimulus order")


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
                          f"so rename one side, e.g. b.rename({{{clash[0]!r}: {clash[0] + '_model'!r}}})")
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
