"""Reading an image dataset store for training: usable items of a split, in shuffled batches.

Stores written by the images stage keep failed items (``status`` not ``ok``)
in place; these helpers leave them out. Batches are read chunk by chunk: the
chunks of a split are visited in a seeded random order and shuffled inside,
so a trainer holds one chunk at a time and still sees mixed identities
(items are already stored shuffled within each split).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.images.types import SPLITS, Split

__all__ = ["usable", "split_items", "iter_batches"]


def usable(ds: xr.Dataset) -> xr.DataArray:
    """``(item,)`` bool: the item was converted (status ``ok`` or ``ok: <note>``)."""
    return ds.status.str.startswith("ok")


def split_items(ds: xr.Dataset, split: Split) -> np.ndarray:
    """Positions of the usable items of ``split``, ascending.

    Raises
    ------
    InputDataError
        ``split`` is not one of train/valid/test, or has no usable item.
    """
    if split not in SPLITS:
        raise InputDataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}.")
    mask = (ds.split == split) & usable(ds)
    positions = np.flatnonzero(np.asarray(mask.values))
    if positions.size == 0:
        raise InputDataError(f"the image store has no usable item in split {split!r} "
                             f"({int((ds.split == split).sum())} items, none with status ok); "
                             "check attrs['failed'] and the split settings of the images stage.")
    return positions


def iter_batches(ds: xr.Dataset, split: Split, *, batch_size: int, seed: int, epoch: int = 0,
                 shuffle: bool = True, drop_last: bool = False) -> Iterator[xr.Dataset]:
    """Yield batches of one split, one store chunk in memory at a time.

    Parameters
    ----------
    ds : xarray.Dataset
        An image store (lazy, from ``catalog.open``).
    split : Split
    batch_size : int
    seed, epoch : int
        The order comes from ``SeedSequence([seed, epoch])``: reproducible, new each epoch.
    shuffle : bool
        False: store order.
    drop_last : bool
        Leave out a last, smaller batch.

    Yields
    ------
    xarray.Dataset
        ``image (item, y, x[, channel])`` uint8 and ``label (item,)`` int64, with the
        store's ``item`` numbers.
    """
    positions = split_items(ds, split)
    chunks = ds.image.chunks[0] if ds.image.chunks else (ds.sizes["item"],)
    edges = np.concatenate([[0], np.cumsum(chunks)])
    owner = np.searchsorted(edges, positions, side="right") - 1
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    order = rng.permutation(len(chunks)) if shuffle else np.arange(len(chunks))
    labels = np.asarray(ds.label.values, dtype=np.int64)
    items = np.asarray(ds.item.values)
    pending_img: list[np.ndarray] = []
    pending_pos: list[np.ndarray] = []
    n_pending = 0

    def emit(n: int) -> xr.Dataset:
        nonlocal pending_img, pending_pos, n_pending
        img, pos = np.concatenate(pending_img), np.concatenate(pending_pos)
        pending_img, pending_pos = [img[n:]], [pos[n:]]
        n_pending = len(pos) - n
        return xr.Dataset({"image": (ds.image.dims, img[:n]), "label": ("item", labels[pos[:n]])},
                          coords={"item": items[pos[:n]]})

    for c in order:
        pos = positions[owner == c]
        if pos.size == 0:
            continue
        if shuffle:
            pos = pos[rng.permutation(pos.size)]
        start = int(edges[c])
        block = np.asarray(ds.image.isel(item=slice(start, int(edges[c + 1]))).values)
        pending_img.append(block[pos - start])
        pending_pos.append(pos)
        n_pending += pos.size
        while n_pending >= batch_size:
            yield emit(batch_size)
    if n_pending and not drop_last:
        yield emit(n_pending)
