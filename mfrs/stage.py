"""What every stage shares: its config base class and the plan it gives before running.

A stage is one module (``mfrs/<domain>/<stage>.py``) with a docstring whose
first line is its title, ``NAME``, a ``Config`` pydantic model, ``inputs(cfg)``
and ``outputs(cfg)`` naming catalog entries, ``plan(*, config, catalog)`` and
``run(*, config, catalog, client, overwrite=False)``. It may define
``stage_config(pipeline)`` to narrow the pipeline config itself; otherwise
:func:`mfrs.pipeline.stage_config` takes the stage's section plus the pipeline
globals (``seed``, ``subjects``) that its Config declares.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from mfrs.errors import ConfigError

__all__ = ["StageConfig", "Plan", "format_bytes"]


class StageConfig(BaseModel):
    """Base of stage configs: unknown keys are errors, values are validated once."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Fields that do not change any number (memory, batch sizes): recorded, not fingerprinted.
    execution_fields: ClassVar[tuple[str, ...]] = ()


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
        Rough wall time on one worker core.
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
            "seconds": self.seconds, "notes": self.notes,
        }
