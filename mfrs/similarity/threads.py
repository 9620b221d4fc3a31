"""The one place where the similarity engine chooses its threading.

Kernels run with one Numba thread and one BLAS thread per call: on the shared
machines parallel BLAS and Numba threads fight each other and Dask's own
threads, so parallelism comes from Dask workers (ideally one thread each).
Inside a Dask worker *thread* a process-wide BLAS limit also throttles the
worker's other threads; that fallback is logged once per process, never silent.
This library does not import ``distributed``: the cluster layer installs, in every
worker it connects, the probe that recognises a task's thread (:func:`set_worker_probe`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["single_threaded", "in_dask_worker", "set_worker_probe"]

log = logging.getLogger(__name__)


_logged = threading.Event()


#: Installed by the cluster layer (:mod:`mfrs.cluster`) in each worker process: the calling thread's
#: worker thread count when it runs a Dask task, None otherwise. None here: no worker in this process.
_worker_probe: Callable[[], int | None] | None = None


def set_worker_probe(probe: Callable[[], int | None] | None) -> None:
    """Install how this process recognises a Dask task's thread (None: this process runs no worker).

    Parameters
    ----------
    probe : callable or None
        ``() -> int | None``: the worker's thread count when the calling thread runs a
        task, None otherwise.

    Examples
    --------
    >>> set_worker_probe(lambda: 4)
    >>> in_dask_worker()
    (True, 4)
    >>> set_worker_probe(None)
    >>> in_dask_worker()
    (False, 0)
    """
    global _worker_probe
    _worker_probe = probe


def in_dask_worker() -> tuple[bool, int]:
    """Return whether this thread runs a Dask task, and that worker's thread count."""
    nthreads = _worker_probe() if _worker_probe is not None else None
    return nthreads is not None, nthreads or 0


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the enclosed kernels with one BLAS thread and one Numba thread.

    Yields
    ------
    None

    Notes
    -----
    ``threadpoolctl`` limits are process-wide: in a Dask worker with several threads
    the limit applies to all of them. That is logged once per process with the fix
    (start workers with ``--nthreads 1`` and more processes).
    """
    if getattr(_state, "depth", 0):  # already limited by an enclosing call in this thread
        yield
        return
    inside, nthreads = in_dask_worker()
    if inside and not _logged.is_set():
        _logged.set()
        if nthreads > 1:
            log.warning(
                "similarity kernels run in a Dask worker with %d threads (pid %d): BLAS is limited to "
                "1 thread process-wide and Numba kernels run serially; for full speed start workers "
                "with 1 thread each (more worker processes instead)", nthreads, os.getpid())
        else:
            log.info("similarity kernels run serially in Dask worker process %d (1 BLAS, 1 Numba thread)",
                     os.getpid())
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    _state.depth = 1
    try:
        with _controller().limit(limits=1):
            yield
    finally:
        _state.depth = 0
        numba.set_num_threads(previous)


_state = threading.local()


@functools.lru_cache(maxsize=1)
def _controller() -> Any:
    """One ``threadpoolctl.ThreadpoolController`` per process: finding the BLAS libraries takes milliseconds."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
