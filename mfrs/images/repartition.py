"""Repartition a listing: choose identities, split items into train/valid/test, label and order them.

Everything here is decided from the listing and the seed alone, before any
image is read, and is deterministic: each identity draws from its own random
stream (``SeedSequence([seed, crc32(identity)])``), so adding or dropping one
identity never changes how the items of the others are split. That makes the
study's dataset variants (CelebA with and without the MEG identities, the
ImageNet subset with and without face classes) config, not copies.
"""

from __future__ import annotations

import difflib
import logging
import re
import zlib
from collections.abc import Sequence

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.types import SPLITS, ShortIdentity, Split, SplitMode

__all__ = ["SplitSpec", "allocate", "select_identities", "merge_listings", "assign_splits",
           "assign_labels", "order_items", "repartition", "natural_key"]

log = logging.getLogger(__name__)

Amount = int | float | None


class SplitSpec(BaseModel):
    """How to split a listing into train/valid/test.

    Each of ``train``, ``valid``, ``test`` is a count (int), a fraction (float in
    [0, 1]) or ``None`` for "the rest"; at most one is ``None``. In ``per_identity``
    mode they apply to the images of every identity (stratified split); in
    ``disjoint_identities`` mode to the identities, each kept whole inside one
    split; ``given`` keeps the split the source layout defines. When no split is
    ``None``, items beyond the requested amounts are left out of the dataset.

    Attributes
    ----------
    mode : SplitMode
    train, valid, test : int, float or None
    max_per_identity : int, optional
        Keep at most this many images of each identity (seeded choice), before splitting.
    min_images : int
        Identities with fewer images are left out (recorded in ``attrs["dropped_identities"]``).
    short : ShortIdentity
        What to do with an identity too small for the requested counts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: SplitMode = "per_identity"
    train: Amount = None
    valid: Amount = 0.1
    test: Amount = 0.1
    max_per_identity: int | None = Field(default=None, ge=1)
    min_images: int = Field(default=1, ge=1)
    short: ShortIdentity = "drop"

    @model_validator(mode="after")
    def _check_amounts(self) -> SplitSpec:
        amounts = {s: getattr(self, s) for s in SPLITS}
        rest = [s for s, a in amounts.items() if a is None]
        if len(rest) > 1:
            raise ValueError(f"only one of train/valid/test may be null ('the rest'), got {rest}")
        fractions = 0.0
        for s, a in amounts.items():
            if isinstance(a, bool):
                raise ValueError(f"{s}: expected a count or a fraction, got {a!r}")
            if isinstance(a, float):
                if not 0.0 <= a <= 1.0:
                    raise ValueError(f"{s}: a fraction must be within [0, 1], got {a}; write an int for a count")
                fractions += a
            elif isinstance(a, int) and a < 0:
                raise ValueError(f"{s}: a count must be >= 0, got {a}")
        if fractions > 1.0 + 1e-9:
            raise ValueError(f"the fractions of train/valid/test add up to {fractions:g} > 1")
        return self


def natural_key(text: str) -> tuple:
    """Sort key that orders ``"2" < "10"`` and ``"id2" < "id10"``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def _stream(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode())]))


def allocate(n: int, spec: SplitSpec) -> dict[Split, int] | None:
    """How many of ``n`` things go to each split, or None when ``n`` is too small.

    Counts are taken as given, fractions rounded to the nearest count, and the
    ``None`` split takes the rest. When every split is a fraction and they add up
    to 1, rounding uses largest remainders so that all ``n`` are used.

    Examples
    --------
    >>> allocate(10, SplitSpec(train=None, valid=2, test=0.25))
    {'train': 5, 'valid': 2, 'test': 3}
    >>> allocate(3, SplitSpec(train=None, valid=2, test=2)) is None
    True
    """
    amounts = {s: getattr(spec, s) for s in SPLITS}
    counts: dict[Split, int] = {}
    fractional = {s: a for s, a in amounts.items() if isinstance(a, float)}
    if len(fractional) == 3 and abs(sum(fractional.values()) - 1.0) < 1e-9:
        raw = {s: a * n for s, a in fractional.items()}
        counts = {s: int(np.floor(v)) for s, v in raw.items()}
        left = n - sum(counts.values())
        for s in sorted(raw, key=lambda s: (counts[s] - raw[s], SPLITS.index(s)))[:left]:
            counts[s] += 1
        return counts
    for s, a in amounts.items():
        if isinstance(a, int):
            counts[s] = a
        elif isinstance(a, float):
            counts[s] = int(np.floor(a * n + 0.5))
    used = sum(counts.values())
    rest = [s for s, a in amounts.items() if a is None]
    if used > n or (rest and used == n and n > 0 and _rest_must_be_nonempty(spec)):
        return None
    if rest:
        counts[rest[0]] = n - used
    return {s: counts[s] for s in SPLITS}


def _rest_must_be_nonempty(spec: SplitSpec) -> bool:
    # An identity whose images all go to valid/test would be unlearnable when train is the rest.
    return spec.train is None


def select_identities(listing: xr.Dataset, *, keep: Sequence[str] | None = None,
                      drop: Sequence[str] = (), what: str = "the listing") -> xr.Dataset:
    """Keep only the identities ``keep`` (when given), then remove those in ``drop``.

    Parameters
    ----------
    listing : xarray.Dataset
        Over ``(item,)`` with an ``identity`` variable.
    keep, drop : sequence of str
        Identities (or classes) to keep / drop. Each must occur in the listing.
    what : str
        Name of the listing for messages.

    Returns
    -------
    xarray.Dataset
        The items of the selected identities ``(item,) -> (item',)``.

    Raises
    ------
    ConfigError
        A listed identity is not in the listing (the message suggests close names).
    """
    present = set(np.unique(listing.identity.values).tolist())
    for name, wanted in (("identities", keep or ()), ("drop_identities", drop)):
        unknown = [str(w) for w in wanted if str(w) not in present]
        if unknown:
            hints = []
            for u in unknown[:5]:
                close = difflib.get_close_matches(u, sorted(present), n=1)
                hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"{name}: {len(unknown)} identities are not in {what}: {', '.join(hints)}"
                              f"{'...' if len(unknown) > 5 else ''}. Remove them from the stage config "
                              "or fix their spelling.")
    mask = np.ones(listing.sizes["item"], dtype=bool)
    ident = listing.identity.values
    if keep is not None:
        mask &= np.isin(ident, np.asarray([str(k) for k in keep], dtype=str))
    if drop:
        mask &= ~np.isin(ident, np.asarray([str(d) for d in drop], dtype=str))
    return listing.isel(item=np.flatnonzero(mask))


def merge_listings(listings: dict[str, xr.Dataset]) -> xr.Dataset:
    """Concatenate the listings of several sources and add a ``source`` variable (the source's name).

    ``{name: (item,)} -> (item,)``. Variables that not every listing has (CelebA's
    ``attributes``) are dropped when there is more than one source, since they
    would not cover every item.
    """
    if not listings:
        raise ConfigError("no image source given; name at least one catalog entry in `source`.")
    parts = []
    common = set.intersection(*(set(ls.data_vars) for ls in listings.values()))
    for name, ls in listings.items():
        if len(listings) > 1:
            ls = ls[sorted(str(v) for v in common)]
            ls = ls.drop_vars([c for c in ls.coords if c != "item"])
        parts.append(ls.assign(source=("item", np.full(ls.sizes["item"], name).astype(str))))
    merged = xr.concat(parts, dim="item") if len(parts) > 1 else parts[0]
    merged = merged.assign_coords(item=np.arange(merged.sizes["item"], dtype=np.int64))
    first = next(iter(listings.values()))
    merged.attrs = {"layout": first.attrs.get("layout"),
                    "roots": {k: v.attrs.get("root") for k, v in listings.items()}}
    return merged


def _groups(identity: np.ndarray) -> dict[str, np.ndarray]:
    order = np.argsort(identity, kind="stable")
    names, starts = np.unique(identity[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return {str(n): order[s:e] for n, s, e in zip(names, starts, bounds)}


def assign_splits(listing: xr.Dataset, spec: SplitSpec, *, seed: int) -> xr.Dataset:
    """Add a ``split`` variable and leave out the items no split takes.

    Parameters
    ----------
    listing : xarray.Dataset
        Over ``(item,)`` with ``identity``, ``source_file`` and ``given_split``.
    spec : SplitSpec
    seed : int
        Root seed; each identity uses its own stream derived from it.

    Returns
    -------
    xarray.Dataset
        ``(item,) -> (item',)`` with ``split`` (``train``/``valid``/``test``);
        ``attrs["dropped_identities"]`` maps each left-out identity to the reason.

    Raises
    ------
    InputDataError
        ``mode="given"`` but some items have no split in the source, or an identity is
        too small and ``short="error"``.
    """
    identity = listing.identity.values.astype(str)
    # Within an identity, items are visited in source_file order before shuffling, so the
    # result does not depend on the listing's order.
    files = listing.source_file.values.astype(str)
    split = np.full(identity.shape, "", dtype="<U5")
    dropped: dict[str, str] = dict(listing.attrs.get("dropped_identities", {}))
    groups = _groups(identity)

    def chosen(name: str, members: np.ndarray) -> np.ndarray:
        members = members[np.argsort(files[members], kind="stable")]
        perm = members[_stream(seed, name).permutation(len(members))]
        return perm[: spec.max_per_identity] if spec.max_per_identity else perm

    def too_small(name: str, n: int, reason: str) -> None:
        if spec.short == "error":
            raise InputDataError(f"identity {name!r} has {n} images: {reason}. Lower the split counts, "
                                 "or set short: drop to leave such identities out.")
        dropped[name] = reason

    if spec.mode == "given":
        given = listing.given_split.values.astype(str)
        if np.any(given == ""):
            example = files[np.flatnonzero(given == "")[0]]
            raise InputDataError(f"split mode 'given', but {int(np.sum(given == ''))} images have no split in "
                                 f"the source layout (first: {example}); use mode per_identity or "
                                 "disjoint_identities.")
        for name, members in groups.items():
            if len(members) < spec.min_images:
                too_small(name, len(members), f"fewer than min_images={spec.min_images}")
                continue
            keep = chosen(name, members)
            split[keep] = given[keep]
    elif spec.mode == "per_identity":
        for name, members in groups.items():
            if len(members) < spec.min_images:
                too_small(name, len(members), f"fewer than min_images={spec.min_images}")
                continue
            perm = chosen(name, members)
            counts = allocate(len(perm), spec)
            if counts is None:
                too_small(name, len(perm), f"too few for train={spec.train}, valid={spec.valid}, "
                                           f"test={spec.test}")
                continue
            start = 0
            for s in SPLITS:
                split[perm[start:start + counts[s]]] = s
                start += counts[s]
    else:  # disjoint_identities
        names = [n for n, m in groups.items() if len(m) >= spec.min_images]
        for n in set(groups) - set(names):
            too_small(n, len(groups[n]), f"fewer than min_images={spec.min_images}")
        # Each identity's place comes from its own stream, so dropping one keeps the others' order.
        keys = np.array([_stream(seed, n).random() for n in names])
        names = [names[i] for i in np.argsort(keys, kind="stable")]
        counts = allocate(len(names), spec)
        if counts is None:
            raise InputDataError(f"split mode disjoint_identities: {len(names)} identities are too few for "
                                 f"train={spec.train}, valid={spec.valid}, test={spec.test} identities.")
        start = 0
        for s in SPLITS:
            for n in names[start:start + counts[s]]:
                split[chosen(n, groups[n])] = s
            start += counts[s]
    out = listing.assign(split=("item", split)).isel(item=np.flatnonzero(split != ""))
    out.attrs = {**listing.attrs, "dropped_identities": dict(sorted(dropped.items()))}
    if dropped:
        log.info("left out %d identities (first: %s: %s)", len(dropped), *next(iter(sorted(dropped.items()))))
    return out


def assign_labels(listing: xr.Dataset) -> xr.Dataset:
    """Add an int ``label`` per item: identities in natural order -> ``0..K-1``."""
    names = sorted(np.unique(listing.identity.values.astype(str)).tolist(), key=natural_key)
    lookup = {n: i for i, n in enumerate(names)}
    labels = np.fromiter((lookup[i] for i in listing.identity.values.astype(str)), dtype=np.int64,
                         count=listing.sizes["item"])
    return listing.assign(label=("item", labels))


def order_items(listing: xr.Dataset, *, seed: int) -> xr.Dataset:
    """Order items split by split (train, valid, test), shuffled within each split.

    Shuffled storage lets a trainer read whole chunks in sequence and still get
    mixed identities in every batch. Items are renumbered ``0..N-1``.
    """
    parts = []
    files = listing.source_file.values.astype(str)
    split = listing.split.values.astype(str)
    for i, s in enumerate(SPLITS):
        idx = np.flatnonzero(split == s)
        idx = idx[np.argsort(files[idx], kind="stable")]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, i]))
        parts.append(idx[rng.permutation(len(idx))])
    out = listing.isel(item=np.concatenate(parts).astype(np.int64))
    return out.assign_coords(item=np.arange(out.sizes["item"], dtype=np.int64))


def repartition(listing: xr.Dataset, spec: SplitSpec, *, seed: int, keep: Sequence[str] | None = None,
                drop: Sequence[str] = (), what: str = "the listing") -> xr.Dataset:
    """Select identities, split, label and order: a listing ready to convert.

    Parameters
    ----------
    listing : xarray.Dataset
        From :func:`mfrs.images.readers.list_images` (or :func:`merge_listings`).
    spec : SplitSpec
    seed : int
    keep, drop : sequence of str
        See :func:`select_identities`.
    what : str
        Name of the listing for messages.

    Returns
    -------
    xarray.Dataset
        ``(item,) -> (item',)`` with ``split`` and ``label`` added.
    """
    selected = select_identities(listing, keep=keep, drop=drop, what=what)
    split = assign_splits(selected, spec, seed=seed)
    if split.sizes["item"] == 0:
        raise InputDataError(f"{what}: no images left after selecting identities and splitting "
                             f"({len(split.attrs.get('dropped_identities', {}))} identities left out as too "
                             "small); lower the split counts or min_images.")
    return order_items(assign_labels(split), seed=seed)
