"""One subject, in two tasks: sensor cleaning to epochs (``prepare``), then sources (``localize``).

The split exists because a stimulus missing in any subject is excluded for
all: ``prepare`` finds which stimuli survive per subject, the stage takes the
intersection, and ``localize`` writes the store units for exactly those.
``prepare`` caches its result in the stage's work folder, keyed by a
fingerprint of its inputs and settings, so a resumed run does not clean again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from mfrs.errors import InputDataError

if TYPE_CHECKING:
    import mne

    from mfrs.meg.config import Config

__all__ = ["SubjectJob", "Prepared", "Localized", "prepare", "static_bads", "localize", "timed", "inverse_model",
           "ica_path", "epochs_path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubjectJob:
    """Everything one subject's tasks need (small and picklable)."""

    subject: str
    bids_root: Path
    runs: tuple[Any, ...]  # RunFiles
    config: "Config"
    work: Path
    subjects_dir: Path
    anatomy_params: dict
    file_to_stimulus: dict[str, str]
    calibration: Path | None = None
    crosstalk: Path | None = None
    fingerprint: str = ""
    head_pos: dict[int, Path] | None = None  # run -> MaxFilter .pos file
    bad_logs: dict[int, Path] | None = None  # run -> MaxFilter log naming its static bad channels
    excluded: frozenset[str] = frozenset()  # stimulus ids the stimuli stage left out (events dropped)

    @property
    def folder(self) -> Path:
        return self.work / f"sub-{self.subject}"


@dataclass
class Prepared:
    """What ``prepare`` found: kept stimuli and the cleaning report."""

    subject: str
    stimuli: list[str]
    ch_names: list[str]
    ch_types: list[str]
    times: list[float]
    report: dict = field(default_factory=dict)
    fresh: bool = False  # computed by this run (not read from the cache)


@contextmanager
def timed(subject: str, step: str):
    import mne

    start = time.perf_counter()
    with mne.use_log_level("error"):
        yield
    log.info("meg: sub-%s %s took %.1f s", subject, step, time.perf_counter() - start)


def epochs_path(job: SubjectJob) -> Path:
    return job.folder / f"sub-{job.subject}-epo.fif"


def ica_path(job: SubjectJob) -> Path:
    return job.folder / f"sub-{job.subject}-ica.fif"


def _band_path(job: SubjectJob, band: str) -> Path:
    return job.folder / f"sub-{job.subject}-{band}-analytic.npy"


def _record_path(job: SubjectJob) -> Path:
    return job.folder / "prepared.json"


def _cache_files(job: SubjectJob) -> list[Path]:
    """The cached files ``localize`` reads back."""
    return [epochs_path(job), *(_band_path(job, band) for band in job.config.envelopes)]


def _cache_damage(job: SubjectJob, saved: dict) -> str | None:
    """Why the cache of a complete record cannot be used (a file purged or truncated), or None."""
    sizes = saved.get("files", {})
    for path in _cache_files(job):
        if not path.is_file():
            return f"{path} is missing"
        if path.name in sizes and path.stat().st_size != sizes[path.name]:
            return f"{path} has {path.stat().st_size} bytes, {sizes[path.name]} were written"
    return None


def prepare(job: SubjectJob) -> Prepared:
    """Clean the runs one at a time and cut epochs; cache the result in ``job.folder``.

    Two passes over the runs, each holding one run: (1) read (mne-bids) -> Maxwell filter ->
    filters -> events (STI101 matched to events.tsv, delay applied) and the decimated copy ICA
    is fitted on (:func:`mfrs.meg.preprocess.ica_fit_data`); ICA is fitted once on the runs'
    copies concatenated (ECG/EOG found on them); (2) each run again read, filtered, cleaned by
    the ICA and epoched (baseline), its epochs kept (and its band analytic epochs written to
    disk). Then autoreject's global threshold on all epochs. The peak is about one run, the
    ICA's copy and the epochs, never every run at once.

    Raises
    ------
    InputDataError
        A run file is missing, truncated or inconsistent (the message names it).
    """
    import mne
    import pandas as pd

    from mfrs.meg import npyfile
    from mfrs.meg.bids import read_events_tsv
    from mfrs.meg.epochs import reject_global
    from mfrs.meg.events import find_trigger_events, match_events
    from mfrs.meg.preprocess import fit_ica, ica_fit_data

    record = _record_path(job)
    if record.exists():
        try:
            saved = json.loads(record.read_text())
        except json.JSONDecodeError:
            saved = {}
        damage = _cache_damage(job, saved) if saved.get("fingerprint") == job.fingerprint else None
        if saved.get("fingerprint") == job.fingerprint and damage is None:
            log.info("meg: sub-%s cleaning skipped: %s is complete for these settings", job.subject, record)
            return Prepared(**{**saved["prepared"], "fresh": False})
        if damage:
            log.warning("meg: sub-%s cache discarded and rebuilt: %s", job.subject, damage)
            record.unlink(missing_ok=True)
        else:
            log.info("meg: sub-%s cleaning recomputed: %s was made with other settings", job.subject, record)
    cfg = job.config
    sub = job.subject
    run_numbers = [run.run for run in job.runs]
    dest = _destination(job)
    bads: dict[int, list[str]] = {}
    bad_sources: dict[str, str] = {}
    maxwell_record: dict[str, Any] = {}
    after: dict[int, list[str]] = {}
    tables, ev_arrays, spans, fit_parts = [], [], [], []
    offset, sfreq = 0, 0.0
    for run in job.runs:  # pass 1: events and the ICA's decimated copy, one run held
        raw = _clean_run(job, run, dest, bads=bads, bad_sources=bad_sources, record=maxwell_record, after=after)
        trig = find_trigger_events(raw, cfg.events)
        table = match_events(trig, read_events_tsv(run), sfreq=raw.info["sfreq"],
                             first_samp=raw.first_samp, cfg=cfg.events,
                             file_to_stimulus=job.file_to_stimulus, source=str(run.events),
                             excluded=job.excluded)
        table["run"] = run.run
        table["run_sample"] = table["sample"]  # within the run's own file, delay applied
        tables.append(table)
        ev_arrays.append(np.column_stack([table["sample"], np.zeros(len(table), int),
                                          np.arange(len(table)) + 1]).astype(np.int64))
        spans.append((raw.first_samp, raw.last_samp))
        sfreq = float(raw.info["sfreq"])
        if cfg.ica.enabled:
            part = ica_fit_data(raw, cfg.ica, offset=offset, drop_bads=False)
            if part is not None:
                fit_parts.append(part)
        offset += raw.n_times
        del raw
    union = sorted({c for b in after.values() for c in b})
    if any(set(b) != set(union) for b in after.values()):
        # not reconstructed by a Maxwell filter: a channel bad in one run is left out of all
        log.info("meg: sub-%s bad channels %s differ between runs and were not reconstructed: "
                 "marked bad in every run (%d channels)", sub, union, len(union))
    # samples as in the runs concatenated (mne.concatenate_raws): the epochs' metadata keep them
    ev = (mne.concatenate_events(ev_arrays, [f for f, _ in spans], [last for _, last in spans])
          if len(ev_arrays) > 1 else ev_arrays[0])
    events = pd.concat(tables, ignore_index=True)
    events["sample"] = ev[:, 0]
    delay = int(round(cfg.events.delay * sfreq))
    events["trigger_sample"] = events["sample"] - delay
    report: dict[str, Any] = {"n_events": int(len(events)), "runs": run_numbers,
                              "bad_channels": {str(r): b for r, b in bads.items()},
                              "bad_channel_sources": bad_sources, "maxwell_runs": maxwell_record,
                              "bads_after_maxwell": list(union),
                              "maxwell": bool(cfg.maxwell.enabled and (
                                  not cfg.maxwell.require_files or (job.calibration and job.crosstalk)))}
    job.folder.mkdir(parents=True, exist_ok=True)
    ica = None
    if cfg.ica.enabled:
        with timed(sub, "ICA"):
            fit = mne.concatenate_raws(fit_parts, verbose="error") if len(fit_parts) > 1 else fit_parts[0]
            fit.drop_channels([c for c in union if c in fit.ch_names])
            del fit_parts
            res = fit_ica(None, cfg.ica, seed=cfg.seed, subject=sub, fit_data=fit)
            del fit
        ica = res.ica
        ica.save(ica_path(job), overwrite=True, verbose="error")
        report["ica"] = res.summary()
        log.info("meg: sub-%s ICA fitted on %d samples at %.1f Hz (%s); removed %d of %d components: ECG %s "
                 "(found with %s), EOG %s (found with %s)", sub, res.fitted_on["n_samples"],
                 res.fitted_on["sfreq"], res.fitted_on["what"], len(res.ecg) + len(res.eog), ica.n_components_,
                 res.ecg, ", ".join(res.ecg_channels) or "no ECG channel", res.eog,
                 ", ".join(res.eog_channels) or "no EOG channel")
    with timed(sub, "epochs, run by run"):
        epochs, analytic = _epoch_runs(job, dest, events, union, ica)
    with timed(sub, "autoreject"):
        if cfg.epochs.autoreject:
            report["reject"] = reject_global(epochs, seed=cfg.seed)
    report["n_dropped"] = int(len(events) - len(epochs))
    epochs.save(epochs_path(job), overwrite=True, verbose="error")
    for band, tmp in analytic.items():  # the epochs autoreject kept, in their order, row by row
        npyfile.copy_rows(tmp, _band_path(job, band), epochs.selection)
        tmp.unlink()
    kept = sorted(set(epochs.metadata["stimulus"]))
    report["rejected"] = sorted(set(events["stimulus"]) - set(kept))
    prepared = Prepared(job.subject, kept, list(epochs.ch_names), list(epochs.get_channel_types()),
                        [float(t) for t in epochs.times], report, fresh=True)
    tmp = record.with_suffix(f".tmp{os.getpid()}")
    files = {p.name: p.stat().st_size for p in _cache_files(job)}
    tmp.write_text(json.dumps({"fingerprint": job.fingerprint, "prepared": prepared.__dict__, "files": files}))
    os.replace(tmp, record)  # written last: the cache is complete only with it
    return prepared


def _destination(job: SubjectJob):
    """Device-to-head transform of the Maxwell filter's destination run (None: no Maxwell filter)."""
    import mne

    cfg = job.config.maxwell
    if not cfg.enabled or cfg.destination_run is None:
        return None
    runs = [run.run for run in job.runs]
    run = job.runs[runs.index(cfg.destination_run) if cfg.destination_run in runs else 0]
    return mne.io.read_info(run.raw, verbose="error")["dev_head_t"]


def _clean_run(job: SubjectJob, run, dest, *, bads: dict | None = None, bad_sources: dict | None = None,
               record: dict | None = None, after: dict | None = None,
               union: list[str] | None = None) -> "mne.io.BaseRaw":
    """One run read, its static bad channels marked, Maxwell-filtered and filtered: the only run held.

    ``bads``, ``bad_sources`` and ``record`` receive the run's static bad channels, their source and
    what the Maxwell filter did; ``after`` its bad channels after it. With ``union`` those are the
    bad channels (every run's, as when the runs are concatenated). Channels that are neither MEG,
    ECG, EOG nor stimulus (EEG) are dropped after the Maxwell filter: nothing reads them.
    """
    from mfrs.meg.bids import read_run
    from mfrs.meg.preprocess import filter_raw, maxwell_filter_runs

    cfg, sub = job.config, job.subject
    with timed(sub, f"run {run.run} reading"):
        raw = read_run(job.bids_root, run)
    b, src = static_bads([raw], [run.run], job.bad_logs or {}, sub)
    with timed(sub, f"run {run.run} Maxwell filter"):
        (raw,) = maxwell_filter_runs([raw], [run.run], cfg.maxwell, calibration=job.calibration,
                                     crosstalk=job.crosstalk, subject=sub, head_pos=job.head_pos,
                                     record=record, destination=dest)
    for target, value in ((bads, b), (bad_sources, src), (after, {run.run: list(raw.info["bads"])})):
        if target is not None:
            target.update(value)
    if union is not None:
        raw.info["bads"] = list(union)
    raw.pick(["meg", "ecg", "eog", "stim"], exclude=())
    with timed(sub, f"run {run.run} filters"):
        filter_raw(raw, cfg.filter)
    return raw


def _epoch_runs(job: SubjectJob, dest, events, union: list[str],
                ica) -> tuple["mne.Epochs", dict[str, Path]]:
    """Pass 2: each run again cleaned, ICA applied, epoched; the epochs of all runs in one array.

    Band analytic epochs go to a ``.npy`` per band on disk (row = epoch kept here), never all in memory
    (written with file writes: a memory map would keep every page written resident).

    Returns
    -------
    (Epochs, {band: file})
    """
    import mne

    from mfrs.meg import npyfile
    from mfrs.meg.epochs import analytic_epochs, make_epochs
    from mfrs.meg.preprocess import apply_ica

    cfg = job.config
    data: np.ndarray | None = None
    kept: list[np.ndarray] = []
    files: dict[str, Path] = {str(b): job.folder / f".sub-{job.subject}-{b}-analytic.all.npy"
                              for b in cfg.envelopes}
    info: Any = None
    tmin, pos = 0.0, 0
    for run in job.runs:
        raw = _clean_run(job, run, dest, union=union)
        if ica is not None:
            apply_ica(ica, raw)
        rows = np.flatnonzero(events["run"].to_numpy() == run.run)
        part = events.iloc[rows].reset_index(drop=True)
        part["sample"] = part["run_sample"]  # this run's own samples
        ep = make_epochs(raw, part, cfg.epochs)
        if data is None:
            info, tmin = ep.info, ep.tmin
            data = np.empty((len(events), len(ep.ch_names), len(ep.times)))
            for path in files.values():
                npyfile.create(path, data.shape, np.complex64)
        elif ep.ch_names != info["ch_names"]:
            raise InputDataError(f"sub-{job.subject} run {run.run}: epochs have channels {ep.ch_names}, the "
                                 f"first run {info['ch_names']}; the runs' MEG channels differ ({run.raw})")
        n = len(ep)
        data[pos:pos + n] = ep.get_data(copy=False)
        for name, path in files.items():
            npyfile.write_rows(path, pos, analytic_epochs(raw, part, ep.selection, name,
                                                          cfg.epochs).get_data(copy=False))
        kept.append(rows[ep.selection])
        pos += n
        del raw, ep
    assert data is not None and info is not None
    rows = np.concatenate(kept)
    meta = events.iloc[rows].reset_index(drop=True)
    ev = np.column_stack([meta["sample"].to_numpy(np.int64), np.zeros(len(rows), np.int64), rows + 1])
    epochs = mne.EpochsArray(data[:pos], info, events=ev, tmin=tmin, baseline=tuple(cfg.epochs.baseline),
                             metadata=meta, verbose="error")
    return epochs, files


def static_bads(raws: list["mne.io.BaseRaw"], runs: list[int], logs: dict[int, Path],
                subject: str) -> tuple[dict[int, list[str]], dict[str, str]]:
    """Mark each run's static bad channels: its BIDS ``channels.tsv`` status plus its MaxFilter log.

    ``info["bads"]`` of every raw is updated in place. A run without a log keeps the
    channels.tsv ones only, which the log and the returned sources say.

    Returns
    -------
    bads : dict
        Run -> bad channel names.
    sources : dict
        ``str(run)`` -> where they come from (or why no MaxFilter log was read).
    """
    from mfrs.meg.maxfilter import read_static_bads

    bads, sources = {}, {}
    for run, raw in zip(runs, raws):
        tsv = list(raw.info["bads"])
        log_file = logs.get(run)
        if log_file is None:
            logged: list[str] = []
            sources[str(run)] = ("channels.tsv status only: the data set gives no MaxFilter log for "
                                 "this run (catalog entry 'ds000117' params.bad_channels)")
        else:
            logged = read_static_bads(log_file, raw.ch_names)
            sources[str(run)] = f"channels.tsv status and MaxFilter log {log_file}"
        raw.info["bads"] = tsv + [c for c in logged if c not in tsv]
        bads[run] = list(raw.info["bads"])
        log.info("meg: sub-%s run %d static bad channels: %s (%s)", subject, run,
                 ", ".join(bads[run]) or "none", sources[str(run)])
    return bads, sources


def inverse_model(job: SubjectJob, info: "mne.Info", epochs: "mne.Epochs"):
    """Forward (cached per head position), noise covariance, inverse and morph of one subject.

    Returns
    -------
    (InverseModel, staged subjects_dir, Anatomy)
    """
    import mne

    from mfrs.meg.anatomy import cached_bem_solution, cached_source_space, resolve_anatomy, stage_subjects_dir
    from mfrs.meg.sources import InverseModel, make_forward, make_inverse, make_morph, noise_covariance
    from mfrs.provenance import fingerprint

    cfg = job.config.source
    anat = resolve_anatomy(job.subjects_dir, job.anatomy_params, job.subject)
    staged = stage_subjects_dir(anat, job.work)
    cache = job.work / "anatomy"
    with timed(job.subject, "source space + BEM"):
        src = cached_source_space(staged, anat.fs_subject, cfg.spacing, cache)
        bem = cached_bem_solution(staged, anat.fs_subject, cfg.bem_ico, cfg.conductivity, cache)
    # one forward per head position and anatomy, shared by every subject that has them
    key = fingerprint({"dev_head_t": np.asarray(info["dev_head_t"]["trans"]).round(6),
                       "trans": str(anat.trans), "fs": anat.fs_subject, "spacing": cfg.spacing,
                       "bem": [cfg.bem_ico, cfg.conductivity], "mindist": cfg.mindist,
                       "chs": info["ch_names"]})
    fwd_file = cache / f"{anat.fs_subject}-{key}-fwd.fif"
    with timed(job.subject, "forward"):
        fwd = None
        if fwd_file.exists():
            try:
                fwd = mne.read_forward_solution(fwd_file, verbose="error")
            except Exception as exc:  # noqa: BLE001 - a truncated cache file fails in many ways
                log.warning("meg: sub-%s forward cache %s unreadable (%s): discarded and rebuilt",
                            job.subject, fwd_file, exc)
                fwd_file.unlink(missing_ok=True)
        if fwd is None:
            fwd = make_forward(info, trans=anat.trans, src=src, bem=bem, mindist=cfg.mindist)
            tmp = fwd_file.with_name(f".{key}.{os.getpid()}-fwd.fif")
            mne.write_forward_solution(tmp, fwd, overwrite=True, verbose="error")
            os.replace(tmp, fwd_file)
            # use what the cache holds (FIF rounds it): sources are bit-identical with or without the cache
            fwd = mne.read_forward_solution(fwd_file, verbose="error")
    with timed(job.subject, "covariance + inverse + morph"):
        cov = noise_covariance(epochs, job.config.covariance, seed=job.config.seed)
        inv = make_inverse(info, fwd, cov, cfg)
        morph = make_morph(fwd["src"], subject_from=anat.fs_subject, subjects_dir=staged, cfg=cfg)
    return InverseModel(inv, morph, cfg.method, 1.0 / cfg.snr ** 2, cfg.orientation), staged, anat


@dataclass(frozen=True)
class Localized:
    """One subject's unit data: sensor averages (lazy, one block per signal) and sources (lazy, one block
    per signal and time chunk).

    Attributes
    ----------
    epochs : xarray.Dataset
        ``data (subject, signal, stimulus, channel, time)``, dask-backed: computing it averages each
        band's envelopes from its analytic file, one signal at a time (synchronous scheduler).
    sources : xarray.Dataset
        ``activity (subject, signal, stimulus, time, vertex)``, dask-backed: computing it runs the
        inverse and the morph block by block (compute it with the synchronous scheduler).
    summary : dict
        Shapes and inverse settings, for the log.
    """

    epochs: xr.Dataset
    sources: xr.Dataset
    summary: dict


def localize(job: SubjectJob, stimuli: list[str], *, channels: list[str], times: np.ndarray,
             vertices: np.ndarray, time_chunks: tuple[int, ...]) -> Localized:
    """Sensor averages and sources of the kept ``stimuli`` of one subject, on the stores' axes.

    Parameters
    ----------
    job : SubjectJob
    stimuli : list of str
        The stimuli kept for every subject, in store order.
    channels, times, vertices
        The ``channel``, ``time`` and ``vertex`` coordinates of the epochs and sources stores.
    time_chunks : tuple of int
        The sources store's chunks along time: one lazy block each, so a subject never holds
        more than one time block of sources.
    """
    import dask
    import dask.array as da
    import mne

    from mfrs.meg.epochs import envelope_mean, stimulus_mean, stimulus_rows
    from mfrs.meg.regions import vertex_table
    from mfrs.meg.sources import apply_inverse_analytic, apply_inverse_real

    cfg = job.config
    epochs = mne.read_epochs(epochs_path(job), preload=True, verbose="error")
    ids = epochs.metadata["stimulus"].to_numpy(str)
    keep = np.isin(ids, stimuli)
    model, staged, anat = inverse_model(job, epochs.info, epochs)

    if len(times) != len(epochs.times) or not np.allclose(times, epochs.times, atol=1e-6):
        raise InputDataError(
            f"sub-{job.subject}: epochs of {epochs_path(job)} have {len(epochs.times)} samples at "
            f"{epochs.info['sfreq']} Hz, the store {len(times)}; subjects differ in sampling rate: "
            "set meg.epochs.resample_sfreq")
    vt = vertex_table(staged, anat.parcellation, cfg.source.grid, drop=cfg.source.drop_regions)
    rows = vt["row"].sel(vertex=vertices).values
    # the morph's rows in the store's (region) order: the inverse writes each block in place,
    # never computed then reordered (two copies of a block of 428 x 128 x 20,484 sources)
    model = dataclasses.replace(model, morph=model.morph[rows, :])

    ch_idx = [epochs.ch_names.index(c) if c in epochs.ch_names else -1 for c in channels]
    kept_idx = np.flatnonzero(keep)
    epoch_rows = stimulus_rows(ids, stimuli)  # the stimulus of each epoch, -1 for those not kept
    kept_rows = epoch_rows[keep]

    # broadband: average sensors per stimulus (epochs of other stimuli are ignored), then one
    # inverse per stimulus; the epochs are held once and let go once averaged
    avg = stimulus_mean(epochs.get_data(copy=False), ids, stimuli, np.float32)
    info, ep_times = epochs.info, epochs.times
    del epochs

    def sensor_block(k: int) -> np.ndarray:
        """Sensor averages of signal ``k`` on the store's channels -> ``(1, 1, stimulus, channel, time)``.

        A band's envelopes are averaged from its analytic file when the block is written: one
        signal's averages are held at a time, never every signal's.
        """
        out = np.full((1, 1, len(stimuli), len(channels), len(times)), np.nan, np.float32)
        src = avg if k == 0 else envelope_mean(_band_path(job, cfg.envelopes[k - 1]), epoch_rows, len(stimuli))
        for i, j in enumerate(ch_idx):  # channel by channel: no copy of the whole block
            if j >= 0:
                out[0, 0, :, i] = src[:, j]
        return out

    sensor = da.concatenate([da.from_delayed(dask.delayed(sensor_block)(k), dtype=np.float32,
                                             shape=(1, 1, len(stimuli), len(channels), len(times)))
                             for k in range(len(cfg.signals))], axis=1)

    def block(k: int, t0: int, t1: int) -> np.ndarray:
        """Sources of signal ``k`` in samples ``t0:t1`` -> ``(1, 1, stimulus, time, vertex)``.

        The inverse and the morph act on each sample alone, and envelopes come from
        the continuous analytic signal, so a time block needs only its own samples.
        """
        tmin = float(ep_times[t0])
        if k == 0:
            ep = mne.EpochsArray(avg[:, :, t0:t1].astype(np.float64), info, tmin=tmin, verbose="error")
            out = apply_inverse_real(ep, model)
        else:
            analytic = np.load(_band_path(job, cfg.envelopes[k - 1]), mmap_mode="r")
            data = np.stack([analytic[i, :, t0:t1] for i in kept_idx])
            del analytic  # unmapped: the file's pages read leave the task's memory
            ep = mne.EpochsArray(data, info, tmin=tmin, verbose="error")
            del data
            # averaged per stimulus batch by batch: the sources of every epoch are never held
            out = apply_inverse_analytic(ep, model, rows=kept_rows, n_rows=len(stimuli))
        return out[None, None]

    # a lazy array, one block per (signal, time chunk), written block by block: a subject
    # never holds more than one time block of sources (38.6 GB per signal at study size)
    t_edges = np.cumsum((0, *time_chunks))
    lazy = da.concatenate([
        da.concatenate([da.from_delayed(dask.delayed(block)(k, int(t0), int(t1)),
                                        shape=(1, 1, len(stimuli), int(t1 - t0), len(rows)),
                                        dtype=np.float32)
                        for t0, t1 in zip(t_edges[:-1], t_edges[1:])], axis=3)
        for k in range(len(cfg.signals))], axis=1)

    subject = f"sub-{job.subject}"
    coords = {"subject": [subject], "signal": cfg.signals, "stimulus": stimuli, "time": times}
    return Localized(
        epochs=xr.Dataset({"data": (("subject", "signal", "stimulus", "channel", "time"), sensor)},
                          coords={**coords, "channel": channels}),
        sources=xr.Dataset({"activity": (("subject", "signal", "stimulus", "time", "vertex"), lazy)},
                           coords={**coords, "vertex": vertices}),
        summary={"subject": subject, "stimuli": len(stimuli), "vertices": int(len(rows)),
                 "method": cfg.source.method})
