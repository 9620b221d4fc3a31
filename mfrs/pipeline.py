"""Pipelines: named lists of stages with their configs (``pipelines/*.yaml``), validated once.

The stage registry maps a stage name to its module; modules are imported only
when a pipeline uses them, so torch or MNE load only for the stages that need them.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mfrs.errors import ConfigError, MfrsError
from mfrs.stage import Plan, StageConfig

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.catalog import Catalog
    from mfrs.stage import Stage
    from mfrs.store import ZarrStore

__all__ = ["STAGES", "PipelineConfig", "load_pipeline", "stage_module", "stage_config",
           "find_pipeline_file", "run_pipeline", "run_stage", "plan_stage", "open_stage_inputs", "writer_of"]

log = logging.getLogger(__name__)

#: stage name -> module implementing it (the :class:`mfrs.stage.Stage` protocol): the files of mfrs/stages.
STAGES: dict[str, str] = {
    path.stem: f"mfrs.stages.{path.stem}"
    for path in sorted((Path(__file__).parent / "stages").glob("*.py")) if not path.stem.startswith("_")
}

#: Pipeline-level values a stage receives when its Config declares a field of that name.
GLOBAL_FIELDS = ("seed", "subjects")


class PipelineConfig(BaseModel):
    """A pipeline file: which stages run, in order, and each stage's settings."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    seed: int = 0
    subjects: list[str] | None = None
    stages: list[str]
    config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    source: Path | None = None


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def stage_module(name: str) -> ModuleType:
    """Import the module of stage ``name``."""
    if name not in STAGES:
        raise ConfigError(f"unknown stage {name!r}.{_did_you_mean(name, list(STAGES))} "
                          f"Known stages: {', '.join(STAGES)}.")
    try:
        return importlib.import_module(STAGES[name])
    except ModuleNotFoundError as exc:
        raise ConfigError(f"stage {name!r} needs module {exc.name!r}, which is not installed; "
                          "install mfrs with its extras: pip install -e '.[all]'.") from exc


def stage_config(module: ModuleType, pipeline: PipelineConfig) -> StageConfig:
    """The narrowed config of one stage: its section (:meth:`~mfrs.stage.StageConfig.pipeline_section`)
    plus the pipeline globals its Config declares, validated."""
    name = module.NAME
    config_type: type[StageConfig] = module.Config
    section = config_type.pipeline_section(pipeline.config, name=name)
    fields = config_type.model_fields
    for key in GLOBAL_FIELDS:
        if key in fields and key not in section and getattr(pipeline, key) is not None:
            section[key] = getattr(pipeline, key)
    try:
        return config_type.model_validate(section)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in (name, *err["loc"]))
            hint = _did_you_mean(str(err["loc"][-1]), list(fields)) if err["type"] == "extra_forbidden" else ""
            lines.append(f"  config.{loc}: {err['msg']}.{hint}")
        where = pipeline.source or "the pipeline"
        raise ConfigError(f"invalid settings for stage {name!r} in {where}:\n" + "\n".join(lines)) from exc


def find_pipeline_file(name: str | Path) -> Path:
    """``demo`` -> ``pipelines/demo.yaml`` (cwd, then the mfrs repository); a path is used as is."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    repo = Path(__file__).resolve().parent.parent
    candidates = [Path.cwd() / "pipelines" / f"{name}.yaml", repo / "pipelines" / f"{name}.yaml"]
    for cand in candidates:
        if cand.is_file():
            return cand
    known = sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.yaml")})
    raise ConfigError(f"no pipeline {str(name)!r}: looked for {', '.join(map(str, candidates))}."
                      f"{_did_you_mean(str(name), known)} Known pipelines: {', '.join(known) or 'none'}.")


def load_pipeline(name: str | Path, *, subjects: list[str] | None = None) -> PipelineConfig:
    """Load and validate a pipeline and every stage section in it.

    Parameters
    ----------
    name : str or Path
        Pipeline name (``demo``) or YAML file.
    subjects : list of str, optional
        Overrides the pipeline's ``subjects``.

    Raises
    ------
    ConfigError
        Malformed YAML, unknown keys or stages, invalid values; names the file and key.
    """
    path = find_pipeline_file(name)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"pipeline {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"pipeline {path} must be a mapping with 'stages' and 'config'.")
    try:
        pipe = PipelineConfig.model_validate({**raw, "source": path})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = str(err["loc"][0])
            hint = _did_you_mean(key, list(PipelineConfig.model_fields)) if err["type"] == "extra_forbidden" else ""
            lines.append(f"  {'.'.join(map(str, err['loc']))}: {err['msg']}.{hint}")
        raise ConfigError(f"invalid pipeline {path}:\n" + "\n".join(lines)) from exc
    if subjects:
        pipe = pipe.model_copy(update={"subjects": list(subjects)})
    for section in pipe.config:
        if section not in pipe.stages and section not in STAGES:
            raise ConfigError(f"pipeline {path}: config section {section!r} is not a stage."
                              f"{_did_you_mean(section, list(STAGES))}")
    for stage in pipe.stages:
        stage_config(stage_module(stage), pipe)  # validate everything before any work
    return pipe


def select_stages(pipe: PipelineConfig, stages: list[str] | None) -> list[str]:
    """The stages to run: ``stages`` (checked against the pipeline) or all, in pipeline order."""
    if not stages:
        return list(pipe.stages)
    for s in stages:
        if s not in pipe.stages:
            raise ConfigError(f"stage {s!r} is not in pipeline {pipe.source}.{_did_you_mean(s, pipe.stages)} "
                              f"Its stages: {', '.join(pipe.stages)}.")
    return [s for s in pipe.stages if s in stages]


def writer_of(entry: str, *, catalog: Catalog, pipeline: PipelineConfig | None = None) -> str | None:
    """The registered stage whose ``outputs(cfg, catalog)`` lists ``entry`` (``None`` when none does).

    Each stage's config is the pipeline's (``pipeline``) or its defaults. A stage whose
    module cannot be imported or whose outputs cannot be listed with this catalog is passed over.

    Examples
    --------
    >>> from mfrs.catalog import load_catalog
    >>> catalog = load_catalog(Path(__file__).parents[1] / "data_catalog.yaml", root="/tmp/mfrs-doc")
    >>> writer_of("sources", catalog=catalog), writer_of("ds000117", catalog=catalog)
    ('meg', 'demo_data')
    """
    for name in STAGES:
        pipe = pipeline if pipeline is not None and name in pipeline.stages else PipelineConfig(stages=[name])
        try:
            module = stage_module(name)
            if entry in module.outputs(stage_config(module, pipe), catalog):
                return name
        except MfrsError as exc:  # not installed, or an entry this catalog lacks
            log.debug("writer of %r: stage %s passed over: %s", entry, name, exc)
    return None


def _missing_inputs(stage: Stage, *, config: Any, catalog: Catalog,
                    pipeline: PipelineConfig | None) -> tuple[list[str], dict[str, str]]:
    """The declared zarr inputs of ``stage`` not written yet, and the stage that writes each (:func:`writer_of`)."""
    names = stage.inputs(config, catalog)
    missing = [n for n in names if catalog.entry(n).kind == "zarr" and not (catalog.path(n) / "zarr.json").exists()]
    return missing, {n: w for n in missing if (w := writer_of(n, catalog=catalog, pipeline=pipeline))}


def open_stage_inputs(stage: Stage, *, config: Any, catalog: Catalog,
                      pipeline: PipelineConfig | None = None) -> dict[str, ZarrStore]:
    """The Zarr stores among ``stage``'s declared inputs, opened through :func:`mfrs.store.open_inputs`.

    Each is refused (:class:`~mfrs.errors.StoreError`, naming the entry and the stage that writes
    it, :func:`writer_of`) unless it exists and every unit is complete, intact and current.
    Inputs of other kinds (BIDS, FreeSurfer, image folders, weights) are files the stage reads itself.
    """
    from mfrs.store import open_inputs

    # a store that exists names its writer in its provenance; ask the registry only for the others
    _, writers = _missing_inputs(stage, config=config, catalog=catalog, pipeline=pipeline)
    return open_inputs(stage.inputs(config, catalog), catalog=catalog, stage=stage.NAME, writers=writers)


def plan_stage(stage: Stage, *, config: Any, catalog: Catalog, pipeline: PipelineConfig | None = None) -> Plan:
    """``stage.plan`` once every declared input store exists (its sizes come from them; units may be missing).

    Raises
    ------
    StoreError
        An input store is not written yet; names it and the stage that writes it.
    """
    from mfrs.store import open_inputs

    missing, writers = _missing_inputs(stage, config=config, catalog=catalog, pipeline=pipeline)
    open_inputs(missing, catalog=catalog, stage=stage.NAME, writers=writers)  # refuses the first, naming its writer
    return stage.plan(config=config, catalog=catalog)


def run_stage(stage: Stage, *, config: Any, catalog: Catalog, client: Client, overwrite: bool = False,
              pipeline: PipelineConfig | None = None) -> Any:
    """Run one stage the way the pipeline does: open its declared inputs, then call its ``run``.

    The one door to a stage's ``run`` (the CLI through :func:`run_pipeline`, tests, benchmarks):
    the stage gets the stores it declared (:func:`open_stage_inputs`), already checked, and
    opens none itself.

    Parameters
    ----------
    stage : Stage
        The stage module (:func:`stage_module`).
    config, catalog, client, overwrite
        As :meth:`mfrs.stage.Stage.run` takes them.
    pipeline : PipelineConfig, optional
        Where the other stages' configs come from when naming the writer of a missing input.

    Returns
    -------
    What the stage's ``run`` returns.
    """
    inputs = open_stage_inputs(stage, config=config, catalog=catalog, pipeline=pipeline)
    return stage.run(config=config, catalog=catalog, client=client, inputs=inputs, overwrite=overwrite)


def run_pipeline(pipe: PipelineConfig, *, catalog: Any, client: Client, stages: list[str] | None = None,
                 overwrite: bool = False) -> dict[str, float]:
    """Run the selected stages in order; return stage -> seconds taken.

    Each stage's plan is checked against the workers' memory just before it runs
    (its inputs exist by then), and refused with the reason when it cannot fit.
    """
    from mfrs.cluster import worker_memory_limit

    timings = {}
    limit = worker_memory_limit(client)
    for name in select_stages(pipe, stages):
        module = stage_module(name)
        cfg = stage_config(module, pipe)
        plan_stage(module, config=cfg, catalog=catalog, pipeline=pipe).check_fits(limit)
        t0 = time.perf_counter()
        log.info("stage %s: starting", name)
        run_stage(module, config=cfg, catalog=catalog, client=client, overwrite=overwrite, pipeline=pipe)
        timings[name] = time.perf_counter() - t0
        log.info("stage %s: finished in %.1f s", name, timings[name])
    return timings
