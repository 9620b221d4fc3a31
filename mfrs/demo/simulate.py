"""Simulated ds000117-like BIDS data set: real sensors and anatomy, planted effects, artefacts.

Sensor data are ``gain @ source activity`` plus noise, with the gain of a real
forward model (single-layer BEM of the fsaverage template, MEG only, computed
once per subject head position). Planted evoked components sit in the named
regions of the parcellation (both hemispheres) and follow image properties
computed without any CNN (:mod:`mfrs.demo.features`). Background 1/f brain
activity, white sensor noise, ECG, blinks, saccades and line noise are added,
ECG and EOG in their own channels and leaking into MEG. The files are written
with mne-bids, so that the processing reads them exactly like the real
ds000117; the ground truth goes to ``derivatives/mfrs-simulation/truth.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mfrs.demo import artefacts as art
from mfrs.demo.anatomy import (
    BEM_SOLUTION_FILE,
    HEMIS,
    SUBJECT,
    TRANS_FILE,
    read_parcellation,
)
from mfrs.demo.config import DemoDataConfig
from mfrs.demo.drivers import WeightsSource
from mfrs.demo.features import stimulus_features
from mfrs.demo.sequence import TRIGGERS, Trial, split_runs, trial_sequence
from mfrs.errors import InputDataError

__all__ = [
    "BAD_LOG_PATTERN",
    "BUTTON_CODES",
    "BIDS_CHANNEL_TYPES",
    "ECG_CHANNEL",
    "EOG_CHANNELS",
    "HEAD_POS_PATTERN",
    "MISC_CHANNEL",
    "EVENT_ID",
    "SESSION",
    "STIM_CHANNEL",
    "TASK",
    "TRUTH_FILE",
    "generate_bids",
    "read_truth",
    "select_stimuli",
    "simulation_is_complete",
]

log = logging.getLogger(__name__)

TASK = "facerecognition"
SESSION = "meg"
STIM_CHANNEL = "STI101"
#: As ds000117 records them: EEG channels in the FIF files, typed in the BIDS channels.tsv.
EOG_CHANNELS = ("EEG061", "EEG062")  # HEOG, VEOG
ECG_CHANNEL = "EEG063"
MISC_CHANNEL = "EEG064"  # floating
#: channels.tsv ``type`` of the bipolar channels (ds000117's).
BIDS_CHANNEL_TYPES = {"EEG061": "HEOG", "EEG062": "VEOG", "EEG063": "ECG", "EEG064": "MISC"}
#: Per-run head positions (MaxFilter .pos format), relative to the BIDS root.
HEAD_POS_PATTERN = ("derivatives/mfrs-simulation/sub-{subject}/sub-{subject}_ses-meg_task-facerecognition"
                    "_run-{run:02d}_headpos.pos")
#: Per-run MaxFilter logs naming the static bad channels (``Static bad channels (n): 0113 ...``).
BAD_LOG_PATTERN = ("derivatives/mfrs-simulation/sub-{subject}/sub-{subject}_ses-meg_task-facerecognition"
                   "_run-{run:02d}_sss_log.txt")
_N_BADS = (1, 3)  # static bad MEG channels per run: at least, at most + 1
_BAD_NOISE = 5.0  # white noise added to a bad channel, relative to its own signal's sd
#: Button presses on STI101 (ds000117 masks them out with 4096 + 256).
BUTTON_CODES = (256, 4096)
#: events.tsv trial_type -> trigger code.
EVENT_ID: dict[str, int] = {
    f"{cat.capitalize()}/{pres.capitalize()}": code for (cat, pres), code in TRIGGERS.items()
}
TRUTH_FILE = Path("derivatives") / "mfrs-simulation" / "truth.json"
_INCOMPLETE = ".mfrs-simulation-incomplete"
_FORMAT_VERSION = 3

# where the artefact dipoles sit, head coordinates (m): heart below the head, eyes behind nasion
_HEART = np.array([0.03, 0.0, -0.22])
_HEART_MOMENT = np.array([0.3, 0.2, 1.0])
_EYES = (np.array([-0.032, 0.075, -0.02]), np.array([0.032, 0.075, -0.02]))
_BLINK_MOMENT = np.array([0.0, 0.3, 1.0])
_SACCADE_MOMENT = np.array([1.0, 0.0, 0.0])
_MAINS = np.array([2.0, 3.0, 1.0])  # a distant source: a near-uniform field
_MAINS_MOMENT = np.array([0.2, 1.0, 0.5])
_SACCADE_MEG_RATIO = 0.3  # saccade peak relative to the blink peak in MEG
_ECG_CHANNEL_NOISE = 20e-6  # V
_EOG_CHANNEL_NOISE = 5e-6  # V
_RESPONSE_WINDOW = 0.8  # s of evoked activity simulated after each onset


def select_stimuli(stimuli: xr.Dataset, max_per_category: int | None) -> xr.Dataset:
    """The first ``max_per_category`` stimuli of each category, in store order.

    ``(stimulus, ...) -> (stimulus', ...)``; checks the coords the simulation needs.
    """
    for name in ("image", "category", "file"):
        if name not in stimuli.variables:
            raise InputDataError(
                f"the stimuli dataset has no {name!r}; it needs image (stimulus, y, x) with "
                "stimulus coords category, condition and file (run the stimuli stage first)")
    cats = np.asarray(stimuli["category"].values).astype(str)
    unknown = sorted(set(cats) - {"famous", "unfamiliar", "scrambled"})
    if unknown:
        raise InputDataError(
            f"the stimuli dataset has categories {unknown}; expected famous, unfamiliar, scrambled")
    if max_per_category is None:
        return stimuli
    keep = np.zeros(cats.size, dtype=bool)
    for cat in ("famous", "unfamiliar", "scrambled"):
        keep[np.flatnonzero(cats == cat)[:max_per_category]] = True
    return stimuli.isel(stimulus=np.flatnonzero(keep))


@dataclass
class _Planted:
    """One planted component in one hemisphere: where it is and its vertex amplitudes."""

    effect: int
    hemi: str
    vertices: np.ndarray  # fsaverage vertex numbers
    amplitudes: np.ndarray  # (stimulus, vertex) A m, before category/subject/trial gains
    category_gain: np.ndarray  # (stimulus,)


@dataclass
class _SourceModel:
    """Everything the subjects share: planted components, background vertices, source space."""

    planted: list[_Planted]
    alpha_columns: list[np.ndarray]  # per hemisphere, gain columns of the alpha region
    background: dict[str, np.ndarray]  # hemi -> vertices
    src: Any  # mne.SourceSpaces restricted to the simulated vertices
    columns: list[np.ndarray]  # per planted component, its columns in the gain matrix
    background_columns: np.ndarray


def _region_vertices(parcellation: dict, region: str, hemi: str, subjects_dir: Path) -> np.ndarray:
    labels, names = parcellation[hemi]
    if region not in names:
        raise InputDataError(
            f"region {region!r} is missing from the {hemi} parcellation in {subjects_dir}; "
            "rebuild the template anatomy (build_template_subjects_dir)")
    return np.flatnonzero(labels == names.index(region))


def _feature_key(effect: Any) -> str:
    """The entry of :func:`_features` that drives ``effect``."""
    if effect.feature == "layer":
        return effect.driver.key
    return "contrast" if effect.feature == "contrast" else "face"


def _drivers(config: DemoDataConfig) -> list[Any]:
    return list({e.driver.key: e.driver for e in config.effects if e.driver is not None}.values())


def _features(stimuli: xr.Dataset, config: DemoDataConfig,
              weights: WeightsSource) -> dict[str, xr.DataArray]:
    """Image features (contrast, face code) and the code of every driver layer ``(stimulus, feature)``."""
    from mfrs.demo.drivers import layer_activations, layer_code

    features = stimulus_features(stimuli, contrast_grid=config.contrast_grid,
                                 n_face_components=config.n_face_components)
    drivers = _drivers(config)
    if drivers:
        acts = layer_activations(stimuli, drivers, weights)
        coords = {"stimulus": stimuli["stimulus"].values}
        for d in drivers:
            features[d.key] = xr.DataArray(layer_code(acts[d.key], d.n_components),
                                           dims=("stimulus", "feature"), coords=coords)
    return features


def _source_model(subjects_dir: Path, stimuli: xr.Dataset, features: dict[str, xr.DataArray],
                  config: DemoDataConfig) -> _SourceModel:
    import mne

    rng = np.random.default_rng([config.seed, 0])
    parcellation = read_parcellation(subjects_dir)
    cats = np.asarray(stimuli["category"].values).astype(str)
    planted: list[_Planted] = []
    used: dict[str, set[int]] = {h: set() for h in HEMIS}
    for k, effect in enumerate(config.effects):
        feats = features[_feature_key(effect)].values
        gain = np.array([effect.category_gain[c] for c in cats])
        for hemi in HEMIS:
            vertices = _region_vertices(parcellation, effect.region, hemi, subjects_dir)
            # stimulus-specific pattern: zero mean across vertices, so the region's mean
            # response is the same for every stimulus of a category
            proj = rng.standard_normal((vertices.size, feats.shape[1])) / np.sqrt(feats.shape[1])
            proj -= proj.mean(axis=0, keepdims=True)
            pattern = 1.0 + effect.pattern_strength * feats @ proj.T  # (stimulus, vertex)
            amps = effect.amplitude * 1e-9 / vertices.size * pattern
            planted.append(_Planted(k, hemi, vertices, amps, gain))
            used[hemi].update(vertices.tolist())
    alpha_vertices = {}
    for hemi in HEMIS:
        alpha_vertices[hemi] = _region_vertices(parcellation, config.alpha.region, hemi,
                                                subjects_dir)
        used[hemi].update(alpha_vertices[hemi].tolist())
    n_bg = config.noise.n_brain_sources
    background: dict[str, np.ndarray] = {}
    for i, hemi in enumerate(HEMIS):
        free = np.setdiff1d(np.arange(parcellation[hemi][0].size), sorted(used[hemi]))
        n = n_bg // 2 + (n_bg % 2 if i == 0 else 0)
        background[hemi] = np.sort(rng.choice(free, size=min(n, free.size), replace=False))

    # "all": every vertex of the ico-5 template surface, without the sphere mapping of "ico5"
    src = mne.setup_source_space(SUBJECT, spacing="all", subjects_dir=subjects_dir,
                                 add_dist=False, verbose="error")
    vertno: dict[str, np.ndarray] = {}
    for s, hemi in zip(src, HEMIS):
        keep = np.union1d(np.array(sorted(used[hemi]), dtype=np.int64), background[hemi])
        s["inuse"][:] = 0
        s["inuse"][keep] = 1
        s["vertno"] = keep
        s["nuse"] = keep.size
        vertno[hemi] = keep
    offset = {"lh": 0, "rh": vertno["lh"].size}
    columns = [offset[p.hemi] + np.searchsorted(vertno[p.hemi], p.vertices) for p in planted]
    background_columns = np.concatenate(
        [offset[h] + np.searchsorted(vertno[h], background[h]) for h in HEMIS])
    alpha_columns = [offset[h] + np.searchsorted(vertno[h], alpha_vertices[h]) for h in HEMIS]
    return _SourceModel(planted, alpha_columns, background, src, columns, background_columns)


def _head_transform(config: DemoDataConfig, rng: np.random.Generator) -> np.ndarray:
    from mne.transforms import rotation

    angles = np.deg2rad(config.head.rotation_deg) * rng.standard_normal(3)
    mat = rotation(*angles)
    mat[:3, 3] = np.asarray(config.head.position) + 1e-3 * config.head.jitter_mm * rng.standard_normal(3)
    return mat


def _digitisation(subjects_dir: Path, n_points: int, rng: np.random.Generator) -> Any:
    """Fiducials and head-shape points of the template head, in head coordinates."""
    import mne
    from mne.transforms import apply_trans, invert_transform

    bem = subjects_dir / SUBJECT / "bem"
    mri_head = invert_transform(mne.read_trans(bem / TRANS_FILE))
    fids, _ = mne.io.read_fiducials(bem / "fsaverage-fiducials.fif")
    pos = {mne.io.constants.FIFF.FIFFV_POINT_LPA: "lpa", mne.io.constants.FIFF.FIFFV_POINT_NASION:
           "nasion", mne.io.constants.FIFF.FIFFV_POINT_RPA: "rpa"}
    points = {pos[f["ident"]]: apply_trans(mri_head, f["r"]) for f in fids}
    head = mne.read_bem_surfaces(bem / "fsaverage-head.fif", verbose="error")[0]
    scalp = apply_trans(mri_head, head["rr"])
    upper = np.flatnonzero(scalp[:, 2] > 0.0)
    hsp = scalp[np.sort(rng.choice(upper, size=min(n_points, upper.size), replace=False))]
    return mne.channels.make_dig_montage(hsp=hsp, coord_frame="head", **points)


def _meg_info() -> Any:
    """The VectorView's 306 MEG channels, named as in the ds000117 FIF files (``MEG0113``)."""
    import mne

    info = mne.channels.read_meg_canonical_info("neuromag")
    mne.rename_channels(info, {n: n.replace(" ", "") for n in info["ch_names"]})
    return info


def _subject_info(config: DemoDataConfig, dev_head: np.ndarray, meas_date: dt.datetime,
                  subjects_dir: Path, rng: np.random.Generator, index: int) -> Any:
    import mne
    from mne.transforms import Transform

    meg = _meg_info()
    # the bipolar channels are EEG in the FIF, as in ds000117 (channels.tsv gives their types)
    extra = mne.create_info([STIM_CHANNEL, *EOG_CHANNELS, ECG_CHANNEL, MISC_CHANNEL], config.sfreq,
                            ["stim", "eeg", "eeg", "eeg", "eeg"])
    with meg._unlock():
        meg["sfreq"] = config.sfreq
        meg["lowpass"] = config.sfreq / 2.0
        meg["highpass"] = 0.0
        meg["dev_head_t"] = Transform("meg", "head", dev_head)
    info = mne.io.RawArray(np.zeros((len(meg["ch_names"]), 1)), meg, verbose="error").add_channels(
        [mne.io.RawArray(np.zeros((5, 1)), extra, verbose="error")], force_update_info=True).info
    # fiducials and head shape only: the bipolar EEG channels have no scalp position
    info.set_montage(_digitisation(subjects_dir, config.head.n_head_shape_points, rng), on_missing="ignore")
    with info._unlock():
        info["line_freq"] = config.artefacts.line_freq
        info["meas_date"] = meas_date
        info["subject_info"] = {
            "id": index, "his_id": f"sub-{index:02d}", "sex": int(rng.integers(1, 3)),
            "hand": 1, "birthday": dt.date(1980, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4000))),
        }
    return info


def _gain(info: Any, model: _SourceModel, subjects_dir: Path) -> np.ndarray:
    """Fixed-orientation gain ``(channel, source)`` of the simulated sources for one head position."""
    import mne

    bem = subjects_dir / SUBJECT / "bem"
    meg_info = mne.pick_info(info, mne.pick_types(info, meg=True))
    fwd = mne.make_forward_solution(meg_info, bem / TRANS_FILE, model.src,
                                    mne.read_bem_solution(bem / BEM_SOLUTION_FILE, verbose="error"),
                                    meg=True, eeg=False, mindist=0.0, verbose="error")
    fwd = mne.convert_forward_solution(fwd, surf_ori=True, force_fixed=True, use_cps=True,
                                       verbose="error")
    for s_fwd, s_model in zip(fwd["src"], model.src):
        if not np.array_equal(s_fwd["vertno"], s_model["vertno"]):
            raise InputDataError(
                f"the forward model dropped simulated sources outside the inner skull of "
                f"{bem / BEM_SOLUTION_FILE}; rebuild the template anatomy")
    return np.asarray(fwd["sol"]["data"])


@dataclass
class _Subject:
    index: int
    info: Any
    dev_head: np.ndarray
    gain: np.ndarray  # (meg channel, source)
    latency: np.ndarray  # per effect (s)
    effect_gain: np.ndarray  # per effect
    patterns: dict[str, np.ndarray]  # artefact -> (meg channel,)
    topographies: list[np.ndarray]  # per planted component (stimulus, meg channel)


def _artefact_patterns(info: Any, dev_head: np.ndarray, config: DemoDataConfig) -> dict[str, np.ndarray]:
    import mne
    from mne.transforms import apply_trans

    head_dev = np.linalg.inv(dev_head)
    chs = [info["chs"][i] for i in mne.pick_types(info, meg=True)]
    is_mag = np.array([c["coil_type"] == 3024 for c in chs])
    rot = head_dev[:3, :3]

    def pattern(points: tuple[np.ndarray, ...], moment: np.ndarray, peak: float) -> np.ndarray:
        out = sum(art.dipole_pattern(chs, apply_trans(head_dev, p), rot @ moment) for p in points)
        return np.asarray(out) * (peak / np.abs(np.asarray(out)[is_mag]).max())

    a = config.artefacts
    return {
        "ecg": pattern((_HEART,), _HEART_MOMENT, a.ecg_meg_peak),
        "blink": pattern(_EYES, _BLINK_MOMENT, a.eog_meg_peak),
        "saccade": pattern(_EYES, _SACCADE_MOMENT, a.eog_meg_peak * _SACCADE_MEG_RATIO),
        "line": pattern((_MAINS,), _MAINS_MOMENT, a.line_noise),
    }


def _make_subject(k: int, model: _SourceModel, subjects_dir: Path,
                  config: DemoDataConfig) -> _Subject:
    rng = np.random.default_rng([config.seed, 1, k])
    dev_head = _head_transform(config, rng)
    meas_date = dt.datetime(2013, 1, 1, 9, 0, tzinfo=dt.UTC) + dt.timedelta(days=7 * k)
    info = _subject_info(config, dev_head, meas_date, subjects_dir, rng, k)
    gain = _gain(info, model, subjects_dir)
    n_eff = len(config.effects)
    latency = np.array([e.latency for e in config.effects]) + \
        config.noise.subject_latency_jitter * rng.standard_normal(n_eff)
    effect_gain = np.exp(config.noise.subject_gain_sd * rng.standard_normal(n_eff))
    topos = [p.amplitudes @ gain[:, cols].T for p, cols in zip(model.planted, model.columns)]
    return _Subject(k, info, dev_head, gain, latency, effect_gain,
                    _artefact_patterns(info, dev_head, config), topos)


def _gauss(t: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((t - mu) / sd) ** 2)


def _simulate_run(subject: _Subject, run: int, trials: list[Trial], stimuli: xr.Dataset,
                  model: _SourceModel, config: DemoDataConfig) -> tuple[Any, np.ndarray, dict]:
    """One run: the raw recording, its events ``(n, 3)`` and what was drawn."""
    import mne

    rng = np.random.default_rng([config.seed, 2, subject.index, run])
    sfreq = config.sfreq
    n_trials = len(trials)
    soas = config.soa + rng.uniform(-config.soa_jitter, config.soa_jitter, n_trials)
    onsets = config.run_padding + np.concatenate([[0.0], np.cumsum(soas[:-1])])
    samples = np.round(onsets * sfreq).astype(np.int64)
    n_times = int(np.ceil((onsets[-1] + config.soa + config.run_padding) * sfreq))
    times = np.arange(n_times) / sfreq
    meg_idx = mne.pick_types(subject.info, meg=True)
    n_meg = meg_idx.size
    meg = np.zeros((n_meg, n_times))

    # evoked components, time-locked to the screen (trigger + delay)
    n_win = int(np.ceil(_RESPONSE_WINDOW * sfreq))
    t_rel = np.arange(n_win) / sfreq - config.trigger_delay
    profiles = np.stack([_gauss(t_rel, subject.latency[p.effect], config.effects[p.effect].width)
                         for p in model.planted])  # (component, time)
    n_eff = len(config.effects)
    trial_gains = np.exp(config.noise.trial_variability * rng.standard_normal((n_trials, n_eff)))
    for i, (trial, s0) in enumerate(zip(trials, samples)):
        repeat = config.repetition_suppression if trial.presentation != "first" else 1.0
        topo = np.stack([
            subject.topographies[c][trial.stimulus] * p.category_gain[trial.stimulus]
            * subject.effect_gain[p.effect] * trial_gains[i, p.effect] * repeat
            for c, p in enumerate(model.planted)], axis=1)  # (channel, component)
        stop = min(s0 + n_win, n_times)
        meg[:, s0:stop] += (topo @ profiles)[:, : stop - s0]

    noise = config.noise
    if model.background_columns.size and noise.brain_amplitude > 0:
        bg = art.pink_noise(model.background_columns.size, n_times, sfreq, rng)
        meg += subject.gain[:, model.background_columns] @ (bg * noise.brain_amplitude * 1e-9)
    alpha = config.alpha
    if alpha.amplitude > 0:
        # one coherent rhythm per hemisphere over the region, dipping after each stimulus
        envelope = art.suppression_envelope(times, onsets + config.trigger_delay, alpha.window,
                                            alpha.suppression)
        for cols in model.alpha_columns:
            rhythm = art.band_noise(n_times, sfreq, alpha.band, rng) * envelope
            meg += np.outer(subject.gain[:, cols].sum(axis=1) * alpha.amplitude * 1e-9 / cols.size,
                            rhythm)
    is_mag = np.array([subject.info["chs"][i]["coil_type"] == 3024 for i in meg_idx])
    meg += np.where(is_mag, noise.mag, noise.grad)[:, None] * rng.standard_normal((n_meg, n_times))

    a = config.artefacts
    duration = n_times / sfreq
    beats = art.heartbeat_times(duration, a.heart_rate, a.heart_rate_variability, rng)
    ecg = art.ecg_waveform(times, beats)
    blinks = art.event_times(duration, a.blink_rate, 1.0, rng)
    blink = art.blink_waveform(times, blinks, rng)
    saccades = art.event_times(duration, a.saccade_rate, 0.5, rng)
    gaze = art.saccade_waveform(times, saccades, rng)
    mains = art.line_noise(times, a.line_freq, sfreq, rng)
    meg += np.outer(subject.patterns["ecg"], ecg) + np.outer(subject.patterns["blink"], blink)
    meg += np.outer(subject.patterns["saccade"], gaze) + np.outer(subject.patterns["line"], mains)

    drift = art.pink_noise(3, n_times, sfreq, rng, f_min=0.05)
    heog = a.saccade_amplitude * gaze + 0.1 * a.blink_amplitude * blink + 10e-6 * drift[0]
    veog = a.blink_amplitude * blink + 10e-6 * drift[1]
    ecg_ch = a.ecg_amplitude * ecg + 50e-6 * drift[2]
    heog += _EOG_CHANNEL_NOISE * rng.standard_normal(n_times)
    veog += _EOG_CHANNEL_NOISE * rng.standard_normal(n_times)
    ecg_ch += _ECG_CHANNEL_NOISE * rng.standard_normal(n_times)

    codes = np.array([TRIGGERS[(str(stimuli["category"].values[t.stimulus]), t.presentation)]
                      for t in trials])
    sti = np.zeros(n_times)
    n_pulse = max(1, round(config.trigger_duration * sfreq))
    for s0, code in zip(samples, codes):
        sti[s0:s0 + n_pulse] = code
    pressed = rng.random(n_trials) < config.button_press_fraction
    press_times = onsets + rng.uniform(0.5, 0.9, n_trials)
    press_codes = rng.choice(BUTTON_CODES, n_trials)
    n_press = round(0.1 * sfreq)
    for t, code, on in zip(press_times, press_codes, pressed):
        if on:
            p0 = round(t * sfreq)
            sti[p0:p0 + n_press] += code

    floating = 30e-6 * drift[0][::-1] + _EOG_CHANNEL_NOISE * rng.standard_normal(n_times)
    # static bad channels of this run (MaxFilter's log in ds000117): much noisier than the others
    n_bad = int(rng.integers(*_N_BADS))
    bad_idx = np.sort(rng.choice(n_meg, size=n_bad, replace=False))
    meg[bad_idx] += _BAD_NOISE * meg[bad_idx].std(axis=1, keepdims=True) * rng.standard_normal((n_bad, n_times))
    data = np.concatenate([meg, sti[None], heog[None], veog[None], ecg_ch[None], floating[None]])
    raw = mne.io.RawArray(data, subject.info, verbose="error")
    raw.info["bads"] = [subject.info["ch_names"][meg_idx[i]] for i in bad_idx]
    raw.orig_format = "single"  # mne-bids saves in this format: float32, as MaxFilter output
    events = np.column_stack([samples, np.zeros_like(samples), codes])
    drawn = {
        "n_times": n_times,
        "onsets": onsets.round(6).tolist(),
        "n_heartbeats": int(beats.size),
        "n_blinks": int(blinks.size),
        "n_saccades": int(saccades.size),
        "n_button_presses": int(pressed.sum()),
        "bads": list(raw.info["bads"]),
    }
    return raw, events, drawn


def _write_run(raw: Any, events: np.ndarray, trials: list[Trial], stimuli: xr.Dataset,
               bids_root: Path, subject: str, run: int) -> Path:
    import pandas as pd
    from mne_bids import BIDSPath, write_raw_bids

    files = np.asarray(stimuli["file"].values).astype(str)
    names = {code: name for name, code in EVENT_ID.items()}
    codes = events[:, 2].astype(int)
    # mne-bids drops its own trial_type column when metadata is given: it is one of ours
    metadata = pd.DataFrame({
        "trial_type": [names[c] for c in codes],
        "trigger": codes,
        "stim_type": [names[c].split("/")[0] for c in codes],
        "stim_file": [files[t.stimulus] for t in trials],
    })
    present = {name: code for name, code in EVENT_ID.items() if code in set(codes.tolist())}
    path = BIDSPath(subject=subject, session=SESSION, task=TASK, run=f"{run:02d}",
                    datatype="meg", root=bids_root)
    write_raw_bids(raw, path, events=events, event_id=present, event_metadata=metadata,
                   extra_columns_descriptions={
                       "trial_type": "category/presentation (First, Immediate or Delayed repeat)",
                       "trigger": "STI101 trigger code (ds000117: famous 5/6/7, unfamiliar "
                                  "13/14/15, scrambled 17/18/19: first/immediate/delayed)",
                       "stim_type": "stimulus category: Famous, Unfamiliar or Scrambled",
                       "stim_file": "image shown, relative to the stimuli folder"},
                   format="FIF", allow_preload=True, overwrite=True, verbose="error")
    _write_channel_types(Path(path.copy().update(suffix="channels", extension=".tsv").fpath))
    return path.fpath


def _write_channel_types(channels_tsv: Path) -> None:
    """Type the bipolar channels in channels.tsv as ds000117 does (HEOG, VEOG, ECG, MISC)."""
    import pandas as pd

    table = pd.read_csv(channels_tsv, sep="\t", keep_default_na=False)
    desc = {"HEOG": "ElectroOculoGram", "VEOG": "ElectroOculoGram", "ECG": "ElectroCardioGram",
            "MISC": "Miscellaneous"}
    for name, kind in BIDS_CHANNEL_TYPES.items():
        rows = table["name"] == name
        table.loc[rows, "type"] = kind
        if "description" in table:
            table.loc[rows, "description"] = desc[kind]
    bads = table["status"] == "bad" if "status" in table else np.zeros(len(table), bool)
    if "status_description" in table:
        table.loc[bads, "status_description"] = "static bad channel (MaxFilter log)"
    table.to_csv(channels_tsv, sep="\t", index=False)


def _write_head_pos(bids_root: Path, subject: str, run: int, dev_head: np.ndarray, duration: float) -> Path:
    """The run's head positions in MaxFilter ``.pos`` format (the head does not move within a run)."""
    import mne
    from mne.transforms import rot_to_quat

    quat = rot_to_quat(dev_head[:3, :3])
    row = np.concatenate([quat, dev_head[:3, 3], [1.0, 0.0, 0.0]])
    pos = np.column_stack([[0.0, duration], np.tile(row, (2, 1))])
    path = bids_root / HEAD_POS_PATTERN.format(subject=subject, run=run)
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.chpi.write_head_pos(path, pos)
    return path


def _write_bad_log(bids_root: Path, subject: str, run: int, bads: list[str]) -> Path:
    """The run's static bad channels as a MaxFilter log prints them (logical channel numbers)."""
    numbers = " ".join(name.upper().removeprefix("MEG").strip() for name in bads)
    path = bids_root / BAD_LOG_PATTERN.format(subject=subject, run=run)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"maxfilter (simulated by mfrs) sub-{subject} run {run:02d}\n"
                    f"Static bad channels ({len(bads)}): {numbers}\n")
    return path


def _prepare_root(bids_root: Path, fingerprint: str, overwrite: bool) -> bool:
    """True when the data set is already complete for ``fingerprint``; else empty the folder."""
    truth = bids_root / TRUTH_FILE
    if truth.exists() and not overwrite:
        try:
            if json.loads(truth.read_text()).get("fingerprint") == fingerprint:
                return True
        except json.JSONDecodeError:
            pass
    if bids_root.exists() and any(bids_root.iterdir()):
        if not (truth.exists() or (bids_root / _INCOMPLETE).exists()):
            raise InputDataError(
                f"{bids_root} is not empty and was not written by mfrs' simulation; point the "
                "catalog entry 'ds000117' at an empty or new folder")
        log.info("demo_data: %s holds %s, regenerating", bids_root,
                 "a simulation (overwrite requested)" if overwrite
                 else "a different or incomplete simulation")
        shutil.rmtree(bids_root)
    bids_root.mkdir(parents=True, exist_ok=True)
    (bids_root / _INCOMPLETE).write_text("generation started; not complete\n")
    return False


def _fingerprint(stimuli: xr.Dataset, config: DemoDataConfig) -> str:
    from mfrs.provenance import fingerprint

    return fingerprint({
        "version": _FORMAT_VERSION, "config": config,
        "stimuli": np.ascontiguousarray(stimuli["image"].values),
        "ids": [str(s) for s in stimuli["stimulus"].values],
        "files": [str(s) for s in stimuli["file"].values],
    })


def simulation_is_complete(bids_root: Path, *, stimuli: xr.Dataset,
                           config: DemoDataConfig) -> bool:
    """True when ``bids_root`` holds the finished simulation of these stimuli and config."""
    truth = Path(bids_root) / TRUTH_FILE
    if not truth.exists():
        return False
    fp = _fingerprint(select_stimuli(stimuli, config.max_stimuli_per_category), config)
    try:
        return json.loads(truth.read_text()).get("fingerprint") == fp
    except json.JSONDecodeError:
        return False


def generate_bids(bids_root: Path, *, subjects_dir: Path, stimuli: xr.Dataset,
                  config: DemoDataConfig, overwrite: bool = False,
                  weights: WeightsSource) -> Path:
    """Write the simulated ds000117-like BIDS data set.

    Deterministic for a config (seed included) and stimuli set; skips when
    ``bids_root`` already holds the same simulation (``truth.json`` is written
    last and carries the fingerprint).

    Parameters
    ----------
    bids_root : Path
        Folder of the BIDS data set (created; must be empty or an earlier simulation).
    subjects_dir : Path
        Template anatomy from :func:`mfrs.demo.anatomy.build_template_subjects_dir`.
    stimuli : xr.Dataset
        ``image (stimulus, y, x)`` uint8 with stimulus coords ``category``, ``condition``, ``file``.
    config : DemoDataConfig
    overwrite : bool
        Regenerate even when the same simulation is complete.
    weights : mapping
        ``weights label -> (entry params, location)`` of the networks that drive planted
        effects (``feature: layer``): :func:`mfrs.stages.demo_data.weights_sources`.

    Returns
    -------
    Path
        ``bids_root``.
    """
    bids_root = Path(bids_root)
    subjects_dir = Path(subjects_dir)
    stimuli = select_stimuli(stimuli, config.max_stimuli_per_category)
    fp = _fingerprint(stimuli, config)
    if _prepare_root(bids_root, fp, overwrite):
        log.info("demo_data: %s is complete (fingerprint %s), skipping", bids_root, fp)
        return bids_root
    features = _features(stimuli, config, weights)
    model = _source_model(subjects_dir, stimuli, features, config)
    ids = [str(s) for s in stimuli["stimulus"].values]
    subjects_truth: dict[str, Any] = {}
    for k in range(1, config.n_subjects + 1):
        sub = f"{k:02d}"
        subject = _make_subject(k, model, subjects_dir, config)
        run_sets = split_runs(len(ids), config.n_runs, np.random.default_rng([config.seed, 3, k]))
        runs_truth = {}
        for r, run_stimuli in enumerate(run_sets, start=1):
            trials = trial_sequence(run_stimuli, np.random.default_rng([config.seed, 4, k, r]),
                                    immediate_fraction=config.immediate_repeat_fraction,
                                    delayed_lag=config.delayed_repeat_lag)
            raw, events, drawn = _simulate_run(subject, r, trials, stimuli, model, config)
            fname = _write_run(raw, events, trials, stimuli, bids_root, sub, r)
            _write_head_pos(bids_root, sub, r, subject.dev_head, drawn["n_times"] / config.sfreq)
            _write_bad_log(bids_root, sub, r, drawn["bads"])
            log.info("demo_data: wrote %s (%d trials, %.0f s)", fname.name, len(trials),
                     drawn["n_times"] / config.sfreq)
            drawn["stimuli"] = [ids[t.stimulus] for t in trials]
            drawn["presentation"] = [t.presentation for t in trials]
            runs_truth[f"{r:02d}"] = drawn
        subjects_truth[sub] = {
            "dev_head_t": subject.dev_head.round(9).tolist(),
            "latency": dict(zip([e.region for e in config.effects], subject.latency.round(6).tolist())),
            "gain": dict(zip([e.region for e in config.effects],
                             subject.effect_gain.round(6).tolist())),
            "artefact_patterns": {k2: v.tolist() for k2, v in subject.patterns.items()},
            "runs": runs_truth,
        }
    _write_truth(bids_root, fp, config, stimuli, features, model, subjects_truth, weights)
    (bids_root / _INCOMPLETE).unlink(missing_ok=True)
    return bids_root


def _write_truth(bids_root: Path, fp: str, config: DemoDataConfig, stimuli: xr.Dataset,
                 features: dict[str, xr.DataArray], model: _SourceModel,
                 subjects: dict[str, Any], weights: WeightsSource) -> None:

    ids = [str(s) for s in stimuli["stimulus"].values]
    effects = []
    for k, effect in enumerate(config.effects):
        parts = [p for p in model.planted if p.effect == k]
        effects.append({
            **effect.model_dump(mode="json"),
            "feature_key": _feature_key(effect),
            "driver": _driver_truth(effect, weights),
            "labels": [f"{effect.region}-{p.hemi}" for p in parts],
            "vertices": {p.hemi: p.vertices.tolist() for p in parts},
        })
    truth = {
        "fingerprint": fp,
        "format_version": _FORMAT_VERSION,
        "generator": "mfrs.demo.simulate.generate_bids",
        "config": config.model_dump(mode="json"),
        "sfreq": config.sfreq,
        "trigger_delay": config.trigger_delay,
        "event_id": EVENT_ID,
        "button_codes": list(BUTTON_CODES),
        "channels": {"stim": STIM_CHANNEL, "heog": EOG_CHANNELS[0], "veog": EOG_CHANNELS[1],
                     "ecg": ECG_CHANNEL, "misc": MISC_CHANNEL, "bids_types": BIDS_CHANNEL_TYPES,
                     "head_pos": HEAD_POS_PATTERN, "bad_channels": BAD_LOG_PATTERN,
                     "meg": list(_meg_info()["ch_names"])},
        "stimuli": ids,
        "features": {name: {"dims": ["stimulus", "feature"], "values": arr.values.round(6).tolist()}
                     for name, arr in features.items()},
        "effects": effects,
        "alpha": {**config.alpha.model_dump(mode="json"),
                  "labels": [f"{config.alpha.region}-{h}" for h in HEMIS],
                  "meaning": "band-limited rhythm per hemisphere, amplitude times "
                             "1 - suppression * sin^2 bump over window after each screen onset"},
        "background_vertices": {h: v.tolist() for h, v in model.background.items()},
        "mixing": {
            "ecg": "artefact_patterns.ecg * ECG waveform (R peak 1) in MEG; "
                   "EEG063 (ECG) = ecg_amplitude * waveform",
            "blink": "artefact_patterns.blink * blink waveform in MEG; EEG062 (VEOG) = blink_amplitude * "
                     "waveform; EEG061 (HEOG) gets 0.1 of it",
            "saccade": "artefact_patterns.saccade * gaze in MEG; EEG061 = saccade_amplitude * gaze",
            "line": "artefact_patterns.line * mains (line_freq and harmonics) in MEG",
        },
        "subjects": subjects,
    }
    path = bids_root / TRUTH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "dataset_description.json").write_text(json.dumps({
        "Name": "mfrs simulation ground truth", "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "mfrs", "Description": "mfrs.demo.simulate.generate_bids"}],
    }, indent=2))
    path.write_text(json.dumps(truth))


def _driver_truth(effect: Any, weights: WeightsSource) -> dict[str, Any] | None:
    """What drives an effect, in the terms of the ``model_rdms`` / ``rsa`` layer coords.

    ``weights`` is the label of the ``weights`` coord the activations stage gives these
    weights (the entry's ``dataset`` param, as :func:`mfrs.stages.activations.weights_label`).
    """
    from mfrs.demo.drivers import layer_depth

    d = effect.driver
    if d is None:
        return None
    params = weights.get(d.weights, ({}, ""))[0]
    label = str(params.get("dataset") or d.weights)
    return {"network": d.network, "weights": label, "weights_entry": d.weights,
            "layer": f"{d.network}/{label}/{d.layer}", "module": d.layer,
            "depth": layer_depth(d.network, d.layer, list(d.kinds), d.input_size),
            "n_components": d.n_components, "input_size": d.input_size}


def read_truth(bids_root: Path) -> dict[str, Any]:
    """The ground truth of a simulated data set (``derivatives/mfrs-simulation/truth.json``)."""
    path = Path(bids_root) / TRUTH_FILE
    if not path.exists():
        raise InputDataError(
            f"{path} does not exist: {bids_root} is not a complete mfrs simulation; "
            "run the demo_data stage")
    return json.loads(path.read_text())
