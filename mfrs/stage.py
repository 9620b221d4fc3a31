"""The stage contract: the :class:`Stage` protocol every stage module satisfies, its config base, its plan.

A stage is one module ``mfrs/stages/<stage>.py`` (the registry
:data:`mfrs.pipeline.STAGES` is that folder's listing) with a docstring whose first
line is its title, and exactly these names (:class:`Stage`; ``tests/test_stage_contract.py``
checks every registered stage against it):

``NAME``
    The stage name (the file's stem).
``Config``
    A :class:`StageConfig` subclass: the stage's science settings, plus its execution
    settings (memory, batch and chunk sizes that change no number, devices) in the nested
    ``exec`` section (an :class:`ExecSettings` subclass), which provenance records but
    never fingerprints (:func:`mfrs.provenance.science_parameters`).
``inputs(cfg, catalog)`` / ``outputs(cfg, catalog)``
    The catalog entries read and written (an entry name may depend on the catalog: an
    activations store is named after its weights entry's dataset).
``plan(*, config, catalog)``
    A :class:`Plan`: what a run reads, writes, holds and costs. It sizes its input
    stores as they are (:func:`mfrs.store.open_as_they_are`: they must exist, units may
    still be missing).
``run(*, config, catalog, client, inputs, overwrite=False)``
    Create or resume the outputs on the dask ``client``. ``inputs`` maps each declared
    ``zarr`` input to its :class:`~mfrs.store.ZarrStore`, opened by the runner
    (:func:`mfrs.pipeline.run_stage`) through :func:`mfrs.store.open_inputs`, so refused
    unless complete, intact and current; a stage opens none of its declared input stores
    itself (its tasks may reread them by path). Inputs of other kinds (BIDS, FreeSurfer,
    image folders, weights) are files the stage reads from its catalog entry.

The pipeline narrows its config to a stage's with :meth:`StageConfig.pipeline_section`
(the stage's own section by default; a Config may override it to take defaults from
another section) plus the pipeline globals (``seed``, ``subjects``) its Config declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfrs.errors import ConfigError

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.catalog import Catalog
    from mfrs.store import ZarrStore

__all__ = ["Stage", "StageConfig", "Settings", "ExecSettings", "Plan", "format_bytes"]


class Settings(BaseModel):
    """Base of a config's nested sections (a network spec, a dataset): unknown keys are errors, frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ExecSettings(Settings):
    """Execution settings of a stage (the ``exec`` section): what can change no number.

    Memory, batch and chunk sizes that do not change results, devices. Provenance
    records them (``execution``) but leaves them out of the fingerprint, so a store
    resumes whatever their values.
    """


class StageConfig(Settings):
    """Base of stage configs: unknown keys are errors, values are validated once.

    Execution settings live in the nested ``exec`` section; a subclass that has any
    declares ``exec: <its ExecSettings subclass>``. A key of that section given at the
    top level (where it used to be) is refused with a message saying where it moved.

    Examples
    --------
    >>> class Exec(ExecSettings):
    ...     chunk: int = 8
    >>> class Cfg(StageConfig):
    ...     alpha: float = 1.0
    ...     exec: Exec = Exec()
    >>> Cfg.model_validate({"alpha": 2.0, "exec": {"chunk": 4}}).exec.chunk
    4
    >>> Cfg.model_validate({"chunk": 4})
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Cfg
    ...
    """

    exec: ExecSettings = Field(default_factory=ExecSettings,
                               description="execution settings: recorded, not fingerprinted")

    @model_validator(mode="before")
    @classmethod
    def _moved_to_exec(cls, data: Any) -> Any:
        if isinstance(data, dict):
            exec_type = cls.model_fields["exec"].annotation
            exec_fields = getattr(exec_type, "model_fields", {})
            moved = sorted(k for k in data if k in exec_fields and k not in cls.model_fields)
            if moved:
                example = ", ".join(f"{k}: {data[k]}" for k in moved)
                raise ValueError(f"{', '.join(moved)} moved to exec: write `exec: {{{example}}}`")
        return data

    @classmethod
    def pipeline_section(cls, sections: Mapping[str, Mapping[str, Any]], *, name: str) -> dict[str, Any]:
        """This stage's raw settings from the pipeline's ``config`` sections (stage name -> mapping).

        The default is the stage's own section; a stage whose defaults come from another
        stage's section overrides this (``model_rdms`` takes ``networks`` from ``activations``).

        Examples
        --------
        >>> StageConfig.pipeline_section({"a": {"x": 1}}, name="a")
        {'x': 1}
        """
        return dict(sections.get(name, {}))


@runtime_checkable
class Stage(Protocol):
    """What a stage module provides (see the module docstring); modules satisfy it structurally."""

    NAME: str
    Config: type[StageConfig]

    def inputs(self, cfg: Any, catalog: Catalog) -> list[str]:
        """Catalog entries read."""
        ...

    def outputs(self, cfg: Any, catalog: Catalog) -> list[str]:
        """Catalog entries written."""
        ...

    def plan(self, *, config: Any, catalog: Catalog) -> Plan:
        """What a run reads, writes, holds and costs."""
        ...

    def run(self, *, config: Any, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
            overwrite: bool = False) -> Any:
        """Create or resume the outputs from the declared input stores the runner opened."""
        ...


def format_bytes(n: float) -> str:
    """Human-readable size: ``format_bytes(3 * 2**30) == '3.0 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@dataclass
class Plan:
    """What a stage run will read, write, hold in memory and roughly cost.

    Attributes
    ----------
    stage : str
    reads, writes : dict
        Catalog entry -> bytes.
    n_tasks : int
        Tasks still to run (missing units).
    n_units : int
        Units in all.
    memory_per_task : int
        Peak bytes one task holds.
    flops : float
        Floating-point operations of the remaining work (0 when not meaningful).
    seconds : float
        Rough wall time on one worker core (similarity: its CPU seconds).
    worker_seconds : float
        The part of ``seconds`` that every further worker adds (start-up, per-worker preparation).
    notes : list of str
    """

    stage: str
    reads: dict[str, int] = field(default_factory=dict)
    writes: dict[str, int] = field(default_factory=dict)
    n_tasks: int = 0
    n_units: int = 0
    memory_per_task: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    worker_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def check_fits(self, worker_memory: int | None) -> None:
        """Raise ConfigError when one task needs more memory than a worker has."""
        if worker_memory and self.memory_per_task > worker_memory:
            raise ConfigError(
                f"stage {self.stage!r}: one task needs {format_bytes(self.memory_per_task)} but a worker "
                f"has {format_bytes(worker_memory)}. Use smaller blocks in the stage config or give "
                "workers more memory in the cluster profile."
            )

    def as_dict(self) -> dict[str, Any]:
        """Plain-data view for printing or JSON."""
        return {
            "stage": self.stage, "reads": self.reads, "writes": self.writes, "tasks": self.n_tasks,
            "units": self.n_units, "memory_per_task": self.memory_per_task, "flops": self.flops,
            "seconds": self.seconds, "worker_seconds": self.worker_seconds, "notes": self.notes,
        }
