"""``.npy`` files read and written a row (first-axis slice) at a time, through file reads and writes.

A memory map keeps every page it touched in the process's resident memory until it is closed (the
whole file once it has all been read or written), and a dask worker's memory limit counts those
pages. The band analytic epochs (one file per band, ``(epoch, channel, time)`` complex64, 1.2 GB
each at the study's size) go through these functions instead, so a task holds one row, not a file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

__all__ = ["create", "rows", "write_rows", "copy_rows"]

PathLike = str | os.PathLike[str]


def _header(f: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the open ``.npy`` file ``f``, left at its first data byte."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    if fortran:
        raise ValueError(f"{f.name}: a Fortran-ordered array cannot be read or written row by row")
    return tuple(shape), np.dtype(dtype)


def create(path: PathLike, shape: tuple[int, ...], dtype: type | np.dtype) -> None:
    """A ``.npy`` file of ``shape`` (its data zeros, written by :func:`write_rows`)."""
    dtype = np.dtype(dtype)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                 "fortran_order": False, "shape": tuple(shape)})
        f.truncate(f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)


def rows(path: PathLike) -> Iterator[np.ndarray]:
    """The rows of a ``.npy`` file, read one at a time.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> create(path, (3, 2), np.float64)
    >>> write_rows(path, 1, np.array([[2.0, 3.0], [4.0, 5.0]]))
    >>> [r.tolist() for r in rows(path)]
    [[0.0, 0.0], [2.0, 3.0], [4.0, 5.0]]
    >>> np.load(path)[1:].tolist()
    [[2.0, 3.0], [4.0, 5.0]]
    """
    with open(path, "rb") as f:
        shape, dtype = _header(f)
        count = int(np.prod(shape[1:], dtype=np.int64))
        for _ in range(shape[0]):
            yield np.fromfile(f, dtype=dtype, count=count).reshape(shape[1:])


def write_rows(path: PathLike, start: int, data: np.ndarray) -> None:
    """Write ``data`` as rows ``start:start + len(data)`` of the ``.npy`` file (cast to its dtype)."""
    with open(path, "r+b") as f:
        shape, dtype = _header(f)
        if tuple(data.shape[1:]) != shape[1:] or start + len(data) > shape[0]:
            raise ValueError(f"{path}: rows {start}:{start + len(data)} of shape {data.shape[1:]} do not fit "
                             f"an array of shape {shape}")
        f.seek(start * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize, os.SEEK_CUR)
        for row in data:  # one row converted at a time
            np.ascontiguousarray(row, dtype=dtype).tofile(f)


def copy_rows(src: PathLike, dst: PathLike, selection: np.ndarray) -> None:
    """Write ``dst``: the rows ``selection`` of ``src``, in that order, one row at a time.

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> np.save(os.path.join(folder, "a.npy"), np.arange(8).reshape(4, 2))
    >>> copy_rows(os.path.join(folder, "a.npy"), os.path.join(folder, "b.npy"), np.array([3, 0]))
    >>> np.load(os.path.join(folder, "b.npy")).tolist()
    [[6, 7], [0, 1]]
    """
    with open(src, "rb") as f:
        shape, dtype = _header(f)
        begin = f.tell()
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        create(dst, (len(selection),) + shape[1:], dtype)
        with open(dst, "r+b") as out:
            _header(out)
            for row in selection:
                f.seek(begin + int(row) * row_bytes)
                out.write(f.read(row_bytes))
