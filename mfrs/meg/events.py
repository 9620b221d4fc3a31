"""Events from STI101 matched to the BIDS events.tsv, delay applied, condition ids from stim_file."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from mfrs.errors import InputDataError
from mfrs.meg.types import TRIGGERS

if TYPE_CHECKING:
    import mne
    import pandas as pd

    from mfrs.meg.config import EventsConfig

__all__ = ["find_trigger_events", "match_events", "stimulus_id", "trigger_table"]

log = logging.getLogger(__name__)


def trigger_table() -> dict[int, tuple[str, str]]:
    """Trigger code -> (category, presentation) for ds000117."""
    return {code: (cat, pres) for cat, codes in TRIGGERS.items() for pres, code in codes.items()}


def stimulus_id(stim_file: str) -> str:
    """``meg/f013.bmp`` -> ``f013`` (ds000117's stim_file values name the image file).

    Examples
    --------
    >>> stimulus_id("meg/F013.bmp")
    'f013'
    """
    return PurePosixPath(str(stim_file).replace("\\", "/")).stem.lower()


def find_trigger_events(raw: "mne.io.BaseRaw", cfg: "EventsConfig") -> np.ndarray:
    """Stimulus triggers of STI101, ``(event, 3)`` int array in absolute samples.

    The bits in ``cfg.mask`` (button presses 4096 and 256 in ds000117) are
    ignored; only ds000117 stimulus codes are kept.
    """
    import mne

    if cfg.stim_channel not in raw.ch_names:
        raise InputDataError(
            f"{raw.filenames[0]}: no stim channel {cfg.stim_channel!r}; set meg.events.stim_channel "
            f"to one of {[c for c in raw.ch_names if c.startswith('STI')]}")
    events = mne.find_events(raw, stim_channel=cfg.stim_channel, mask=cfg.mask,
                             mask_type="not_and", min_duration=cfg.min_duration,
                             shortest_event=1, consecutive=True, verbose="error")
    return events[np.isin(events[:, 2], list(trigger_table()))]


def match_events(events: np.ndarray, table: "pd.DataFrame", *, sfreq: float, first_samp: int,
                 cfg: "EventsConfig", file_to_stimulus: dict[str, str],
                 source: str, excluded: frozenset[str] | set[str] = frozenset()) -> "pd.DataFrame":
    """Pair STI101 triggers with events.tsv rows and apply the screen delay.

    Parameters
    ----------
    events : ndarray, shape (n_events, 3)
        From :func:`find_trigger_events` (absolute samples, incl. ``first_samp``).
    table : DataFrame
        The run's events.tsv (``onset`` s from the file start, ``trigger``, ``stim_file``).
    sfreq, first_samp
        Of the raw recording.
    cfg : EventsConfig
        Delay, tolerance and the presentations kept.
    file_to_stimulus : dict
        ``stim_file`` value -> stimulus id (the ``file`` coord of the ``stimuli`` store).
    source : str
        The events.tsv path, for messages.
    excluded : set of str
        Stimulus ids left out of the study (the stimuli stage's exclusion list): their rows
        are matched to STI101 like every other, then dropped (ds000117 presents all 450).

    Returns
    -------
    DataFrame
        One row per kept event: ``sample`` (absolute, delay added), ``trigger_sample``
        (absolute, as on STI101), ``trigger``, ``category``, ``presentation``,
        ``stim_file``, ``stimulus``.
    """
    import pandas as pd

    codes = trigger_table()
    rows = table[table["trigger"].isin(list(codes))].reset_index(drop=True)
    tsv_samples = np.round(rows["onset"].to_numpy(float) * sfreq).astype(np.int64) + first_samp
    tol = max(1, int(round(cfg.tolerance * sfreq)))
    used = np.zeros(len(events), bool)
    matched = np.full(len(rows), -1, np.int64)
    for i, (s, trig) in enumerate(zip(tsv_samples, rows["trigger"].to_numpy(int))):
        cand = np.flatnonzero((events[:, 2] == trig) & ~used)
        if len(cand):
            j = cand[np.argmin(np.abs(events[cand, 0] - s))]
            if abs(events[j, 0] - s) <= tol:
                matched[i] = j
                used[j] = True
    if (matched < 0).any() or not used.all():
        bad = rows.loc[matched < 0, ["onset", "trigger"]].head(5).to_dict("records")
        extra = events[~used][:5, [0, 2]].tolist()
        raise InputDataError(
            f"{source}: {int((matched < 0).sum())} events.tsv rows have no STI101 trigger within "
            f"{cfg.tolerance * 1e3:.1f} ms (first: {bad}) and {int((~used).sum())} STI101 triggers "
            f"have no row (first [sample, code]: {extra}); check that the events.tsv belongs to "
            "this run, or widen meg.events.tolerance")
    dropped = np.array([f not in file_to_stimulus and stimulus_id(f) in excluded
                        for f in rows["stim_file"].astype(str)], dtype=bool)
    unknown = sorted(set(rows.loc[~dropped, "stim_file"]) - set(file_to_stimulus))
    if unknown:
        raise InputDataError(
            f"{source}: stim_file values {unknown[:5]} are not `file` coords of the 'stimuli' "
            "store; rebuild the stimuli store from the same data set")
    if dropped.any():
        log.info("%s: %d events of excluded stimuli dropped (%s)", source, int(dropped.sum()),
                 ", ".join(sorted({stimulus_id(f) for f in rows.loc[dropped, "stim_file"]})))
        rows, matched = rows[~dropped].reset_index(drop=True), matched[~dropped]
    trig_samples = events[matched, 0]
    delay = int(round(cfg.delay * sfreq))
    out = pd.DataFrame({
        "sample": trig_samples + delay,
        "trigger_sample": trig_samples,
        "trigger": rows["trigger"].to_numpy(int),
        "category": [codes[t][0] for t in rows["trigger"]],
        "presentation": [codes[t][1] for t in rows["trigger"]],
        "stim_file": rows["stim_file"].to_numpy(str),
        "stimulus": [file_to_stimulus[f] for f in rows["stim_file"]],
    })
    return out[out["presentation"].isin(cfg.presentations)].reset_index(drop=True)
