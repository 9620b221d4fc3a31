"""Readers: each layout lists exactly the files the test wrote, with identities and given splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from image_trees import CELEBA_ATTRS, write_celeba_tree, write_class_tree, write_identity_tree, write_imagenet_tree

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.readers import list_images


def _pairs(listing) -> dict[str, str]:
    return dict(zip(listing.source_file.values.tolist(), listing.identity.values.tolist()))


def test_identity_folders_lists_every_file_with_its_identity(tmp_path: Path) -> None:
    written = write_identity_tree(tmp_path, {"n000002": 3, "n000010": 2, "ann": 4})
    (tmp_path / "ann" / "notes.txt").write_text("not an image")
    (tmp_path / "ann" / ".hidden.png").write_bytes(b"")
    listing = list_images(tmp_path, "identity_folders")
    assert _pairs(listing) == {rel: rel.split("/")[0] for rel in written}
    assert list(listing.source_file.values) == sorted(written)
    assert set(listing.given_split.values) == {""}
    assert listing.attrs["layout"] == "identity_folders" and listing.attrs["root"] == str(tmp_path)


def test_identity_folders_below_split_folders_give_the_split(tmp_path: Path) -> None:
    write_identity_tree(tmp_path, {"a": 2, "b": 1}, split_folder="train")
    write_identity_tree(tmp_path, {"c": 2}, split_folder="test")
    listing = list_images(tmp_path, "identity_folders")
    splits = dict(zip(listing.source_file.values, listing.given_split.values))
    assert splits == {"train/a/0000.png": "train", "train/a/0001.png": "train", "train/b/0000.png": "train",
                      "test/c/0000.png": "test", "test/c/0001.png": "test"}
    assert _pairs(listing)["test/c/0001.png"] == "c"


def test_class_folders_recurse_below_each_class(tmp_path: Path) -> None:
    written = write_class_tree(tmp_path, {"cat": 3, "dog": 4})
    listing = list_images(tmp_path, "class_folders")
    assert _pairs(listing) == written
    # identity_folders does not look into sub-folders, so the same tree has no images for it
    with pytest.raises(InputDataError, match="no images found for layout 'identity_folders'"):
        list_images(tmp_path, "identity_folders")


def test_celeba_reads_identities_attributes_and_partition(tmp_path: Path) -> None:
    written = write_celeba_tree(tmp_path, [7, 3, 101], 4)
    listing = list_images(tmp_path, "celeba")
    assert _pairs(listing) == {f"img_align_celeba/{n}": str(i) for n, (i, _) in written.items()}
    assert list(listing.attribute.values) == CELEBA_ATTRS
    for row, name in enumerate(listing.source_file.values):
        k = int(Path(name).stem)
        expected = [1 if (k >> a) & 1 else -1 for a in range(len(CELEBA_ATTRS))]
        assert listing.attributes.values[row].tolist() == expected
        assert listing.given_split.values[row] == ["train", "valid", "test"][k % 3]
    assert listing.attributes.dtype == np.int8


def test_imagenet_reads_train_folders_and_val_solution(tmp_path: Path) -> None:
    written = write_imagenet_tree(tmp_path, ["n01440764", "n02119789"], 3, 2)
    listing = list_images(tmp_path, "imagenet")
    assert _pairs(listing) == written
    splits = dict(zip(listing.source_file.values, listing.given_split.values))
    assert {s for f, s in splits.items() if "/train/" in f} == {"train"}
    assert {s for f, s in splits.items() if "/val/" in f} == {"valid"}
    assert sum("/val/" in f for f in splits) == 4


def test_celeba_malformed_identity_line_names_file_and_line(tmp_path: Path) -> None:
    write_celeba_tree(tmp_path, [1], 2)
    ident = tmp_path / "Anno" / "identity_CelebA.txt"
    ident.write_text(ident.read_text() + "000003.jpg alice\n")
    with pytest.raises(InputDataError, match=r"identity_CelebA\.txt, line 3: expected '<image> <identity number>'"):
        list_images(tmp_path, "celeba")


def test_celeba_without_identity_file_says_what_is_missing(tmp_path: Path) -> None:
    write_celeba_tree(tmp_path, [1], 2)
    (tmp_path / "Anno" / "identity_CelebA.txt").unlink()
    with pytest.raises(InputDataError, match="identity_CelebA.txt not found in the root or Anno/"):
        list_images(tmp_path, "celeba")


def test_imagenet_bad_csv_header(tmp_path: Path) -> None:
    write_imagenet_tree(tmp_path, ["n01"], 1, 1)
    (tmp_path / "LOC_val_solution.csv").write_text("id,label\nx,n01\n")
    with pytest.raises(InputDataError, match="expected the header 'ImageId,PredictionString'"):
        list_images(tmp_path, "imagenet")


def test_missing_folder_and_unknown_layout(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match=r"catalog entry 'vgg' at .*nowhere: the 'identity_folders' image "
                                             r"folder does not exist"):
        list_images(tmp_path / "nowhere", "identity_folders", entry="vgg")
    with pytest.raises(ConfigError, match="unknown image layout 'coco'; expected one of identity_folders"):
        list_images(tmp_path, "coco")  # type: ignore[arg-type]
