"""Every pipeline shipped in pipelines/ validates, stage by stage, against the stages' configs."""

from __future__ import annotations

import pytest
from tests_support import REPO

from mfrs.pipeline import STAGES, load_pipeline, stage_config, stage_module

PIPELINES = sorted(p.stem for p in (REPO / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("name", PIPELINES)
def test_shipped_pipeline_validates(name):
    pipe = load_pipeline(name)
    assert pipe.stages and set(pipe.stages) <= set(STAGES)
    for stage in pipe.stages:
        cfg = stage_config(stage_module(stage), pipe)
        section = pipe.config.get(stage, {})
        assert set(section) <= set(type(cfg).model_fields), f"{name}: {stage} ignores {set(section) - set(type(cfg).model_fields)}"


def test_study_runs_the_reference_sizes():
    pipe = load_pipeline("study")
    meg = stage_config(stage_module("meg"), pipe)
    assert meg.signals == ["broadband", "theta", "alpha", "beta", "gamma", "high_gamma"]
    assert meg.source.spacing == "oct6" and meg.source.grid == "ico5" and meg.ica.method == "fastica"
    nets = {s.network for s in stage_config(stage_module("activations"), pipe).networks}
    assert len(nets) == 7
    sim = stage_config(stage_module("similarity"), pipe)
    assert (sim.mode, sim.window, sim.window_start, sim.n_permutations) == ("avg", 0.5, 0.0, 1000)
    assert round(sim.step * 1100) == 50  # the study's 50-sample step at 1100 Hz


def test_global_seed_reaches_the_stages_that_declare_it():
    pipe = load_pipeline("demo").model_copy(update={"seed": 7})
    assert stage_config(stage_module("stimuli"), pipe).seed == 7
