"""Trial sequences shaped like ds000117: first presentations, immediate and delayed repeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["TRIGGERS", "Presentation", "Trial", "split_runs", "trial_sequence"]

#: Which presentation of an image a trial is.
Presentation = Literal["first", "immediate", "delayed"]

#: ds000117 trigger codes per (category, presentation).
TRIGGERS: dict[tuple[str, Presentation], int] = {
    ("famous", "first"): 5, ("famous", "immediate"): 6, ("famous", "delayed"): 7,
    ("unfamiliar", "first"): 13, ("unfamiliar", "immediate"): 14, ("unfamiliar", "delayed"): 15,
    ("scrambled", "first"): 17, ("scrambled", "immediate"): 18, ("scrambled", "delayed"): 19,
}


@dataclass(frozen=True)
class Trial:
    """One presentation: index of the stimulus in the stimuli store and which presentation it is."""

    stimulus: int
    presentation: Presentation


def split_runs(n_stimuli: int, n_runs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle the stimulus indices and deal them into ``n_runs`` runs of near-equal size.

    Returns
    -------
    list of ndarray
        Per run, the sorted stimulus indices whose two presentations it holds.
    """
    order = rng.permutation(n_stimuli)
    return [np.sort(part) for part in np.array_split(order, n_runs)]


def trial_sequence(
    stimuli: np.ndarray,
    rng: np.random.Generator,
    *,
    immediate_fraction: float = 0.5,
    delayed_lag: tuple[int, int] = (3, 8),
) -> list[Trial]:
    """Order the two presentations of every stimulus of a run.

    Each stimulus appears first, then again either on the very next trial
    ("immediate") or after ``delayed_lag`` intervening trials ("delayed");
    delayed repeats are placed as soon as they fall due, so near the end of a
    run they may come later than ``delayed_lag[1]`` but never sooner than
    ``delayed_lag[0]`` (the last few stimuli are repeated immediately).

    Parameters
    ----------
    stimuli : ndarray of int
        Stimulus indices of the run.
    rng : numpy.random.Generator

    Returns
    -------
    list of Trial
        ``2 * len(stimuli)`` trials.
    """
    order = rng.permutation(np.asarray(stimuli))
    immediate = rng.random(order.size) < immediate_fraction
    lags = rng.integers(delayed_lag[0], delayed_lag[1] + 1, order.size)
    seq: list[Trial] = []
    pending: list[tuple[int, int]] = []  # (due position, stimulus)
    i = 0
    while i < order.size or pending:
        pending.sort()
        if pending and (pending[0][0] <= len(seq) or i >= order.size):
            _, stim = pending.pop(0)
            seq.append(Trial(int(stim), "delayed"))
            continue
        stim = int(order[i])
        seq.append(Trial(stim, "first"))
        # fewer first presentations left than the minimum lag: repeat at once (pending
        # repeats cannot be counted on to fill the gap, they may fall due later)
        if immediate[i] or order.size - i - 1 < delayed_lag[0]:
            seq.append(Trial(stim, "immediate"))
        else:
            # `lag` trials in between: the repeat is due at position first + lag + 1
            pending.append((len(seq) + int(lags[i]), stim))
        i += 1
    return seq
