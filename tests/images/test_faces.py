"""Faces: decoding errors name the file; planted faces are found where they were put; crops and alignment."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from image_trees import face_on_canvas, lfw_nonfaces, truncate
from PIL import Image

from mfrs.errors import ConfigError, InputDataError
from mfrs.images.convert import convert_items
from mfrs.images.faces import CropSpec, cascade_path, crop_square, detect_face, find_eyes, prepare_image, read_image


def test_planted_faces_are_found_at_their_place() -> None:
    spec = CropSpec()
    found, errors = 0, []
    for i in range(30):
        img, (cx, cy) = face_on_canvas(i)
        box = detect_face(img, spec)
        if box is not None:
            found += 1
            errors.append(max(abs(box[0] + box[2] / 2 - cx), abs(box[1] + box[3] / 2 - cy)))
    assert found >= 25
    assert max(errors) < 0.25 * 72  # the centre lies within a quarter face of the planted one


def test_no_face_in_non_face_crops() -> None:
    spec = CropSpec()
    canvas = np.full((128, 128), 128, np.uint8)
    hits = 0
    for patch in lfw_nonfaces()[:30]:
        img = canvas.copy()
        img[28:100, 28:100] = np.asarray(Image.fromarray(patch).resize((72, 72)))
        hits += detect_face(img, spec) is not None
    assert hits <= 1


def test_crop_square_equals_array_slicing_and_edge_padding() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 50), dtype=np.uint8)
    np.testing.assert_array_equal(crop_square(img, (20.0, 15.0), 10, 10), img[10:20, 15:25])
    # beyond the border the edge pixels repeat, like numpy's edge padding
    padded = np.pad(img, 8, mode="edge")
    np.testing.assert_array_equal(crop_square(img, (3.0, 2.0), 12, 12), padded[8 - 4:8 + 8, 8 - 3:8 + 9])
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert crop_square(rgb, (25.0, 20.0), 30, 16).shape == (16, 16, 3)


def test_prepare_modes_and_shapes() -> None:
    img, _ = face_on_canvas(0)
    out, status = prepare_image(img, CropSpec(size=32))
    assert status == "ok" and out.shape == (32, 32) and out.dtype == np.uint8
    noise = np.random.default_rng(1).integers(0, 256, (96, 128), dtype=np.uint8)
    out, status = prepare_image(noise, CropSpec(size=32))
    assert out is None and status.startswith("failed: no face found")
    out, status = prepare_image(noise, CropSpec(size=32, no_face="center"))
    assert status == "ok: no face found, centre crop"
    np.testing.assert_array_equal(out, crop_square(noise, (64, 48), 96, 32))
    out, status = prepare_image(noise, CropSpec(size=96, mode="center"))
    np.testing.assert_array_equal(out, noise[:, 16:112])
    out, _ = prepare_image(noise, CropSpec(size=128, mode="none"))
    assert out.shape == (128, 128)


def _eye_angle(gray: np.ndarray, spec: CropSpec, eye: Path) -> float:
    box = detect_face(gray, spec)
    assert box is not None
    eyes = find_eyes(gray, box, eye)
    assert eyes is not None
    (lx, ly), (rx, ry) = eyes
    return math.degrees(math.atan2(ry - ly, rx - lx))


def test_eye_alignment_levels_a_planted_rotation() -> None:
    import cv2
    from skimage.data import astronaut

    gray = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2GRAY)
    eye = cascade_path("haarcascade_eye.xml")
    spec = CropSpec(size=128)
    tilt = {}
    for planted in (-10, 10):
        turned = cv2.warpAffine(gray, cv2.getRotationMatrix2D((224, 120), planted, 1.0), (512, 512),
                                borderMode=cv2.BORDER_REPLICATE)
        tilt[planted] = _eye_angle(turned, spec, eye)
        aligned, status = prepare_image(turned, spec, landmarks=eye)
        assert status == "ok"
        assert abs(_eye_angle(aligned, spec.model_copy(update={"min_face": 0.4}), eye)) < 3.0
        unaligned, _ = prepare_image(turned, spec)
        assert abs(_eye_angle(unaligned, spec.model_copy(update={"min_face": 0.4}), eye)) > 5.0
    # the measured eye tilt follows the planted rotation (OpenCV: positive = counter-clockwise)
    assert abs((tilt[-10] - tilt[10]) - 20.0) < 3.0


def test_read_image_errors_name_the_file(tmp_path: Path) -> None:
    img, _ = face_on_canvas(3)
    good = tmp_path / "good.jpg"
    Image.fromarray(img).save(good)
    assert read_image(good, color="gray").shape == (128, 128)
    assert read_image(good, color="rgb").shape == (128, 128, 3)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes())
    truncate(cut, 0.5)
    with pytest.raises(InputDataError, match=r"cut\.jpg: cannot decode image \(OSError: image file is truncated"):
        read_image(cut, color="gray")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    with pytest.raises(InputDataError, match=r"junk\.png: cannot decode image \(UnidentifiedImageError"):
        read_image(junk, color="gray")
    with pytest.raises(InputDataError, match=r"gone\.png: file not found"):
        read_image(tmp_path / "gone.png", color="gray")


def test_convert_items_records_failures_and_keeps_the_rest(tmp_path: Path) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (20, 20), dtype=np.uint8)
    ok = tmp_path / "ok.png"
    Image.fromarray(pixels).save(ok)
    cut = tmp_path / "cut.png"
    cut.write_bytes(ok.read_bytes())
    truncate(cut, 0.6)
    images, status = convert_items([ok, cut, ok], CropSpec(mode="none", size=20))
    assert status[0] == "ok" and status[2] == "ok"
    assert status[1].startswith("failed: ") and str(cut) in status[1]
    np.testing.assert_array_equal(images[0], pixels)
    assert not images[1].any()


def test_unknown_cascade_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"cascade 'haarcascade_face\.xml' is neither a file nor one of "
                                          r"OpenCV's cascades .*haarcascade_frontalface_default\.xml"):
        cascade_path("haarcascade_face.xml")
