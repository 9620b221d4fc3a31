"""DemoDataConfig refuses settings that would make an invalid data set, saying why."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mfrs.demo.config import DemoDataConfig


@pytest.mark.parametrize(("settings", "message"), [
    ({"delayed_repeat_lag": (1, 4)}, r"delayed_repeat_lag=\(1, 4\) must satisfy 2 <= min <= max"),
    ({"soa": 1.05, "soa_jitter": 0.1}, r"shorter than an epoch \(-0.2..0.8 s\)"),
    ({"sfreq": 90.0}, r"line_freq=50.0 Hz is not below the Nyquist frequency 45.0 Hz"),
    ({"sfreq": 100.0, "artefacts": {"line_freq": 40.0}, "alpha": {"band": (8.0, 55.0)}},
     r"alpha band \(8.0, 55.0\) reaches the Nyquist frequency 50.0 Hz"),
    ({"effects": [{"region": "V1", "feature": "layer", "latency": 0.1, "width": 0.02,
                   "amplitude": 10.0}]}, r"feature .layer. needs a driver"),
    ({"effects": [{"region": "PPA", "feature": "face", "latency": 0.2, "width": 0.02,
                   "amplitude": 10.0}]}, r"region 'PPA' is not a named region"),
    ({"n_subject": 2}, r"n_subject\n  Extra inputs are not permitted"),
])
def test_invalid_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DemoDataConfig(**settings)


def test_defaults_are_ds000117_shaped() -> None:
    cfg = DemoDataConfig()
    assert cfg.n_subjects >= 4 and cfg.n_runs >= 2
    assert cfg.trigger_delay == pytest.approx(0.0345)
    assert [e.region for e in cfg.effects] == ["V1", "OFA", "FFA", "STS"]
    assert [e.latency for e in cfg.effects] == sorted(e.latency for e in cfg.effects)
