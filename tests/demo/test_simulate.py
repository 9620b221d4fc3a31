"""The simulated BIDS set: read back with mne-bids, events, artefacts, planted effects, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from tests_support import driver_weights

from mfrs.demo.simulate import generate_bids, read_truth
from mfrs.errors import InputDataError

SUBJECTS = ("01", "02")
RUNS = ("01", "02")


def _path(root: Path, sub: str, run: str):
    from mne_bids import BIDSPath

    return BIDSPath(subject=sub, session="meg", task="facerecognition", run=run, datatype="meg",
                    root=root)


def _raw(root: Path, sub: str = "01", run: str = "01"):
    from mne_bids import read_raw_bids

    return read_raw_bids(_path(root, sub, run), verbose="error")


def test_layout_and_read_back(bids_root: Path) -> None:
    import mne
    from mne_bids import get_entity_vals

    assert get_entity_vals(bids_root, "subject") == list(SUBJECTS)
    assert get_entity_vals(bids_root, "run") == list(RUNS)
    fif = bids_root / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-02_meg.fif"
    assert fif.exists()
    raw = _raw(bids_root, "01", "02")
    canonical = mne.channels.read_meg_canonical_info("neuromag")
    # named as in the ds000117 FIF files: MEG0113, ..., STI101, EEG061-EEG064
    assert raw.ch_names[:306] == [n.replace(" ", "") for n in canonical["ch_names"]]
    assert raw.ch_names[306:] == ["STI101", "EEG061", "EEG062", "EEG063", "EEG064"]
    # EEG in the FIF, typed by channels.tsv (HEOG, VEOG, ECG, MISC) when read through BIDS
    bipolar = ["EEG061", "EEG062", "EEG063", "EEG064"]
    assert mne.io.read_raw_fif(fif, verbose="error").get_channel_types(bipolar) == ["eeg"] * 4
    assert raw.get_channel_types(["STI101", *bipolar]) == ["stim", "eog", "eog", "ecg", "misc"]
    tsv = pd.read_csv(str(fif).replace("_meg.fif", "_channels.tsv"), sep="\t").set_index("name")
    assert tsv.loc[bipolar, "type"].tolist() == ["HEOG", "VEOG", "ECG", "MISC"]
    assert raw.info["sfreq"] == 275.0 and raw.info["line_freq"] == 50.0
    # sensors where the real VectorView has them (device coordinates)
    locs = np.array([c["loc"] for c in raw.info["chs"][:306]])
    np.testing.assert_allclose(locs, np.array([c["loc"] for c in canonical["chs"]]), atol=1e-6)
    assert {"nasion", "lpa", "rpa"} <= {_dig_name(d) for d in raw.info["dig"]}


def _both_runs(root: Path, sub: str = "01"):
    """The subject's runs concatenated; a channel bad in one run is marked bad in both."""
    import mne

    raws = [_raw(root, sub, run) for run in RUNS]
    bads = sorted({c for r in raws for c in r.info["bads"]})
    for r in raws:
        r.info["bads"] = list(bads)
    return mne.concatenate_raws(raws).load_data()


def _dig_name(d) -> str:
    from mne.io.constants import FIFF

    if d["kind"] == FIFF.FIFFV_POINT_CARDINAL:
        return {FIFF.FIFFV_POINT_NASION: "nasion", FIFF.FIFFV_POINT_LPA: "lpa",
                FIFF.FIFFV_POINT_RPA: "rpa"}[d["ident"]]
    return "other"


def test_static_bad_channels_per_run_in_channels_tsv(bids_root: Path) -> None:
    truth = read_truth(bids_root)
    seen = []
    for run in RUNS:
        raw = _raw(bids_root, "01", run).load_data()
        bads = truth["subjects"]["01"]["runs"][run]["bads"]
        assert 1 <= len(bads) <= 2 and raw.info["bads"] == bads  # read from channels.tsv status
        seen.append(tuple(bads))
        # the planted bad channels are the noisiest of their type
        for kind in ("mag", "grad"):
            names = [raw.ch_names[i] for i in mne_picks(raw, kind)]
            sd = raw.get_data(picks=names).std(axis=1)
            bad = [n in bads for n in names]
            if any(bad):
                assert sd[bad].min() > 3 * np.median(sd)
    assert seen[0] != seen[1]  # each run its own


def mne_picks(raw, kind: str) -> np.ndarray:
    import mne

    return mne.pick_types(raw.info, meg=kind, exclude=[])


def test_head_positions_per_run(bids_root: Path) -> None:
    import mne

    truth = read_truth(bids_root)
    for run in (1, 2):
        path = bids_root / truth["channels"]["head_pos"].format(subject="01", run=run)
        pos = mne.chpi.read_head_pos(path)
        trans = mne.chpi.head_pos_to_trans_rot_t(pos)
        # the .pos text format keeps 5 decimals
        np.testing.assert_allclose(trans[0][0], np.asarray(truth["subjects"]["01"]["dev_head_t"])[:3, 3],
                                   atol=1e-5)
        np.testing.assert_allclose(trans[1][0], np.asarray(truth["subjects"]["01"]["dev_head_t"])[:3, :3],
                                   atol=1e-4)


def test_head_positions_jitter_and_match_truth(bids_root: Path) -> None:
    truth = read_truth(bids_root)
    t1 = _raw(bids_root, "01").info["dev_head_t"]["trans"]
    t2 = _raw(bids_root, "02").info["dev_head_t"]["trans"]
    np.testing.assert_allclose(t1, truth["subjects"]["01"]["dev_head_t"], atol=1e-8)
    np.testing.assert_allclose(t2, truth["subjects"]["02"]["dev_head_t"], atol=1e-8)
    shift = np.linalg.norm(t1[:3, 3] - t2[:3, 3])
    assert 0.5e-3 < shift < 20e-3  # a few millimetres apart
    for t in (t1, t2):
        assert abs(t[2, 3] - 0.05) < 0.015


def test_events_tsv_matches_sti101_and_stimuli(bids_root: Path, stimuli: xr.Dataset) -> None:
    import mne

    file_to_cat = dict(zip(stimuli["file"].values, stimuli["category"].values))
    codes = {"famous": (5, 6, 7), "unfamiliar": (13, 14, 15), "scrambled": (17, 18, 19)}
    for sub in SUBJECTS:
        shown: list[str] = []
        for run in RUNS:
            raw = _raw(bids_root, sub, run)
            tsv = pd.read_csv(_path(bids_root, sub, run).copy().update(
                suffix="events", extension=".tsv").fpath, sep="\t")
            assert {"onset", "trigger", "stim_file", "trial_type", "sample"} <= set(tsv.columns)
            ev = mne.find_events(raw, stim_channel="STI101", mask=4096 + 256, mask_type="not_and",
                                 verbose="error")
            np.testing.assert_array_equal(ev[:, 2], tsv["trigger"].to_numpy())
            np.testing.assert_array_equal(ev[:, 0] - raw.first_samp, tsv["sample"].to_numpy())
            np.testing.assert_allclose(tsv["onset"], ev[:, 0] / raw.info["sfreq"], atol=1e-9)
            for trig, f in zip(tsv["trigger"], tsv["stim_file"]):
                assert trig in codes[file_to_cat[f]]
            # button presses are on STI101 too, in the bits ds000117 masks out
            unmasked = mne.find_events(raw, stim_channel="STI101", verbose="error")
            assert set(np.unique(unmasked[:, 2])) - set(tsv["trigger"]) <= {256, 4096}
            assert len(unmasked) > len(ev)
            # annotations read back by mne-bids carry the trial types
            assert list(raw.annotations.description) == list(tsv["trial_type"])
            shown += list(tsv["stim_file"])
            first = tsv["trigger"].isin([5, 13, 17])
            assert first.sum() == len(tsv) // 2
        # every stimulus twice per subject, over the runs
        counts = pd.Series(shown).value_counts()
        assert set(counts.index) == set(stimuli["file"].values) and (counts == 2).all()


def test_truth_json(bids_root: Path, small_config) -> None:
    truth = read_truth(bids_root)
    assert truth["trigger_delay"] == pytest.approx(0.0345)
    assert [e["region"] for e in truth["effects"]] == ["V1", "OFA", "FFA", "STS"]
    ffa = next(e for e in truth["effects"] if e["region"] == "FFA")
    assert ffa["labels"] == ["FFA-lh", "FFA-rh"] and ffa["feature"] == "layer"
    assert 0.13 <= ffa["latency"] <= 0.17
    v1 = next(e for e in truth["effects"] if e["region"] == "V1")
    # the drivers, in the terms of the rsa store's layer coords: V1 shallow, FFA deep
    for e in (v1, ffa):
        d = e["driver"]
        assert d["network"] == "mobilenet_v2" and d["weights"] == "imagenet"
        assert d["layer"] == f"mobilenet_v2/imagenet/{d['module']}"
        assert e["feature_key"] in truth["features"]  # the driver's code, (stimulus, component)
    assert v1["driver"]["depth"] < 0.2 < 0.7 < ffa["driver"]["depth"] <= 1.0
    assert set(truth["subjects"]) == set(SUBJECTS)
    assert len(truth["subjects"]["01"]["artefact_patterns"]["ecg"]) == 306
    assert truth["config"] == small_config.model_dump(mode="json")
    assert (bids_root / "derivatives/mfrs-simulation/dataset_description.json").exists()


def test_artefacts_leak_into_meg(bids_root: Path) -> None:
    raw = _raw(bids_root, "01").load_data()
    mags = raw.copy().pick("mag").get_data()
    ecg = raw.get_data(["EEG063"])[0]
    veog = raw.get_data(["EEG062"])[0]

    def best_r(ref: np.ndarray) -> float:
        z = (mags - mags.mean(1, keepdims=True)) / mags.std(1, keepdims=True)
        r = (ref - ref.mean()) / ref.std()
        return float(np.abs(z @ r / r.size).max())

    # heart and blinks show up in the magnetometers (ICA has something to find)
    assert best_r(ecg) > 0.3
    assert best_r(veog) > 0.3
    assert np.abs(ecg).max() > 5e-4 and np.abs(veog).max() > 1e-4  # mV-scale ECG, 100s of uV blinks
    psd = raw.compute_psd(picks="mag", fmin=40, fmax=60, verbose="error")
    p = psd.get_data().mean(0)
    f = psd.freqs
    assert p[np.argmin(abs(f - 50))] > 10 * np.median(p)  # line noise at 50 Hz


def test_planted_responses_recovered_by_mne(bids_root: Path, subjects_dir: Path) -> None:
    """An independent, plain MNE analysis finds V1 and FFA responding at their latencies, to
    faces and scrambled alike (the planted drive is the same for every category)."""
    import mne

    raw = _both_runs(bids_root).filter(None, 40.0, verbose="error")
    ev = mne.find_events(raw, stim_channel="STI101", mask=4096 + 256, mask_type="not_and",
                         verbose="error")
    ev[:, 0] += round(0.0345 * raw.info["sfreq"])
    ids = {"famous": [5, 6, 7], "unfamiliar": [13, 14, 15], "scrambled": [17, 18, 19]}
    epochs = mne.Epochs(raw, ev, {str(c): c for v in ids.values() for c in v}, -0.2, 0.6,
                        baseline=(-0.2, 0.0), picks="meg", preload=True, verbose="error")
    cov = mne.compute_covariance(epochs, tmax=0.0, method="empirical", verbose="error")
    bem = subjects_dir / "fsaverage" / "bem"
    src = mne.setup_source_space("fsaverage", "oct5", subjects_dir=subjects_dir, add_dist=False,
                                 verbose="error")
    fwd = mne.make_forward_solution(epochs.info, bem / "fsaverage-trans.fif", src,
                                    bem / "fsaverage-5120-bem-sol.fif", meg=True, eeg=False,
                                    verbose="error")
    inv = mne.minimum_norm.make_inverse_operator(epochs.info, fwd, cov, loose=0.2, depth=0.8,
                                                 verbose="error")
    labels = {lab.name: lab for lab in mne.read_labels_from_annot(
        "fsaverage", "aparc_sub", subjects_dir=subjects_dir, verbose="error")}

    def strength(cats: list[str], region: str, t: float) -> float:
        codes = [str(c) for cat in cats for c in ids[cat]]
        stc = mne.minimum_norm.apply_inverse(epochs[codes].average(), inv, 1 / 9, "dSPM",
                                             verbose="error")
        i = int(np.argmin(abs(stc.times - t)))
        return float(np.mean([np.abs(stc.in_label(labels[f"{region}-{h}"]).data[:, i - 2:i + 3]).mean()
                              for h in ("lh", "rh")]))

    # equal trial counts per side: dSPM grows with the square root of the number averaged
    for faces in (["famous"], ["unfamiliar"]):
        for region, latency in (("V1", 0.10), ("FFA", 0.17)):
            at = strength(faces, region, latency)
            assert 0.6 < at / strength(["scrambled"], region, latency) < 1.6
            assert at > 2 * strength(faces, region, -0.1)  # the region does respond


def test_deterministic_for_a_seed(tmp_path: Path, subjects_dir: Path, stimuli: xr.Dataset) -> None:
    from mfrs.demo.config import DemoDataConfig

    tiny = stimuli.isel(stimulus=[0, 1, 2, 8, 9, 10, 16, 17, 18])
    cfg = DemoDataConfig(n_subjects=1, n_runs=1, grid="ico4", region_size=12,
                         noise={"n_brain_sources": 40})
    a = generate_bids(tmp_path / "a", subjects_dir=subjects_dir, stimuli=tiny, config=cfg, weights=driver_weights(cfg))
    b = generate_bids(tmp_path / "b", subjects_dir=subjects_dir, stimuli=tiny, config=cfg, weights=driver_weights(cfg))
    c = generate_bids(tmp_path / "c", subjects_dir=subjects_dir, stimuli=tiny,
                      config=cfg.model_copy(update={"seed": 1}), weights=driver_weights(cfg))
    da, db, dc = (_raw(r).get_data() for r in (a, b, c))
    np.testing.assert_array_equal(da, db)
    assert da.shape != dc.shape or not np.allclose(da, dc)
    tsv = "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_events.tsv"
    assert (a / tsv).read_text() == (b / tsv).read_text()
    assert read_truth(a) == read_truth(b)


def test_rerun_skips_and_foreign_folder_refused(tmp_path: Path, bids_root: Path, subjects_dir: Path,
                                                stimuli: xr.Dataset, small_config) -> None:
    fif = bids_root / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_meg.fif"
    before = fif.stat().st_mtime_ns
    generate_bids(bids_root, subjects_dir=subjects_dir, stimuli=stimuli, config=small_config, weights=driver_weights(small_config))
    assert fif.stat().st_mtime_ns == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputDataError, match=r"is not empty and was not written by mfrs"):
        generate_bids(foreign, subjects_dir=subjects_dir, stimuli=stimuli, config=small_config, weights=driver_weights(small_config))
    assert (foreign / "notes.txt").exists()


def test_stimuli_without_file_coord_refused(tmp_path: Path, subjects_dir: Path,
                                            stimuli: xr.Dataset, small_config) -> None:
    with pytest.raises(InputDataError, match=r"the stimuli dataset has no 'file'"):
        generate_bids(tmp_path / "x", subjects_dir=subjects_dir,
                      stimuli=stimuli.drop_vars("file"), config=small_config, weights=driver_weights(small_config))


def test_planted_geometry_follows_the_driver_layers(tmp_path: Path, subjects_dir: Path,
                                                    stimuli: xr.Dataset) -> None:
    """Noise-free sensor patterns: V1 time -> its shallow driver's RDM; FFA time -> its deep one's.

    The oracle is scipy on the truth's driver codes: pattern dissimilarities at the planted
    latencies must rank stimulus pairs as the drivers' codes do.
    """
    import mne
    from scipy.spatial.distance import pdist
    from scipy.stats import spearmanr

    from mfrs.demo.config import DemoDataConfig

    quiet = DemoDataConfig(
        n_subjects=1, n_runs=1, grid="ico4", region_size=12,
        noise={"mag": 0.0, "grad": 0.0, "n_brain_sources": 0, "trial_variability": 0.0,
               "subject_latency_jitter": 0.0},
        artefacts={"ecg_meg_peak": 0.0, "eog_meg_peak": 0.0, "line_noise": 0.0},
        alpha={"amplitude": 0.0})
    root = generate_bids(tmp_path / "quiet", subjects_dir=subjects_dir, stimuli=stimuli,
                         config=quiet, weights=driver_weights(quiet))
    truth = read_truth(root)
    raw = _raw(root).load_data()
    tsv = pd.read_csv(_path(root, "01", "01").copy().update(suffix="events",
                                                           extension=".tsv").fpath, sep="\t")
    first = tsv[tsv["trigger"].isin([5, 13, 17])]
    meg = raw.get_data(picks="meg")
    grads = mne.pick_types(raw.info, meg="grad")
    sfreq = raw.info["sfreq"]
    order = [truth["stimuli"].index(f.split("/")[1].removesuffix(".bmp")) for f in first["stim_file"]]

    def patterns(latency: float) -> np.ndarray:
        at = (first["sample"].to_numpy() + round((0.0345 + latency) * sfreq))
        return meg[grads][:, at].T  # (stimulus, channel)

    feats = {k: np.asarray(v["values"])[order] for k, v in truth["features"].items()}
    drivers = {e["region"]: feats[e["feature_key"]] for e in truth["effects"]}
    v1 = spearmanr(pdist(patterns(0.100), "correlation"), pdist(drivers["V1"])).statistic
    ffa = spearmanr(pdist(patterns(0.170), "correlation"), pdist(drivers["FFA"])).statistic
    assert v1 > 0.4 and ffa > 0.4
    # and the other way round: each time follows its own driver more than the other one
    assert spearmanr(pdist(patterns(0.170), "correlation"), pdist(drivers["V1"])).statistic < ffa - 0.2
    assert spearmanr(pdist(patterns(0.100), "correlation"), pdist(drivers["FFA"])).statistic < v1 - 0.2


def test_alpha_rhythm_desynchronises_after_stimuli(bids_root: Path) -> None:
    """Occipital alpha (8-12 Hz) is strong and its envelope dips after stimulus onset."""
    import mne

    raw = _both_runs(bids_root)
    psd = raw.compute_psd(picks="grad", fmin=2, fmax=40, verbose="error")
    power = psd.get_data()
    f = psd.freqs
    alpha = power[:, (f >= 8) & (f <= 12)].mean(1) / power[:, (f >= 20) & (f <= 30)].mean(1)
    top = np.argsort(alpha)[-10:]
    best = mne.pick_types(raw.info, meg="grad")[top]
    # an alpha peak on some sensors (1/f alone gives the same ratio everywhere)
    assert alpha[top].mean() > 2 * np.median(alpha)
    posterior = np.array([raw.info["chs"][i]["loc"][1] for i in best])
    assert np.median(posterior) < 0.0  # behind the helmet centre (device y axis points forward)
    band = raw.copy().pick(best).filter(8.0, 12.0, verbose="error").apply_hilbert(envelope=True)
    ev = mne.find_events(raw, stim_channel="STI101", mask=4096 + 256, mask_type="not_and",
                         verbose="error")
    ev[:, 0] += round(0.0345 * raw.info["sfreq"])
    env = mne.Epochs(band, ev, None, -0.3, 0.8, baseline=None, verbose="error").get_data().mean((0, 1))
    times = np.linspace(-0.3, 0.8, env.size)
    base = env[(times > -0.25) & (times < 0.0)].mean()
    dip = env[(times > 0.35) & (times < 0.45)].mean()
    assert dip < 0.85 * base  # planted: 60 % less amplitude mid-window, diluted by noise
