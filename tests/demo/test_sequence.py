"""Trial sequences: every image twice, immediate repeats next, delayed repeats after a lag."""

from __future__ import annotations

import numpy as np
import pytest

from mfrs.demo.sequence import TRIGGERS, split_runs, trial_sequence


@pytest.mark.parametrize("seed", range(8))
def test_each_stimulus_twice_with_ds000117_repeat_structure(seed: int) -> None:
    stimuli = np.arange(40)
    seq = trial_sequence(stimuli, np.random.default_rng(seed), immediate_fraction=0.5,
                         delayed_lag=(3, 8))
    assert len(seq) == 80
    for s in stimuli:
        pos = [i for i, t in enumerate(seq) if t.stimulus == s]
        assert len(pos) == 2
        first, repeat = (seq[p] for p in pos)
        assert first.presentation == "first"
        if repeat.presentation == "immediate":
            assert pos[1] == pos[0] + 1
        else:
            assert repeat.presentation == "delayed"
            assert pos[1] - pos[0] - 1 >= 3  # intervening trials
    kinds = [t.presentation for t in seq]
    assert kinds.count("immediate") > 5 and kinds.count("delayed") > 5


def test_split_runs_partitions_stimuli() -> None:
    runs = split_runs(31, 3, np.random.default_rng(0))
    joined = np.sort(np.concatenate(runs))
    np.testing.assert_array_equal(joined, np.arange(31))
    assert sorted(len(r) for r in runs) == [10, 10, 11]


def test_trigger_codes_are_ds000117() -> None:
    assert [TRIGGERS[("famous", p)] for p in ("first", "immediate", "delayed")] == [5, 6, 7]
    assert [TRIGGERS[("unfamiliar", p)] for p in ("first", "immediate", "delayed")] == [13, 14, 15]
    assert [TRIGGERS[("scrambled", p)] for p in ("first", "immediate", "delayed")] == [17, 18, 19]
