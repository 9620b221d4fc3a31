"""Fixtures of the demo data tests: a small stimuli set and a small simulated data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests_support import driver_weights

N_PER_CATEGORY = 8


def make_stimuli(n_per_category: int = N_PER_CATEGORY, size: int = 32, seed: int = 0) -> xr.Dataset:
    """A ds000117-shaped stimuli set from the LFW crops in scikit-image.

    Famous and unfamiliar faces are real face crops; scrambled ones are phase-scrambled
    copies of the faces (as in ds000117). Dims and coords as the ``stimuli`` store.
    """
    from skimage.data import lfw_subset
    from skimage.transform import resize

    faces = lfw_subset()[:100]
    rng = np.random.default_rng(seed)
    images, ids, cats, conds, files = [], [], [], [], []
    for _c, (cat, prefix, offset) in enumerate(
            (("famous", "f", 0), ("unfamiliar", "u", 150), ("scrambled", "s", 300))):
        for k in range(n_per_category):
            face = faces[k if cat != "unfamiliar" else 50 + k]
            if cat == "scrambled":
                spec = np.fft.fft2(face)
                phase = np.angle(np.fft.fft2(rng.standard_normal(face.shape)))
                img = np.real(np.fft.ifft2(np.abs(spec) * np.exp(1j * (np.angle(spec) + phase))))
                img = (img - img.mean()) / img.std() * face.std() + face.mean()
            else:
                img = face
            img = resize(np.clip(img, 0, 1), (size, size), anti_aliasing=True)
            images.append(np.round(img * 255).astype(np.uint8))
            sid = f"{prefix}{k + 1:03d}"
            ids.append(sid)
            cats.append(cat)
            conds.append(offset + k + 1)
            files.append(f"meg/{sid}.bmp")
    return xr.Dataset(
        {"image": (("stimulus", "y", "x"), np.stack(images))},
        coords={"stimulus": ids, "category": ("stimulus", cats), "condition": ("stimulus", conds),
                "file": ("stimulus", files)},
    )


@pytest.fixture(scope="session")
def stimuli() -> xr.Dataset:
    return make_stimuli()


@pytest.fixture(scope="session")
def subjects_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mfrs.demo.anatomy import build_template_subjects_dir

    return build_template_subjects_dir(tmp_path_factory.mktemp("anatomy"), grid="ico4",
                                       region_size=12, seed=0)


#: The small data set the tests generate: 2 subjects x 2 runs, 8 stimuli per category.
SMALL = {"n_subjects": 2, "n_runs": 2, "sfreq": 275.0, "grid": "ico4", "region_size": 12}


@pytest.fixture(scope="session")
def small_config():
    from mfrs.demo.config import DemoDataConfig

    return DemoDataConfig(**SMALL)


@pytest.fixture(scope="session")
def bids_root(tmp_path_factory: pytest.TempPathFactory, subjects_dir: Path, stimuli: xr.Dataset,
              small_config) -> Path:
    from mfrs.demo.simulate import generate_bids

    return generate_bids(tmp_path_factory.mktemp("bids") / "ds000117", subjects_dir=subjects_dir,
                         stimuli=stimuli, config=small_config, weights=driver_weights(small_config))
