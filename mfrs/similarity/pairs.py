"""Pair helpers: square RDM <-> pair vector, and the pairs of a stimulus subset, with labels.

The ``pair`` dim is the upper triangle (i < j) row by row, the order of
:func:`scipy.spatial.distance.pdist`. Pair coords ``stimulus_a`` and ``stimulus_b``
name the two stimuli (plus ``category_a``/``category_b`` when the stimuli have a
``category`` coord), so subsets are selections, never reorderings.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.similarity.blocks import n_stimuli_of_pairs

__all__ = ["triu_pairs", "pair_coords", "stimuli_of", "to_square", "to_pairs", "subset_pairs", "category_pairs"]


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


def pair_coords(stimuli: xr.DataArray | Sequence[Hashable], *, pair_dim: str = "pair") -> dict[str, tuple]:
    """Coordinates of the ``pair`` dim for stimuli in dataset order.

    ``(stimulus,) -> {name: (pair_dim, values)}``. Every coord along a stimulus
    DataArray (e.g. ``category``) gives ``<name>_a`` and ``<name>_b``.

    Examples
    --------
    >>> pair_coords(["f1", "f2", "u1"])["stimulus_b"][1].tolist()
    ['f2', 'u1', 'u1']
    """
    iu, ju = triu_pairs(len(stimuli))
    coords: dict[str, tuple] = {}
    values = {"stimulus": np.asarray(stimuli)}
    if isinstance(stimuli, xr.DataArray):
        for name, c in stimuli.coords.items():
            if name != stimuli.name and c.dims == stimuli.dims:
                values[str(name)] = np.asarray(c.values)
    for name, v in values.items():
        coords[f"{name}_a"] = (pair_dim, v[iu])
        coords[f"{name}_b"] = (pair_dim, v[ju])
    return coords


def stimuli_of(rdm: xr.DataArray, *, pair_dim: str = "pair") -> np.ndarray:
    """Stimulus labels in order, read back from the pair coords (positions if there are none)."""
    n = n_stimuli_of_pairs(rdm.sizes[pair_dim])
    if "stimulus_a" not in rdm.coords:
        return np.arange(n)
    a, b = rdm["stimulus_a"].values, rdm["stimulus_b"].values
    return np.concatenate([a[:1], b[: n - 1]])


def to_square(rdm: xr.DataArray, *, pair_dim: str = "pair", diagonal: float = 0.0) -> xr.DataArray:
    """Pair vectors -> symmetric square matrices: ``(..., pair) -> (..., stimulus_a, stimulus_b)``.

    Examples
    --------
    >>> v = xr.DataArray([1.0, 2.0, 3.0], dims="pair", coords=pair_coords(["a", "b", "c"]))
    >>> to_square(v).values.tolist()
    [[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.0, 3.0, 0.0]]
    """
    stimuli = stimuli_of(rdm, pair_dim=pair_dim)
    n = len(stimuli)
    iu, ju = np.triu_indices(n, 1)
    data = rdm.transpose(..., pair_dim).values
    sq = np.full(data.shape[:-1] + (n, n), diagonal, dtype=data.dtype)
    sq[..., iu, ju] = data
    sq[..., ju, iu] = data
    batch = [d for d in rdm.dims if d != pair_dim]
    coords = {k: v for k, v in rdm.coords.items() if pair_dim not in v.dims}
    coords.update(stimulus_a=stimuli, stimulus_b=stimuli)
    return xr.DataArray(sq, dims=(*batch, "stimulus_a", "stimulus_b"), coords=coords, name=rdm.name, attrs=rdm.attrs)


def to_pairs(square: xr.DataArray, *, dims: tuple[str, str] = ("stimulus_a", "stimulus_b"),
             pair_dim: str = "pair") -> xr.DataArray:
    """Square matrices -> pair vectors (upper triangle): ``(..., stimulus_a, stimulus_b) -> (..., pair)``."""
    for d in dims:
        if d not in square.dims:
            raise InputDataError(f"to_pairs: the square RDM has dims {tuple(square.dims)}, not {d!r}; "
                                 "pass dims=(row_dim, col_dim)")
    n = square.sizes[dims[0]]
    iu, ju = np.triu_indices(n, 1)
    data = square.transpose(..., *dims).values[..., iu, ju]
    batch = [d for d in square.dims if d not in dims]
    stim = square[dims[0]] if dims[0] in square.coords else list(range(n))
    coords = {k: v for k, v in square.coords.items() if not set(v.dims) & set(dims)}
    coords.update(pair_coords(np.asarray(stim), pair_dim=pair_dim))
    return xr.DataArray(data, dims=(*batch, pair_dim), coords=coords, name=square.name, attrs=square.attrs)


def subset_pairs(rdm: xr.DataArray, stimuli: Sequence[Hashable] | np.ndarray, *, pair_dim: str = "pair") -> xr.DataArray:
    """The pairs among a subset of stimuli, in the dataset's order: ``(..., pair) -> (..., pair')``.

    Parameters
    ----------
    stimuli : sequence or boolean mask
        Stimulus labels to keep, or a boolean mask over the stimulus order.
    """
    order = stimuli_of(rdm, pair_dim=pair_dim)
    sel = np.asarray(stimuli)
    if sel.dtype == bool:
        if sel.shape != order.shape:
            raise InputDataError(f"subset_pairs: mask of length {sel.size} for {order.size} stimuli")
        keep = sel
    else:
        missing = sorted(set(sel.tolist()) - set(order.tolist()), key=str)
        if missing:
            raise InputDataError(f"subset_pairs: stimuli {missing[:5]} are not in this RDM "
                                 f"(it has {order.size} stimuli, e.g. {order[:3].tolist()})")
        keep = np.isin(order, sel)
    iu, ju = np.triu_indices(order.size, 1)
    return rdm.isel({pair_dim: np.flatnonzero(keep[iu] & keep[ju])})


def category_pairs(rdm: xr.DataArray, category: str, *, pair_dim: str = "pair") -> xr.DataArray:
    """The pairs whose two stimuli both belong to ``category`` (needs ``category_a/_b`` coords)."""
    if "category_a" not in rdm.coords:
        raise InputDataError("category_pairs: the RDM has no 'category_a'/'category_b' pair coords; compute it "
                             "from data whose stimulus dim carries a 'category' coord")
    mask = (rdm["category_a"] == category) & (rdm["category_b"] == category)
    if not bool(mask.any()):
        raise InputDataError(f"category_pairs: no pair has both stimuli in category {category!r}; "
                             f"categories present: {sorted(set(rdm['category_a'].values.tolist()))}")
    return rdm.isel({pair_dim: np.flatnonzero(mask.values)})
