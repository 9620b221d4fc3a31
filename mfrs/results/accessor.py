"""The ``ds.rsa`` accessor: the results API as methods of an ``rsa`` Dataset.

Registered when :mod:`mfrs.results` is imported::

    import mfrs.results as res
    ds = res.open_rsa()
    ds.rsa.peaks()                          # peak r, latency, best layer per (signal, category, region)
    ds.rsa.bilateral().rsa.peaks()          # the same with -lh/-rh pooled
    ds.sel(weights="imagenet").rsa.best_layer()
"""

from __future__ import annotations

import xarray as xr

from mfrs.results import summary

__all__ = ["RsaAccessor"]


@xr.register_dataset_accessor("rsa")
class RsaAccessor:
    """Methods of :mod:`mfrs.results.summary` bound to an ``rsa`` Dataset."""

    def __init__(self, ds: xr.Dataset):
        self._ds = ds

    def r(self, subject: str = "group") -> xr.DataArray:
        """r of one subject label (default the subject-mean RDM ``group``)."""
        return summary.group_r(self._ds, subject)

    def best_layer(self, *, subject: str = "group") -> xr.Dataset:
        """See :func:`mfrs.results.summary.best_layer`."""
        return summary.best_layer(self._ds, subject=subject)

    def peaks(self, *, subject: str = "group") -> xr.Dataset:
        """See :func:`mfrs.results.summary.peaks`."""
        return summary.peaks(self._ds, subject=subject)

    def bilateral(self) -> xr.Dataset:
        """See :func:`mfrs.results.summary.bilateral`."""
        return summary.bilateral(self._ds)

    def significant(self, *, alpha: float = 0.05, p: str = "p_fwe") -> xr.DataArray:
        """See :func:`mfrs.results.summary.significant`."""
        return summary.significant(self._ds, alpha=alpha, p=p)

    def trained_vs_untrained(self, *, subject: str = "group") -> xr.Dataset:
        """See :func:`mfrs.results.summary.trained_vs_untrained`."""
        return summary.trained_vs_untrained(self._ds, subject=subject)
