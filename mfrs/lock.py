"""One run per data root: an advisory lock file that the kernel releases when its holder ends."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from mfrs.errors import RunLockedError

__all__ = ["data_root_lock", "LOCK_NAME"]

log = logging.getLogger(__name__)

LOCK_NAME = ".mfrs-lock"


@contextlib.contextmanager
def data_root_lock(root: str | Path, *, command: str) -> Iterator[Path]:
    """Hold the lock of data root ``root`` for the duration of the block.

    The lock is ``flock`` on ``<root>/.mfrs-lock``: a process that dies (SIGKILL
    included) releases it, so a stale lock never blocks a later run.

    Parameters
    ----------
    root : str or Path
        The data root (created if needed).
    command : str
        What this run does, written into the file for the message a second run gets.

    Raises
    ------
    RunLockedError
        Another process holds the lock; the message names it.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunLockedError(f"data root {root} is in use by another mfrs run ({holder}); wait for it to end "
                             f"(its lock {path} is released when it exits), or use another MFRS_DATA_ROOT.") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}: mfrs {command}\n")
        fh.flush()
        log.debug("holding %s", path)
        yield path
    finally:
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
