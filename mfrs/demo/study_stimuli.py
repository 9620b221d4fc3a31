"""An embedded stimulus folder shaped like ds000117's ``stimuli/meg``, with the study's exclusions.

The real folder holds 450 bitmaps, ``f001.bmp``..``f150.bmp`` (famous), ``u001``..``u150``
(unfamiliar) and ``s001``..``s150`` (scrambled); the study left 22 of them out for everyone
(reference.md §1): 20 famous faces whose identity was not matched to CelebA and 2 scrambled
images missing in a subject's recordings, keeping 428 = 130 + 150 + 148. The pictures here are
scikit-image's LFW crops (faces) and block-shuffled copies of them (scrambled); the excluded ids
are spread evenly over their category. ds000117 does not publish which 20 famous identities were
unmatched, so the list is a stand-in of the right shape: replace it with the study's own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["EXCLUSIONS_FILE", "N_EXCLUDED", "write_study_stimuli", "study_exclusions"]

log = logging.getLogger(__name__)

#: Name of the exclusion list written beside the ``meg`` folder (the entry's ``params.exclude``).
EXCLUSIONS_FILE = "exclusions.txt"
#: Stimuli the study excluded per category, for 150 per category.
N_EXCLUDED = {"famous": 20, "unfamiliar": 0, "scrambled": 2}
_PREFIX = {"famous": "f", "unfamiliar": "u", "scrambled": "s"}
_REASON = {"famous": "identity not matched to CelebA",
           "scrambled": "missing in a subject's recordings"}


def study_exclusions(n_per_category: int = 150) -> dict[str, str]:
    """Stimulus id -> reason: the study's exclusions, scaled to ``n_per_category`` (at least one).

    Examples
    --------
    >>> ex = study_exclusions()
    >>> len(ex), sum(s.startswith("f") for s in ex), sum(s.startswith("s") for s in ex)
    (22, 20, 2)
    >>> study_exclusions(6)
    {'f004': 'identity not matched to CelebA', 's004': "missing in a subject's recordings"}
    """
    out = {}
    for category, count in N_EXCLUDED.items():
        if not count:
            continue
        k = min(n_per_category - 1, max(1, round(count * n_per_category / 150)))
        numbers = sorted({int((i + 0.5) * n_per_category / k) + 1 for i in range(k)})
        out.update({f"{_PREFIX[category]}{m:03d}": _REASON[category] for m in numbers})
    return out


def _block_shuffle(image: np.ndarray, rng: np.random.Generator, block: int = 4) -> np.ndarray:
    """The image's ``block`` x ``block`` tiles in random order (same pixel values, no face)."""
    h, w = (s - s % block for s in image.shape)
    tiles = image[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2).reshape(-1, block, block)
    tiles = tiles[rng.permutation(len(tiles))]
    return tiles.reshape(h // block, w // block, block, block).swapaxes(1, 2).reshape(h, w)


def write_study_stimuli(folder: Path, *, n_per_category: int = 150, size: int = 64,
                        seed: int = 0) -> Path:
    """Write ``folder/meg/{f,u,s}NNN.bmp`` and ``folder/exclusions.txt``; return the list's path.

    Parameters
    ----------
    folder : Path
        The stimuli root (ds000117's ``stimuli``); point the catalog entry ``stimulus_images`` at
        ``folder/meg`` with ``params.exclude: ../exclusions.txt``.
    n_per_category : int
        Images per category (ds000117: 150).
    size : int
        Pixels per side of the written bitmaps.
    seed : int
        Seed of the scrambling.
    """
    from PIL import Image
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]
    rng = np.random.default_rng(seed)
    meg = Path(folder) / "meg"
    meg.mkdir(parents=True, exist_ok=True)
    for category, prefix in _PREFIX.items():
        for k in range(n_per_category):
            face = faces[(k % 50) + (50 if category == "unfamiliar" or (category == "scrambled" and k % 2)
                                     else 0)]
            pixels = _block_shuffle(face, rng) if category == "scrambled" else face
            img = Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8), mode="L")
            img.resize((size, size), Image.Resampling.BICUBIC).save(meg / f"{prefix}{k + 1:03d}.bmp")
    path = Path(folder) / EXCLUSIONS_FILE
    path.write_text("# stimuli excluded for every subject (reference.md §1); stand-in ids, see "
                    "mfrs.demo.study_stimuli\n"
                    + "".join(f"{sid} {why}\n" for sid, why in study_exclusions(n_per_category).items()))
    log.info("demo: wrote %d stimuli per category and %s in %s", n_per_category, path.name, folder)
    return path
