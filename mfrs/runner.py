"""Run one task per unit on a dask cluster, with progress, and collect per-unit failures."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from mfrs.errors import ClusterError, MfrsError, StageFailures

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["run_units", "no_worker_timeout"]

log = logging.getLogger(__name__)
T = TypeVar("T")


def _message(exc: BaseException) -> str:
    if isinstance(exc, MfrsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class _InTask:
    """``func`` run as a task: dask reads inside it run synchronously in the task's own thread.

    Without this, ``.values`` on a dask-backed block inside a task goes through the
    worker's client, which secedes and lets more tasks pile up on the worker (memory
    grows, one worker is left with the tail). Reads are the task's own work.
    """

    func: Callable[[Any], Any]

    def __call__(self, item: Any) -> Any:
        import dask

        with dask.config.set(scheduler="synchronous"):
            return self.func(item)


@overload
def run_units(client: Client, func: Callable[[T], Any], items: Iterable[T], *, key: Callable[[T], str],
              description: str, resources: dict[str, float] | None = None, stage: str | None = None,
              return_failures: Literal[False] = False) -> dict[str, Any]: ...


@overload
def run_units(client: Client, func: Callable[[T], Any], items: Iterable[T], *, key: Callable[[T], str],
              description: str, resources: dict[str, float] | None = None, stage: str | None = None,
              return_failures: Literal[True]) -> tuple[dict[str, Any], dict[str, str]]: ...


def run_units(client: Client, func: Callable[[T], Any], items: Iterable[T], *, key: Callable[[T], str],
              description: str, resources: dict[str, float] | None = None, stage: str | None = None,
              return_failures: bool = False) -> dict[str, Any] | tuple[dict[str, Any], dict[str, str]]:
    """Submit ``func(item)`` for every item, show progress, and wait for all.

    A failing unit does not stop the others: every unit runs to its end, then
    :class:`~mfrs.errors.StageFailures` lists each failed key with its message
    (or, with ``return_failures``, they are returned beside the results).

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
    return_failures : bool
        Return ``(results, failures)`` (unit key -> message) instead of raising, for a stage
        that goes on with the units that succeeded.

    Returns
    -------
    dict
        Unit key -> result of ``func``; with ``return_failures``, ``(that dict, unit key -> message)``.

    Raises
    ------
    StageFailures
        When one or more units failed (not with ``return_failures``).
    """
    from distributed import wait
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    items = list(items)
    if not items:
        return ({}, {}) if return_failures else {}
    futures = {}
    for item in items:
        name = key(item)
        fut = client.submit(_InTask(func), item, key=f"{description}-{name}-{id(item):x}", pure=False,
                            resources=resources)
        futures[fut] = name
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    interactive = sys.stderr.isatty()
    watchdog = _NoWorkerWatchdog(client, description)
    pending = set(futures)
    done = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not interactive, transient=False) as progress:
        task = progress.add_task(description, total=len(futures))
        while pending:
            try:
                wait(list(pending), timeout=watchdog.poll_s, return_when="FIRST_COMPLETED")
            except TimeoutError:
                watchdog.check(len(pending), pending)
                continue
            except Exception:  # noqa: BLE001 - cancelled futures: their result() below says why
                pass
            finished = {f for f in pending if f.done()}
            pending -= finished
            watchdog.seen_workers()
            for fut in finished:
                done += 1
                name = futures[fut]
                try:
                    results[name] = fut.result()
                    log.info("%s: %s done (%d/%d)", description, name, done, len(futures))
                except Exception as exc:  # each failure is reported after all units ran
                    failures[name] = _message(exc)
                    log.error("%s: %s failed (%d/%d): %s", description, name, done, len(futures), failures[name])
                progress.advance(task)
    if return_failures:
        return results, failures
    if failures:
        raise StageFailures(stage or description, failures)
    return results


def no_worker_timeout() -> float:
    """Seconds a run waits with no worker before it fails: dask config ``mfrs.no-worker-timeout``
    (env ``DASK_MFRS__NO_WORKER_TIMEOUT=60s``, or the cluster profile's ``no_worker_timeout``), default 300 s."""
    import dask
    from dask.utils import parse_timedelta

    return float(parse_timedelta(dask.config.get("mfrs.no-worker-timeout", "300s"), default="s"))


class _NoWorkerWatchdog:
    """Fails a run (ClusterError, exit 3) once the cluster has had no worker for ``no_worker_timeout``."""

    def __init__(self, client: Client, description: str):
        self.client = client
        self.description = description
        self.limit = no_worker_timeout()
        self.poll_s = max(0.5, min(5.0, self.limit / 4))
        self.since: float | None = None

    def seen_workers(self) -> None:
        self.since = None

    def check(self, n_pending: int, pending: set) -> None:
        import time

        if self.client.scheduler_info().get("workers"):
            self.since = None
            return
        now = time.monotonic()
        self.since = self.since if self.since is not None else now
        if now - self.since >= self.limit:
            self.client.cancel(list(pending))
            raise ClusterError(
                f"{self.description}: no worker for {self.limit:.0f} s with {n_pending} unit(s) waiting; the "
                "cluster lost its workers (jobs cancelled or ended?): finished units are marked, rerun to resume")
