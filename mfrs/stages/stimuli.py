"""Stimuli: the face images every analysis compares, as the ``stimuli`` store.

The source is the catalog entry ``stimulus_images``: either
``embedded://skimage-lfw`` (the real LFW face crops that ship inside
scikit-image: 50 "famous", 50 "unfamiliar" and 50 phase-scrambled faces) or a
ds000117 ``stimuli/meg`` folder of ``f001.bmp``/``u001.bmp``/``s001.bmp`` files.
Images are made grayscale and resized to ``size`` x ``size``. Stimulus ids,
``category``, ``condition`` (famous 1-150, unfamiliar 151-300, scrambled
301-450, as ds000117) and ``file`` travel as coordinates.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from pydantic import Field

from mfrs.catalog import Catalog, CatalogEntry
from mfrs.errors import InputDataError
from mfrs.provenance import fingerprint, make_provenance
from mfrs.runner import run_units
from mfrs.stage import ExecSettings, Plan, StageConfig
from mfrs.store import Unit, ZarrStore
from mfrs.types import CATEGORIES, Category

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "list_stimuli", "exclusion_list", "phase_scramble",
           "load_stimulus_pixels", "EMBEDDED_LFW"]

NAME = "stimuli"
EMBEDDED_LFW = "embedded://skimage-lfw"
log = logging.getLogger(__name__)

_PREFIX = {"famous": "f", "unfamiliar": "u", "scrambled": "s"}
_CONDITION_OFFSET = {"famous": 0, "unfamiliar": 150, "scrambled": 300}
_FILE_RE = re.compile(r"^(?P<prefix>[fus])(?P<number>\d{3})\.bmp$", re.IGNORECASE)


class Exec(ExecSettings):
    """Execution settings of the stimuli stage (each stimulus draws from its own seed: chunks change no pixel)."""

    chunk_size: int = Field(50, ge=1, description="stimuli per store chunk (one task each)")


class Config(StageConfig):
    """Settings of the stimuli stage."""

    size: int = Field(224, ge=8, le=1024, description="output images are size x size pixels")
    n_per_category: int | None = Field(
        None, ge=1, description="stimuli per category (embedded: at most 50; None: all)")
    seed: int = Field(0, description="root seed of the phase scrambling")
    exclude: list[str] = Field(
        default_factory=list, description="stimulus ids (f001, u017, ...) left out of every analysis, "
        "added to the list file the catalog entry 'stimulus_images' names in params.exclude")
    exec: Exec = Exec()


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read."""
    return ["stimulus_images"]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return ["stimuli"]


@dataclass(frozen=True)
class StimulusSpec:
    """Where one stimulus's pixels come from."""

    stimulus: str
    category: str
    condition: int
    file: str
    origin: str  # "lfw:<index>", "scramble:<lfw index>" or a file path


def _embedded_specs(n: int | None) -> list[StimulusSpec]:
    n = 50 if n is None else n
    if n > 50:
        raise InputDataError(
            f"the embedded stimulus set has 50 images per category (100 LFW faces in scikit-image); "
            f"n_per_category={n} asks for more. Lower it, or point the catalog entry "
            "'stimulus_images' at a ds000117 stimuli/meg folder."
        )
    specs = []
    for category in CATEGORIES:
        for k in range(n):
            if category == "famous":
                origin = f"lfw:{k}"
            elif category == "unfamiliar":
                origin = f"lfw:{50 + k}"
            else:  # scrambled versions alternate between the famous and the unfamiliar faces
                origin = f"scramble:{(k // 2) + (50 if k % 2 else 0)}"
            sid = f"{_PREFIX[category]}{k + 1:03d}"
            specs.append(StimulusSpec(sid, category, _CONDITION_OFFSET[category] + k + 1,
                                      f"meg/{sid}.bmp", origin))
    return specs


def _folder_specs(folder: Path, n: int | None, entry_name: str) -> list[StimulusSpec]:
    if not folder.is_dir():
        raise InputDataError(
            f"catalog entry {entry_name!r}: stimulus folder {folder} does not exist. Point its "
            f"location at ds000117's stimuli/meg folder, or at {EMBEDDED_LFW}."
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    bad = [p.name for p in files if not _FILE_RE.match(p.name)]
    if bad:
        raise InputDataError(
            f"catalog entry {entry_name!r}: {folder} holds files not named like ds000117 stimuli "
            f"(f###.bmp, u###.bmp, s###.bmp): {', '.join(bad[:5])}{'...' if len(bad) > 5 else ''}. "
            "Remove or rename them."
        )
    by_category: dict[str, list[StimulusSpec]] = {c: [] for c in CATEGORIES}
    prefix_to_cat = {v: k for k, v in _PREFIX.items()}
    for path in files:
        m = _FILE_RE.match(path.name)
        assert m is not None
        category = prefix_to_cat[m["prefix"].lower()]
        number = int(m["number"])
        sid = f"{m['prefix'].lower()}{number:03d}"
        by_category[category].append(StimulusSpec(
            sid, category, _CONDITION_OFFSET[category] + number, f"meg/{path.name}", str(path)))
    specs = []
    for category in CATEGORIES:
        chosen = sorted(by_category[category], key=lambda s: s.stimulus)
        specs.extend(chosen if n is None else chosen[:n])
    if not specs:
        raise InputDataError(f"catalog entry {entry_name!r}: no .bmp stimuli in {folder}.")
    return specs


def exclusion_list(entry: CatalogEntry, extra: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Stimulus id -> why it is excluded, from the entry's list file and the stage config.

    ``params.exclude`` of the ``stimulus_images`` entry names a text file (relative to the
    entry's folder, or absolute): one stimulus id per line, then optionally a reason; ``#``
    starts a comment. The study's list holds the famous faces whose identity could not be
    matched to CelebA (reference.md §1).
    """
    out: dict[str, str] = {}
    listed = entry.params.get("exclude")
    if listed:
        path = Path(str(listed))
        if not path.is_absolute():
            path = (entry.path if entry.uri != EMBEDDED_LFW else Path(".")) / path
        if not path.is_file():
            raise InputDataError(f"catalog entry {entry.name!r}: params.exclude names {path}, which does not "
                                 "exist; write the list (one stimulus id per line) or remove the parameter")
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            sid, _, reason = text.partition(" ")
            if not _FILE_RE.match(f"{sid}.bmp"):
                raise InputDataError(f"{path}:{number}: {sid!r} is not a stimulus id like f001, u017 or s150")
            out[sid.lower()] = reason.strip() or f"listed in {path.name}"
    for sid in extra:
        out.setdefault(sid.lower(), "excluded by the stimuli stage config (exclude)")
    return out


def list_stimuli(entry: CatalogEntry, n_per_category: int | None,
                 exclude: list[str] | tuple[str, ...] = ()) -> list[StimulusSpec]:
    """The stimuli of a ``stimulus_images`` entry, in study order (famous, unfamiliar, scrambled).

    Stimuli of the entry's exclusion list and of ``exclude`` are left out (see
    :func:`exclusion_list`); ``n_per_category`` counts the stimuli kept.
    """
    dropped = exclusion_list(entry, exclude)
    if entry.uri == EMBEDDED_LFW:
        specs = _embedded_specs(None if dropped else n_per_category)
    else:
        specs = _folder_specs(entry.path, None if dropped else n_per_category, entry.name)
    if dropped:
        unknown = sorted(set(dropped) - {s.stimulus for s in specs})
        if unknown:
            raise InputDataError(f"catalog entry {entry.name!r}: the exclusion list names stimuli it does "
                                 f"not have: {', '.join(unknown[:5])}; fix the list")
        specs = [s for s in specs if s.stimulus not in dropped]
        if n_per_category is not None:
            specs = [s for c in CATEGORIES for s in [x for x in specs if x.category == c][:n_per_category]]
        log.info("stimuli: %d stimuli excluded (%s), %d kept", len(dropped), ", ".join(sorted(dropped)),
                 len(specs))
    return specs


def phase_scramble(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep the amplitude spectrum of ``image``, randomise its phase.

    The random phase is that of a white-noise image, so the result is real; the
    output is rescaled to the input's mean and standard deviation.

    Parameters
    ----------
    image : ndarray, (y, x) float
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, (y, x) float
    """
    spectrum = np.fft.fft2(image)
    noise_phase = np.angle(np.fft.fft2(rng.standard_normal(image.shape)))
    scrambled = np.real(np.fft.ifft2(np.abs(spectrum) * np.exp(1j * (np.angle(spectrum) + noise_phase))))
    scrambled = (scrambled - scrambled.mean()) / (scrambled.std() + 1e-12)
    return scrambled * image.std() + image.mean()


def _to_uint8(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = np.clip(image, 0.0, 1.0)
    pil = Image.fromarray((img * 255.0 + 0.5).astype(np.uint8), mode="L")
    return np.asarray(pil.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def load_stimulus_pixels(spec: StimulusSpec, *, size: int, seed: int) -> np.ndarray:
    """The (size, size) uint8 grayscale image of one stimulus."""
    if spec.origin.startswith(("lfw:", "scramble:")):
        from skimage.data import lfw_subset

        kind, index = spec.origin.split(":")
        face = lfw_subset()[int(index)].astype(np.float64)
        if kind == "scramble":
            # One child seed per stimulus condition: independent of chunking and worker count.
            child = np.random.SeedSequence([seed, spec.condition])
            face = phase_scramble(face, np.random.default_rng(child))
        return _to_uint8(face, size)
    from PIL import Image, UnidentifiedImageError

    path = Path(spec.origin)
    try:
        with Image.open(path) as img:
            img.load()
            gray = np.asarray(img.convert("L"), dtype=np.float64) / 255.0
    except FileNotFoundError as exc:
        raise InputDataError(f"stimulus {spec.stimulus}: file {path} disappeared while reading.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputDataError(
            f"stimulus {spec.stimulus}: {path} is not a readable image ({exc}). Replace the file with the "
            "dataset's original, or remove it to exclude this stimulus."
        ) from exc
    return _to_uint8(gray, size)


def _template(specs: list[StimulusSpec], cfg: Config, excluded: dict[str, str]) -> xr.Dataset:
    """The store's template; ``attrs["excluded_stimuli"]`` (id -> reason) tells the ``meg`` stage
    which presented images to leave out."""
    import dask.array as da

    n = len(specs)
    data = da.zeros((n, cfg.size, cfg.size), chunks=(cfg.exec.chunk_size, cfg.size, cfg.size), dtype="uint8")
    return xr.Dataset(
        {"image": (("stimulus", "y", "x"), data, {"description": "grayscale pixel values 0-255"})},
        coords={
            "stimulus": [s.stimulus for s in specs],
            "category": ("stimulus", [s.category for s in specs]),
            "condition": ("stimulus", np.array([s.condition for s in specs], dtype=np.int32)),
            "file": ("stimulus", [s.file for s in specs]),
        },
        attrs={"excluded_stimuli": dict(sorted(excluded.items()))},
    )


def _source_fingerprint(entry: CatalogEntry, specs: list[StimulusSpec]) -> str:
    if entry.uri == EMBEDDED_LFW:
        from importlib.metadata import version

        return fingerprint({"source": EMBEDDED_LFW, "scikit-image": version("scikit-image")})
    stats = [(s.origin, Path(s.origin).stat().st_size, Path(s.origin).stat().st_mtime_ns) for s in specs]
    return fingerprint(stats)


@dataclass(frozen=True)
class UnitTask:
    """One unit of the ``stimuli`` store to compute and write (the argument of a dask task)."""

    store: ZarrStore
    unit: Unit
    specs: tuple[StimulusSpec, ...]
    size: int
    seed: int


def write_unit(task: UnitTask) -> str:
    """Compute and write one unit of stimuli (runs in a dask task)."""
    pixels = np.stack([load_stimulus_pixels(s, size=task.size, seed=task.seed) for s in task.specs])
    task.store.write_unit(task.unit, xr.Dataset({"image": (("stimulus", "y", "x"), pixels)},
                                                coords={"stimulus": [s.stimulus for s in task.specs]}))
    return task.unit.key


def plan(*, config: Config, catalog: Catalog) -> Plan:
    """Sizes of the stimuli stage."""
    specs = list_stimuli(catalog.entry("stimulus_images"), config.n_per_category, config.exclude)
    n_units = -(-len(specs) // config.exec.chunk_size)
    missing = n_units
    if (catalog.path("stimuli") / "zarr.json").exists():
        try:
            missing = len(ZarrStore.open(catalog.path("stimuli")).missing_units())
        except Exception:  # a damaged store is reported by run(); the plan assumes all work remains
            missing = n_units
    image_bytes = config.size * config.size
    return Plan(stage=NAME, reads={"stimulus_images": len(specs) * 25 * 25},
                writes={"stimuli": len(specs) * image_bytes}, n_tasks=missing, n_units=n_units,
                memory_per_task=config.exec.chunk_size * image_bytes * 16, seconds=0.01 * len(specs),
                notes=[f"{len(specs)} stimuli at {config.size}x{config.size} after exclusions: "
                       + ", ".join(f"[{a}:{b}] {c}" for c, a, b in _category_slices(specs))])


def _category_slices(specs: list[StimulusSpec]) -> list[tuple[Category, int, int]]:
    """(category, start, stop) of each category's block in store order."""
    out, start = [], 0
    for c in CATEGORIES:
        n = sum(s.category == c for s in specs)
        out.append((c, start, start + n))
        start += n
    return out


def prepare(*, config: Config, catalog: Catalog, client: Client | None = None,
            overwrite: bool = False) -> tuple[ZarrStore, list[UnitTask]]:
    """Create or resume the ``stimuli`` store and list the work of its missing units."""
    entry = catalog.entry("stimulus_images")
    specs = list_stimuli(entry, config.n_per_category, config.exclude)
    provenance = make_provenance(stage=NAME, config=config,
                                 inputs={"stimulus_images": _source_fingerprint(entry, specs)},
                                 seed=config.seed, client=client)
    store = ZarrStore.create(catalog.path("stimuli"), _template(specs, config, exclusion_list(entry, config.exclude)),
                             unit_dims=("stimulus",),
                             provenance=provenance, overwrite=overwrite, entry_name="stimuli")
    by_id = {s.stimulus: s for s in specs}
    work = [UnitTask(store=store, unit=u, specs=tuple(by_id[s] for s in u.labels["stimulus"]), size=config.size,
                     seed=config.seed) for u in store.missing_units()]
    return store, work


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Build the ``stimuli`` store (idempotent: complete chunks are skipped)."""
    store, work = prepare(config=config, catalog=catalog, client=client, overwrite=overwrite)
    if not work:
        log.info("stimuli: all %d units of %s complete, nothing to do", len(store.units()), store.path)
        return
    run_units(client, write_unit, work, key=lambda w: w.unit.key, description="stimuli", stage=NAME)
