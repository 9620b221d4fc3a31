"""The demo's planted truth beside what its RSA recovered, region by region."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["recovered_peaks", "truth_vs_recovered"]


def recovered_peaks(rsa: Any, truth: dict[str, Any], *, signal: str = "broadband",
                    category: str = "all") -> list[dict[str, Any]]:
    """Per planted region (hemispheres pooled) and per weights: the peak of the best-layer group r.

    Parameters
    ----------
    rsa : xr.Dataset
        The ``rsa`` store (``r (subject, signal, category, region, time, layer)`` with the
        subject ``group`` and layer coords ``weights``, ``depth``).
    truth : dict
        ``truth.json`` of the simulation.

    Returns
    -------
    list of dict
        ``region, latency, driver, weights, time, r, layer, depth`` per region and weights.
    """
    r = rsa["r"].sel(subject="group", signal=signal, category=category)
    weights = np.asarray(r["weights"].values).astype(str)
    out = []
    for effect in truth["effects"]:
        labels = [lab for lab in effect["labels"] if lab in set(r["region"].values.tolist())]
        if not labels:
            continue
        pooled = r.sel(region=labels).mean("region").transpose("time", "layer").values
        for w in dict.fromkeys(weights):
            cols = np.flatnonzero(weights == w)
            sub = pooled[:, cols]
            best = np.nanmax(sub, axis=1)
            t = int(np.nanargmax(best))
            j = cols[int(np.nanargmax(sub[t]))]
            out.append({"region": effect["region"], "latency": effect["latency"],
                        "driver": effect.get("driver"), "weights": w,
                        "time": float(r["time"].values[t]), "r": float(best[t]),
                        "layer": str(r["layer"].values[j]), "depth": float(r["depth"].values[j])})
    return out


def truth_vs_recovered(rsa: Any, truth: dict[str, Any]) -> list[str]:
    """Lines for the demo's summary: planted region, latency and driver vs the recovered peak."""
    lines = ["planted vs recovered (group RDM, all stimuli, best layer; hemispheres pooled):"]
    for p in recovered_peaks(rsa, truth):
        d = p["driver"] or {}
        planted = (f"{p['latency'] * 1e3:.0f} ms, driven by {d.get('module', '?')} (depth {d.get('depth', 0):.2f})"
                   if d else f"{p['latency'] * 1e3:.0f} ms")
        lines.append(f"  {p['region']}: planted {planted}; {p['weights']}: peak r={p['r']:.2f} at "
                     f"{p['time'] * 1e3:.0f} ms, layer {p['layer'].split('/')[-1]} (depth {p['depth']:.2f})")
    return lines
