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

__all__ = ["maxwell_filter_runs", "filter_raw", "IcaResult", "ica_fit_data", "fit_ica", "apply_ica",
           "artefact_channels"]

log = logging.getLogger(__name__)


def artefact_channels(info: "mne.Info") -> tuple[list[str], list[str]]:
    """The ECG and EOG channels of a recording, found by channel type, never by name.

    ds000117 records them as EEG061/EEG062 (EOG) and EEG063 (ECG) in the FIF files; its
    BIDS ``channels.tsv`` types them (HEOG, VEOG, ECG; EEG064 is MISC) and mne-bids applies
    those types when reading, as it would the study's renaming to EOG061/EOG062/ECG063.
    Bad channels are left out.

    Returns
    -------
    (ecg, eog) : lists of channel names
    """
    import mne

    def names(**kind: bool) -> list[str]:
        return [info["ch_names"][i] for i in mne.pick_types(info, meg=False, exclude="bads", **kind)]

    return names(ecg=True), names(eog=True)


def maxwell_filter_runs(raws: list["mne.io.BaseRaw"], runs: list[int], cfg: "MaxwellConfig", *,
                        calibration: Path | None, crosstalk: Path | None,
                        subject: str, head_pos: dict[int, Path] | None = None,
                        record: dict | None = None, destination=None) -> list["mne.io.BaseRaw"]:
    """tSSS every run, moved to the head position of ``cfg.destination_run``.

    Skipped, with the reason logged, when disabled or when the catalog gives no
    calibration / cross-talk file (tSSS without them would mis-model the sensors),
    unless ``cfg.require_files`` is False. Each run's static bad channels
    (``info["bads"]``: the BIDS channels.tsv ``status``, where ds000117 keeps the
    MaxFilter log's) are reconstructed. With ``head_pos`` (run -> MaxFilter ``.pos``
    file) a run is movement-compensated; a run without one is filtered with its
    initial head position, which the log says.

    ``record``, when given, receives per run (``str(run)``) what was done and why:
    ``{"tsss": bool, "movement_compensation": <.pos file> | None, "reason": why not}``,
    for the stage's provenance. ``destination`` (a device-to-head ``Transform``), when given,
    replaces the head position of ``cfg.destination_run`` among ``raws`` (runs filtered one at a time).
    """
    import mne

    record = {} if record is None else record
    skip = None
    if not cfg.enabled:
        skip = "disabled in the config (maxwell.enabled)"
    elif cfg.require_files and (calibration is None or crosstalk is None):
        skip = "the catalog entry 'ds000117' gives no params.calibration / params.crosstalk file"
    if skip is not None:
        log.info("meg: sub-%s Maxwell filter skipped: %s", subject, skip)
        for run in runs:
            record[str(run)] = {"tsss": False, "movement_compensation": None,
                                "reason": f"Maxwell filter skipped: {skip}"}
        return raws
    dest = destination
    if dest is None and cfg.destination_run is not None:
        idx = runs.index(cfg.destination_run) if cfg.destination_run in runs else 0
        dest = raws[idx].info["dev_head_t"]
    out = []
    for run, raw in zip(runs, raws):
        bads = list(raw.info["bads"])
        pos_file = (head_pos or {}).get(run)
        pos, reason = None, None
        if not cfg.movement_compensation:
            reason = "movement compensation disabled in the config (maxwell.movement_compensation)"
        elif pos_file is None:
            reason = ("the data set gives no head positions for this run (catalog entry 'ds000117' "
                      "params.head_pos)")
        else:
            pos = mne.chpi.read_head_pos(str(pos_file))
        if reason:
            log.info("meg: sub-%s run %d movement compensation skipped: %s", subject, run, reason)
        record[str(run)] = {"tsss": cfg.st_duration is not None, "bads_reconstructed": bads,
                            "movement_compensation": None if pos is None else str(pos_file),
                            "reason": reason}
        out.append(mne.preprocessing.maxwell_filter(
            raw, calibration=None if calibration is None else str(calibration),
            cross_talk=None if crosstalk is None else str(crosstalk),
            st_duration=cfg.st_duration, destination=dest, head_pos=pos, verbose="error"))
        log.info("meg: sub-%s run %d tSSS done: bad channels %s reconstructed%s", subject, run,
                 bads or "none", f", movement compensated from {pos_file}" if pos is not None else "")
    return out


def filter_raw(raw: "mne.io.BaseRaw", cfg: "FilterConfig") -> "mne.io.BaseRaw":
    """Notch, band-limit MEG and high-pass EOG in place (zero-phase FIR, Hamming, firwin)."""
    meg = [raw.ch_names[i] for i in _picks(raw, "meg")]
    eog = artefact_channels(raw.info)[1]
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

    ``ecg_scores`` / ``eog_scores`` are per component (EOG: max |score| over channels);
    ``ecg_channels`` / ``eog_channels`` the reference channels used (empty: none in the data).
    """

    ica: "mne.preprocessing.ICA"
    ecg: list[int] = field(default_factory=list)
    eog: list[int] = field(default_factory=list)
    ecg_scores: np.ndarray | None = None
    eog_scores: np.ndarray | None = None
    ecg_channels: list[str] = field(default_factory=list)
    eog_channels: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fitted_on: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """What was removed and on which evidence (JSON-able, for the log and provenance)."""
        return {"n_components": int(self.ica.n_components_), "ecg": list(map(int, self.ecg)),
                "eog": list(map(int, self.eog)), "n_removed": len(self.ecg) + len(self.eog),
                "ecg_channels": list(self.ecg_channels), "eog_channels": list(self.eog_channels),
                "notes": list(self.notes), "fitted_on": dict(self.fitted_on)}


def ica_fit_data(raw: "mne.io.BaseRaw", cfg: "IcaConfig", *, offset: int = 0,
                 drop_bads: bool = True) -> "mne.io.RawArray | None":
    """The samples ICA is fitted on, from one run: MEG, ECG and EOG, high-passed, decimated.

    Exactly what ``ICA.fit(raw, decim=cfg.decim)`` would use of ``raw`` as part of the runs
    concatenated: the first ``cfg.fit_duration`` seconds of the concatenation, MEG high-passed
    at ``cfg.fit_l_freq`` (per run, as MNE filters concatenated runs between their edges), then
    every ``cfg.decim``-th sample of the concatenation. Filtered a block of channels at a time,
    so the run is never copied whole: the copy is ``1 / decim`` of the run.

    Parameters
    ----------
    raw : Raw
        One run (or runs already concatenated), filtered; not modified.
    offset : int
        Samples of the concatenation before this run (its first sample's global index).
    drop_bads : bool
        Leave out ``info["bads"]``; with False every channel is kept (and ``bads`` emptied), so
        the copies of runs whose bad channels differ can be concatenated, then the union dropped.

    Returns
    -------
    RawArray or None
        At ``sfreq / decim``; None when the run lies past ``fit_duration``.
    """
    import mne

    sfreq, decim = raw.info["sfreq"], cfg.decim
    picks = mne.pick_types(raw.info, meg=True, ecg=True, eog=True, exclude="bads" if drop_bads else [])
    n = raw.n_times
    if cfg.fit_duration is not None:
        n = max(0, min(n, int(round(cfg.fit_duration * sfreq)) - offset + 1))
    phase = (-offset) % decim
    if n <= phase:
        return None
    meg = set(mne.pick_types(raw.info, meg=True, exclude=[]))
    out = np.empty((len(picks), len(range(phase, n, decim))))
    for start in range(0, len(picks), 32):
        chunk = picks[start:start + 32]
        block = raw.get_data(picks=chunk, stop=n)
        rows = [i for i, c in enumerate(chunk) if c in meg]
        if cfg.fit_l_freq is not None and rows:
            block[rows] = mne.filter.filter_data(block[rows], sfreq, cfg.fit_l_freq, None, fir_design="firwin",
                                                 verbose="error")
        out[start:start + len(chunk)] = block[:, phase::decim]
    info = mne.pick_info(raw.info, picks)
    with info._unlock():
        info["sfreq"] = sfreq / decim
        info["lowpass"] = min(info["lowpass"], sfreq / decim / 2)
        if not drop_bads:
            info["bads"] = []
    return mne.io.RawArray(out, info, verbose="error")


def fit_ica(raw: "mne.io.BaseRaw | None", cfg: "IcaConfig", *, seed: int, subject: str = "",
            fit_data: "mne.io.BaseRaw | None" = None) -> IcaResult:
    """Fit ICA on MEG channels and mark ECG and EOG components (at most ``max_*`` each).

    The ECG and EOG reference channels are found by type (:func:`artefact_channels`);
    data without one says so in the log (and in ``notes``), and no component of that
    kind is removed. ICA and the ECG/EOG detection see the decimated copy
    (:func:`ica_fit_data`: ``sfreq / decim``), never the full-rate recording.

    Parameters
    ----------
    raw : Raw or None
        All runs concatenated, already filtered; not modified. With ``cfg.fit_duration``
        only its first seconds are used. None when ``fit_data`` is given.
    cfg : IcaConfig
    seed : int
        ``random_state`` of the ICA.
    subject : str
        For the log.
    fit_data : Raw, optional
        The decimated copy itself (the runs' :func:`ica_fit_data` concatenated), so that the
        runs never have to be held together.

    Returns
    -------
    IcaResult
        ``ica.exclude`` holds the ECG then EOG components; ``notes`` says what ICA saw.
    """
    from mne.preprocessing import ICA

    fit_raw = fit_data if fit_data is not None else ica_fit_data(raw, cfg) if raw is not None else None
    if fit_raw is None:
        raise ValueError("fit_ica needs a recording (raw) or its decimated copy (fit_data)")
    reject = {k: v for k, v in (("grad", cfg.reject_grad), ("mag", cfg.reject_mag)) if v is not None}
    reject = {k: v for k, v in reject.items() if k in fit_raw}
    fit_params = {"infomax": {"extended": cfg.extended},
                  "picard": {"extended": cfg.extended, "ortho": cfg.ortho}}.get(cfg.method)
    ica = ICA(n_components=cfg.n_components, method=cfg.method, random_state=seed,
              max_iter=cfg.max_iter, fit_params=fit_params, verbose="error")
    # decimated already: the reject windows (tstep 2 s) span the same samples as with decim
    ica.fit(fit_raw, picks="meg", reject=reject or None, verbose="error")
    ecg, eog = artefact_channels(fit_raw.info)
    res = IcaResult(ica, ecg_channels=ecg[:1], eog_channels=eog, fitted_on={
        "what": (f"MEG channels high-passed at {cfg.fit_l_freq} Hz, every {cfg.decim}th sample of the runs "
                 "concatenated (ECG/EOG detection on the same decimated copy)"),
        "sfreq": float(fit_raw.info["sfreq"]), "decim": int(cfg.decim), "n_channels": len(ica.ch_names),
        "n_samples": int(fit_raw.n_times), "n_samples_fitted": int(ica.n_samples_),
        "seconds": float(fit_raw.n_times / fit_raw.info["sfreq"]), "fit_duration": cfg.fit_duration})
    for kind, chans, limit in (("ECG", ecg, cfg.max_ecg), ("EOG", eog, cfg.max_eog)):
        if not chans:
            res.notes.append(f"no {kind} channel (no channel typed {kind} in the data or its BIDS "
                             f"channels.tsv): {kind} components were not searched nor removed")
            log.warning("meg: sub-%s %s", subject, res.notes[-1])
        elif not limit:
            res.notes.append(f"{kind} components not searched: ica.max_{kind.lower()} is 0")
    if ecg and cfg.max_ecg:
        idx, scores = ica.find_bads_ecg(fit_raw, ch_name=ecg[0], method=cfg.ecg_method,
                                        threshold=cfg.ecg_threshold, verbose="error")
        res.ecg, res.ecg_scores = list(idx)[: cfg.max_ecg], np.asarray(scores)
    if eog and cfg.max_eog:
        idx, scores = ica.find_bads_eog(fit_raw, ch_name=eog, threshold=cfg.eog_threshold,
                                        verbose="error")
        scores = np.atleast_2d(np.asarray(scores))
        res.eog = [i for i in idx if i not in res.ecg][: cfg.max_eog]
        res.eog_scores = np.abs(scores).max(axis=0)
    ica.exclude = [*res.ecg, *res.eog]
    return res


def apply_ica(ica: "mne.preprocessing.ICA", raw: "mne.io.BaseRaw", *, block_seconds: float = 30.0) -> None:
    """Remove ``ica.exclude`` from ``raw`` in place, a block of samples at a time.

    The same values as ``ica.apply(raw)`` (it acts on each sample alone), but its copies of the
    MEG channels are one block long, not the run's length.
    """
    step = max(1, int(block_seconds * raw.info["sfreq"]))
    for start in range(0, raw.n_times, step):
        ica.apply(raw, start=start, stop=min(start + step, raw.n_times), verbose="error")
