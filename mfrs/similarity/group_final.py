"""Group statistics of the similarity stage written by its final task: bootstrap peaks, sign flips, FDR.

- Subject bootstrap (``n_bootstrap``): the blocks store ``r_ci_low``/``r_ci_high`` and,
  in the side store ``bootstrap_peaks``, each sample's peak of every time course over
  the block's times; the final task joins the time blocks into ``peak_latency``
  ``(signal, category, region, layer)`` and ``best_layer`` ``(signal, category, region)``
  (the layer holding the largest r over time and layers) with percentile intervals.
- Sign flips of per-subject r (``n_signflips``): read back from the stored ``r``,
  ``p_signflip`` and, over the ``fwe_dims`` family, ``p_signflip_fwe``.
- Benjamini-Hochberg (``fdr``) over the ``fwe_dims`` family: ``p_fdr`` of ``p`` and
  ``p_signflip_fdr`` of ``p_signflip``.

One region block at a time; a family spanning regions is first reduced over every
region block (the sign-flip family maximum; the FDR of a family spanning regions
holds that family's p at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["GroupStats", "group_stats", "BOOT_STORE", "bootstrap_template", "GroupFinal"]

BOOT_STORE = "bootstrap_peaks"
_ORDER = ("signal", "category", "region", "time", "layer")
_CORDER = ("signal", "category", "region", "time", "contrast")
_AXIS = {"region": 2, "time": 3, "layer": 4}  # axes of (signal, category, region, time, layer)


@dataclass(frozen=True)
class GroupStats:
    """The group statistics asked for by a similarity config."""

    n_bootstrap: int
    ci: float
    n_signflips: int
    fdr: bool
    seed: int
    fwe_dims: tuple[str, ...]
    two_sided: bool
    relabel: bool  # the relabelling test (p) is on
    #: layer selections ``(("a", ((coord, value), ...)), ("b", ...))`` of the stored contrast, or ()
    contrast: tuple = ()

    @property
    def block_variables(self) -> tuple[str, ...]:
        """Variables the blocks write."""
        return ("r_ci_low", "r_ci_high") if self.n_bootstrap else ()

    @property
    def final_variables(self) -> tuple[str, ...]:
        """Variables the final task writes, with their dims."""
        return tuple(self.final_dims)

    @property
    def final_dims(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        if self.n_bootstrap:
            for name in ("peak_latency", "peak_latency_ci_low", "peak_latency_ci_high"):
                out[name] = ("signal", "category", "region", "layer")
            for name in ("best_layer", "best_layer_ci_low", "best_layer_ci_high"):
                out[name] = ("signal", "category", "region")
        if self.n_signflips:
            out["p_signflip"] = _ORDER
            if self.fwe_dims:
                out["p_signflip_fwe"] = _ORDER
        if self.fdr:
            if self.relabel:
                out["p_fdr"] = _ORDER
            if self.n_signflips:
                out["p_signflip_fdr"] = _ORDER
        if self.contrast:
            names = ["compare_difference", "compare_p_signflip", "compare_p_ttest"]
            names += ["compare_p_signflip_fwe"] if self.fwe_dims else []
            names += ["compare_p_fdr"] if self.fdr else []
            names += ["compare_ci_low", "compare_ci_high"] if self.n_bootstrap else []
            out.update({name: _CORDER for name in names})
        return out

    @property
    def selections(self) -> tuple[dict[str, str], dict[str, str]]:
        """The layer selections ``a`` and ``b`` of the contrast."""
        sel = dict(self.contrast)
        return dict(sel["a"]), dict(sel["b"])

    def attrs(self, n_subjects: int) -> dict[str, dict[str, str]]:
        """``attrs`` (description, units, family) of the group variables."""
        fam = " x ".join(self.fwe_dims)
        per = "signal, category" + "".join(f", {d}" for d in ("region", "time", "layer") if d not in self.fwe_dims)
        boot = (f"{self.n_bootstrap} subject bootstrap samples (half the subjects drawn with replacement, RSA of "
                f"their mean RDM), {100 * self.ci:g} % percentile interval")
        exact = 2**n_subjects - 1 <= self.n_signflips
        flips = (f"all {2**n_subjects} sign flips (exact)" if exact else f"{self.n_signflips} random sign flips") + (
            " of per-subject r, mean r" + (" |mean r| (two-sided)" if self.two_sided else " (greater)"))
        return {
            "r_ci_low": {"description": f"lower end of r of the group RDM, {boot}", "units": "1"},
            "r_ci_high": {"description": f"upper end of r of the group RDM, {boot}", "units": "1"},
            "peak_latency": {"description": "time of the largest group r of each layer's time course", "units": "s"},
            "peak_latency_ci_low": {"description": f"lower end of peak_latency, {boot}", "units": "s"},
            "peak_latency_ci_high": {"description": f"upper end of peak_latency, {boot}", "units": "s"},
            "best_layer": {"description": "position along 'layer' of the layer holding the region's largest group r "
                           "(over time and layers)", "units": "layer position"},
            "best_layer_ci_low": {"description": f"lower end of best_layer, {boot}", "units": "layer position"},
            "best_layer_ci_high": {"description": f"upper end of best_layer, {boot}", "units": "layer position"},
            "p_signflip": {"description": f"uncorrected p across subjects, {flips}", "units": "1",
                           "family": "none (each element alone)"},
            "p_signflip_fwe": {"description": f"family-wise p across subjects, max statistic over {fam}, {flips}",
                               "units": "1", "family": f"{fam} (one family per {per})"},
            "p_fdr": {"description": f"Benjamini-Hochberg q of p over {fam}", "units": "1",
                      "family": f"{fam} (one family per {per}), false discovery rate"},
            "p_signflip_fdr": {"description": f"Benjamini-Hochberg q of p_signflip over {fam}", "units": "1",
                               "family": f"{fam} (one family per {per}), false discovery rate"},
            **self._contrast_attrs(n_subjects, fam.replace("layer", "contrast"), per.replace("layer", "contrast")),
        }

    def _contrast_attrs(self, n_subjects: int, fam: str, per: str) -> dict[str, dict[str, str]]:
        if not self.contrast:
            return {}
        a, b = self.selections
        what = f"per-subject r of layers {a} minus the paired layers {b} (contrast k: k-th layer of each)"
        exact = 2**n_subjects - 1 <= self.n_signflips
        flips = (f"all {2**n_subjects} sign flips (exact)" if exact else f"{self.n_signflips} random sign flips") + (
            " of the differences, |mean| (two-sided)")
        return {
            "compare_difference": {"description": f"mean over subjects of {what}", "units": "1"},
            "compare_p_signflip": {"description": f"uncorrected p of the difference, {flips}", "units": "1",
                                   "family": "none (each element alone)"},
            "compare_p_ttest": {"description": "paired t test of the difference across subjects (two-sided; "
                                "rsatoolbox test_pairwise 't-test')", "units": "1", "family": "none"},
            "compare_p_signflip_fwe": {"description": f"family-wise p of the difference, max statistic over {fam}, "
                                       f"{flips}", "units": "1", "family": f"{fam} (one family per {per})"},
            "compare_p_fdr": {"description": f"Benjamini-Hochberg q of compare_p_signflip over {fam}", "units": "1",
                              "family": f"{fam} (one family per {per}), false discovery rate"},
            "compare_ci_low": {"description": f"lower end of the difference, {self.n_bootstrap} subject bootstrap "
                               f"samples (all subjects with replacement), {100 * self.ci:g} % percentile interval",
                               "units": "1"},
            "compare_ci_high": {"description": f"upper end of the difference, {self.n_bootstrap} subject bootstrap "
                                f"samples (all subjects with replacement), {100 * self.ci:g} % percentile interval",
                                "units": "1"},
        }


def group_stats(config: Any) -> GroupStats:
    """The :class:`GroupStats` of a similarity ``config``."""
    contrast: tuple = ()
    if getattr(config, "contrast", None) is not None:
        contrast = tuple((k, tuple(sorted(v.items()))) for k, v in (("a", config.contrast.a), ("b", config.contrast.b)))
    return GroupStats(n_bootstrap=config.n_bootstrap, ci=config.ci, n_signflips=config.n_signflips, fdr=config.fdr,
                      seed=config.seed, fwe_dims=tuple(config.fwe_dims), two_sided=config.alternative == "two-sided",
                      relabel=config.n_permutations > 0, contrast=contrast)


def contrast_layers(layers: xr.DataArray, gs: GroupStats) -> tuple[np.ndarray, np.ndarray]:
    """Positions along ``layer`` of the two paired sets of the contrast (``layers``: a DataArray with layer coords)."""
    from mfrs.similarity.model_comparison import select_layers

    a, b = gs.selections
    ia, ib = select_layers(layers, a, "layer"), select_layers(layers, b, "layer")
    if ia.size == 0 or ia.size != ib.size:
        from mfrs.errors import ConfigError

        raise ConfigError(f"similarity: contrast a={a} selects {ia.size} layers and b={b} {ib.size}; the sets are "
                          "paired layer by layer, so select as many in each (e.g. one network with two weights)")
    return ia, ib


def contrast_coords(layers: xr.DataArray, gs: GroupStats) -> dict[str, Any]:
    """Coords of the ``contrast`` dim: ``<layer coord>_a``/``_b`` of the paired layers."""
    ia, ib = contrast_layers(layers, gs)
    coords: dict[str, Any] = {"contrast": np.arange(ia.size)}
    for name in ["layer", *(c for c in layers.coords if layers[c].dims == ("layer",) and c != "layer")]:
        coords.update({f"{name}_a": ("contrast", layers[name].values[ia]),
                       f"{name}_b": ("contrast", layers[name].values[ib])})
    return coords


def bootstrap_template(gs: GroupStats, *, coords: dict[str, Any], time_block: int,
                       region_block: int) -> tuple[xr.Dataset, tuple[str, str]]:
    """Template and unit dims of the ``bootstrap_peaks`` side store (peak of each sample per time block)."""
    import dask.array as da

    n_tb = -(-len(coords["time"]) // time_block)
    labels = {"signal": coords["signal"], "category": coords["category"], "sample": np.arange(gs.n_bootstrap),
              "region": coords["region"], "time_block": np.arange(n_tb), "layer": coords["layer"]}
    dims = ("signal", "category", "sample", "region", "time_block", "layer")
    chunks = tuple({"region": region_block, "time_block": 1}.get(d, len(labels[d])) for d in dims)
    shape = tuple(len(labels[d]) for d in dims)
    data = {name: (dims, da.full(shape, np.nan, chunks=chunks, dtype="float32"))
            for name in ("boot_peak_r", "boot_peak_index")}
    return xr.Dataset(data, coords=labels), ("region", "time_block")


class GroupFinal:
    """The final task's group statistics, one region block at a time (see the module docstring)."""

    def __init__(self, ds: xr.Dataset, gs: GroupStats, region_blocks: list[slice], *, peaks: xr.Dataset | None):
        """``ds``: the ``rsa`` store; ``peaks``: its ``bootstrap_peaks`` side store (with ``n_bootstrap``)."""
        if gs.n_bootstrap and peaks is None:
            raise ValueError("GroupFinal: n_bootstrap needs the bootstrap_peaks side store (peaks=)")
        self.gs, self.ds = gs, ds
        self.subjects = [s for s in ds["subject"].values.tolist() if s != "group"]
        self.times = np.asarray(ds["time"].values, dtype=float)
        self.peaks = peaks
        self.pairs = contrast_layers(ds["r"], gs) if gs.contrast else None
        sources = (["r"] if gs.n_signflips else []) + (["contrast"] if gs.contrast else [])
        self._family_max: dict[str, np.ndarray] = {}
        self._fdr: dict[str, np.ndarray] = {}
        if "region" in gs.fwe_dims:  # families span regions: the max per flip over every region block first
            for source in sources:
                for sl in region_blocks:
                    m = self._signflip(sl, source, family_max_only=True)
                    self._family_max[source] = np.maximum(self._family_max[source], m) if (
                        source in self._family_max) else m
        if gs.fdr and "region" in gs.fwe_dims:  # the family spans regions: its p are held at once
            if gs.relabel:
                self._fdr["p_fdr"] = self._q(ds["p"].transpose(*_ORDER).values)
            for source, name in (("r", "p_signflip_fdr"), ("contrast", "compare_p_fdr")):
                if source in sources:
                    parts = [self._signflip(sl, source)[0] for sl in region_blocks]
                    self._fdr[name] = self._q(np.concatenate(parts, axis=2))

    def _q(self, p: np.ndarray) -> np.ndarray:
        from mfrs.similarity.inference import fdr_bh

        return fdr_bh(p, tuple(_AXIS[d] for d in self.gs.fwe_dims)) if self.gs.fwe_dims else p

    def _values(self, reg: slice, source: str) -> np.ndarray:
        """Per-subject values ``(subject, signal, category, region, time, layer | contrast)`` of a region block."""
        r = self.ds["r"].sel(subject=self.subjects).isel(region=reg).transpose("subject", *_ORDER).values
        if source == "r":
            return r
        if self.pairs is None:
            raise ValueError(f"GroupFinal: source={source!r} needs the config's contrast (none is set)")
        ia, ib = self.pairs
        return r[..., ia] - r[..., ib]

    def _signflip(self, reg: slice, source: str = "r", family_max_only: bool = False) -> Any:
        """Sign-flip p and family-wise p of a region block's ``source`` (or its per-flip family maximum).

        ``source``: ``r`` (per-subject r, one-sided unless ``alternative`` is two-sided)
        or ``contrast`` (paired differences, two-sided), by
        :func:`mfrs.similarity.group.signflip_test`.
        """
        from mfrs.similarity.group import draw_sign_flips, signflip_test
        from mfrs.similarity.seeds import unit_rng

        r = self._values(reg, source)
        shape = r.shape[1:]
        p, p_fwe = np.empty(shape), np.empty(shape)
        fmax_all = None
        axes = tuple(_AXIS[d] - 2 for d in self.gs.fwe_dims)
        for s, signal in enumerate(self.ds["signal"].values.tolist()):
            for c, cat in enumerate(self.ds["category"].values.tolist()):
                labels = ("signflip", signal, cat) if source == "r" else ("signflip", "contrast", signal, cat)
                flips = draw_sign_flips(unit_rng(self.gs.seed, *labels), len(self.subjects), self.gs.n_signflips)
                family = self._family_max[source][s, c] if source in self._family_max else None
                res = signflip_test(r[:, s, c], flips, axes=axes, two_sided=self.gs.two_sided or source == "contrast",
                                    family_null=family)
                if family_max_only:
                    if fmax_all is None:
                        fmax_all = np.empty((len(self.ds["signal"]), len(self.ds["category"]),
                                             *res["family_max"].shape))
                    fmax_all[s, c] = res["family_max"]
                    continue
                p[s, c] = res["p"]
                if axes:
                    p_fwe[s, c] = res["p_fwe"]
        return fmax_all if family_max_only else (p, p_fwe)

    def region_block(self, reg: slice, group_r: np.ndarray) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """Every group variable of regions ``reg`` over all times; ``group_r`` the block's group r in ``_ORDER``."""
        gs = self.gs
        out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
        if gs.n_bootstrap:
            out.update(self._bootstrap(reg, group_r))
        if gs.contrast:
            out.update(self._contrast(reg))
        if gs.n_signflips:
            p, p_fwe = self._signflip(reg)
            out["p_signflip"] = (_ORDER, p)
            if gs.fwe_dims:
                out["p_signflip_fwe"] = (_ORDER, p_fwe)
        if gs.fdr:
            if gs.relabel:
                out["p_fdr"] = (_ORDER, self._fdr["p_fdr"][:, :, reg] if "p_fdr" in self._fdr else
                                self._q(self.ds["p"].isel(region=reg).transpose(*_ORDER).values))
            if gs.n_signflips:
                out["p_signflip_fdr"] = (_ORDER, self._fdr["p_signflip_fdr"][:, :, reg] if "p_signflip_fdr" in
                                         self._fdr else self._q(out["p_signflip"][1]))
        return out

    def _contrast(self, reg: slice) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """The stored model comparison of a region block (see :mod:`mfrs.similarity.model_comparison`)."""
        from mfrs.similarity.group import percentile_ci
        from mfrs.similarity.inference import paired_t_p
        from mfrs.similarity.seeds import unit_rng

        gs, d = self.gs, self._values(reg, "contrast")
        p, p_fwe = self._signflip(reg, "contrast")
        out: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
            "compare_difference": (_CORDER, d.mean(axis=0)), "compare_p_signflip": (_CORDER, p),
            "compare_p_ttest": (_CORDER, paired_t_p(d))}
        if gs.fwe_dims:
            out["compare_p_signflip_fwe"] = (_CORDER, p_fwe)
        if gs.fdr:
            out["compare_p_fdr"] = (_CORDER, self._fdr["compare_p_fdr"][:, :, reg] if "compare_p_fdr" in self._fdr
                                    else self._q(p))
        if gs.n_bootstrap:
            low, high = np.empty(d.shape[1:]), np.empty(d.shape[1:])
            n = len(self.subjects)
            for s, signal in enumerate(self.ds["signal"].values.tolist()):
                for c, cat in enumerate(self.ds["category"].values.tolist()):
                    draws = unit_rng(gs.seed, "contrast_bootstrap", signal, cat).integers(0, n, (gs.n_bootstrap, n))
                    low[s, c], high[s, c] = percentile_ci(np.stack([d[idx, s, c].mean(axis=0) for idx in draws]),
                                                          gs.ci)
            out["compare_ci_low"], out["compare_ci_high"] = (_CORDER, low), (_CORDER, high)
        return out

    def _bootstrap(self, reg: slice, group_r: np.ndarray) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        from mfrs.similarity.group import merge_peaks, peak_summary, percentile_ci

        assert self.peaks is not None  # __init__ refuses n_bootstrap without the side store
        part = self.peaks.isel(region=reg)
        dims = ("time_block", "signal", "category", "sample", "region", "layer")
        value, index = merge_peaks(part["boot_peak_r"].transpose(*dims).values,
                                   part["boot_peak_index"].transpose(*dims).values)  # (sig, cat, sample, reg, layer)
        latency = np.where(index >= 0, self.times[np.clip(index, 0, None).astype(int)], np.nan)
        best = np.where(np.isfinite(value).any(axis=-1), value.argmax(axis=-1), np.nan)  # (sig, cat, sample, reg)
        peak, peak_index = peak_summary(group_r, 0)  # (sig, cat, reg, layer)
        est_latency = np.where(peak_index >= 0, self.times[np.clip(peak_index, 0, None)], np.nan)
        est_best = np.where(np.isfinite(peak).any(axis=-1), peak.argmax(axis=-1), np.nan)
        lat_lo, lat_hi = percentile_ci(np.moveaxis(latency, 2, 0), self.gs.ci)
        best_lo, best_hi = percentile_ci(np.moveaxis(best, 2, 0), self.gs.ci)
        d4, d3 = ("signal", "category", "region", "layer"), ("signal", "category", "region")
        return {"peak_latency": (d4, est_latency), "peak_latency_ci_low": (d4, lat_lo),
                "peak_latency_ci_high": (d4, lat_hi), "best_layer": (d3, est_best.astype(float)),
                "best_layer_ci_low": (d3, best_lo), "best_layer_ci_high": (d3, best_hi)}
