"""Per-thread scratch buffers reused across calls of the block functions.

Large temporaries (packed sort keys, Gram matrices) freshly allocated on every call
cost a page fault per 4 KiB on first touch, as much as the kernel work itself for one
RDM of 428 stimuli; reusing one buffer per thread keeps them mapped (and in cache).
Buffers are thread-local, so Dask worker threads never share one.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["scratch"]

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array of ``shape`` and ``dtype``, reused per thread and ``name``.

    The same ``name`` returns a view of the same memory on the next call (grown when too
    small), so a caller must not keep a result across calls that use the same name.
    """
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64))
    pool: dict[str, np.ndarray] = _local.__dict__.setdefault("pool", {})
    buf = pool.get(name)
    if buf is None or buf.dtype != dtype or buf.size < size:
        buf = np.empty(size, dtype)
        pool[name] = buf
    return buf[:size].reshape(shape)
