"""Every registered stage (``mfrs/stages/<stage>.py``) satisfies the :class:`mfrs.stage.Stage` contract."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from mfrs.errors import ConfigError
from mfrs.pipeline import STAGES, PipelineConfig, stage_config
from mfrs.stage import ExecSettings, Stage, StageConfig

STAGE_DIR = Path(__file__).resolve().parent.parent / "mfrs" / "stages"

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


def _called(node: ast.AST) -> set[str]:
    """Names of the functions called in ``node`` (``f(...)``, ``a.b.f(...)`` -> ``f`` and ``b.f``)."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        func = call.func
        if isinstance(func, ast.Name):
            names.add(func.id)
        elif isinstance(func, ast.Attribute):
            names.add(func.attr)
            if isinstance(func.value, ast.Name):
                names.add(f"{func.value.id}.{func.attr}")
    return names


@pytest.mark.parametrize("path", sorted(STAGE_DIR.glob("*.py")), ids=lambda p: p.stem)
def test_no_stage_opens_its_declared_input_stores(path: Path) -> None:
    """The runner (``mfrs.pipeline.run_stage``) opens a stage's declared input stores through the store
    layer's checks and hands them to ``run`` as ``inputs``: no stage calls the checking opens, and no
    ``run`` opens a store itself. ``plan`` sizes its inputs as they are (``open_as_they_are``), and
    tasks may reread by path the stores the runner checked; a stage opens its own outputs freely."""
    tree = ast.parse(path.read_text(), filename=str(path))
    assert not {"open_inputs", "open_input"} & _called(tree), \
        f"{path.name} opens its inputs itself: use the stores the runner passes as `inputs`"
    run = next((f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "run"), None)
    if run is not None:
        opens = {"open_as_they_are", "ZarrStore.open", "open_zarr"} & _called(run)
        assert not opens, f"{path.name}: run() calls {sorted(opens)}: read the stores in `inputs`"
