"""Headline findings in numbers and words, and the demo's planted truth beside what was recovered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mfrs.results.stores import flat_layers
from mfrs.results.summary import bilateral, is_untrained, p_variables, peaks

__all__ = ["headline", "headline_sentences", "read_truth", "truth_vs_recovered"]


def _models(ds: xr.Dataset) -> list[tuple[str, str]]:
    flat = flat_layers(ds)
    return list(dict.fromkeys(zip(flat["network"].values.astype(str), flat["weights"].values.astype(str))))


def _scalar(v: Any) -> Any:
    v = np.asarray(v)
    item = v.item() if v.size == 1 else v.tolist()
    return float(item) if isinstance(item, (float, np.floating)) else item


def headline(ds: xr.Dataset, *, signal: str | None = None, category: str = "all", pool: bool = True
             ) -> list[dict[str, Any]]:
    """One row per region and (network, weights): the peak and what holds at it.

    Parameters
    ----------
    ds : xarray.Dataset
        A labelled ``rsa`` dataset.
    pool : bool
        Pool ``-lh``/``-rh`` regions first (:func:`mfrs.results.bilateral`).

    Returns
    -------
    list of dict
        ``region, network, weights, trained, peak_r, peak_time, best_layer, depth``, the noise
        ceilings and every p-value variable at the peak.
    """
    one = ds.sel(signal=signal if signal is not None else ds["signal"].values[0], category=category)
    if pool:
        one = bilateral(one)
    pvars = p_variables(one)
    rows = []
    flat = flat_layers(one)
    for network, weights in _models(one):
        keep = (flat["network"].values.astype(str) == network) & (flat["weights"].values.astype(str) == weights)
        pk = peaks(flat.isel(layer=np.flatnonzero(keep)))
        for region in pk["region"].values:
            at = pk.sel(region=region)
            row = {"region": str(region), "network": network, "weights": weights,
                   "trained": not is_untrained(weights), "peak_r": _scalar(at["peak_r"]),
                   "peak_time": _scalar(at["peak_time"]), "best_layer": str(at["best_layer"].values),
                   "depth": _scalar(at["depth"]) if "depth" in at else None}
            for k in ("noise_ceiling_lower", "noise_ceiling_upper", *pvars):
                if k in at:
                    row[k] = _scalar(at[k])
            rows.append(row)
    return rows


def headline_sentences(rows: list[dict[str, Any]], *, alpha: float = 0.05) -> list[str]:
    """One sentence per region: its best trained model at the peak, against the ceiling and the untrained twin."""
    out = []
    regions = list(dict.fromkeys(r["region"] for r in rows))
    for region in regions:
        mine = [r for r in rows if r["region"] == region and np.isfinite(r["peak_r"])]
        trained = sorted((r for r in mine if r["trained"]), key=lambda r: -r["peak_r"])
        untrained = sorted((r for r in mine if not r["trained"]), key=lambda r: -r["peak_r"])
        best = trained[0] if trained else untrained[0] if untrained else None
        if best is None:
            out.append(f"{region}: no finite r")
            continue
        text = (f"{region}: best layer {best['best_layer']} (depth {best['depth']:.2f}), peak r = "
                f"{best['peak_r']:.3f} at {best['peak_time'] * 1e3:.0f} ms")
        if "noise_ceiling_lower" in best:
            text += f"; noise ceiling {best['noise_ceiling_lower']:.3f} to {best['noise_ceiling_upper']:.3f}"
        ps = [f"{k} = {best[k]:.3g}" for k in best if (k == "p" or k.startswith("p_")) and best[k] is not None]
        if ps:
            text += "; " + ", ".join(ps)
            corrected = [k for k in best if k.startswith("p_") and best[k] is not None]
            if corrected:
                passed = [k for k in corrected if best[k] <= alpha]
                text += (f" (significant at {alpha} by {', '.join(passed)})" if passed
                         else f" (not significant at {alpha} by any correction)")
        if trained and untrained:
            u = untrained[0]
            text += f"; untrained {u['weights']}: peak r = {u['peak_r']:.3f} at {u['peak_time'] * 1e3:.0f} ms"
        out.append(text)
    return out


def read_truth(catalog: Any) -> dict[str, Any] | None:
    """The demo's planted truth (``truth.json`` of the ``ds000117`` entry), or None for real data."""
    from mfrs.demo.simulate import TRUTH_FILE

    try:
        path = Path(catalog.path("ds000117")) / TRUTH_FILE
    except Exception:  # noqa: BLE001 - a remote or absent entry has no planted truth
        return None
    return json.loads(path.read_text()) if path.is_file() else None


def _driver_text(driver: Any) -> str:
    if not driver:
        return ""
    if isinstance(driver, dict):
        if "layer" in driver:  # the simulation's form: one layer of one network drives the region
            depth = f" (depth {float(driver['depth']):.2f})" if driver.get("depth") is not None else ""
            return f"{driver['layer']}{depth}"
        return ", ".join(f"{k}={v}" for k, v in driver.items())
    return str(driver)


def truth_vs_recovered(truth: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each planted effect beside the recovered peak of its region (best over trained models).

    ``truth["effects"]`` entries hold ``region``, ``latency`` (s), ``labels`` and
    optionally ``driver``; anything else is ignored.
    """
    out = []
    for k, eff in enumerate(truth.get("effects", [])):
        region = str(eff.get("region", ""))
        labels = [str(x) for x in eff.get("labels", [])]
        cands = [r for r in rows if r["region"] in {region, *labels} and r["trained"] and np.isfinite(r["peak_r"])]
        best = max(cands, key=lambda r: r["peak_r"]) if cands else None
        planted = eff.get("latency")
        row = {"effect": k, "region": region, "labels": labels, "planted_latency": planted,
               "driver": _driver_text(eff.get("driver")),
               "recovered_latency": best["peak_time"] if best else None,
               "recovered_r": best["peak_r"] if best else None,
               "recovered_layer": best["best_layer"] if best else None}
        if best and planted is not None:
            row["latency_error"] = round(best["peak_time"] - float(planted), 6)  # no float noise such as -2.8e-17
        out.append(row)
    return out
