"""Generated identity folders: a small face-identity training set for the ``faces`` pipeline.

Stage ``face_identities``. Each identity is one of the real LFW face crops that ship inside
scikit-image; its images are that face seen again under a random pose and lighting
(rotation, scale, shift, mirror, brightness, contrast, sensor noise), so a network can
only tell identities apart by the face, not by a fixed picture. Written as VGGFace-style
``<output>/<identity>/<k>.png`` (the ``identity_folders`` layout of the ``images``
stage), with ``provenance.json`` beside them. The folder is written under a temporary
name and renamed when complete, so a killed run leaves nothing half-done; a rerun with
the same settings does nothing, other settings are refused without ``--overwrite``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import StoreError
from mfrs.provenance import make_provenance
from mfrs.stage import Plan, StageConfig

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.store import ZarrStore

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "identity_image", "write_identities"]

NAME = "face_identities"
log = logging.getLogger(__name__)

#: Face crops in scikit-image's ``lfw_subset`` (the first 100 of its 200 images are faces).
_N_FACES = 100
_PROVENANCE = "provenance.json"


class Config(StageConfig):
    """Settings of the face_identities stage."""

    output: str = Field("face_identities", description="catalog entry (kind images or folder) written")
    n_identities: int = Field(24, ge=2, le=_N_FACES, description="identities (LFW faces) generated")
    images_per_identity: int = Field(12, ge=2, le=1000)
    size: int = Field(64, ge=16, le=512, description="side of each image, pixels")
    first_face: int = Field(0, ge=0, lt=_N_FACES, description="index of the first LFW face used")
    seed: int = 0

    @model_validator(mode="after")
    def _enough_faces(self) -> Config:
        if self.first_face + self.n_identities > _N_FACES:
            raise ValueError(f"first_face {self.first_face} + n_identities {self.n_identities} exceeds the "
                             f"{_N_FACES} LFW faces of scikit-image")
        return self


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read (none: the faces ship with scikit-image)."""
    return []


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return [cfg.output]


def identity_image(face: np.ndarray, rng: np.random.Generator, *, size: int) -> np.ndarray:
    """One view of ``face`` (float image in [0, 1]) as a ``(size, size)`` uint8 picture.

    Rotation +-12 degrees, scale 0.9-1.1, shift +-8 % of the side, mirror with p = 0.5,
    brightness +-0.12, contrast 0.75-1.25, Gaussian noise of sd 0.03.
    """
    from skimage import transform

    img = transform.resize(face, (size, size), order=3, anti_aliasing=False)
    centre = np.array([size / 2.0, size / 2.0])
    tf = (transform.AffineTransform(translation=-centre)
          + transform.AffineTransform(rotation=np.deg2rad(rng.uniform(-12, 12)), scale=rng.uniform(0.9, 1.1))
          + transform.AffineTransform(translation=centre + rng.uniform(-0.08, 0.08, 2) * size))
    img = transform.warp(img, tf.inverse, mode="edge", order=1)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = (img - img.mean()) * rng.uniform(0.75, 1.25) + img.mean() + rng.uniform(-0.12, 0.12)
    img = img + rng.normal(0.0, 0.03, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_identities(cfg: Config, folder: Path) -> None:
    """Write every identity folder of ``cfg`` into ``folder`` (created)."""
    from PIL import Image
    from skimage.data import lfw_subset

    faces = lfw_subset()
    for k in range(cfg.n_identities):
        index = cfg.first_face + k
        face = faces[index].astype(np.float64)
        face = (face - face.min()) / max(float(np.ptp(face)), 1e-9)
        out = folder / f"lfw{index:03d}"
        out.mkdir(parents=True)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index]))
        for j in range(cfg.images_per_identity):
            Image.fromarray(identity_image(face, rng, size=cfg.size), mode="L").save(out / f"{j:04d}.png")


def plan(*, config: Config, catalog: Catalog) -> Plan:
    """Sizes of the generated set."""
    n = config.n_identities * config.images_per_identity
    return Plan(stage=NAME, writes={config.output: n * config.size**2}, n_tasks=1, n_units=1,
                memory_per_task=50 * 2**20, seconds=0.002 * n,
                notes=[f"{config.n_identities} identities x {config.images_per_identity} images at {config.size} px"])


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> dict[str, Any]:
    """Write the identity folders, unless the same settings wrote them already.

    Raises
    ------
    StoreError
        The folder holds a set of other settings (or no provenance) and ``overwrite`` is False.
    """
    folder = catalog.path(config.output)
    settings = config.model_dump(mode="json", exclude={"output"})
    provenance = make_provenance(stage=NAME, config=settings, inputs={}, seed=config.seed, client=client)
    fp = provenance["fingerprint"]
    record = folder / _PROVENANCE
    if folder.exists() and not overwrite:
        found = json.loads(record.read_text()).get("fingerprint") if record.exists() else None
        if found == fp:
            log.info("%s: %s complete, nothing to do", NAME, folder)
            return {"written": False, "folder": str(folder)}
        raise StoreError(f"stage {NAME}: {folder} (catalog entry {config.output!r}) holds "
                         f"{'another identity set' if found else 'files that this stage did not write'}; "
                         f"rerun with --overwrite to replace it, or point the entry elsewhere.")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_identities(config, partial)
    (partial / _PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    if folder.exists():
        log.warning("%s: --overwrite given, replacing %s", NAME, folder)
        shutil.rmtree(folder)
    partial.rename(folder)
    log.info("%s: wrote %d identities x %d images to %s", NAME, config.n_identities, config.images_per_identity,
             folder)
    return {"written": True, "folder": str(folder)}
