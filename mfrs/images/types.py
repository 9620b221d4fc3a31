"""Closed choices of the image datasets stage, as ``Literal`` aliases (one place, used in signatures)."""

from __future__ import annotations

from typing import Literal

__all__ = [
    "Layout", "LAYOUTS", "Split", "SPLITS", "SplitMode", "CropMode", "Color", "NoFace", "ShortIdentity",
    "IMAGE_SUFFIXES", "STATUS_OK",
]

#: Folder layouts a reader understands (see :mod:`mfrs.images.readers`).
Layout = Literal["identity_folders", "celeba", "imagenet", "class_folders"]
LAYOUTS: tuple[Layout, ...] = ("identity_folders", "celeba", "imagenet", "class_folders")

#: Dataset splits, in store order.
Split = Literal["train", "valid", "test"]
SPLITS: tuple[Split, ...] = ("train", "valid", "test")

#: How items are split: stratified per identity, whole identities per split, or the source's own split.
SplitMode = Literal["per_identity", "disjoint_identities", "given"]

#: What is cut out of an image before resizing: the detected face, the central square, or nothing.
CropMode = Literal["face", "center", "none"]

#: Colour of the stored images: ``gray`` -> ``(item, y, x)``, ``rgb`` -> ``(item, y, x, channel)``.
Color = Literal["gray", "rgb"]

#: When no face is found: record the item as failed, or keep a centre crop and say so in its status.
NoFace = Literal["fail", "center"]

#: Identities with fewer images than a split asks for: leave them out (recorded) or stop with an error.
ShortIdentity = Literal["drop", "error"]

#: File suffixes read as images (lower case).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
)

#: ``status`` value of an item converted as asked.
STATUS_OK = "ok"
