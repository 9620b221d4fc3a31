"""Continuous-data cleaning: Maxwell filter (tSSS), FIR filters, ICA with ECG/EOG detection."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import mne

    from mfrs.meg.config import FilterConfig, IcaConfig, MaxwellConfig

__all__ = ["maxwell_filter_runs", "filter_raw", "IcaResult", "fit_ica", "ECG_CHANNEL", "EOG_CHANNELS"]

log = logging.getLogger("mfrs.meg")

ECG_CHANNEL = "ECG063"
EOG_CHANNELS = ("EOG061", "EOG062")


def maxwell_filter_runs(raws: list["mne.io.BaseRaw"], runs: list[int], cfg: "MaxwellConfig", *,
                        calibration: Path | None, crosstalk: Path | None,
                        subject: str) -> list["mne.io.BaseRaw"]:
    """tSSS every run, moved to the head position of ``cfg.destination_run``.

    Skipped, with the reason logged, when disabled or when the catalog gives no
    calibration / cross-talk file (tSSS without them would mis-model the sensors),
    unless ``cfg.require_files`` is False.
    """
    import mne

    if not cfg.enabled:
        log.info("meg: sub-%s Maxwell filter skipped: disabled in the config (maxwell.enabled)", subject)
        return raws
    if cfg.require_files and (calibration is None or crosstalk is None):
        log.info("meg: sub-%s Maxwell filter skipped: the catalog entry 'ds000117' gives no "
                 "params.calibration / params.crosstalk file", subject)
        return raws
    dest = None
    if cfg.destination_run is not None:
        idx = runs.index(cfg.destination_run) if cfg.destination_run in runs else 0
        dest = raws[idx].info["dev_head_t"]
    out = []
    for raw in raws:
        bads = list(raw.info["bads"])
        out.append(mne.preprocessing.maxwell_filter(
            raw, calibration=None if calibration is None else str(calibration),
            cross_talk=None if crosstalk is None else str(crosstalk),
            st_duration=cfg.st_duration, destination=dest, verbose="error"))
        log.debug("meg: sub-%s tSSS done (bads %s)", subject, bads)
    return out


def filter_raw(raw: "mne.io.BaseRaw", cfg: "FilterConfig") -> "mne.io.BaseRaw":
    """Notch, band-limit MEG and high-pass EOG in place (zero-phase FIR, Hamming, firwin)."""
    meg = [raw.ch_names[i] for i in _picks(raw, "meg")]
    eog = [c for c in EOG_CHANNELS if c in raw.ch_names]
    kw = dict(method="fir", phase="zero", fir_window="hamming", fir_design="firwin", verbose="error")
    if cfg.notch_freqs:
        raw.notch_filter(cfg.notch_freqs, picks=meg, **kw)
    if cfg.l_freq is not None or cfg.h_freq is not None:
        raw.filter(cfg.l_freq, cfg.h_freq, picks=meg, **kw)
    if eog and cfg.eog_l_freq is not None:
        raw.filter(cfg.eog_l_freq, None, picks=eog, **kw)
    return raw


def _picks(inst, kind: str) -> np.ndarray:
    import mne

    return mne.pick_types(inst.info, meg=True if kind == "meg" else kind, exclude="bads")


@dataclass
class IcaResult:
    """The fitted ICA and what was detected.

    ``ecg_scores`` / ``eog_scores`` are per component (EOG: max |score| over channels).
    """

    ica: "mne.preprocessing.ICA"
    ecg: list[int] = field(default_factory=list)
    eog: list[int] = field(default_factory=list)
    ecg_scores: np.ndarray | None = None
    eog_scores: np.ndarray | None = None

    def summary(self) -> dict:
        return {"n_components": int(self.ica.n_components_), "ecg": list(map(int, self.ecg)),
                "eog": list(map(int, self.eog))}


def fit_ica(raw: "mne.io.BaseRaw", cfg: "IcaConfig", *, seed: int) -> IcaResult:
    """Fit ICA on MEG channels and mark ECG and EOG components (at most ``max_*`` each).

    Parameters
    ----------
    raw : Raw
        All runs concatenated, already filtered; not modified. With
        ``cfg.fit_duration`` only its first seconds are used.
    cfg : IcaConfig
    seed : int
        ``random_state`` of the ICA.

    Returns
    -------
    IcaResult
        ``ica.exclude`` holds the ECG then EOG components.
    """
    from mne.preprocessing import ICA

    fit_raw = raw.copy().pick(["meg", "ecg", "eog"], exclude="bads")
    if cfg.fit_duration is not None and cfg.fit_duration < fit_raw.times[-1]:
        fit_raw.crop(0.0, cfg.fit_duration)
    if cfg.fit_l_freq is not None:
        fit_raw.filter(cfg.fit_l_freq, None, picks="meg", fir_design="firwin", verbose="error")
    reject = {k: v for k, v in (("grad", cfg.reject_grad), ("mag", cfg.reject_mag)) if v is not None}
    reject = {k: v for k, v in reject.items() if k in fit_raw}
    fit_params = {"infomax": {"extended": cfg.extended},
                  "picard": {"extended": cfg.extended, "ortho": cfg.ortho}}.get(cfg.method)
    ica = ICA(n_components=cfg.n_components, method=cfg.method, random_state=seed,
              max_iter=cfg.max_iter, fit_params=fit_params, verbose="error")
    ica.fit(fit_raw, picks="meg", decim=cfg.decim, reject=reject or None, verbose="error")
    res = IcaResult(ica)
    if ECG_CHANNEL in fit_raw.ch_names and cfg.max_ecg:
        idx, scores = ica.find_bads_ecg(fit_raw, ch_name=ECG_CHANNEL, method=cfg.ecg_method,
                                        threshold=cfg.ecg_threshold, verbose="error")
        res.ecg, res.ecg_scores = list(idx)[: cfg.max_ecg], np.asarray(scores)
    eog = [c for c in EOG_CHANNELS if c in fit_raw.ch_names]
    if eog and cfg.max_eog:
        idx, scores = ica.find_bads_eog(fit_raw, ch_name=eog, threshold=cfg.eog_threshold,
                                        verbose="error")
        scores = np.atleast_2d(np.asarray(scores))
        res.eog = [i for i in idx if i not in res.ecg][: cfg.max_eog]
        res.eog_scores = np.abs(scores).max(axis=0)
    ica.exclude = [*res.ecg, *res.eog]
    return res
