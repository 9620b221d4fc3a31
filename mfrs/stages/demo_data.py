"""Demo data: the embedded ds000117-like BIDS set and the fsaverage template anatomy.

Reads the ``stimuli`` store; writes the catalog entries ``anatomy`` (a FreeSurfer
subjects_dir with ``fsaverage`` and the ``aparc_sub`` parcellation) and
``ds000117`` (a BIDS data set written with mne-bids, ground truth under
``derivatives/mfrs-simulation``). Generation is one task: it is deterministic,
takes seconds per subject, and mne-bids updates shared files (participants.tsv)
that parallel writers would race on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mfrs.catalog import Catalog
from mfrs.demo.anatomy import PARCELLATION, SUBJECT
from mfrs.demo.config import DemoDataConfig
from mfrs.errors import ConfigError, StoreError
from mfrs.stage import Plan, StageConfig

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.store import ZarrStore

__all__ = ["NAME", "PROVENANCE_FILE", "Config", "inputs", "outputs", "plan", "run", "weights_sources"]

NAME = "demo_data"
log = logging.getLogger(__name__)

#: Provenance of the generated set, beside the ground truth.
PROVENANCE_FILE = Path("derivatives") / "mfrs-simulation" / "provenance.json"

_N_CHANNELS = 310  # 306 MEG + STI101 + 2 EOG + ECG


class Config(StageConfig, DemoDataConfig):
    """Settings of the demo_data stage: sizes, effects and seed of the simulation.

    Every field of :class:`mfrs.demo.config.DemoDataConfig`; ``seed`` comes from
    the pipeline when the stage section does not set it.
    """


def _driver_weights(cfg: DemoDataConfig) -> list[str]:
    """The ``weights`` catalog entries of the networks that drive planted effects."""
    from mfrs.nets.specs import parse_untrained

    names = {e.driver.weights for e in cfg.effects if e.driver is not None}
    return sorted(w for w in names if parse_untrained(w) is None)


def weights_sources(cfg: DemoDataConfig, catalog: Catalog) -> dict[str, tuple[dict[str, Any], str]]:
    """``weights entry -> (params, location)`` of the networks that drive planted effects (untrained need none).

    What :func:`mfrs.demo.simulate.generate_bids` takes as ``weights``.
    """
    return {w: (dict(catalog.entry(w).params), catalog.entry(w).uri) for w in _driver_weights(cfg)}


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read: the stimuli and the weights of the networks driving planted effects."""
    return ["stimuli", *_driver_weights(cfg)]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return ["ds000117", "anatomy"]


def _check_anatomy_entry(catalog: Catalog) -> Path:
    entry = catalog.entry("anatomy")
    subject, parc = entry.freesurfer.subject, entry.freesurfer.parcellation
    if subject != SUBJECT or parc != PARCELLATION:
        raise ConfigError(
            f"catalog entry 'anatomy' has params subject={subject!r}, parcellation={parc!r}; the "
            f"demo writes subject {SUBJECT!r} with parcellation {PARCELLATION!r}. "
            "Set those params, or leave demo_data out of the pipeline when analysing real data")
    return entry.path


def _n_stimuli(cfg: Config, catalog: Catalog) -> tuple[int, int]:
    """Stimuli the simulation will use and the bytes of their images (estimated if absent)."""
    try:
        ds = catalog.open("stimuli")
    except StoreError:
        n = 3 * (cfg.max_stimuli_per_category or 50)
        return n, n * 96 * 96
    cats = np.asarray(ds["category"].values).astype(str)
    cap = cfg.max_stimuli_per_category
    n = sum(min(int((cats == c).sum()), cap or 10**9) for c in np.unique(cats))
    return n, int(ds["image"].nbytes)


def plan(*, config: Config, catalog: Catalog) -> Plan:
    """What generating the demo data reads, writes and costs."""
    from mfrs.demo.simulate import TRUTH_FILE

    n_stim, image_bytes = _n_stimuli(config, catalog)
    seconds_per_subject = 2 * n_stim * config.soa + 2 * config.n_runs * config.run_padding
    samples = config.n_subjects * seconds_per_subject * config.sfreq
    fif_bytes = int(samples * _N_CHANNELS * 4)
    largest_run = seconds_per_subject / config.n_runs * config.sfreq * _N_CHANNELS * 8
    done = (catalog.path("ds000117") / TRUTH_FILE).exists()
    notes = [(f"{config.n_subjects} subjects x {config.n_runs} runs, {n_stim} stimuli shown twice, "
             f"{seconds_per_subject:.0f} s per subject at {config.sfreq:g} Hz"),
             f"parcellation grid {config.grid}, about {config.region_size} vertices per region"]
    if done:
        notes.append("a simulation exists; it is reused when its fingerprint matches")
    return Plan(stage=NAME, reads={"stimuli": image_bytes},
                writes={"ds000117": fif_bytes, "anatomy": 60 * 2**20}, n_tasks=1, n_units=1,
                memory_per_task=int(6 * largest_run + 200 * 2**20),
                seconds=15.0 + 4.0 * config.n_subjects + samples * _N_CHANNELS * 2e-8,
                notes=notes)


@dataclass(frozen=True)
class GenerateTask:
    """The one task's arguments: where the anatomy and the BIDS set go, and what they are made from."""

    config: DemoDataConfig
    anatomy: Path
    bids: Path
    stimuli: Any  # xarray.Dataset of the stimuli, loaded
    provenance: dict[str, Any]
    overwrite: bool
    weights: dict[str, tuple[dict[str, Any], str]]


def _generate(task: GenerateTask) -> str:
    """The one task: template anatomy, then the BIDS set (runs on a worker)."""
    from mfrs.demo.anatomy import build_template_subjects_dir
    from mfrs.demo.simulate import generate_bids

    cfg, anatomy, bids, stimuli, provenance, overwrite, weights = (
        task.config, task.anatomy, task.bids, task.stimuli, task.provenance, task.overwrite, task.weights)
    build_template_subjects_dir(Path(anatomy), grid=cfg.grid, region_size=cfg.region_size,
                                seed=cfg.seed, overwrite=overwrite)
    root = generate_bids(Path(bids), subjects_dir=Path(anatomy), stimuli=stimuli, config=cfg,
                         overwrite=overwrite, weights=weights)
    path = root / PROVENANCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(provenance, indent=1, default=str))
    return str(root)


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Build the template anatomy and the simulated BIDS set (skipped when complete)."""
    from mfrs.demo.anatomy import template_is_complete
    from mfrs.demo.simulate import simulation_is_complete
    from mfrs.provenance import make_provenance
    from mfrs.runner import run_units

    stimuli_store = inputs["stimuli"]
    anatomy = _check_anatomy_entry(catalog)
    bids = catalog.path("ds000117")
    stimuli = stimuli_store.dataset(warn_incomplete=False).load()
    stim_fp = stimuli_store.provenance.get("fingerprint", "")
    cfg = DemoDataConfig.model_validate(config.model_dump(exclude={"exec"}))
    provenance = make_provenance(stage=NAME, config=cfg, inputs={"stimuli": stim_fp},
                                 seed=cfg.seed, client=client)
    anatomy_done = template_is_complete(anatomy, grid=cfg.grid, region_size=cfg.region_size,
                                        seed=cfg.seed)
    bids_done = simulation_is_complete(bids, stimuli=stimuli, config=cfg)
    if anatomy_done and bids_done and not overwrite:
        log.info("demo_data: anatomy %s and ds000117 %s are complete for this config and "
                 "stimuli, skipping", anatomy, bids)
        return
    if overwrite:
        reason = "overwrite requested"
    else:
        reason = "; ".join(
            [f"anatomy {anatomy} missing or built with other parameters"] * (not anatomy_done)
            + [f"ds000117 {bids} missing, incomplete or from another config or stimuli"]
            * (not bids_done))
    log.info("demo_data: %s, generating", reason)
    weights = weights_sources(cfg, catalog)
    task = GenerateTask(config=cfg, anatomy=anatomy, bids=bids, stimuli=stimuli, provenance=provenance,
                        overwrite=overwrite, weights=weights)
    run_units(client, _generate, [task], key=lambda _: "ds000117", description="demo data",
              stage=NAME)
