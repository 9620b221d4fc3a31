"""Brain RDMs of the result stores, recomputed on demand.

The pair convention is the one of every stored RDM (:func:`mfrs.similarity.pair_coords`):
the ``pair`` dim is the row-major upper triangle (i < j, the order of
:func:`scipy.spatial.distance.pdist`) with coords ``stimulus_a``/``stimulus_b`` (and
``category_a``/``category_b``); :func:`mfrs.similarity.to_square` makes the square matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError, StoreError

__all__ = ["brain_rdm", "stage_config"]


def stage_config(rsa: xr.Dataset) -> Any:
    """The similarity stage's config that made ``rsa`` (from its provenance)."""
    from mfrs.stages.similarity import Config

    params = rsa.attrs.get("provenance", {}).get("parameters")
    if params is None:
        raise StoreError("rsa has no provenance parameters; it was not written by the similarity stage")
    return Config.model_validate(params)


def brain_rdm(*, region: str, time: float, subject: str | None = "group", signal: str | None = None,
              category: str = "all", catalog: Any = None) -> xr.DataArray:
    """The brain RDM of ``region`` at ``time``, recomputed from ``sources`` as the similarity stage does.

    The stage keeps r, not the RDMs (unless ``store_rdms``); this redoes its steps for
    one region and time with its own settings (read from the ``rsa`` provenance):
    :func:`mfrs.stages.similarity.layout` for the region's vertices and the time (or
    window) samples, float32 patterns, :func:`mfrs.similarity.blocks.rdm_block` for
    each subject, and the subject mean for ``group``.

    Parameters
    ----------
    region : str
        A region of ``rsa`` (``FFA-lh``).
    time : float
        An ``rsa`` time in seconds (the nearest one is used; it must be within half a step).
    subject : str or None
        A subject label, ``group`` (subject-mean RDM) or None for every subject and ``group``.
    signal : str, optional
        Default: the first signal.
    category : str
        ``all`` or a stimulus category of the stage's ``categories``.

    Returns
    -------
    xarray.DataArray
        ``([subject,] pair)`` with the ``rsa`` pair coords and attrs ``region``, ``time``, ``metric``.
    """
    from mfrs.catalog import Catalog, load_catalog
    from mfrs.similarity.blocks import rdm_block
    from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
    from mfrs.stages.similarity import layout

    cat = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
    rsa = cat.open("rsa")
    cfg = stage_config(rsa)
    sources = cat.open("sources")
    cfg = cfg.model_copy(update={"categories": [category]}) if category in cfg.categories else None
    if cfg is None:
        raise InputDataError(f"brain_rdm: category {category!r} is not one of the stage's "
                             f"{list(stage_config(rsa).categories)}")
    lay = layout(sources, cfg)
    if region not in lay.vertices:
        raise InputDataError(f"brain_rdm: region {region!r} is not a region of rsa ({', '.join(lay.regions)})")
    t_index = int(np.argmin(np.abs(lay.times - time)))
    step = float(np.median(np.diff(lay.times))) if lay.times.size > 1 else np.inf
    if abs(lay.times[t_index] - time) > step / 2 + 1e-9:
        raise InputDataError(f"brain_rdm: time {time} s is outside rsa's times "
                             f"({lay.times[0]:.3f} to {lay.times[-1]:.3f} s)")
    act = sources["activity"].transpose("subject", "signal", "stimulus", "time", "vertex")
    signals = [str(s) for s in act["signal"].values]
    signal = signal or signals[0]
    if signal not in signals:
        raise InputDataError(f"brain_rdm: signal {signal!r} is not one of {signals}")
    start = int(lay.starts[t_index])
    idx = lay.stim_index[category]
    x = act.isel(signal=signals.index(signal), time=slice(start, start + lay.length),
                 vertex=lay.vertices[region]).values.astype(np.float32)[:, idx]  # (subject, stimulus, time, vertex)
    if cfg.mode == "raw":
        feats = x[:, :, 0, :]
    else:
        feats = x.mean(axis=-1)  # (subject, stimulus, samples): the window's mean time course
    rdms = rdm_block(np.ascontiguousarray(feats[:, None]), cfg.metric)[:, 0]  # (subject, pair)
    group = rdms.mean(axis=0)
    subjects = [str(s) for s in act["subject"].values]
    pairs = pair_coords(act["stimulus"].isel(stimulus=idx), with_coords=STORED_PAIR_COORDS)
    attrs = {"region": region, "time": float(lay.times[t_index]), "signal": signal, "category": category,
             "metric": cfg.metric, "description": f"brain RDM ({cfg.metric}) of {region} at "
                                                   f"{lay.times[t_index]:.3f} s, recomputed from sources"}
    if subject is None:
        data = np.concatenate([rdms, group[None]], axis=0)
        return xr.DataArray(data, dims=("subject", "pair"), name="rdm", attrs=attrs,
                            coords={"subject": [*subjects, "group"], **pairs})
    if subject == "group":
        data = group
    elif subject in subjects:
        data = rdms[subjects.index(subject)]
    else:
        raise InputDataError(f"brain_rdm: subject {subject!r} is not one of {subjects} or 'group'")
    return xr.DataArray(data, dims=("pair",), name="rdm", attrs={**attrs, "subject": subject},
                        coords=pairs)
