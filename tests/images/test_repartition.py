"""Repartition: split counts per identity, identity-disjoint splits, variants, determinism."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.repartition import SplitSpec, allocate, merge_listings, natural_key, repartition

SIZES = {"id1": 10, "id2": 7, "id10": 12, "id3": 5, "id4": 3}


def make_listing(sizes: dict[str, int], *, shuffle_seed: int | None = None) -> xr.Dataset:
    files = [f"{i}/{k:03d}.jpg" for i, n in sizes.items() for k in range(n)]
    idents = [i for i, n in sizes.items() for _ in range(n)]
    order = np.arange(len(files))
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(files))
    ls = xr.Dataset({"source_file": ("item", np.asarray(files)[order]),
                     "identity": ("item", np.asarray(idents)[order]),
                     "given_split": ("item", np.full(len(files), ""))},
                    coords={"item": np.arange(len(files))}, attrs={"root": "/x", "layout": "identity_folders"})
    return merge_listings({"src": ls})


def _split_of(ds: xr.Dataset) -> dict[str, str]:
    return dict(zip(ds.source_file.values.tolist(), ds.split.values.tolist()))


def test_counts_hold_per_identity_and_small_identities_are_recorded() -> None:
    spec = SplitSpec(train=None, valid=2, test=3)
    out = repartition(make_listing(SIZES), spec, seed=0)
    counts = Counter(zip(out.identity.values.tolist(), out.split.values.tolist()))
    for ident, n in SIZES.items():
        if n <= 5:  # 2 + 3 leave no training image: left out
            assert not any(k[0] == ident for k in counts)
            assert ident in out.attrs["dropped_identities"]
        else:
            assert counts[(ident, "valid")] == 2 and counts[(ident, "test")] == 3
            assert counts[(ident, "train")] == n - 5
    assert set(out.attrs["dropped_identities"]) == {"id3", "id4"}


def test_fractions_round_per_identity_and_use_every_item() -> None:
    spec = SplitSpec(train=0.6, valid=0.2, test=0.2)
    out = repartition(make_listing(SIZES), spec, seed=3)
    assert out.sizes["item"] == sum(SIZES.values())
    counts = Counter(zip(out.identity.values.tolist(), out.split.values.tolist()))
    # largest remainders by hand (ties go to the earlier split):
    # 10 -> 6/2/2; 12 -> 7.2/2.4/2.4 -> 7/3/2; 7 -> 4.2/1.4/1.4 -> 4/2/1; 3 -> 1.8/.6/.6 -> 2/1/0
    expected = {"id1": (6, 2, 2), "id10": (7, 3, 2), "id2": (4, 2, 1), "id4": (2, 1, 0), "id3": (3, 1, 1)}
    for ident, want in expected.items():
        assert tuple(counts[(ident, s)] for s in ("train", "valid", "test")) == want


def test_allocate_matches_hand_computed_counts() -> None:
    assert allocate(10, SplitSpec(train=None, valid=2, test=0.25)) == {"train": 5, "valid": 2, "test": 3}
    assert allocate(12, SplitSpec(train=0.6, valid=0.2, test=0.2)) == {"train": 7, "valid": 3, "test": 2}
    assert allocate(20, SplitSpec(train=5, valid=2, test=1)) == {"train": 5, "valid": 2, "test": 1}
    assert allocate(4, SplitSpec(train=None, valid=2, test=2)) is None
    assert allocate(3, SplitSpec(train=5, valid=0, test=0)) is None


def test_explicit_counts_leave_the_remaining_items_out() -> None:
    out = repartition(make_listing({"a": 10, "b": 9}), SplitSpec(train=4, valid=1, test=1), seed=0)
    assert Counter(out.split.values.tolist()) == {"train": 8, "valid": 2, "test": 2}


def test_disjoint_identities_keeps_each_identity_in_one_split() -> None:
    sizes = {f"p{i}": 3 + i % 4 for i in range(20)}
    out = repartition(make_listing(sizes), SplitSpec(mode="disjoint_identities", train=None, valid=4, test=0.25),
                      seed=11)
    per_identity = {}
    for ident, split in zip(out.identity.values, out.split.values):
        per_identity.setdefault(str(ident), set()).add(str(split))
    assert all(len(s) == 1 for s in per_identity.values())
    n_ident = Counter(next(iter(s)) for s in per_identity.values())
    assert n_ident == {"train": 11, "valid": 4, "test": 5}
    assert out.sizes["item"] == sum(sizes.values())


def test_variants_differ_exactly_by_the_listed_identities() -> None:
    listing = make_listing(SIZES)
    spec = SplitSpec(train=None, valid=1, test=1)
    full = repartition(listing, spec, seed=5)
    without = repartition(listing, spec, seed=5, drop=["id2", "id10"])
    assert set(full.identity.values) - set(without.identity.values) == {"id2", "id10"}
    assert set(without.identity.values) <= set(full.identity.values)
    a, b = _split_of(full), _split_of(without)
    dropped = {f for f in a if f.split("/")[0] in ("id2", "id10")}
    assert set(a) - set(b) == dropped and set(b) <= set(a)
    # every other item keeps its split: identities draw from their own streams
    assert all(a[f] == b[f] for f in b)
    only = repartition(listing, spec, seed=5, keep=["id2", "id10"])
    assert set(only.identity.values) == {"id2", "id10"}
    assert all(a[f] == s for f, s in _split_of(only).items())


def test_labels_follow_natural_identity_order() -> None:
    out = repartition(make_listing(SIZES), SplitSpec(train=None, valid=0, test=0), seed=0)
    lab = dict(zip(out.identity.values.tolist(), out.label.values.tolist()))
    assert lab == {"id1": 0, "id2": 1, "id3": 2, "id4": 3, "id10": 4}
    assert sorted(["id10", "id2", "id1"], key=natural_key) == ["id1", "id2", "id10"]


def test_items_are_ordered_by_split_and_the_result_ignores_listing_order() -> None:
    spec = SplitSpec(train=None, valid=2, test=1)
    a = repartition(make_listing(SIZES), spec, seed=9)
    b = repartition(make_listing(SIZES, shuffle_seed=1), spec, seed=9)
    order = {"train": 0, "valid": 1, "test": 2}
    ranks = [order[s] for s in a.split.values]
    assert ranks == sorted(ranks)
    assert a.source_file.values.tolist() == b.source_file.values.tolist()
    assert a.item.values.tolist() == list(range(a.sizes["item"]))
    c = repartition(make_listing(SIZES), spec, seed=10)
    assert _split_of(a) != _split_of(c)


def test_max_per_identity_subsamples() -> None:
    out = repartition(make_listing(SIZES), SplitSpec(train=None, valid=1, test=0, max_per_identity=4), seed=0)
    assert max(Counter(out.identity.values.tolist()).values()) == 4


def test_given_mode_needs_a_split_from_the_source() -> None:
    with pytest.raises(InputDataError, match="split mode 'given', but 37 images have no split"):
        repartition(make_listing(SIZES), SplitSpec(mode="given"), seed=0)


def test_unknown_identity_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"drop_identities: 1 identities are not in the listing: 'id22' "
                                          r"\(did you mean 'id2'\?\)"):
        repartition(make_listing(SIZES), SplitSpec(), seed=0, drop=["id22"])


def test_short_error_names_the_identity() -> None:
    with pytest.raises(InputDataError, match="identity 'id3' has 5 images: too few for"):
        repartition(make_listing(SIZES), SplitSpec(train=None, valid=3, test=3, short="error"), seed=0)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"train": None, "valid": None}, "only one of train/valid/test may be null"),
    ({"valid": 1.5}, "a fraction must be within"),
    ({"train": 0.6, "valid": 0.3, "test": 0.3}, "add up to 1.2 > 1"),
    ({"test": -2}, "a count must be >= 0"),
])
def test_split_spec_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SplitSpec(**kwargs)
