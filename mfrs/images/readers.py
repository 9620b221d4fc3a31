"""Readers: list the images of a training set from its folder layout, without opening them.

One reader per layout, behind one small interface (:class:`Reader`): given the
dataset's root folder it returns a *listing*, an ``xarray.Dataset`` over dim
``item`` with

- ``source_file`` (str): path of the image relative to the root,
- ``identity`` (str): the identity (face datasets) or class (object datasets),
- ``given_split`` (str): ``train``/``valid``/``test`` when the layout says so, else ``""``,
- optionally ``attributes (item, attribute)`` int8 (CelebA's 40 binary attributes, -1/1),

sorted by ``source_file``, with ``attrs["root"]`` and ``attrs["layout"]``.
Listing is cheap (directory scans and annotation files only), so a stage can
decide every split before any image is decoded.
"""

from __future__ import annotations

import csv
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.types import IMAGE_SUFFIXES, LAYOUTS, Layout

__all__ = ["Reader", "READERS", "list_images", "IdentityFoldersReader", "CelebAReader",
           "ImageNetReader", "ClassFoldersReader"]

log = logging.getLogger(__name__)

#: Folder names that mark a split level in folder layouts.
_SPLIT_FOLDERS = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                  "validation": "valid", "test": "test", "testing": "test"}


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES and not name.startswith(".")


def _subdirs(folder: Path) -> list[str]:
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _images_in(folder: Path, *, recursive: bool) -> list[str]:
    """Image files below ``folder`` as paths relative to it, sorted."""
    found: list[str] = []
    stack = [("", folder)]
    while stack:
        prefix, current = stack.pop()
        with os.scandir(current) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    if recursive:
                        stack.append((f"{prefix}{e.name}/", Path(e.path)))
                elif _is_image(e.name):
                    found.append(prefix + e.name)
    return sorted(found)


def _listing(source_file: list[str], identity: list[str], given_split: list[str] | None, *,
             root: Path, layout: Layout, attributes: np.ndarray | None = None,
             attribute_names: list[str] | None = None) -> xr.Dataset:
    order = np.argsort(np.asarray(source_file, dtype=str), kind="stable")
    n = len(source_file)
    data: dict[str, tuple[str | tuple[str, ...], np.ndarray]] = {
        "source_file": ("item", np.asarray(source_file, dtype=str)[order]),
        "identity": ("item", np.asarray(identity, dtype=str)[order]),
        "given_split": ("item", np.asarray(given_split if given_split is not None else [""] * n,
                                           dtype=str)[order] if n else np.zeros(0, dtype="<U1")),
    }
    if attributes is not None:
        data["attributes"] = (("item", "attribute"), attributes[order])
    coords = {"item": np.arange(n, dtype=np.int64)}
    if attribute_names is not None:
        coords["attribute"] = np.asarray(attribute_names, dtype=str)
    return xr.Dataset(data, coords=coords, attrs={"root": str(root), "layout": layout})


class Reader(ABC):
    """Lists the images of one folder layout.

    Subclasses set ``layout`` and implement :meth:`list_images`; a new layout is
    one subclass registered in :data:`READERS`.
    """

    layout: ClassVar[Layout]

    def __call__(self, root: Path, *, entry: str | None = None) -> xr.Dataset:
        root = Path(root)
        where = f"catalog entry {entry!r} at {root}" if entry else str(root)
        if not root.is_dir():
            raise InputDataError(f"{where}: the {self.layout!r} image folder does not exist; "
                                 "fix the entry's location in the data catalog.")
        listing = self.list_images(root, where=where)
        if listing.sizes["item"] == 0:
            raise InputDataError(f"{where}: no images found for layout {self.layout!r} "
                                 f"(suffixes {', '.join(sorted(IMAGE_SUFFIXES))}); check the layout "
                                 "named in the stage config.")
        log.info("%s: %d images of %d identities (%s layout)", where, listing.sizes["item"],
                 len(np.unique(listing.identity.values)), self.layout)
        return listing

    @abstractmethod
    def list_images(self, root: Path, *, where: str) -> xr.Dataset:
        """``root`` -> listing over ``(item,)``; see the module docstring."""


class IdentityFoldersReader(Reader):
    """VGGFace-style ``<identity>/<image>.jpg`` (optionally below ``train/``, ``test/``... folders)."""

    layout: ClassVar[Layout] = "identity_folders"
    recursive: ClassVar[bool] = False

    def list_images(self, root: Path, *, where: str) -> xr.Dataset:
        top = _subdirs(root)
        split_level = bool(top) and all(name.lower() in _SPLIT_FOLDERS for name in top)
        parts = [(f"{name}/", _SPLIT_FOLDERS[name.lower()], root / name) for name in top] if split_level \
            else [("", "", root)]
        files, identities, splits = [], [], []
        for prefix, split, folder in parts:
            for identity in _subdirs(folder):
                for rel in _images_in(folder / identity, recursive=self.recursive):
                    files.append(f"{prefix}{identity}/{rel}")
                    identities.append(identity)
                    splits.append(split)
        return _listing(files, identities, splits, root=root, layout=self.layout)


class ClassFoldersReader(IdentityFoldersReader):
    """Generic ``[<split>/]<class>/**/<image>``: images anywhere below a class folder."""

    layout: ClassVar[Layout] = "class_folders"
    recursive: ClassVar[bool] = True


def _find_file(root: Path, name: str, subfolders: tuple[str, ...]) -> Path | None:
    for sub in ("", *subfolders):
        cand = root / sub / name
        if cand.is_file():
            return cand
    return None


class CelebAReader(Reader):
    """CelebA: ``img_align_celeba/`` with ``identity_CelebA.txt`` and ``list_attr_celeba.txt``.

    The annotation files may sit in the root or in ``Anno/`` (``list_eval_partition.txt``
    also in ``Eval/``), as in the official download. Images are listed from the
    identity file, so a missing image shows up as a failed item, not a silent gap.
    """

    layout: ClassVar[Layout] = "celeba"
    _ANNO = ("Anno", "anno")

    def list_images(self, root: Path, *, where: str) -> xr.Dataset:
        image_dir = next((root / d for d in ("img_align_celeba", "Img/img_align_celeba")
                          if (root / d).is_dir()), None)
        if image_dir is None:
            raise InputDataError(f"{where}: no img_align_celeba/ folder (looked in the root and Img/); "
                                 "is this a CelebA download?")
        ident_file = _find_file(root, "identity_CelebA.txt", self._ANNO)
        if ident_file is None:
            raise InputDataError(f"{where}: identity_CelebA.txt not found in the root or Anno/; it maps "
                                 "each image to its identity and comes with CelebA's annotations.")
        names, identities = self._read_identities(ident_file)
        rel_dir = image_dir.relative_to(root).as_posix()
        files = [f"{rel_dir}/{n}" for n in names]

        attributes = attribute_names = None
        attr_file = _find_file(root, "list_attr_celeba.txt", self._ANNO)
        if attr_file is not None:
            attribute_names, table = self._read_attributes(attr_file)
            missing = [n for n in names if n not in table]
            if missing:
                raise InputDataError(f"{attr_file}: no attributes for {len(missing)} images of "
                                     f"identity_CelebA.txt (first: {missing[0]}); use matching annotation files.")
            attributes = np.stack([table[n] for n in names]).astype(np.int8)
        else:
            log.warning("%s: list_attr_celeba.txt not found; the store gets no attributes", where)

        splits = None
        part_file = _find_file(root, "list_eval_partition.txt", ("Eval", "eval", *self._ANNO))
        if part_file is not None:
            codes = {"0": "train", "1": "valid", "2": "test"}
            table_s = {}
            for lineno, line in enumerate(part_file.read_text().splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or fields[1] not in codes:
                    raise InputDataError(f"{part_file}, line {lineno}: expected '<image> 0|1|2', got {line!r}.")
                table_s[fields[0]] = codes[fields[1]]
            splits = [table_s.get(n, "") for n in names]
        return _listing(files, identities, splits, root=root, layout=self.layout,
                        attributes=attributes, attribute_names=attribute_names)

    @staticmethod
    def _read_identities(path: Path) -> tuple[list[str], list[str]]:
        names, identities = [], []
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[1].isdigit():
                raise InputDataError(f"{path}, line {lineno}: expected '<image> <identity number>', "
                                     f"got {line!r}.")
            names.append(fields[0])
            identities.append(fields[1])
        return names, identities

    @staticmethod
    def _read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
        lines = path.read_text().splitlines()
        if len(lines) < 2:
            raise InputDataError(f"{path}: expected a count line, a line of attribute names, then one "
                                 "line per image.")
        header = lines[1].split()
        table = {}
        for lineno, line in enumerate(lines[2:], start=3):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != len(header) + 1:
                raise InputDataError(f"{path}, line {lineno}: {len(fields) - 1} values for "
                                     f"{len(header)} attributes.")
            try:
                table[fields[0]] = np.array(fields[1:], dtype=np.int8)
            except ValueError as exc:
                raise InputDataError(f"{path}, line {lineno}: attribute values must be -1 or 1 ({exc}).") from exc
        return header, table


class ImageNetReader(Reader):
    """ImageNet (Kaggle CLS-LOC layout): class folders for train, ``LOC_val_solution.csv`` for val.

    Looks for ``train/`` and ``val/`` in the root or in ``ILSVRC/Data/CLS-LOC/``;
    the val class of an image is the first synset of its ``PredictionString``.
    Given splits: train -> ``train``, val -> ``valid``.
    """

    layout: ClassVar[Layout] = "imagenet"
    _DATA = ("", "ILSVRC/Data/CLS-LOC", "Data/CLS-LOC")

    def list_images(self, root: Path, *, where: str) -> xr.Dataset:
        files, identities, splits = [], [], []
        train_dir = next((root / d / "train" for d in self._DATA if (root / d / "train").is_dir()), None)
        if train_dir is not None:
            prefix = train_dir.relative_to(root).as_posix()
            for wnid in _subdirs(train_dir):
                for rel in _images_in(train_dir / wnid, recursive=True):
                    files.append(f"{prefix}/{wnid}/{rel}")
                    identities.append(wnid)
                    splits.append("train")
        solution = _find_file(root, "LOC_val_solution.csv", ())
        val_dir = next((root / d / "val" for d in self._DATA if (root / d / "val").is_dir()), None)
        if solution is not None and val_dir is not None:
            on_disk = {os.path.splitext(n)[0]: n for n in _images_in(val_dir, recursive=False)}
            prefix = val_dir.relative_to(root).as_posix()
            with open(solution, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, None)
                if header is None or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
                    raise InputDataError(f"{solution}: expected the header 'ImageId,PredictionString', "
                                         f"got {header!r}.")
                for lineno, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) < 2 or not row[1].split():
                        raise InputDataError(f"{solution}, line {lineno}: no class in {row!r}.")
                    image_id, wnid = row[0].strip(), row[1].split()[0]
                    files.append(f"{prefix}/{on_disk.get(image_id, image_id + '.JPEG')}")
                    identities.append(wnid)
                    splits.append("valid")
        elif val_dir is not None:
            log.warning("%s: val/ found but no LOC_val_solution.csv; val images are left out", where)
        if train_dir is None and solution is None:
            raise InputDataError(f"{where}: neither a train/ folder nor LOC_val_solution.csv found "
                                 "(looked in the root and ILSVRC/Data/CLS-LOC/); is this ImageNet?")
        return _listing(files, identities, splits, root=root, layout=self.layout)


#: layout name -> reader.
READERS: dict[Layout, Reader] = {
    "identity_folders": IdentityFoldersReader(),
    "celeba": CelebAReader(),
    "imagenet": ImageNetReader(),
    "class_folders": ClassFoldersReader(),
}


def list_images(root: str | Path, layout: Layout, *, entry: str | None = None) -> xr.Dataset:
    """List the images of a dataset folder.

    Parameters
    ----------
    root : str or Path
        The dataset's root folder.
    layout : Layout
        Its folder layout.
    entry : str, optional
        The catalog entry name, for messages.

    Returns
    -------
    xarray.Dataset
        ``source_file``, ``identity``, ``given_split`` over ``(item,)`` (and CelebA's
        ``attributes (item, attribute)``).

    Raises
    ------
    InputDataError
        The folder is missing, holds no images, or its annotation files are malformed.
    ConfigError
        Unknown layout.
    """
    if layout not in READERS:
        raise ConfigError(f"unknown image layout {layout!r}; expected one of {', '.join(LAYOUTS)}.")
    return READERS[layout](Path(root), entry=entry)
