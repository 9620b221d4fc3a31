"""Convert one chunk of listed images into arrays: decode, crop, resize; failures become statuses.

This is the body of one dask task of the images stage. It holds one chunk in
memory at a time, so converting CelebA's 202,599 images uses constant memory
per worker whatever the dataset size.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mfrs.errors import InputDataError
from mfrs.images.faces import CropSpec, prepare_image, read_image

__all__ = ["convert_items", "STATUS_WIDTH", "image_shape"]

#: Characters kept of a status message (the store's ``status`` is fixed-width unicode).
STATUS_WIDTH = 240


def image_shape(spec: CropSpec) -> tuple[int, ...]:
    """Shape of one stored image: ``(size, size)`` gray or ``(size, size, 3)`` RGB."""
    return (spec.size, spec.size) if spec.color == "gray" else (spec.size, spec.size, 3)


@functools.cache
def _one_opencv_thread() -> None:
    import cv2

    # One OpenCV thread per dask thread: the cluster decides how many cores work, not OpenCV.
    cv2.setNumThreads(1)


def convert_items(paths: Sequence[str | Path], spec: CropSpec, *,
                  landmarks: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Decode, crop and resize a batch of image files.

    Parameters
    ----------
    paths : sequence of str or Path
        The files, one per item.
    spec : CropSpec
    landmarks : str or Path, optional
        Eye cascade for alignment.

    Returns
    -------
    images : numpy.ndarray
        ``(item, y, x[, channel])`` uint8; zeros where an item failed.
    status : numpy.ndarray
        ``(item,)`` str: ``"ok"``, ``"ok: <note>"`` or ``"failed: <file>: <reason>"``.
    """
    _one_opencv_thread()
    images = np.zeros((len(paths), *image_shape(spec)), dtype=np.uint8)
    status = np.empty(len(paths), dtype=f"<U{STATUS_WIDTH}")
    for i, path in enumerate(paths):
        try:
            pixels = read_image(path, color=spec.color)
            out, note = prepare_image(pixels, spec, landmarks=landmarks)
        except InputDataError as exc:
            out, note = None, f"failed: {exc}"
        if out is None:
            if str(path) not in note:
                note = f"{note} ({path})"
        else:
            images[i] = out
        status[i] = note[:STATUS_WIDTH]
    return images, status
