"""The MEG config: defaults from reference.md §2, validation with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from mfrs.meg.config import Config

REPO = Path(__file__).resolve().parents[2]


def _demo_section() -> dict:
    """The meg section of pipelines/demo.yaml, the one home of the demo's settings."""
    return yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())["config"]["meg"]


def test_defaults_follow_the_reference():
    cfg = Config()
    assert (cfg.epochs.tmin, cfg.epochs.tmax, cfg.epochs.baseline) == (-0.2, 0.8, (-0.2, 0.0))
    assert (cfg.source.loose, cfg.source.depth, cfg.source.snr, cfg.source.method) == (0.2, 0.8, 3.0, "MNE")
    assert cfg.events.delay == pytest.approx(0.0345) and cfg.events.presentations == ["first"]
    assert cfg.filter.h_freq == 90.0 and cfg.ica.n_components == 0.999 and cfg.ica.decim == 11
    assert cfg.maxwell.st_duration == 10.0 and cfg.source.grid == "ico5"
    assert cfg.signals == ["broadband"]


def test_demo_overrides_validate():
    cfg = Config.model_validate(_demo_section())
    assert cfg.source.grid == "ico4" and cfg.covariance.method == "empirical"


def test_unknown_key_is_refused():
    with pytest.raises(ValidationError, match="extra"):
        Config.model_validate({"source": {"methd": "dSPM"}})


def test_bad_method_lists_choices():
    with pytest.raises(ValidationError, match="'MNE', 'dSPM' or 'sLORETA'"):
        Config.model_validate({"source": {"method": "beamformer"}})


def test_band_above_lowpass_is_refused():
    with pytest.raises(ValidationError, match=r"high_gamma.*filter.h_freq=40.0"):
        Config.model_validate({"filter": {"h_freq": 40.0}, "envelopes": ["high_gamma"]})


def test_band_order_follows_the_table():
    assert Config(envelopes=["gamma", "theta"]).signals == ["broadband", "theta", "gamma"]


def test_subject_prefix_is_stripped():
    assert Config(subjects=["sub-01", "02"]).subjects == ["01", "02"]


def test_pipeline_section_and_globals_reach_the_stage():
    from mfrs.pipeline import PipelineConfig, stage_config
    from mfrs.stages import meg as stage

    pipe = PipelineConfig(stages=["meg"], seed=5, subjects=["sub-02"], config={"meg": _demo_section()})
    cfg = stage_config(stage, pipe)
    assert isinstance(cfg, stage.Config)
    assert cfg.seed == 5 and cfg.subjects == ["02"] and cfg.source.grid == "ico4"


def test_pipeline_typo_is_named():
    from mfrs.errors import ConfigError
    from mfrs.pipeline import PipelineConfig, stage_config
    from mfrs.stages import meg as stage

    pipe = PipelineConfig(stages=["meg"], config={"meg": {"envelope": ["theta"]}})
    with pytest.raises(ConfigError, match=r"config\.meg\.envelope.*Did you mean 'envelopes'"):
        stage_config(stage, pipe)
