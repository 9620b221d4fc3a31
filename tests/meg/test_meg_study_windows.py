"""The study's sliding windows (reference.md §4): 550 samples stepping by 50 from 0 s -> 7 windows."""

from __future__ import annotations

import numpy as np
import xarray as xr
from tests_support import REPO


def _sources(sfreq: float = 1100.0) -> xr.Dataset:
    times = -0.2 + np.arange(1101) / sfreq  # epochs -0.2..0.8 s, as the study's
    act = np.zeros((1, 1, 3, times.size, 2), np.float32)
    return xr.Dataset({"activity": (("subject", "signal", "stimulus", "time", "vertex"), act)},
                      coords={"time": times, "region": ("vertex", ["a-lh", "a-lh"]),
                              "category": ("stimulus", ["famous", "unfamiliar", "scrambled"])})


def test_study_pipeline_windows_are_the_reference_seven():
    from mfrs.pipeline import load_pipeline, stage_config
    from mfrs.stages import similarity as stage

    cfg = stage_config(stage, load_pipeline(str(REPO / "pipelines" / "study.yaml")))
    assert cfg.mode == "avg"
    lay = stage.layout(_sources(), cfg.model_copy(update={"categories": ["all"]}))
    # brute force from the reference text: windows of 550 samples, start 0 s (sample 220), step 50,
    # as long as a whole window fits in the 1101 samples
    onset = 220
    expected = [s for s in range(onset, 1101, 50) if s + 550 <= 1101]
    assert expected == [220, 270, 320, 370, 420, 470, 520]
    assert lay.length == 550 and lay.starts.tolist() == expected
    times = _sources()["time"].values
    np.testing.assert_allclose(lay.times, [times[s:s + 550].mean() for s in expected], atol=1e-9)


def test_window_start_none_keeps_the_epoch_start():
    from mfrs.stages import similarity as stage

    cfg = stage.Config(mode="avg", window=0.5, step=50 / 1100, window_start=None, categories=["all"])
    lay = stage.layout(_sources(), cfg)
    assert lay.starts.tolist() == list(range(0, 552, 50))  # 12 windows from -0.2 s
