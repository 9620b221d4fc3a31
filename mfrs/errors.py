"""Exceptions that mfrs raises for problems a user can fix.

Every message names the thing at fault (catalog entry, file, store path), the
bad value and what to do. The CLI prints these without a traceback.
"""

from __future__ import annotations

__all__ = [
    "MfrsError",
    "ConfigError",
    "CatalogError",
    "StoreError",
    "InputDataError",
    "ClusterError",
    "StageFailures",
    "RunLockedError",
]


class MfrsError(Exception):
    """Base class of the errors a user can act on (exit code 2 in the CLI)."""

    exit_code: int = 2


class ConfigError(MfrsError, ValueError):
    """A pipeline, stage or cluster configuration is invalid."""


class CatalogError(MfrsError, KeyError):
    """The data catalog is malformed, or names a dataset that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class StoreError(MfrsError):
    """A Zarr store is missing, half-written, or does not match what a stage expects."""


class InputDataError(MfrsError, ValueError):
    """An input file (recording, image, weights) is missing, unreadable or inconsistent."""


class ClusterError(MfrsError):
    """A cluster could not be started or reached."""

    exit_code = 3


class StageFailures(MfrsError):
    """Some units of a stage failed while the others completed.

    Parameters
    ----------
    stage : str
        The stage name.
    failures : dict
        Unit key -> error message.
    """

    exit_code = 4

    def __init__(self, stage: str, failures: dict[str, str]):
        self.stage = stage
        self.failures = dict(failures)
        lines = "\n".join(f"  - {key}: {msg}" for key, msg in self.failures.items())
        super().__init__(
            f"stage {stage!r}: {len(self.failures)} unit(s) failed; the others are complete "
            f"and marked so. Fix the inputs below and rerun the same command to resume:\n{lines}"
        )


class RunLockedError(MfrsError):
    """Another mfrs run holds the data root's lock (exit code 5)."""

    exit_code = 5
