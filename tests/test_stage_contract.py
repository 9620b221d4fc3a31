"""Every registered stage (``mfrs/stages/<stage>.py``) satisfies the :class:`mfrs.stage.Stage` contract."""

from __future__ import annotations

import importlib
import inspect

import pytest

from mfrs.errors import ConfigError
from mfrs.pipeline import STAGES, PipelineConfig, stage_config
from mfrs.stage import ExecSettings, Stage, StageConfig

_METHODS = ("inputs", "outputs", "plan", "run")


def _params(func) -> list[tuple[str, object, object]]:
    sig = inspect.signature(func)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values() if p.name != "self"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_satisfies_the_contract(name: str) -> None:
    module = importlib.import_module(STAGES[name])
    assert isinstance(module, Stage), f"{STAGES[name]} lacks part of mfrs.stage.Stage"
    assert module.NAME == name == STAGES[name].rsplit(".", 1)[1]
    assert (module.__doc__ or "").strip(), f"{STAGES[name]} has no docstring (its first line is the title)"
    assert issubclass(module.Config, StageConfig)
    exec_type = module.Config.model_fields["exec"].annotation
    assert isinstance(exec_type, type) and issubclass(exec_type, ExecSettings)
    assert not set(exec_type.model_fields) & (set(module.Config.model_fields) - {"exec"}), \
        "a setting is both science and execution"
    for method in _METHODS:
        want = _params(getattr(Stage, method))
        got = _params(getattr(module, method))
        # the contract's parameters, in order, with its kinds and defaults; a stage may add
        # keyword-only parameters that have defaults (the runner never passes them)
        assert got[:len(want)] == want, f"{name}.{method}{inspect.signature(getattr(module, method))}"
        assert all(kind == inspect.Parameter.KEYWORD_ONLY and default is not inspect.Parameter.empty
                   for _, kind, default in got[len(want):]), f"{name}.{method}: extra parameters need defaults"
    # the default config validates through the pipeline's one narrowing path
    cfg = stage_config(module, PipelineConfig(stages=[name], config={}))
    assert isinstance(cfg, module.Config)


def test_an_execution_setting_at_the_top_level_says_where_it_moved() -> None:
    module = importlib.import_module(STAGES["similarity"])
    pipe = PipelineConfig(stages=["similarity"], config={"similarity": {"time_batch": 4}})
    with pytest.raises(ConfigError, match=r"config.similarity: .*time_batch moved to exec: write `exec: \{time_batch: 4\}`"):
        stage_config(module, pipe)
    pipe = PipelineConfig(stages=["similarity"], config={"similarity": {"exec": {"time_batch": 4}}})
    assert stage_config(module, pipe).exec.time_batch == 4
