"""Model comparison across subjects: which layers, networks or weights explain the brain better.

``compare_layer_sets`` pairs two sets of layers (trained vs untrained weights of one
network, faces vs objects training, layer by layer) and tests the per-subject
differences of r; ``compare_best_layers`` takes each model's best layer (the layer of
largest subject-mean r) and compares every pair of models, as rsatoolbox's pairwise
model comparison does. Both work on per-subject r, e.g. the ``r`` of the ``rsa`` store
without its ``group`` subject, for any region x time (x signal x category) elements.

Tests, per element: a subject sign-flip test of the mean difference (``p_signflip``,
and with ``fwe_dims`` its max statistic over that family, ``p_signflip_fwe``), the
paired t test (``p_ttest``, rsatoolbox's ``test_pairwise('t-test')`` of fixed models)
and Benjamini-Hochberg q of ``p_signflip`` over the family and the contrasts
(``p_fdr``); a subject bootstrap gives the interval of the mean difference.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.similarity.types import Alternative

__all__ = ["compare_layer_sets", "compare_best_layers", "select_layers"]


def select_layers(r: xr.DataArray, sel: Mapping[str, Any] | Sequence[Hashable], layer_dim: str) -> np.ndarray:
    """Positions along ``layer_dim`` of a selection: coord values (``{"weights": "untrained-seed0"}``) or labels."""
    if isinstance(sel, Mapping):
        keep = np.ones(r.sizes[layer_dim], bool)
        for coord, value in sel.items():
            if coord not in r.coords or r[coord].dims != (layer_dim,):
                raise InputDataError(f"model comparison: {coord!r} is not a coord along {layer_dim!r}; the layers "
                                     f"carry {[c for c in r.coords if r[c].dims == (layer_dim,)]}")
            values = value if isinstance(value, (list, tuple)) else [value]
            keep &= np.isin(r[coord].values, values)
        return np.flatnonzero(keep)
    labels = r[layer_dim].values.tolist()
    missing = [x for x in sel if x not in labels]
    if missing:
        raise InputDataError(f"model comparison: layers {missing[:3]} are not in r (it has {len(labels)} layers, "
                             f"e.g. {labels[:2]})")
    return np.array([labels.index(x) for x in sel])


def _paired_tests(d: np.ndarray, *, fwe_axes: tuple[int, ...], n_signflips: int, n_bootstrap: int, ci: float,
                  seed: int, label: str, two_sided: bool) -> dict[str, np.ndarray]:
    """Tests of paired differences ``d (subject, ...)``: see the module docstring."""
    from mfrs.similarity.group import draw_sign_flips, percentile_ci, signflip_test
    from mfrs.similarity.inference import fdr_bh, paired_t_p
    from mfrs.similarity.seeds import unit_rng

    n_sub = d.shape[0]
    flips = draw_sign_flips(unit_rng(seed, "signflip", label), n_sub, n_signflips)
    res = signflip_test(d, flips, axes=fwe_axes, two_sided=two_sided)
    out = {"difference": d.mean(axis=0), "p_signflip": res["p"],
           "p_ttest": paired_t_p(d, two_sided=two_sided)}
    if fwe_axes:
        out["p_signflip_fwe"] = res["p_fwe"]
    out["p_fdr"] = fdr_bh(out["p_signflip"], fwe_axes or None)
    if n_bootstrap:
        draws = unit_rng(seed, "bootstrap", label).integers(0, n_sub, size=(n_bootstrap, n_sub))
        boot = np.stack([d[idx].mean(axis=0) for idx in draws])
        out["difference_ci_low"], out["difference_ci_high"] = percentile_ci(boot, ci)
    return out


def _check(r: xr.DataArray, subject_dim: str, layer_dim: str, fwe_dims: Sequence[str], out_dim: str) -> None:
    for d in (subject_dim, layer_dim):
        if d not in r.dims:
            raise InputDataError(f"model comparison: r needs dims {subject_dim!r} and {layer_dim!r}, it has "
                                 f"{tuple(r.dims)}; pass per-subject r, e.g. rsa.r.drop_sel(subject='group')")
    if "group" in r[subject_dim].values.tolist():
        raise InputDataError("model comparison: r holds the subject 'group' (the subject-mean RDM); the tests are "
                             "across subjects: pass r.drop_sel(subject='group')")
    if r.sizes[subject_dim] < 2:
        raise InputDataError(f"model comparison: {r.sizes[subject_dim]} subject(s); a test across subjects needs 2")
    dims = [d for d in r.dims if d not in (subject_dim, layer_dim)] + [out_dim]
    bad = [d for d in fwe_dims if d not in dims]
    if bad:
        raise ConfigError(f"model comparison: fwe_dims {bad} are not dims of the result {tuple(dims)}")


def _dataset(res: dict[str, np.ndarray], dims: list[str], coords: Mapping[Hashable, Any], attrs: dict[str, Any],
             fwe_dims: Sequence[str]) -> xr.Dataset:
    ds = xr.Dataset({k: (dims, v) for k, v in res.items()}, coords=coords, attrs=attrs)
    fam = " x ".join(fwe_dims)
    fdr_fam = fam or "every element"
    text = {"difference": ("mean over subjects of r(a) - r(b)", "1", None),
            "difference_ci_low": ("lower end of the difference, subject bootstrap percentile interval", "1", None),
            "difference_ci_high": ("upper end of the difference, subject bootstrap percentile interval", "1", None),
            "p_signflip": ("uncorrected sign-flip p of the mean difference across subjects", "1", "none"),
            "p_signflip_fwe": (f"family-wise sign-flip p, max statistic over {fam}", "1", fam),
            "p_ttest": ("paired t test across subjects (rsatoolbox test_pairwise 't-test')", "1", "none"),
            "p_fdr": (f"Benjamini-Hochberg q of p_signflip over {fdr_fam}", "1", f"{fdr_fam}, false discovery rate")}
    for name in ds.data_vars:
        if name in text:
            desc, units, family = text[name]
            ds[name].attrs = {"description": desc, "units": units, **({"family": family} if family else {})}
    return ds


def compare_layer_sets(
    r: xr.DataArray,
    a: Mapping[str, Any] | Sequence[Hashable],
    b: Mapping[str, Any] | Sequence[Hashable],
    *,
    n_signflips: int = 1000,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    fwe_dims: Sequence[str] = (),
    alternative: Alternative = "two-sided",
    subject_dim: str = "subject",
    layer_dim: str = "layer",
) -> xr.Dataset:
    """Paired differences of per-subject r between two sets of layers, layer by layer.

    ``(subject, ..., layer) -> (..., contrast)``: contrast ``k`` is the ``k``-th layer of
    ``a`` minus the ``k``-th layer of ``b`` (in the order of ``layer_dim``), coords
    ``layer_a``/``layer_b`` name them (and ``<coord>_a``/``_b`` carry every other layer
    coord, e.g. ``depth_a``).

    Parameters
    ----------
    a, b : mapping or sequence
        The layers of each set: coord values along ``layer_dim`` (``{"weights":
        "untrained-seed0"}``, ``{"network": "mobilenet_v2", "kind": "relu"}``) or layer labels.
    fwe_dims : sequence of str
        Dims of the result (e.g. ``("time", "contrast")``) of the family of
        ``p_signflip_fwe`` and ``p_fdr``.
    alternative : Alternative
        ``two-sided`` (default: either set may be better) or ``greater`` (a better than b).

    Returns
    -------
    xarray.Dataset
        ``difference``, ``difference_ci_low``/``_high``, ``p_signflip``, ``p_ttest``,
        ``p_fdr`` and with ``fwe_dims`` ``p_signflip_fwe``.
    """
    _check(r, subject_dim, layer_dim, fwe_dims, "contrast")
    ia, ib = select_layers(r, a, layer_dim), select_layers(r, b, layer_dim)
    if ia.size == 0 or ia.size != ib.size:
        raise ConfigError(f"compare_layer_sets: a selects {ia.size} layers and b {ib.size}; the sets are paired "
                          "layer by layer, so select as many in each (e.g. the same network with other weights)")
    x = r.transpose(subject_dim, ..., layer_dim)
    dims = [str(d) for d in x.dims[1:-1]] + ["contrast"]
    d = x.values[..., ia] - x.values[..., ib]
    res = _paired_tests(d, fwe_axes=tuple(dims.index(f) for f in fwe_dims), n_signflips=n_signflips,
                        n_bootstrap=n_bootstrap, ci=ci, seed=seed, label="compare_layer_sets",
                        two_sided=alternative == "two-sided")
    coords = {k: v for k, v in x.coords.items() if subject_dim not in v.dims and layer_dim not in v.dims}
    for name in [layer_dim, *(c for c in x.coords if x[c].dims == (layer_dim,) and c != layer_dim)]:
        coords.update({f"{name}_a": ("contrast", x[name].values[ia]), f"{name}_b": ("contrast", x[name].values[ib])})
    attrs = {"a": repr(a), "b": repr(b), "n_signflips": n_signflips, "n_bootstrap": n_bootstrap, "ci": ci,
             "seed": seed, "alternative": alternative, "fwe_dims": ",".join(fwe_dims)}
    return _dataset(res, dims, coords, attrs, fwe_dims)


def compare_best_layers(
    r: xr.DataArray,
    by: str = "network",
    *,
    n_signflips: int = 1000,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    fwe_dims: Sequence[str] = ("contrast",),
    alternative: Alternative = "two-sided",
    subject_dim: str = "subject",
    layer_dim: str = "layer",
) -> xr.Dataset:
    """Every pair of models compared at their best layers, across subjects.

    ``(subject, ..., layer) -> (..., contrast)``: the models are the values of the
    layer coord ``by`` (``network``, ``weights``); a model's best layer is, per element,
    its layer of largest subject-mean r (selected on the same data, as the reference
    study did: the test compares the selected layers, it does not correct for the
    selection). Contrast ``(m, n)`` is model ``m``'s best layer minus model ``n``'s,
    coords ``model_a``/``model_b``; ``best_layer_a``/``_b`` name the layers.
    ``p_fdr`` corrects over the contrasts (and the other ``fwe_dims``).
    """
    _check(r, subject_dim, layer_dim, fwe_dims, "contrast")
    if by not in r.coords or r[by].dims != (layer_dim,):
        raise InputDataError(f"compare_best_layers: {by!r} is not a coord along {layer_dim!r}; the layers carry "
                             f"{[c for c in r.coords if r[c].dims == (layer_dim,)]}")
    x = r.transpose(subject_dim, ..., layer_dim)
    models = list(dict.fromkeys(x[by].values.tolist()))
    if len(models) < 2:
        raise InputDataError(f"compare_best_layers: every layer has {by}={models}; two models are needed")
    values, labels = x.values, x[layer_dim].values
    best_r, best_label = [], []
    for m in models:
        idx = np.flatnonzero(x[by].values == m)
        mean = np.where(np.isnan(values[..., idx]).any(axis=0), -np.inf, values[..., idx].mean(axis=0))
        pick = idx[mean.argmax(axis=-1)]  # (...,)
        best_r.append(np.take_along_axis(values, np.broadcast_to(pick, values.shape[:-1])[..., None], -1)[..., 0])
        best_label.append(labels[pick])
    pairs = [(i, j) for i in range(len(models)) for j in range(i + 1, len(models))]
    d = np.stack([best_r[i] - best_r[j] for i, j in pairs], axis=-1)
    dims = [str(dim) for dim in x.dims[1:-1]] + ["contrast"]
    res = _paired_tests(d, fwe_axes=tuple(dims.index(f) for f in fwe_dims), n_signflips=n_signflips,
                        n_bootstrap=n_bootstrap, ci=ci, seed=seed, label="compare_best_layers",
                        two_sided=alternative == "two-sided")
    res["best_layer_a"] = np.stack([best_label[i] for i, _ in pairs], axis=-1)
    res["best_layer_b"] = np.stack([best_label[j] for _, j in pairs], axis=-1)
    coords = {k: v for k, v in x.coords.items() if subject_dim not in v.dims and layer_dim not in v.dims}
    coords.update(model_a=("contrast", [models[i] for i, _ in pairs]),
                  model_b=("contrast", [models[j] for _, j in pairs]))
    attrs = {"by": by, "n_signflips": n_signflips, "n_bootstrap": n_bootstrap, "ci": ci, "seed": seed,
             "alternative": alternative, "fwe_dims": ",".join(fwe_dims)}
    return _dataset(res, dims, coords, attrs, fwe_dims)
