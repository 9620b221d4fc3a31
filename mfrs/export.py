"""Exports to the field's other tools: rsatoolbox RDMs, MNE source estimates and evoked responses.

Each function takes a labelled selection of an mfrs store and returns the other
library's object; rsatoolbox and MNE are imported only when called.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError

__all__ = ["to_rsatoolbox", "to_source_estimate", "to_evoked"]


def to_rsatoolbox(rdm: xr.DataArray, *, pair_dim: str = "pair") -> Any:
    """Any RDM DataArray ``(..., pair)`` -> ``rsatoolbox.rdm.RDMs``, one RDM per batch element.

    Parameters
    ----------
    rdm : xarray.DataArray
        Pair vectors in the mfrs convention (row-major upper triangle, the order of
        rsatoolbox's dissimilarity vectors) with ``stimulus_a``/``stimulus_b`` coords, and
        any batch dims (``layer``, ``subject``, ``time``...).

    Returns
    -------
    rsatoolbox.rdm.RDMs
        ``pattern_descriptors``: ``stimulus`` (and ``category``); ``rdm_descriptors``:
        each batch dim's labels and every coord along one batch dim (``network``, ``depth``...),
        flattened in C order of the batch dims; ``dissimilarity_measure`` from ``attrs["metric"]``.
    """
    from rsatoolbox.rdm import RDMs

    from mfrs.results.stores import flat_layers
    from mfrs.similarity.xarray import stimuli_of, to_square

    if pair_dim not in rdm.dims:
        raise InputDataError(f"to_rsatoolbox: the RDM has dims {tuple(rdm.dims)}, no {pair_dim!r}")
    rdm = flat_layers(rdm)
    batch = [d for d in rdm.dims if d != pair_dim]
    one = rdm.isel({d: 0 for d in batch}) if batch else rdm
    square = to_square(one.drop_vars([c for c in one.coords if c in batch]))
    stimuli = np.asarray(square["stimulus_a"].values)
    patterns: dict[str, Any] = {"stimulus": stimuli.tolist()}
    if "category_a" in rdm.coords:
        patterns["category"] = stimuli_of(rdm, coord="category").tolist()
    data = rdm.transpose(*batch, pair_dim).values.reshape(-1, rdm.sizes[pair_dim])
    descriptors: dict[str, Any] = {}
    if batch:
        grids = np.meshgrid(*[np.arange(rdm.sizes[d]) for d in batch], indexing="ij")
        flat_pos = {d: g.ravel() for d, g in zip(batch, grids)}
        for name, coord in rdm.coords.items():
            if coord.ndim == 1 and coord.dims[0] in batch:
                descriptors[str(name)] = np.asarray(coord.values)[flat_pos[coord.dims[0]]].tolist()
        for d in batch:
            descriptors.setdefault(str(d), flat_pos[d].tolist())
    return RDMs(data.astype(np.float64), dissimilarity_measure=rdm.attrs.get("metric"),
                rdm_descriptors=descriptors, pattern_descriptors=patterns,
                descriptors={"name": str(rdm.name)} if rdm.name is not None else None)


def _time_step(times: np.ndarray) -> float:
    if times.size < 2:
        raise InputDataError("export: at least two time points are needed to know the sampling step")
    steps = np.diff(times)
    if not np.allclose(steps, steps[0], rtol=1e-4, atol=1e-9):
        raise InputDataError("export: the times are not evenly spaced; select a contiguous time range")
    return float(steps[0])


def to_source_estimate(activity: xr.DataArray, *, subject: str = "fsaverage") -> Any:
    """One ``(time, vertex)`` selection of ``sources`` -> ``mne.SourceEstimate`` on ``subject``.

    Parameters
    ----------
    activity : xarray.DataArray
        ``sources.activity`` reduced to ``(time, vertex)`` (select or average the
        subject, signal and stimulus first), with vertex coords ``hemi`` and ``fs_vertex``.

    Returns
    -------
    mne.SourceEstimate
        ``vertices``: the ``fs_vertex`` numbers of each hemisphere in increasing
        (FreeSurfer) order; ``data (n_vertices, n_times)`` rows in that order.
    """
    import mne

    extra = [d for d in activity.dims if d not in ("time", "vertex")]
    if extra:
        raise InputDataError(f"to_source_estimate: reduce dims {extra} first (e.g. .sel(subject=...) or "
                             f".mean({extra[0]!r})); the selection must be (time, vertex)")
    for c in ("hemi", "fs_vertex"):
        if c not in activity.coords:
            raise InputDataError(f"to_source_estimate: vertex coord {c!r} is missing; select from the "
                                 "sources store, which carries hemi and fs_vertex")
    hemi = np.asarray(activity["hemi"].values).astype(str)
    fs = np.asarray(activity["fs_vertex"].values).astype(int)
    data = activity.transpose("vertex", "time").values
    vertices, rows = [], []
    for h in ("lh", "rh"):
        idx = np.flatnonzero(hemi == h)
        order = idx[np.argsort(fs[idx], kind="stable")]
        vertices.append(fs[order])
        rows.append(data[order])
    times = np.asarray(activity["time"].values, dtype=float)
    return mne.SourceEstimate(np.concatenate(rows), vertices=vertices, tmin=float(times[0]),
                              tstep=_time_step(times), subject=subject)


def to_evoked(data: xr.DataArray, *, info: Any = None, comment: str | None = None) -> Any:
    """A selection of ``epochs.data`` -> ``mne.EvokedArray``.

    Parameters
    ----------
    data : xarray.DataArray
        ``(channel, time)``, or ``(stimulus, channel, time)`` which is averaged
        (``nave`` = number of stimuli); coords ``channel`` and ``ch_type``.
    info : mne.Info, optional
        Measurement info holding at least these channels (e.g. of the BIDS recording,
        for sensor positions); default: ``mne.create_info`` from ``channel``/``ch_type``.
    """
    import mne

    nave = 1
    if "stimulus" in data.dims:
        nave = data.sizes["stimulus"]
        data = data.mean("stimulus", keep_attrs=True)
    extra = [d for d in data.dims if d not in ("channel", "time")]
    if extra:
        raise InputDataError(f"to_evoked: reduce dims {extra} first; the selection must be "
                             "([stimulus,] channel, time)")
    names = [str(c) for c in data["channel"].values]
    times = np.asarray(data["time"].values, dtype=float)
    sfreq = 1.0 / _time_step(times)
    if info is None:
        if "ch_type" not in data.coords:
            raise InputDataError("to_evoked: no ch_type coord; pass info= (an mne.Info with these channels)")
        info = mne.create_info(names, sfreq, [str(t) for t in data["ch_type"].values])
    else:
        missing = [n for n in names if n not in info["ch_names"]]
        if missing:
            raise InputDataError(f"to_evoked: channels {missing[:5]} are not in the info given")
        info = mne.pick_info(info, [info["ch_names"].index(n) for n in names])
        if abs(info["sfreq"] - sfreq) > 1e-6 * sfreq:
            with info._unlock():
                info["sfreq"] = sfreq
    return mne.EvokedArray(data.transpose("channel", "time").values.astype(np.float64), info,
                           tmin=float(times[0]), nave=nave, comment=comment, verbose="error")
