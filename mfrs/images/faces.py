"""Decode an image file and cut the training input out of it: a face crop, a centre crop, or all of it.

Faces are found with OpenCV's Haar cascades (they ship inside
``opencv-python-headless<5``): the largest detection gives a square crop with
a margin, resized to the configured size, grayscale or RGB. When a landmark
model is named (an eye cascade such as ``haarcascade_eye.xml``, the landmark
model that ships offline), the two eyes are found inside the face and the crop
is rotated so that they are level. Every function here works on numpy arrays;
OpenCV is imported inside them so that ``import mfrs`` stays light.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.types import STATUS_OK, Color, CropMode, NoFace

__all__ = ["CropSpec", "read_image", "detect_face", "find_eyes", "crop_square", "prepare_image",
           "cascade_path", "Box"]

#: ``(x, y, w, h)`` in pixels of the image it was found in.
Box = tuple[int, int, int, int]

_local = threading.local()


class CropSpec(BaseModel):
    """What to cut out of each image and how to store it.

    Attributes
    ----------
    mode : CropMode
        ``face`` (detected face, square with margin), ``center`` (central square) or
        ``none`` (whole image, aspect not kept).
    size : int
        Side of the stored square image, pixels.
    color : Color
        ``gray`` or ``rgb``.
    margin : float
        Added on each side of the face box, as a fraction of its side.
    cascade : str
        Face cascade: a file name in ``cv2.data.haarcascades`` or a path.
    no_face : NoFace
        ``fail`` records the item as failed; ``center`` keeps a centre crop and says so in its status.
    detect_size : int
        Longest side the image is scaled to for detection (speed); small images are
        scaled up so that their shortest side reaches ``detect_size // 3``.
    min_face : float
        Smallest face searched for, as a fraction of the image's shortest side.
    min_neighbors : int
        Haar detector's ``minNeighbors`` (higher: fewer false faces).
    scale_factor : float
        Haar detector's ``scaleFactor``: step between searched face sizes (higher: faster, coarser).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: CropMode = "face"
    size: int = Field(default=224, ge=8, le=4096)
    color: Color = "gray"
    margin: float = Field(default=0.2, ge=0.0, le=2.0)
    cascade: str = "haarcascade_frontalface_default.xml"
    no_face: NoFace = "fail"
    detect_size: int = Field(default=320, ge=48)
    min_face: float = Field(default=0.2, gt=0.0, le=1.0)
    min_neighbors: int = Field(default=5, ge=0)
    scale_factor: float = Field(default=1.1, gt=1.0, le=2.0)


def cascade_path(name: str) -> Path:
    """Resolve a cascade: a path as is, else a file of OpenCV's ``cv2.data.haarcascades``.

    Raises
    ------
    ConfigError
        The file does not exist; the message lists the cascades that ship with OpenCV.
    """
    import cv2

    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    shipped = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]  # cv2's stubs omit the data submodule
    if (shipped / name).is_file():
        return shipped / name
    raise ConfigError(f"cascade {name!r} is neither a file nor one of OpenCV's cascades in {shipped} "
                      f"({', '.join(sorted(p.name for p in shipped.glob('*.xml')))}). Needs "
                      "opencv-python-headless<5 (5.x dropped them).")


def _classifier(path: str):
    """One loaded cascade per thread and file (CascadeClassifier is not shared across threads)."""
    import cv2

    cache = getattr(_local, "cascades", None)
    if cache is None:
        cache = _local.cascades = {}
    if path not in cache:
        clf = cv2.CascadeClassifier(path)
        if clf.empty():
            raise ConfigError(f"{path} could not be loaded as an OpenCV Haar cascade; name a cascade XML file.")
        cache[path] = clf
    return cache[path]


def read_image(path: str | Path, *, color: Color) -> np.ndarray:
    """Decode an image file.

    Parameters
    ----------
    path : str or Path
    color : Color
        ``gray`` -> ``(y, x)``, ``rgb`` -> ``(y, x, channel)``, both uint8.

    Raises
    ------
    InputDataError
        The file is missing, truncated or not an image; the message names the file.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decoding happens here; a truncated file raises instead of padding
            upright = ImageOps.exif_transpose(img)
            return np.asarray(upright.convert("L" if color == "gray" else "RGB"))
    except FileNotFoundError as exc:
        raise InputDataError(f"{path}: file not found; the listing names it but it is not on disk.") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputDataError(f"{path}: cannot decode image ({type(exc).__name__}: {exc}); replace or "
                             "delete the file and rerun to convert it.") from exc


def _gray(image: np.ndarray) -> np.ndarray:
    import cv2

    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def detect_face(gray: np.ndarray, spec: CropSpec) -> Box | None:
    """The face in ``gray`` that the most detector windows agree on, or None.

    Parameters
    ----------
    gray : numpy.ndarray
        ``(y, x)`` uint8.
    spec : CropSpec
        ``cascade``, ``detect_size``, ``min_face`` and ``min_neighbors`` are used.

    Returns
    -------
    tuple of int or None
        ``(x, y, w, h)`` in the pixels of ``gray``.
    """
    import cv2

    h, w = gray.shape
    scale = min(1.0, spec.detect_size / max(h, w))
    scale = max(scale, (spec.detect_size // 3) / min(h, w))
    small = gray if scale == 1.0 else cv2.resize(
        gray, (max(1, round(w * scale)), max(1, round(h * scale))),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    side = max(20, int(spec.min_face * min(small.shape)))
    faces, votes = _classifier(str(cascade_path(spec.cascade))).detectMultiScale2(
        small, scaleFactor=spec.scale_factor, minNeighbors=spec.min_neighbors, minSize=(side, side))
    if len(faces) == 0:
        return None
    # The detection most windows agree on; the largest one is often a false face in the background.
    best = max(range(len(faces)), key=lambda i: (int(votes[i]), int(faces[i][2]) * int(faces[i][3])))
    x, y, fw, fh = (int(v) for v in faces[best])
    return (round(x / scale), round(y / scale), round(fw / scale), round(fh / scale))


def find_eyes(gray: np.ndarray, box: Box,
              landmarks: str | Path) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Centres of the left and right eye (image left/right) inside a face box, or None.

    Parameters
    ----------
    gray : numpy.ndarray
        ``(y, x)`` uint8, the image ``box`` was found in.
    box : Box
    landmarks : str or Path
        An eye cascade (``haarcascade_eye.xml``).

    Returns
    -------
    tuple or None
        ``((x_left, y_left), (x_right, y_right))`` in image pixels.
    """
    import cv2

    x, y, w, h = box
    roi_size = 160
    x0, y0 = max(0, x), max(0, y)
    roi = gray[y0:y + h, x0:x + w]
    if roi.size == 0:
        return None
    k = roi_size / max(roi.shape)
    roi = cv2.equalizeHist(cv2.resize(roi, (max(1, round(roi.shape[1] * k)), max(1, round(roi.shape[0] * k)))))
    upper = roi[: int(roi.shape[0] * 0.6)]
    eyes = _classifier(str(landmarks)).detectMultiScale(
        upper, scaleFactor=1.05, minNeighbors=3, minSize=(int(0.1 * roi_size),) * 2,
        maxSize=(int(0.45 * roi_size),) * 2)
    mid = roi.shape[1] / 2
    centres = [((ex + ew / 2), (ey + eh / 2), ew * eh) for ex, ey, ew, eh in eyes]
    left = [c for c in centres if c[0] < mid]
    right = [c for c in centres if c[0] >= mid]
    if not left or not right:
        return None
    lx, ly, _ = max(left, key=lambda c: c[2])
    rx, ry, _ = max(right, key=lambda c: c[2])
    return ((x0 + lx / k, y0 + ly / k), (x0 + rx / k, y0 + ry / k))


def crop_square(image: np.ndarray, centre: tuple[float, float], side: float, size: int,
                angle: float = 0.0) -> np.ndarray:
    """Cut a square of ``side`` pixels centred on ``centre``, rotated by ``angle`` degrees, resized to ``size``.

    Parts outside the image repeat its border. ``(y, x[, channel]) -> (size, size[, channel])``.
    A positive ``angle`` turns the image content counter-clockwise (OpenCV convention).
    """
    import cv2

    cx, cy = centre
    reach = side / 2 * (math.sqrt(2) if angle else 1.0)
    x0, y0 = math.floor(cx - reach), math.floor(cy - reach)
    x1, y1 = math.ceil(cx + reach), math.ceil(cy + reach)
    h, w = image.shape[:2]
    roi = image[max(0, y0):min(h, y1), max(0, x0):min(w, x1)]
    pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
    if any(pads):
        roi = cv2.copyMakeBorder(np.ascontiguousarray(roi), *pads, borderType=cv2.BORDER_REPLICATE)
    k = size / side
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(roi, (max(1, round(roi.shape[1] * k)), max(1, round(roi.shape[0] * k))),
                        interpolation=interp)
    if not angle:
        return cv2.resize(scaled, (size, size), interpolation=interp) if scaled.shape[:2] != (size, size) \
            else scaled
    sc = ((cx - x0) * k, (cy - y0) * k)  # the centre in the scaled ROI
    m = cv2.getRotationMatrix2D(sc, angle, 1.0)
    m[:, 2] += np.array([size / 2 - sc[0], size / 2 - sc[1]])
    return cv2.warpAffine(scaled, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def prepare_image(image: np.ndarray, spec: CropSpec, *,
                  landmarks: str | Path | None = None) -> tuple[np.ndarray | None, str]:
    """Cut and resize one decoded image as ``spec`` says.

    Parameters
    ----------
    image : numpy.ndarray
        ``(y, x)`` gray or ``(y, x, channel)`` RGB uint8, as ``spec.color`` asks.
    spec : CropSpec
    landmarks : str or Path, optional
        Eye cascade for alignment (only with ``mode="face"``).

    Returns
    -------
    out : numpy.ndarray or None
        ``(size, size[, channel])`` uint8; None when the item failed.
    status : str
        ``"ok"``, ``"ok: ..."`` (kept, with a note), or ``"failed: <reason>"``.
    """
    import cv2

    h, w = image.shape[:2]
    if spec.mode == "none":
        return cv2.resize(image, (spec.size, spec.size),
                          interpolation=cv2.INTER_AREA if spec.size < min(h, w) else cv2.INTER_LINEAR), STATUS_OK
    if spec.mode == "center":
        return crop_square(image, (w / 2, h / 2), min(h, w), spec.size), STATUS_OK
    gray = _gray(image)
    box = detect_face(gray, spec)
    if box is None:
        if spec.no_face == "center":
            return crop_square(image, (w / 2, h / 2), min(h, w), spec.size), "ok: no face found, centre crop"
        return None, f"failed: no face found by {Path(spec.cascade).name}"
    x, y, fw, fh = box
    side = max(fw, fh) * (1 + 2 * spec.margin)
    centre = (x + fw / 2, y + fh / 2)
    angle, status = 0.0, STATUS_OK
    if landmarks is not None:
        eyes = find_eyes(gray, box, landmarks)
        if eyes is None:
            status = "ok: eyes not found, not aligned"
        else:
            (lx, ly), (rx, ry) = eyes
            angle = math.degrees(math.atan2(ry - ly, rx - lx))
            if abs(angle) > 30:
                angle, status = 0.0, f"ok: eye angle {angle:.0f} deg implausible, not aligned"
    return crop_square(image, centre, side, spec.size, angle), status
