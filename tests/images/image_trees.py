"""Small image folder trees in each layout, built from images that ship inside wheels (scikit-image).

Faces are LFW crops from ``skimage.data.lfw_subset()``; objects are skimage's
astronaut, camera, coffee, chelsea... Trees are written by the tests into a
temporary folder; nothing is downloaded.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["lfw_faces", "lfw_nonfaces", "face_on_canvas", "write_identity_tree", "write_celeba_tree",
           "write_imagenet_tree", "write_class_tree", "write_catalog", "truncate", "CELEBA_ATTRS"]

CELEBA_ATTRS = ["Eyeglasses", "Male", "Smiling"]


@cache
def _lfw() -> np.ndarray:
    from skimage.data import lfw_subset

    return np.round(lfw_subset() * 255).astype(np.uint8)


def lfw_faces() -> np.ndarray:
    """``(100, 25, 25)`` uint8 real face crops."""
    return _lfw()[:100]


def lfw_nonfaces() -> np.ndarray:
    """``(100, 25, 25)`` uint8 non-face crops."""
    return _lfw()[100:]


def face_on_canvas(index: int, *, canvas: int = 128, face: int = 72,
                   seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """An LFW face scaled to ``face`` px pasted at a random place on a noisy grey canvas.

    Returns the ``(canvas, canvas)`` uint8 image and the planted face centre ``(x, y)``.
    """
    import cv2

    rng = np.random.default_rng([seed, index])
    img = np.clip(128 + rng.integers(-20, 21, (canvas, canvas)), 0, 255).astype(np.uint8)
    x0, y0 = (int(v) for v in rng.integers(0, canvas - face + 1, 2))
    img[y0:y0 + face, x0:x0 + face] = cv2.resize(lfw_faces()[index % 100], (face, face),
                                                 interpolation=cv2.INTER_CUBIC)
    return img, (x0 + face // 2, y0 + face // 2)


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def write_identity_tree(root: Path, sizes: dict[str, int], *, suffix: str = ".png",
                        split_folder: str | None = None, kind: str = "lfw") -> dict[str, np.ndarray]:
    """``<root>/[<split>/]<identity>/<k>.<suffix>``; returns relative path -> pixels written.

    ``kind="lfw"``: 25x25 LFW crops (face i of identity j is LFW face (7j + i) % 100);
    ``kind="canvas"``: faces planted on 128x128 canvases (for face detection).
    """
    written = {}
    for j, (identity, n) in enumerate(sorted(sizes.items())):
        for i in range(n):
            index = (7 * j + i) % 100
            pixels = lfw_faces()[index] if kind == "lfw" else face_on_canvas(index, seed=j)[0]
            rel = f"{split_folder + '/' if split_folder else ''}{identity}/{i:04d}{suffix}"
            _save(root / rel, pixels)
            written[rel] = pixels
    return written


def write_celeba_tree(root: Path, identities: list[int], per_identity: int) -> dict[str, tuple[int, np.ndarray]]:
    """A CelebA-shaped tree; returns image name -> (identity number, pixels).

    Files: ``img_align_celeba/000001.jpg``..., ``Anno/identity_CelebA.txt``,
    ``Anno/list_attr_celeba.txt`` (3 attributes: the ``i``-th image has attribute
    ``a`` set when ``(i >> a) & 1``), ``Eval/list_eval_partition.txt`` (i % 3).
    Images are real (lossy) JPEG files.
    """
    rows, out = [], {}
    k = 0
    for ident in identities:
        for _ in range(per_identity):
            k += 1
            name = f"{k:06d}.jpg"
            pixels = lfw_faces()[k % 100]
            _save(root / "img_align_celeba" / name, pixels)
            rows.append((name, ident, k))
            out[name] = (ident, pixels)
    (root / "Anno").mkdir(parents=True, exist_ok=True)
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Anno" / "identity_CelebA.txt").write_text("".join(f"{n} {i}\n" for n, i, _ in rows))
    lines = [str(len(rows)), " ".join(CELEBA_ATTRS)]
    for name, _, k in rows:
        vals = ["1" if (k >> a) & 1 else "-1" for a in range(len(CELEBA_ATTRS))]
        lines.append(f"{name}  " + " ".join(f"{v:>2}" for v in vals))
    (root / "Anno" / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (root / "Eval" / "list_eval_partition.txt").write_text("".join(f"{n} {k % 3}\n" for n, _, k in rows))
    return out


def _objects() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), np.stack([data.camera()] * 3, -1)]


def write_imagenet_tree(root: Path, classes: list[str], train_per_class: int, val_per_class: int) -> dict[str, str]:
    """Kaggle CLS-LOC layout; returns relative path -> class. Class c uses skimage object c (RGB)."""
    objs = _objects()
    base = root / "ILSVRC" / "Data" / "CLS-LOC"
    out = {}
    for c, wnid in enumerate(classes):
        for i in range(train_per_class):
            rel = f"ILSVRC/Data/CLS-LOC/train/{wnid}/{wnid}_{i}.JPEG"
            _save(root / rel, objs[c % len(objs)][::4, ::4])
            out[rel] = wnid
    csv = ["ImageId,PredictionString"]
    k = 0
    for c, wnid in enumerate(classes):
        for _ in range(val_per_class):
            k += 1
            image_id = f"ILSVRC2012_val_{k:08d}"
            _save(base / "val" / f"{image_id}.JPEG", objs[c % len(objs)][::4, ::4])
            csv.append(f"{image_id},{wnid} 10 20 100 120 {wnid} 5 5 50 50")
            out[f"ILSVRC/Data/CLS-LOC/val/{image_id}.JPEG"] = wnid
    (root / "LOC_val_solution.csv").write_text("\n".join(csv) + "\n")
    return out


def write_class_tree(root: Path, classes: dict[str, int]) -> dict[str, str]:
    """Generic ``<class>/<sub>/<image>.png`` (nested one level deeper); returns relative path -> class."""
    out = {}
    for c, (name, n) in enumerate(sorted(classes.items())):
        for i in range(n):
            rel = f"{name}/part{i % 2}/{i}.png"
            _save(root / rel, lfw_nonfaces()[(c * 11 + i) % 100])
            out[rel] = name
    return out


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its bytes (a half-copied download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write_catalog(path: Path, entries: dict[str, tuple[str, str]]) -> Path:
    """A data catalog at ``path`` with ``name: (kind, location)`` entries; returns its path."""
    import yaml

    spec = {"root": str(path.parent / "data"),
            "entries": {n: {"kind": k, "location": str(loc)} for n, (k, loc) in entries.items()}}
    path.write_text(yaml.safe_dump(spec))
    return path
