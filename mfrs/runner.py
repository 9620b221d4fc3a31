"""Run one task per unit on a dask cluster, with progress, and collect per-unit failures."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mfrs.errors import MfrsError, StageFailures

__all__ = ["run_units"]

log = logging.getLogger("mfrs.runner")
T = TypeVar("T")


def _message(exc: BaseException) -> str:
    if isinstance(exc, MfrsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_units(client: Any, func: Callable[[T], Any], items: Iterable[T], *, key: Callable[[T], str],
              description: str, resources: dict[str, float] | None = None,
              stage: str | None = None) -> dict[str, Any]:
    """Submit ``func(item)`` for every item, show progress, and wait for all.

    A failing unit does not stop the others: every unit runs to its end, then
    :class:`~mfrs.errors.StageFailures` lists each failed key with its message.

    Parameters
    ----------
    client : distributed.Client
        The cluster to run on.
    func : callable
        Runs one unit; its return value is collected.
    items : iterable
        The units (picklable).
    key : callable
        ``item -> str`` naming a unit in progress lines and errors.
    description : str
        What the progress bar says.
    resources : dict, optional
        Worker resources each task needs (``{"GPU": 1}``).
    stage : str, optional
        Stage name for the error message (defaults to ``description``).

    Returns
    -------
    dict
        Unit key -> result of ``func``.

    Raises
    ------
    StageFailures
        When one or more units failed.
    """
    from distributed import as_completed
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    items = list(items)
    if not items:
        return {}
    futures = {}
    for item in items:
        name = key(item)
        fut = client.submit(func, item, key=f"{description}-{name}-{id(item):x}", pure=False,
                            resources=resources)
        futures[fut] = name
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    interactive = sys.stderr.isatty()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not interactive, transient=False) as progress:
        task = progress.add_task(description, total=len(futures))
        for done, fut in enumerate(as_completed(futures), start=1):
            name = futures[fut]
            try:
                results[name] = fut.result()
                log.info("%s: %s done (%d/%d)", description, name, done, len(futures))
            except Exception as exc:  # each failure is reported after all units ran
                failures[name] = _message(exc)
                log.error("%s: %s failed (%d/%d): %s", description, name, done, len(futures), failures[name])
            progress.advance(task)
    if failures:
        raise StageFailures(stage or description, failures)
    return results
