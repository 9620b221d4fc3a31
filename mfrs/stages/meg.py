"""MEG: per-subject cleaning, epochs and source estimates from the BIDS recordings.

Reads the ``ds000117`` BIDS set through mne-bids, the ``anatomy`` subjects_dir
and the ``stimuli`` store (for stimulus ids and coords); writes ``epochs``
``data (subject, signal, stimulus, channel, time)`` and ``sources``
``activity (subject, signal, stimulus, time, vertex)``, one subject per task
(two tasks: cleaning, then sources), resumable per subject.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError, StageFailures
from mfrs.meg.config import Config
from mfrs.meg.epochs import BAND_CHANNELS
from mfrs.stage import Plan, format_bytes

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.catalog import Catalog
    from mfrs.meg.subject import Prepared, SubjectJob
    from mfrs.store import Unit, ZarrStore

__all__ = ["NAME", "Config", "inputs", "outputs", "plan", "run", "work_folder", "store_templates",
           "subject_jobs", "exclude_missing", "task_memory", "task_memories", "task_seconds"]

NAME = "meg"
log = logging.getLogger(__name__)


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read."""
    return ["ds000117", "anatomy", "stimuli"]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return ["epochs", "sources"]


def work_folder(catalog: "Catalog") -> Path:
    """Where per-subject intermediates (cleaned epochs, ICA, forward models) are cached."""
    return catalog.path("sources").parent / "meg-work"


def _optional_file(entry, key: str) -> Path | None:
    value = entry.params.get(key)
    if not value:
        return None
    path = Path(value)
    if not path.is_absolute():
        path = entry.path / path
    if not path.is_file():
        raise InputDataError(f"catalog entry {entry.name!r}: params.{key} names {path}, which does "
                             "not exist; fix the path or remove the parameter")
    return path


def per_run_files(entry, layout, key: str) -> dict[str, dict[int, Path]]:
    """Subject -> run -> file, from the path pattern ``params.<key>`` of the BIDS entry.

    ``head_pos`` (MaxFilter head positions) and ``bad_channels`` (MaxFilter logs naming the
    static bad channels) are path patterns relative to the BIDS root with ``{subject}`` and
    ``{run}`` (e.g. ``derivatives/headpos/sub-{subject}/sub-{subject}_run-{run:02d}_headpos.pos``);
    runs whose file does not exist get none (movement compensation skipped / bad channels from
    channels.tsv only, logged and recorded in the provenance).
    """
    pattern = entry.params.get(key)
    out: dict[str, dict[int, Path]] = {s: {} for s in layout.subjects}
    if not pattern:
        return out
    for sub in layout.subjects:
        for run in layout.runs[sub]:
            path = Path(str(pattern).format(subject=sub, run=run.run))
            path = path if path.is_absolute() else entry.path / path
            if path.is_file():
                out[sub][run.run] = path
    return out


def _stimulus_coords(store: ZarrStore) -> xr.Dataset:
    """Stimulus ids, coords and exclusions of the ``stimuli`` store."""
    ds = store.dataset()
    out = ds.drop_vars(list(ds.data_vars)).reset_coords()[["category", "condition", "file"]].load()
    out.attrs = {"excluded_stimuli": dict(ds.attrs.get("excluded_stimuli") or {})}
    return out


def _stimuli_metadata(catalog: Catalog) -> xr.Dataset:
    """:func:`_stimulus_coords` of the ``stimuli`` store as it is (for sizes; ``run`` gets it checked)."""
    from mfrs.store import ZarrStore

    return _stimulus_coords(ZarrStore.open(catalog.path("stimuli"), entry_name="stimuli"))


def _files_fingerprint(paths: list[Path], catalog: "Catalog") -> list:
    # relative to the data root: a finished root copied elsewhere keeps its caches and stores
    return [[catalog.relative(p), p.stat().st_size, p.stat().st_mtime_ns] if p.exists()
            else [catalog.relative(p), None] for p in paths]


def subject_jobs(config: Config, catalog: "Catalog",
                 stim: xr.Dataset | None = None) -> tuple[list["SubjectJob"], dict]:
    """One job per BIDS subject, and the fingerprints of the stage's inputs."""
    from mfrs.meg.bids import find_layout
    from mfrs.meg.subject import SubjectJob
    from mfrs.provenance import fingerprint

    if stim is None:
        stim = _stimuli_metadata(catalog)
    bids = catalog.entry("ds000117")
    anat = catalog.entry("anatomy")
    layout = find_layout(bids.path, subjects=config.subjects, runs=config.runs,
                         task=str(bids.params.get("task", "facerecognition")),
                         session=str(bids.params.get("session", "meg")))
    if not layout.subjects:
        raise InputDataError(f"catalog entry 'ds000117' ({bids.path}) has no subject; run `mfrs demo` "
                             "to generate the embedded set, or point the entry at ds000117")
    calibration, crosstalk = _optional_file(bids, "calibration"), _optional_file(bids, "crosstalk")
    head_pos = per_run_files(bids, layout, "head_pos")
    bad_logs = per_run_files(bids, layout, "bad_channels")
    excluded = frozenset(stim.attrs.get("excluded_stimuli", {}))
    file_to_stimulus = dict(zip(stim["file"].values.astype(str), stim["stimulus"].values.astype(str)))
    work = work_folder(catalog)
    jobs = []
    for sub in layout.subjects:
        runs = layout.runs[sub]
        # only what cleaning depends on: changing the inverse or the chunks keeps the cache
        cleaning = config.model_dump(mode="json", include={"seed", "maxwell", "filter", "ica", "events",
                                                           "epochs", "envelopes"})
        fp = fingerprint({"config": cleaning, "files": _files_fingerprint(
            [p for r in runs for p in (r.raw, r.events)], catalog), "stimuli": file_to_stimulus,
            "calibration": catalog.relative(calibration), "crosstalk": catalog.relative(crosstalk),
            "head_pos": _files_fingerprint(list(head_pos[sub].values()), catalog),
            "bad_channels": _files_fingerprint(list(bad_logs[sub].values()), catalog),
            "excluded": sorted(excluded)})
        jobs.append(SubjectJob(sub, bids.path, runs, config, work, anat.path, anat.freesurfer.model_dump(),
                               file_to_stimulus, calibration, crosstalk, fp, head_pos[sub],
                               bad_logs[sub], excluded))
    inputs_fp = {"ds000117": fingerprint({"path": catalog.relative(bids.path), "subjects": list(layout.subjects),
                                          "params": bids.params}),
                 "anatomy": fingerprint({"path": catalog.relative(anat.path), "params": anat.params}),
                 "stimuli": fingerprint(file_to_stimulus)}
    return jobs, inputs_fp


def _chunks(n: int, block: int) -> tuple[int, ...]:
    block = max(1, min(block, n))
    return tuple([block] * (n // block) + ([n % block] if n % block else []))


def store_templates(*, config: Config, subjects: list[str], stim: xr.Dataset, channels: list[str],
                    ch_types: list[str], times: np.ndarray, vertices: xr.Dataset,
                    attrs: dict) -> tuple[xr.Dataset, xr.Dataset]:
    """Dask-backed templates of the ``epochs`` and ``sources`` stores.

    Chunks: one subject, one signal, all stimuli, a block of time
    (``exec.time_chunk``) and, for sources, a block of region-sorted vertices
    sized to ``exec.chunk_mb``.
    """
    import dask.array as da

    n_sub, n_sig, n_stim = len(subjects), len(config.signals), stim.sizes["stimulus"]
    n_t, n_v = len(times), vertices.sizes["vertex"]
    t_block = min(config.exec.time_chunk, n_t)
    v_block = int(config.exec.chunk_mb * 2 ** 20 // (4 * n_stim * t_block))
    base = {"subject": subjects, "signal": config.signals, "stimulus": stim["stimulus"].values,
            "category": ("stimulus", stim["category"].values),
            "condition": ("stimulus", stim["condition"].values),
            "file": ("stimulus", stim["file"].values), "time": np.asarray(times, float)}
    ep = xr.Dataset(
        {"data": (("subject", "signal", "stimulus", "channel", "time"), da.zeros(
            (n_sub, n_sig, n_stim, len(channels), n_t), dtype="float32",
            chunks=(1, 1, n_stim, len(channels), _chunks(n_t, t_block))))},
        coords={**base, "channel": channels, "ch_type": ("channel", ch_types)}, attrs=dict(attrs))
    src = xr.Dataset(
        {"activity": (("subject", "signal", "stimulus", "time", "vertex"), da.zeros(
            (n_sub, n_sig, n_stim, n_t, n_v), dtype="float32",
            chunks=(1, 1, n_stim, _chunks(n_t, t_block), _chunks(n_v, v_block))))},
        coords={**base, "vertex": vertices["vertex"].values, "hemi": ("vertex", vertices["hemi"].values),
                "region": ("vertex", vertices["region"].values),
                "fs_vertex": ("vertex", vertices["fs_vertex"].values)}, attrs=dict(attrs))
    for ds in (ep, src):
        ds["time"].attrs["units"] = "s"
    src["activity"].attrs.update(method=config.source.method, orientation=config.source.orientation)
    return ep, src


def exclude_missing(stim_ids: list[str],
                    prepared: dict[str, "Prepared"]) -> tuple[list[str], dict[str, str]]:
    """Stimuli kept by every subject (in ``stim_ids`` order), and why each other one is excluded.

    Parameters
    ----------
    stim_ids : list of str
        All stimuli, in the ``stimuli`` store's order.
    prepared : dict
        Subject label -> its :class:`~mfrs.meg.subject.Prepared`.

    Returns
    -------
    kept : list of str
    excluded : dict
        Stimulus -> ``"sub-02: all epochs rejected by autoreject; sub-04: not presented"``.
    """
    kept, excluded = [], {}
    for s in stim_ids:
        reasons = []
        for sub, p in prepared.items():
            if s in p.stimuli:
                continue
            why = ("every epoch dropped (autoreject threshold or recording edge)"
                   if s in p.report.get("rejected", []) else "not presented")
            reasons.append(f"sub-{sub}: {why}")
        if reasons:
            excluded[s] = "; ".join(reasons)
        else:
            kept.append(s)
    return kept, excluded


def _vertices(config: Config, catalog: "Catalog") -> xr.Dataset:
    from mfrs.meg.anatomy import TEMPLATE, Anatomy, stage_subjects_dir
    from mfrs.meg.regions import vertex_table

    anat = catalog.entry("anatomy")
    parc = anat.freesurfer.parcellation
    tmpl = Anatomy(anat.path, TEMPLATE, anat.path, parc)
    staged = stage_subjects_dir(tmpl, work_folder(catalog))
    return vertex_table(staged, parc, config.source.grid, drop=config.source.drop_regions)


#: RSS of an idle worker that has imported what the stage imports (mne, dask, xarray, zarr), measured.
WORKER_BASE_BYTES = 450 * 2**20
#: What cleaning holds besides the data (the worker, mne, sklearn, picard, autoreject and their buffers),
#: fitted to the peaks measured at the tests' demo size (742 MiB, little data) and by
#: ``benchmarks/bench_study_scale.py --size medium`` (1.4 GiB: 142 stimuli, 6 runs at 1100 Hz).
_CLEAN_FIXED = 700 * 2**20
#: Copies of the ICA's decimated data while it is fitted (the data, its clean segments, the
#: pre-whitened copy, PCA's centred data and its singular vectors).
_ICA_COPIES = 5
#: Epochs held while autoreject finds its threshold (the epochs, its copy of their data and its
#: peak-to-peak work), fitted to the cleaning peak ``bench_study_scale.py --size study`` sampled
#: (3.4 GiB with 428 epochs of 306 channels x 1101 samples).
_REJECT_COPIES = 2.5
#: Inverse working set: source values per batch (``apply_inverse_real``'s ``max_bytes``, or the whole
#: time block when smaller), held about 3 times.
_INVERSE_BATCH = 2**27
#: What the sources task holds besides the data (the inverse operator and morph, the modules MNE imports
#: for them), fitted to the sources peaks ``bench_study_scale.py --size medium`` measured (142 stimuli,
#: time blocks of 128): ico4 with 6 signals and ico5 with broadband and theta.
_SOURCES_FIXED = 230 * 2**20
#: Chunks of sources zarr encodes at once while the sources task writes (``async.concurrency``); each
#: holds a copy of the chunk and its compressed bytes (measured: 10 add 1.0 GiB to an ico5 block of
#: 1.4 GiB in chunks of 64 MiB, 2 add 0.26 GiB).
WRITE_CONCURRENCY = 2


def task_memories(*, raw_bytes: float, n_epochs: int, n_stim: int, n_times: int, n_grid: int, n_signals: int,
                  time_chunk: int, n_channels: int = 306, n_runs: int = 6, n_raw_channels: int = 404,
                  ica_fraction: float = 1 / 11, maxwell: bool = True,
                  chunk_bytes: float = 64 * 2**20) -> dict[str, int]:
    """Peak RSS of each of a subject's two MEG tasks, ``{"clean": bytes, "sources": bytes}``.

    Cleaning (:func:`mfrs.meg.subject.prepare`) holds one run at a time: in float64 (twice its
    float32 FIF bytes, ``raw_bytes / n_runs``), and a second copy while the Maxwell filter makes
    its output. The ICA's copy (MEG, ECG, EOG, ``ica_fraction`` of the samples: ``1 / decim``
    of the first ``fit_duration`` seconds) grows run by run and is held :data:`_ICA_COPIES` times
    while ICA is fitted. The second pass holds the epochs of all runs (float64, preallocated),
    one run without its EEG (ICA applied a block of samples at a time) and the run's own epochs twice;
    autoreject holds about :data:`_REJECT_COPIES` times the epochs. Band envelopes add a band-passed copy of
    :data:`~mfrs.meg.epochs.BAND_CHANNELS` MEG channels of the run in complex and the run's complex epochs
    (the epochs of all runs go to disk). Sources
    (:func:`mfrs.meg.subject.localize`) hold the broadband stimulus averages (float32) throughout and,
    at their peak, the larger of: the epochs (float64) while they are averaged; one signal's sensor
    averages being written (the averages and their sums: band envelopes are averaged epoch by epoch
    from the band's file); one time block of sources (the morph writes it in the store's order; band
    envelopes are added to their stimulus as the inverse's batches go, never held per epoch) with the
    block's complex epochs (two copies in complex128), the inverse's batches and the
    :data:`WRITE_CONCURRENCY` store chunks (``chunk_bytes``) being encoded. A subject never holds
    all its sources, nor every signal's sensor averages.

    Examples
    --------
    At the study's shape (6 runs of 540 s, 404 channels at 1100 Hz, 428 stimuli, ico5, 6 signals)
    cleaning needs 5.1 GiB (5.0 GiB with broadband only), sources 6.5 GiB with time blocks of 128
    samples (4.2 GiB with blocks of 64, 3.0 with 32; broadband alone 6.3 GiB with blocks of 128):

    >>> m = task_memories(raw_bytes=5.76e9, n_epochs=428, n_stim=428, n_times=1101, n_grid=20484,
    ...                   n_signals=6, time_chunk=128)
    >>> round(m["clean"] / 2**30, 1), round(m["sources"] / 2**30, 1)
    (5.1, 6.5)
    """
    run = 2.0 * raw_bytes / max(n_runs, 1)
    held = run * min(1.0, (n_channels + 4) / n_raw_channels)  # EEG dropped after the Maxwell filter
    meg = run * min(1.0, n_channels / n_raw_channels)
    fit = 2.0 * raw_bytes * min(1.0, (n_channels + 3) / n_raw_channels) * ica_fraction
    epochs = 8.0 * n_epochs * n_channels * n_times
    per_run = epochs / max(n_runs, 1)
    bands = n_signals > 1
    first = run * (1 + maxwell) + fit
    ica = _ICA_COPIES * fit
    band_copy = 3 * meg * min(1.0, BAND_CHANNELS / max(n_channels, 1))  # a group of channels, then complex
    second = epochs + held + 2 * per_run + bands * (band_copy + 4 * per_run)
    reject = _REJECT_COPIES * epochs
    clean = _CLEAN_FIXED + max(first, ica, second, reject)
    tb = min(time_chunk, n_times)
    signal = 4.0 * n_stim * n_channels * n_times  # one signal's sensor averages
    block = 4.0 * n_stim * tb * n_grid
    block_in = 32.0 * n_epochs * n_channels * tb if bands else 16.0 * n_stim * n_channels * tb
    averaging = epochs
    sensors = 2 * signal
    write = min(block, 2 * WRITE_CONCURRENCY * chunk_bytes)  # chunks being encoded: copies, compressed
    inverse = block + write + block_in + 3 * min(_INVERSE_BATCH, block)
    sources = WORKER_BASE_BYTES + _SOURCES_FIXED + signal + max(averaging, sensors, inverse)
    return {"clean": int(clean), "sources": int(sources)}


def task_memory(**sizes) -> int:
    """Peak RSS of one MEG task: the larger of :func:`task_memories` (same arguments).

    >>> round(task_memory(raw_bytes=5.76e9, n_epochs=428, n_stim=428, n_times=1101, n_grid=20484, n_signals=1,
    ...                   time_chunk=64) / 2**30, 1)
    5.0
    """
    return max(task_memories(**sizes).values())


def task_seconds(*, raw_bytes: float, source_bytes: float, n_signals: int = 1, epoch_samples: float = 0.0) -> float:
    """CPU seconds of one subject's two tasks: cleaning scales with the recordings (read and
    filtered twice, run by run; each band filtered, Hilbert-transformed and epoched once more),
    sources with the source values written (inverse, morph, compression) and, for each band, with
    the samples of its epochs (``epoch_samples``: epochs x samples; the inverse of the real and
    imaginary parts of every epoch, on the source space, whatever the grid).

    Rates fitted to the tasks' CPU time (user + system, every thread of the worker; not wall time,
    which a shared machine inflates) measured by ``benchmarks/bench_study_scale.py`` (1100 Hz,
    oct5, one subject). Broadband (ico4): cleaning 37.1 s and 93.6 s for 0.52 and 1.50 GB of FIF
    (142 and 428 stimuli, 6 runs), sources 17.4 s, 65.0 s and 128.1 s for 0.63, 3.2 and 9.7 GB of
    source values (least squares). Each band: from the run with 6 signals (``--size medium``, ico4:
    0.52 GB of FIF, 142 epochs of 1101 samples; cleaning 118.9 s, sources 381.6 s); checked on
    ``--size medium --grid ico5`` with broadband and theta (399 s planned, 328 s measured).

    >>> round(task_seconds(raw_bytes=516e6, source_bytes=3.2e9))
    92
    >>> round(task_seconds(raw_bytes=516e6, source_bytes=6 * 3.2e9, n_signals=6, epoch_samples=142 * 1101))
    500
    """
    bands = max(n_signals - 1, 0)
    clean = 7.6 + raw_bytes / 17.5e6 + bands * raw_bytes / 31.6e6
    sources = 17.0 + source_bytes / 85e6 + bands * epoch_samples * 1.77e-4
    return clean + sources


def plan(*, config: Config, catalog: "Catalog") -> Plan:
    """Sizes of what the stage reads and writes, from the BIDS layout and the stimuli."""
    from mfrs.meg.types import GRID_VERTICES

    stim = _stimuli_metadata(catalog)
    jobs, _ = subject_jobs(config, catalog, stim)
    raw_bytes = sum(r.raw.stat().st_size for j in jobs for r in j.runs if r.raw.exists())
    n_sub, n_stim, n_sig = len(jobs), stim.sizes["stimulus"], len(config.signals)
    first = jobs[0].runs[0].raw
    sfreq, n_chan, n_meg = 1100.0, 404, 306
    if first.exists():
        import mne

        info = mne.io.read_info(first, verbose="error")
        sfreq, n_chan = info["sfreq"], info["nchan"]
        n_meg = len(mne.pick_types(info, meg=True, exclude=[]))
    per_sub_raw = raw_bytes / max(n_sub, 1)
    n_runs = max(len(jobs[0].runs), 1)
    ica_fraction = 0.0
    if config.ica.enabled:
        seconds = per_sub_raw / (4.0 * n_chan * sfreq)  # float32 FIF samples
        fit = seconds if config.ica.fit_duration is None else min(seconds, config.ica.fit_duration)
        ica_fraction = fit / max(seconds, 1e-9) / config.ica.decim
    maxwell = config.maxwell.enabled and (not config.maxwell.require_files
                                          or (jobs[0].calibration is not None and jobs[0].crosstalk is not None))
    sfreq = config.epochs.resample_sfreq or sfreq
    n_t = int(round((config.epochs.tmax - config.epochs.tmin) * sfreq)) + 1
    n_v = 2 * GRID_VERTICES[config.source.grid]
    src_bytes = n_sub * n_sig * n_stim * n_t * n_v * 4
    n_epochs = n_stim * len(config.events.presentations)
    ep_bytes = n_sub * n_sig * n_stim * n_meg * n_t * 4
    memories = task_memories(raw_bytes=per_sub_raw, n_epochs=n_epochs,
                             n_stim=n_stim, n_times=n_t, n_grid=n_v, n_signals=n_sig,
                             time_chunk=config.exec.time_chunk, n_channels=n_meg, n_runs=n_runs,
                             n_raw_channels=n_chan, ica_fraction=ica_fraction, maxwell=maxwell,
                             chunk_bytes=config.exec.chunk_mb * 2**20)
    memory = max(memories.values())
    seconds = n_sub * task_seconds(raw_bytes=per_sub_raw, source_bytes=src_bytes / max(n_sub, 1), n_signals=n_sig,
                                   epoch_samples=n_epochs * n_t)
    return Plan(stage=NAME, reads={"ds000117": raw_bytes}, writes={"epochs": ep_bytes, "sources": src_bytes},
                n_tasks=2 * n_sub, n_units=n_sub, memory_per_task=memory, seconds=seconds,
                notes=[f"{n_sub} subjects, {n_stim} stimuli, {n_t} samples, {n_v} grid vertices "
                       f"(before dropping {config.source.drop_regions}), signals {config.signals}",
                       f"memory: the larger of cleaning ({format_bytes(memories['clean'])}: one of {n_runs} runs "
                       f"at a time, ICA on {ica_fraction:.3f} of the samples) and sources "
                       f"({format_bytes(memories['sources'])}: one time block of "
                       f"{min(config.exec.time_chunk, n_t)} samples at a time)"])


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> None:
    """Clean every subject, exclude stimuli missing anywhere, write ``epochs`` and ``sources``.

    Subjects whose units are complete are skipped (logged). A subject whose files
    are missing or broken fails alone: the others are written and marked
    complete, then :class:`~mfrs.errors.StageFailures` names the failed files.
    """
    from mfrs.meg.subject import prepare
    from mfrs.provenance import make_provenance
    from mfrs.runner import run_units
    from mfrs.store import ZarrStore

    stim_store = inputs["stimuli"]
    stim = _stimulus_coords(stim_store)
    jobs, inputs_fp = subject_jobs(config, catalog, stim)
    subjects = [f"sub-{j.subject}" for j in jobs]
    # a subject whose files are missing or broken fails alone; the others go on
    results, failures = run_units(client, prepare, jobs, key=lambda j: f"sub-{j.subject}", description="meg-clean",
                                  stage=NAME, return_failures=True)
    prepared: dict[str, Prepared] = {k.removeprefix("sub-"): v for k, v in results.items()}
    if not prepared:
        raise StageFailures(NAME, failures)
    first = prepared[sorted(prepared)[0]]
    for sub, p in prepared.items():
        if len(p.times) != len(first.times) or not np.allclose(p.times, first.times, atol=1e-6):
            failures[f"sub-{sub}"] = (f"epochs have {len(p.times)} samples, sub-{first.subject} "
                                      f"{len(first.times)}: set meg.epochs.resample_sfreq")
    stim_ids = [str(s) for s in stim["stimulus"].values]
    kept, excluded = exclude_missing(stim_ids, {k: v for k, v in prepared.items() if f"sub-{k}" not in failures})
    if not kept:
        raise InputDataError(f"meg: no stimulus is kept by every subject ({len(excluded)} excluded, "
                             f"e.g. {next(iter(excluded.items()))}); check events.tsv stim_file values")
    for s, why in excluded.items():
        log.info("meg: stimulus %s excluded for every subject: %s", s, why)
    stim_kept = stim.sel(stimulus=kept)
    channels, ch_types = _channel_union([prepared[k] for k in sorted(prepared)])
    attrs = {"excluded_stimuli": excluded,
             "exclusion_rule": "a stimulus missing (not presented, or every epoch rejected) in any "
                               "successfully processed subject is excluded for all",
             "subject_reports": {f"sub-{k}": v.report for k, v in prepared.items()}}
    ep_t, src_t = store_templates(config=config, subjects=subjects, stim=stim_kept, channels=channels,
                                  ch_types=ch_types, times=np.asarray(first.times),
                                  vertices=_vertices(config, catalog), attrs=attrs)
    prov = make_provenance(stage=NAME, config=config, inputs=inputs_fp, seed=config.seed, client=client)
    # what cleaning removed, per subject: ICA components and the channels that found them
    # and, per run, its static bad channels (with their source) and Maxwell filter / movement
    # compensation (or why they were skipped)
    prov["cleaning"] = {f"sub-{k}": {key: v.report.get(key) for key in (
        "ica", "bad_channels", "bad_channel_sources", "maxwell_runs")} for k, v in prepared.items()}
    ep_store = ZarrStore.create(catalog.path("epochs"), ep_t, unit_dims=("subject",), provenance=prov,
                                overwrite=overwrite, entry_name="epochs")
    src_store = ZarrStore.create(catalog.path("sources"), src_t, unit_dims=("subject",), provenance=prov,
                                 overwrite=overwrite, entry_name="sources")
    ep_store.depends_on(stim_store)
    src_store.depends_on(stim_store)
    ep_units = {u.labels["subject"][0]: u for u in ep_store.units()}
    src_units = {u.labels["subject"][0]: u for u in src_store.units()}
    todo = []
    for job in jobs:
        sub = f"sub-{job.subject}"
        if sub in failures:
            continue
        complete = ep_store.is_complete(ep_units[sub]) and src_store.is_complete(src_units[sub])
        if complete and not prepared[job.subject].fresh:
            log.info("meg: %s skipped: units complete in %s and %s", sub, ep_store.path, src_store.path)
            continue
        if complete:
            log.info("meg: %s recomputing its complete units in %s: its recordings or cleaning were "
                     "redone in this run (files changed or cache missing)", sub, src_store.path)
        else:
            log.info("meg: %s not marked complete in %s, computing sources", sub, src_store.path)
        todo.append(LocalizeTask(job=job, stimuli=tuple(kept), epochs_store=ep_store, epochs_unit=ep_units[sub],
                                 sources_store=src_store, sources_unit=src_units[sub]))
    _, failed = run_units(client, localize_unit, todo, key=lambda t: f"sub-{t.job.subject}",
                          description="meg-sources", stage=NAME, return_failures=True)
    failures.update(failed)
    if failures:
        raise StageFailures(NAME, failures)


def _channel_union(prepared: list["Prepared"]) -> tuple[list[str], list[str]]:
    """Every channel some subject kept (bad channels differ between subjects), in recording order."""
    order: list[str] = []
    types: dict[str, str] = {}
    for p in prepared:
        prev = None
        for name, kind in zip(p.ch_names, p.ch_types):
            if name not in types:
                order.insert(order.index(prev) + 1 if prev is not None else 0, name)
                types[name] = kind
            prev = name
    return order, [types[n] for n in order]


@dataclass(frozen=True)
class LocalizeTask:
    """One subject's sources task: its job, the stimuli kept for all, and its units of both stores."""

    job: SubjectJob
    stimuli: tuple[str, ...]
    epochs_store: ZarrStore
    epochs_unit: Unit
    sources_store: ZarrStore
    sources_unit: Unit


def localize_unit(task: LocalizeTask) -> dict:
    """Compute one subject's sensor averages and sources and write them as its units (a dask task)."""
    import dask
    import zarr

    from mfrs.meg.subject import localize, timed

    epochs = task.epochs_store.dataset(warn_incomplete=False)
    sources = task.sources_store.dataset(warn_incomplete=False)
    out = localize(task.job, list(task.stimuli), channels=[str(c) for c in epochs["channel"].values],
                   times=epochs["time"].values, vertices=sources["vertex"].values,
                   time_chunks=tuple((sources["activity"].chunks or ((),) * 4)[3]))
    # both lazy, computed here, in this task, one block at a time (never through the cluster)
    with timed(task.job.subject, "sensor averages and write"), dask.config.set(scheduler="synchronous"):
        task.epochs_store.write_unit(task.epochs_unit, out.epochs)
    # zarr encodes async.concurrency chunks at once (10 by default: ~1 GiB of chunk copies and compressed
    # chunks beside an ico5 block); WRITE_CONCURRENCY keeps that to a few chunks
    with (timed(task.job.subject, "inverse, morph and write"), dask.config.set(scheduler="synchronous"),
          zarr.config.set({"async.concurrency": WRITE_CONCURRENCY})):
        task.sources_store.write_unit(task.sources_unit, out.sources)
    return out.summary
