"""``noise_ceiling``: how well any model could do, given the between-subject variability."""

from __future__ import annotations

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import compare_paired_block, noise_ceiling_block, pool_block
from mfrs.similarity.seeds import unit_rng
from mfrs.similarity.threads import single_threaded
from mfrs.similarity.types import COMPARATORS, Comparator, Pooling

__all__ = ["noise_ceiling"]


def noise_ceiling(
    rdms: xr.DataArray,
    *,
    subject_dim: str = "subject",
    method: Comparator = "spearman",
    pooling: Pooling = "normalized",
    n_bootstrap: int = 0,
    seed: int = 0,
    pair_dim: str = "pair",
) -> xr.Dataset:
    """Leave-one-out noise ceiling, and optionally a split-half bootstrap.

    ``(subject, ..., pair) -> (...)``.

    Parameters
    ----------
    rdms : xarray.DataArray
        One RDM per subject (and per batch element, e.g. region x time).
    method : Comparator
        Comparator used for the ceiling (the one used for the models).
    pooling : Pooling
        ``normalized`` (rsatoolbox's ``pool_rdm``; matches ``boot_noise_ceiling``) or
        ``mean`` (the raw mean of the subjects' RDMs, as the reference study).
    n_bootstrap : int
        Number of random split halves (0 = none). Each split compares the pool of one
        half of the subjects with the pool of the other half; the same splits serve
        every batch element (seeded by ``seed``, so chunking does not matter).

    Returns
    -------
    xarray.Dataset
        ``lower`` (mean over subjects of each subject vs the pool of the others),
        ``upper`` (each subject vs the pool of all); with ``n_bootstrap``:
        ``split_half`` (mean split-half r), ``split_half_sd``, ``split_half_low``/
        ``split_half_high`` (2.5 and 97.5 percentiles).
    """
    if method not in COMPARATORS:
        raise ConfigError(f"noise_ceiling: method={method!r} is not one of {COMPARATORS}")
    if subject_dim not in rdms.dims or pair_dim not in rdms.dims:
        raise InputDataError(f"noise_ceiling: needs dims {subject_dim!r} and {pair_dim!r}, the RDMs have "
                             f"{tuple(rdms.dims)}")
    n_sub = rdms.sizes[subject_dim]
    if n_sub < 2 or (n_bootstrap and n_sub < 4):
        raise InputDataError(f"noise_ceiling: {n_sub} subject(s) along {subject_dim!r}; leave-one-out needs 2, "
                             "split halves need 4")

    def _loo(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with single_threaded():
            lower, upper = noise_ceiling_block(np.moveaxis(x, -2, 0), method, pooling)
        return lower.mean(axis=0), upper.mean(axis=0)

    core = [[subject_dim, pair_dim]]
    lower, upper = xr.apply_ufunc(_loo, rdms, input_core_dims=core, output_core_dims=[[], []],
                                  dask="parallelized", output_dtypes=[np.float64, np.float64])
    out = xr.Dataset({"lower": lower, "upper": upper})
    if n_bootstrap:
        rng = unit_rng(seed, "noise_ceiling_split_half")
        splits = np.stack([rng.permutation(n_sub) for _ in range(n_bootstrap)])
        half = n_sub // 2

        def _split(x: np.ndarray) -> np.ndarray:
            with single_threaded():
                normed = pool_block(np.moveaxis(x, -2, 0), method, pooling)
                r = np.empty((n_bootstrap,) + normed.shape[1:-1])
                for i, s in enumerate(splits):
                    a = normed[s[:half]].mean(axis=0)
                    b = normed[s[half : 2 * half]].mean(axis=0)
                    r[i] = compare_paired_block(a, b, method)
            return np.moveaxis(r, 0, -1)

        r = xr.apply_ufunc(_split, rdms, input_core_dims=core, output_core_dims=[["split"]], dask="parallelized",
                           output_dtypes=[np.float64], dask_gufunc_kwargs={"output_sizes": {"split": n_bootstrap}})
        out["split_half"] = r.mean("split")
        out["split_half_sd"] = r.std("split", ddof=1)
        out["split_half_low"] = r.quantile(0.025, "split").drop_vars("quantile")
        out["split_half_high"] = r.quantile(0.975, "split").drop_vars("quantile")
    out.attrs = {"method": method, "pooling": pooling, "n_subjects": n_sub, "n_bootstrap": n_bootstrap}
    return out
