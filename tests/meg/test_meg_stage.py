"""The MEG stage on a tiny generated set: the issue's acceptance checks.

Oracles: the simulation's ground truth (``truth.json``: planted ECG/EOG field
patterns, trigger delay, region latencies), the events.tsv files read with
pandas, the raw FIF files read with MNE directly, and scipy statistics.
"""

from __future__ import annotations

import json
import logging

import mne
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from mfrs.pipeline import run_stage
from mfrs.store import ZarrStore


def _truth(catalog) -> dict:
    return json.loads((catalog.path("ds000117") / "derivatives/mfrs-simulation/truth.json").read_text())


def _work(catalog, sub: str):
    from mfrs.stages.meg import work_folder

    return work_folder(catalog) / f"sub-{sub}"


# ---------------------------------------------------------------- failure of one subject
def test_truncated_run_fails_alone_with_its_file_named(meg_run):
    failure, catalog = meg_run["failure"], meg_run["catalog"]
    assert set(failure.failures) == {"sub-03"}
    msg = failure.failures["sub-03"]
    assert str(meg_run["broken"]) in msg and "truncated" in msg
    for entry in ("epochs", "sources"):
        store = ZarrStore.open(catalog.path(entry))
        done = {u.labels["subject"][0]: store.is_complete(u) for u in store.units()}
        assert done == {"sub-01": True, "sub-02": True, "sub-03": False}


def test_missing_run_file_is_named(meg_inputs, tmp_path):
    from mfrs.errors import InputDataError
    from mfrs.meg.bids import find_layout, read_run

    root = tmp_path / "bids"
    src = meg_inputs.path("ds000117")
    (root / "sub-02/ses-meg/meg").mkdir(parents=True)
    (root / "dataset_description.json").write_text((src / "dataset_description.json").read_text())
    for f in (src / "sub-02/ses-meg/meg").iterdir():
        if "run-02_meg" not in f.name:
            (root / "sub-02/ses-meg/meg" / f.name).write_bytes(f.read_bytes())
    layout = find_layout(root)
    assert [r.run for r in layout.runs["02"]] == [1, 2]
    read_run(root, layout.runs["02"][0])  # the run that is there reads
    with pytest.raises(InputDataError, match=r"sub-02 run 2: raw file .*sub-02_ses-meg_task-"
                       r"facerecognition_run-02_meg\.fif is missing"):
        read_run(root, layout.runs["02"][1])


def test_rerun_skips_complete_subjects(meg_run, local_client, caplog):
    from mfrs.errors import StageFailures
    from mfrs.stages import meg as stage

    catalog = meg_run["catalog"]
    store = ZarrStore.open(catalog.path("sources"))
    marks = {p.name: p.stat().st_mtime_ns for p in (store.path / ".mfrs-complete").iterdir()}
    caplog.set_level(logging.INFO, logger="mfrs")
    with pytest.raises(StageFailures, match="sub-03"):
        run_stage(stage, config=meg_run["config"], catalog=catalog, client=local_client)
    assert {p.name: p.stat().st_mtime_ns for p in (store.path / ".mfrs-complete").iterdir()} == marks
    text = caplog.text
    assert "sub-01 skipped: units complete" in text and "sub-02 skipped: units complete" in text


def test_subject_whose_cleaning_is_redone_is_rewritten_with_the_same_values(meg_run, local_client, caplog):
    from mfrs.errors import StageFailures
    from mfrs.stages import meg as stage

    catalog = meg_run["catalog"]
    before = catalog.open("sources")["activity"].sel(subject="sub-02", signal="broadband").values
    store = ZarrStore.open(catalog.path("sources"))
    marks = {p.name: p.stat().st_mtime_ns for p in (store.path / ".mfrs-complete").iterdir()}
    (_work(catalog, "02") / "prepared.json").unlink()  # as if the recordings had changed
    caplog.set_level(logging.INFO, logger="mfrs")
    with pytest.raises(StageFailures, match="sub-03"):
        run_stage(stage, config=meg_run["config"], catalog=catalog, client=local_client)
    assert "sub-02 recomputing its complete units" in caplog.text
    after = {p.name: p.stat().st_mtime_ns for p in (store.path / ".mfrs-complete").iterdir()}
    assert after["subject=sub-01.json"] == marks["subject=sub-01.json"]
    assert after["subject=sub-02.json"] > marks["subject=sub-02.json"]
    again = catalog.open("sources")["activity"].sel(subject="sub-02", signal="broadband").values
    np.testing.assert_allclose(again, before, rtol=1e-5, atol=1e-6 * np.abs(before).max())


# ---------------------------------------------------------------- store layout
def test_sources_dims_coords_chunks_provenance(meg_run):
    catalog, config = meg_run["catalog"], meg_run["config"]
    src = catalog.open("sources")
    act = src["activity"]
    assert act.dims == ("subject", "signal", "stimulus", "time", "vertex")
    assert act.dtype == np.float32
    assert src["subject"].values.tolist() == ["sub-01", "sub-02", "sub-03"]
    assert src["signal"].values.tolist() == ["broadband", "alpha"]
    stim = catalog.open("stimuli")
    kept = src["stimulus"].values.tolist()
    # stimulus coords as in the stimuli store, in its order
    order = [s for s in stim["stimulus"].values.tolist() if s in kept]
    assert kept == order
    for c in ("category", "condition", "file"):
        assert src[c].values.tolist() == stim[c].sel(stimulus=kept).values.tolist()
    excluded = src.attrs["excluded_stimuli"]
    assert set(excluded) | set(kept) == set(stim["stimulus"].values.tolist())
    assert all("sub-0" in why for why in excluded.values())
    # time in seconds, -0.2..0.8 at the recording's rate
    sfreq = _truth(catalog)["sfreq"]
    np.testing.assert_allclose(src["time"].values, np.arange(-0.2 * sfreq, 0.8 * sfreq + 1e-6) / sfreq,
                               atol=1e-9)
    # vertex: unique, hemi/region coords, sorted by region (each region one contiguous block)
    vertex, region, hemi = src["vertex"].values, src["region"].values, src["hemi"].values
    assert len(np.unique(vertex)) == len(vertex)
    assert set(hemi) == {"lh", "rh"}
    assert all(r.endswith(f"-{h}") for r, h in zip(region, hemi))
    starts = np.flatnonzero(np.r_[True, region[1:] != region[:-1]])
    assert len(starts) == len(set(region))
    # chunks: one subject, one signal, all stimuli, a block of time, a block of vertices
    chunks = dict(zip(act.dims, act.chunks))
    assert set(chunks["subject"]) == {1} and set(chunks["signal"]) == {1}
    assert chunks["stimulus"] == (len(kept),)
    assert chunks["time"][0] == config.exec.time_chunk
    v_block = chunks["vertex"][0]
    assert v_block < len(vertex) and len(kept) * chunks["time"][0] * v_block * 4 <= config.exec.chunk_mb * 2 ** 20
    # provenance names the stage, its settings and its inputs
    prov = src.attrs["provenance"]
    assert prov["stage"] == "meg" and prov["seed"] == config.seed
    assert prov["parameters"]["source"]["method"] == "dSPM"
    assert set(prov["inputs"]) == {"ds000117", "anatomy", "stimuli"}
    assert "mne" in prov["versions"] and len(prov["fingerprint"]) == 16
    # the failed subject reads as fill values, the others hold data
    assert np.isfinite(act.sel(subject="sub-01").isel(time=slice(0, 64)).values).all()
    alpha = act.sel(subject="sub-01", signal="alpha").isel(time=slice(0, 64)).values
    assert np.isfinite(alpha).all() and (alpha >= 0).all() and alpha.mean() > 0  # envelopes
    ep = catalog.open("epochs")
    assert ep["data"].dims == ("subject", "signal", "stimulus", "channel", "time")
    assert ep["channel"].size == 306 and set(ep["ch_type"].values) == {"grad", "mag"}
    assert ep["stimulus"].values.tolist() == kept


# ---------------------------------------------------------------- ICA
@pytest.mark.parametrize("sub", ["01", "02"])
def test_ica_finds_and_removes_planted_ecg_and_eog(meg_run, sub):
    catalog = meg_run["catalog"]
    truth = _truth(catalog)
    meg_names = truth["channels"]["meg"]
    patterns = truth["subjects"][sub]["artefact_patterns"]
    ica = mne.preprocessing.read_ica(_work(catalog, sub) / f"sub-{sub}-ica.fif", verbose="error")
    ecg, eog = ica.labels_["ecg"], ica.labels_["eog"]
    assert 1 <= len(ecg) <= 3 and 1 <= len(eog) <= 3
    assert set(ica.exclude) == set(ecg) | set(eog)
    # the detected components' field maps are the planted ones (in ICA's whitened space)
    comps = ica.get_components()
    idx = [meg_names.index(c) for c in ica.ch_names]
    for kind, found in (("ecg", ecg), ("blink", eog)):
        planted = np.asarray(patterns[kind])[idx] / ica.pre_whitener_.ravel()
        r = [abs(np.corrcoef(planted, comps[:, c])[0, 1]) for c in range(comps.shape[1])]
        assert max(r[c] for c in found) > 0.95, (kind, r)
    # applying the ICA removes the artefact time course from the MEG channels
    raw = mne.io.read_raw_fif(catalog.path("ds000117") / f"sub-{sub}/ses-meg/meg/"
                              f"sub-{sub}_ses-meg_task-facerecognition_run-01_meg.fif",
                              preload=True, verbose="error").filter(1, 40, verbose="error")
    clean = ica.apply(raw.copy(), verbose="error")
    # the reference channels as ds000117 names them (EEG063 = ECG, EEG062 = VEOG)
    for kind, ch in (("ecg", truth["channels"]["ecg"]), ("blink", truth["channels"]["veog"])):
        pat = np.asarray(patterns[kind])[idx]
        ref = raw.get_data(picks=[ch])[0]
        before = np.corrcoef(pat @ raw.get_data(picks=ica.ch_names), ref)[0, 1]
        after = np.corrcoef(pat @ clean.get_data(picks=ica.ch_names), ref)[0, 1]
        assert abs(before) > 0.5 and abs(after) < 0.1, (kind, before, after)


def test_log_and_provenance_name_the_artefact_channels_and_removed_components(meg_run):
    catalog = meg_run["catalog"]
    prov = ZarrStore.open(catalog.path("sources")).provenance
    for sub in ("01", "02"):
        ica = mne.preprocessing.read_ica(_work(catalog, sub) / f"sub-{sub}-ica.fif", verbose="error")
        cleaning = prov["cleaning"][f"sub-{sub}"]
        assert cleaning["ica"]["ecg_channels"] == ["EEG063"]  # found by type, named as in ds000117
        assert cleaning["ica"]["eog_channels"] == ["EEG061", "EEG062"]
        assert cleaning["ica"]["n_removed"] == len(ica.exclude) >= 2
        truth_runs = _truth(catalog)["subjects"][sub]["runs"]
        assert cleaning["bad_channels"] == {str(int(r)): v["bads"] for r, v in truth_runs.items()}
        # per run: the bad channels' source (the MaxFilter log the catalog names) and why the
        # Maxwell filter, hence movement compensation, did not run (no calibration files)
        for run in truth_runs:
            assert cleaning["bad_channel_sources"][str(int(run))].startswith(
                "channels.tsv status and MaxFilter log "), cleaning["bad_channel_sources"]
            assert cleaning["maxwell_runs"][str(int(run))] == {
                "tsss": False, "movement_compensation": None,
                "reason": "Maxwell filter skipped: the catalog entry 'ds000117' gives no "
                          "params.calibration / params.crosstalk file"}


# ---------------------------------------------------------------- events
@pytest.mark.parametrize("sub", ["01", "02"])
def test_events_match_events_tsv_with_delay(meg_run, sub):
    catalog = meg_run["catalog"]
    truth = _truth(catalog)
    root = catalog.path("ds000117")
    meta = mne.read_epochs(_work(catalog, sub) / f"sub-{sub}-epo.fif", preload=False,
                           verbose="error").metadata
    stim = catalog.open("stimuli")
    file_to_id = dict(zip(stim["file"].values.tolist(), stim["stimulus"].values.tolist()))
    expected_rows = []
    for run in (1, 2):
        base = root / f"sub-{sub}/ses-meg/meg/sub-{sub}_ses-meg_task-facerecognition_run-{run:02d}"
        tsv = pd.read_csv(f"{base}_events.tsv", sep="\t")
        info_raw = mne.io.read_raw_fif(f"{base}_meg.fif", verbose="error")
        first = tsv[tsv["trigger"].isin([5, 13, 17])]
        delay = round(truth["trigger_delay"] * info_raw.info["sfreq"])
        for _, row in first.iterrows():
            expected_rows.append({"run": run, "stimulus": file_to_id[row["stim_file"]],
                                  "trigger": int(row["trigger"]),
                                  "run_sample": round(row["onset"] * info_raw.info["sfreq"])
                                  + info_raw.first_samp + delay})
    expected = pd.DataFrame(expected_rows).set_index("stimulus").sort_index()
    got = meta.set_index("stimulus").sort_index()
    # every kept epoch is a first presentation from events.tsv, with the delay added
    assert set(got.index) <= set(expected.index)
    assert len(got) >= 0.8 * len(expected)
    exp = expected.loc[got.index]
    np.testing.assert_array_equal(got["run"], exp["run"])
    np.testing.assert_array_equal(got["trigger"], exp["trigger"])
    assert np.abs(got["run_sample"].to_numpy() - exp["run_sample"].to_numpy()).max() <= 1
    cat = {5: "famous", 13: "unfamiliar", 17: "scrambled"}
    assert got["category"].tolist() == [cat[t] for t in exp["trigger"]]
    assert (got["presentation"] == "first").all()


# ---------------------------------------------------------------- planted effects in source space
def _region_window(src, sub: str, region: str, centre: float, half: float = 0.02):
    act = src["activity"].sel(subject=sub, signal="broadband")
    sel = act.isel(vertex=np.flatnonzero(np.char.startswith(src["region"].values.astype(str), region + "-")))
    return sel.mean("vertex").sel(time=slice(centre - half, centre + half)).mean("time").values


@pytest.mark.parametrize("sub", ["sub-01", "sub-02"])
def test_regions_respond_at_planted_latency_to_every_category(meg_run, sub):
    catalog = meg_run["catalog"]
    truth = _truth(catalog)
    latency = truth["subjects"][sub[4:]]["latency"]
    src = catalog.open("sources")
    face = (src["category"] != "scrambled").values
    for region in ("V1", "FFA"):
        at = _region_window(src, sub, region, latency[region])
        base = _region_window(src, sub, region, -0.1, 0.08)
        assert at.mean() > 1.5 * base.mean(), region
    # V1's drive (the first layer's code) is the same for every category: no face-vs-scrambled
    # amplitude effect there (FFA's deep-layer code sets faces apart, and with it their source size)
    v1 = _region_window(src, sub, "V1", latency["V1"])
    assert scipy.stats.ttest_ind(v1[face], v1[~face], equal_var=False).pvalue > 0.01


# ---------------------------------------------------------------- cluster profiles
@pytest.mark.slurm
def test_slurm_profile_writes_the_same_values_as_local(meg_run, slurm_client, tmp_path, write_catalog):
    from mfrs.catalog import load_catalog
    from mfrs.stages import meg as stage

    local = meg_run["catalog"]
    catalog = load_catalog(write_catalog(tmp_path / "slurm", inputs_from=local.root))
    config = meg_run["config"].model_copy(update={"subjects": ["01"]})
    run_stage(stage, config=config, catalog=catalog, client=slurm_client)  # from scratch: fresh work folder
    got = catalog.open("sources")["activity"].sel(subject="sub-01")
    assert set(got["stimulus"].values) >= set(local.open("sources")["stimulus"].values)
    ref = local.open("sources")["activity"].sel(subject="sub-01")
    got = got.sel(stimulus=ref["stimulus"].values).values
    ref = ref.values
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    got_ep = catalog.open("epochs")["data"].sel(subject="sub-01")
    ref_ep = local.open("epochs")["data"].sel(subject="sub-01")
    got_ep = got_ep.sel(stimulus=ref_ep["stimulus"].values).values
    np.testing.assert_allclose(got_ep, ref_ep.values, rtol=1e-4, atol=1e-4 * np.nanmax(np.abs(ref_ep.values)))


# ---------------------------------------------------------------- stage protocol
def test_stage_protocol_and_plan(meg_run):
    from mfrs.stages import meg as stage

    catalog, config = meg_run["catalog"], meg_run["config"]
    assert stage.NAME == "meg" and stage.__doc__.splitlines()[0].startswith("MEG:")
    assert stage.inputs(config, catalog) == ["ds000117", "anatomy", "stimuli"]
    assert stage.outputs(config, catalog) == ["epochs", "sources"]
    plan = stage.plan(config=config, catalog=catalog)
    raw_files = sorted(catalog.path("ds000117").glob("sub-*/ses-meg/meg/*_meg.fif"))
    assert plan.reads["ds000117"] == sum(f.stat().st_size for f in raw_files)
    assert plan.n_units == 3
    written = catalog.open("sources")["activity"]
    # the plan counts every stimulus and grid vertex, before exclusions
    assert plan.writes["sources"] >= written.nbytes
    assert plan.writes["sources"] == 3 * 2 * 30 * written.sizes["time"] * 2 * 2562 * 4
