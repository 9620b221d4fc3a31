"""``compute_rdms``: labelled patterns -> labelled RDM pair vectors (the xarray-facing layer)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.blocks import crossnobis_block, n_pairs, rdm_block
from mfrs.similarity.pairs import pair_coords
from mfrs.similarity.threads import single_threaded
from mfrs.similarity.types import DISSIMILARITIES, Dissimilarity

__all__ = ["compute_rdms"]


def _check_dims(data: xr.DataArray, dims: Sequence[str], what: str) -> None:
    missing = [d for d in dims if d not in data.dims]
    if missing:
        raise InputDataError(f"{what}: dims {missing} are not in the data, whose dims are {tuple(data.dims)}; "
                             "name existing dims (dims are matched by name, never by position)")


def compute_rdms(
    data: xr.DataArray,
    *,
    stimulus_dim: str = "stimulus",
    feature_dims: str | Sequence[str],
    metric: Dissimilarity = "correlation",
    fold_dim: str | None = None,
    precision: np.ndarray | xr.DataArray | None = None,
) -> xr.DataArray:
    """Representational dissimilarity matrices, as pair vectors.

    ``(..., stimulus, *feature_dims) -> (..., pair)``: every other dim is a batch dim
    (Dask-backed input stays lazy, one task per batch chunk).

    Parameters
    ----------
    data : xarray.DataArray
        Response patterns. The stimulus dim and the feature dims must each be one chunk.
    stimulus_dim : str
        The dim whose pairs the RDM describes; its coord labels (and coords such as
        ``category``) become the ``stimulus_a``/``stimulus_b`` pair coords.
    feature_dims : str or sequence of str
        Dims flattened into the pattern of a stimulus (e.g. ``"vertex"``).
    metric : Dissimilarity
        ``correlation`` (1 - r), ``abs_correlation`` (1 - |r|), ``euclidean``,
        ``sqeuclidean``, ``cosine`` (as :func:`scipy.spatial.distance.pdist`), or
        ``crossnobis`` (rsatoolbox's definition; needs ``fold_dim``).
    fold_dim : str, optional
        For ``crossnobis``: the dim of independent measurement folds.
    precision : array (feature, feature), optional
        For ``crossnobis``: noise precision matrix over the flattened features
        (identity if None).

    Returns
    -------
    xarray.DataArray
        Dims ``(..., pair)``, float32 for float32 input, float64 otherwise. A constant
        pattern gives NaN for all its pairs under ``correlation``/``abs_correlation``
        (an all-zero pattern under ``cosine``); NaN inputs propagate.

    Examples
    --------
    >>> x = xr.DataArray(np.eye(3), dims=("stimulus", "vertex"), coords={"stimulus": ["a", "b", "c"]})
    >>> compute_rdms(x, feature_dims="vertex", metric="euclidean").round(3).values.tolist()
    [1.414, 1.414, 1.414]
    """
    feature_dims = (feature_dims,) if isinstance(feature_dims, str) else tuple(feature_dims)
    if metric not in DISSIMILARITIES:
        raise ConfigError(f"compute_rdms: metric={metric!r} is not one of {DISSIMILARITIES}")
    core = [stimulus_dim, *feature_dims]
    if metric == "crossnobis":
        if fold_dim is None:
            raise ConfigError("compute_rdms: metric='crossnobis' needs fold_dim=<dim of independent folds>")
        core = [fold_dim, *core]
        if data.sizes[fold_dim] < 2:
            raise InputDataError(f"compute_rdms: crossnobis needs at least 2 folds along {fold_dim!r}, "
                                 f"got {data.sizes[fold_dim]}")
    elif fold_dim is not None or precision is not None:
        raise ConfigError(f"compute_rdms: fold_dim/precision only apply to metric='crossnobis', not {metric!r}")
    _check_dims(data, core, "compute_rdms")
    n_feat = int(np.prod([data.sizes[d] for d in feature_dims]))
    w = None if precision is None else np.asarray(precision, dtype=np.float64)
    if w is not None and w.shape != (n_feat, n_feat):
        raise InputDataError(f"compute_rdms: precision has shape {w.shape}, expected ({n_feat}, {n_feat}) "
                             f"for the flattened feature dims {feature_dims}")
    n = data.sizes[stimulus_dim]
    dtype = np.float32 if data.dtype == np.float32 and metric != "crossnobis" else np.float64

    def _block(x: np.ndarray) -> np.ndarray:
        x = x.reshape(*x.shape[: x.ndim - len(feature_dims)], n_feat)
        with single_threaded():
            if metric == "crossnobis":
                return crossnobis_block(x, w)
            return rdm_block(x, metric).astype(dtype, copy=False)

    stim = data[stimulus_dim] if stimulus_dim in data.coords else np.arange(n)
    attrs = {"metric": metric, "features": ",".join(feature_dims)}
    if data.chunks is None:
        # in memory: the kernel on a view of the values, one DataArray built around its result
        batch = [d for d in data.dims if d not in core]
        coords = {k: c.variable for k, c in data.coords.items() if not set(c.dims) & set(core)}
        return xr.DataArray(_block(data.transpose(*batch, *core).values), dims=(*batch, "pair"),
                            coords={**coords, **pair_coords(stim)}, name="rdm", attrs=attrs)
    out = xr.apply_ufunc(
        _block, data, input_core_dims=[core], output_core_dims=[["pair"]],
        dask="parallelized", output_dtypes=[dtype], dask_gufunc_kwargs={"output_sizes": {"pair": n_pairs(n)}},
    )
    out = out.assign_coords(pair_coords(stim))
    out.name = "rdm"
    out.attrs = attrs
    return out
