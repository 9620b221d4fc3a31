"""Reading a converted store for training: each usable item once per epoch, failed ones never."""

from __future__ import annotations

import numpy as np
import pytest
from image_trees import write_catalog, write_identity_tree

from mfrs.catalog import load_catalog
from mfrs.errors import InputDataError
from mfrs.images.access import iter_batches, split_items, usable
from mfrs.pipeline import run_stage
from mfrs.stages import images as stage


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, local_client):
    tmp = tmp_path_factory.mktemp("access")
    written = write_identity_tree(tmp / "ids", {"a": 9, "b": 7, "c": 8})
    (tmp / "ids" / "b" / "0003.png").write_bytes(b"broken")
    catalog = load_catalog(write_catalog(tmp / "catalog.yaml", {"ids": ("images", tmp / "ids"),
                                                                "images": ("zarr", tmp / "out")}))
    cfg = stage.Config.model_validate({"seed": 3, "datasets": [{
        "output": "images/ids", "source": "ids", "layout": "identity_folders",
        "split": {"train": None, "valid": 2, "test": 0}, "crop": {"mode": "none", "size": 25},
        "chunk_items": 4}]})
    run_stage(stage, config=cfg, catalog=catalog, client=local_client)
    return catalog.open("images/ids"), written


def test_every_usable_item_once_per_epoch(converted) -> None:
    ds, written = converted
    train = split_items(ds, "train")
    assert len(train) == 24 - 6 - 1  # 2 valid per identity, one broken file
    assert "b/0003.png" not in set(ds.source_file.values[train])
    seen = []
    for batch in iter_batches(ds, "train", batch_size=5, seed=1, epoch=0):
        assert batch.image.dims == ("item", "y", "x") and batch.image.dtype == np.uint8
        for item, img, label in zip(batch.item.values, batch.image.values, batch.label.values):
            src = str(ds.source_file.values[item])
            np.testing.assert_array_equal(img, written[src])
            assert label == "abc".index(src[0])
        seen.extend(batch.item.values.tolist())
    assert sorted(seen) == sorted(ds.item.values[train].tolist())
    sizes = [b.sizes["item"] for b in iter_batches(ds, "train", batch_size=5, seed=1)]
    assert sizes == [5, 5, 5, 2]
    assert [b.sizes["item"] for b in iter_batches(ds, "train", batch_size=5, seed=1, drop_last=True)] == [5, 5, 5]


def test_order_is_seeded_and_changes_per_epoch(converted) -> None:
    ds, _ = converted

    def order(**kw) -> list[int]:
        return [i for b in iter_batches(ds, "train", batch_size=4, **kw) for i in b.item.values.tolist()]

    assert order(seed=1, epoch=0) == order(seed=1, epoch=0)
    assert order(seed=1, epoch=0) != order(seed=1, epoch=1)
    plain = order(seed=1, shuffle=False)
    assert plain == sorted(plain)


def test_usable_and_missing_split(converted) -> None:
    ds, _ = converted
    assert int((~usable(ds)).sum()) == 1
    with pytest.raises(InputDataError, match="no usable item in split 'test'"):
        split_items(ds, "test")
    with pytest.raises(InputDataError, match="unknown split 'val'"):
        split_items(ds, "val")  # type: ignore[arg-type]
