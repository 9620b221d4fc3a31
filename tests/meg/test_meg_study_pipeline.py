"""pipelines/study.yaml end to end on a small simulated set that carries ds000117's conventions.

The set: the project's study-shaped stimulus folder (``f/u/sNNN.bmp`` with an exclusion list,
6 per category, 2 excluded), recordings simulated at ds000117's 1100 Hz with its file names,
channel names and types (``MEG0113``..., STI101, EEG061-EEG064 typed in channels.tsv),
triggers (5/13/17 first presentations, repeats, button presses), events.tsv columns and
``stim_file`` values, per-run MaxFilter logs of static bad channels and head positions. Every
stimulus, excluded ones included, is presented, as in ds000117.

The pipeline is study.yaml with only the sizes below changed (2 cores): every other setting
(tSSS rules, 90 Hz low-pass, fastica 0.999, shrunk covariance, oct6, the five envelopes,
avg-mode 0.5 s windows from 0 s, four categories) is the study's.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from tests_support import REPO, driver_weights, run_mfrs

pytestmark = pytest.mark.slow

#: What the test changes in study.yaml, all of it sizes: fewer and smaller images, two of the
#: networks (the shipped ImageNet weights and an untrained seed), an ico-4 grid instead of ico-5,
#: epochs resampled to 220 Hz (1100 / 5: the study's 550-sample windows and 50-sample steps become
#: 110 and 10 samples, the same 7 windows in time), RSA in the template's 4 named regions per
#: hemisphere instead of all, 20 permutations instead of 1000.
SIZES = {
    "stimuli": {"size": 64},
    "meg": {"source": {"grid": "ico4"}, "epochs": {"resample_sfreq": 220.0}},
    "activations": {"networks": 2, "input_size": 64},
    "similarity": {"n_permutations": 20, "regions": ["V1-*", "OFA-*", "FFA-*", "STS-*"]},
}
N_PER_CATEGORY = 6


def _study_pipeline(path):
    spec = yaml.safe_load((REPO / "pipelines" / "study.yaml").read_text())
    cfg = spec["config"]
    cfg["stimuli"].update(SIZES["stimuli"])
    for key, value in SIZES["meg"].items():
        cfg["meg"][key] = {**cfg["meg"].get(key, {}), **value}
    nets = cfg["activations"]["networks"][: SIZES["activations"]["networks"]]
    cfg["activations"]["networks"] = [{**n, "input_size": SIZES["activations"]["input_size"]} for n in nets]
    cfg["similarity"].update(SIZES["similarity"])
    path.write_text(yaml.safe_dump(spec))
    return path, spec


@pytest.fixture(scope="module")
def study_run(tmp_path_factory, local_client):
    from mfrs.catalog import load_catalog
    from mfrs.demo.anatomy import build_template_subjects_dir
    from mfrs.demo.config import DemoDataConfig
    from mfrs.demo.simulate import generate_bids
    from mfrs.demo.study_stimuli import write_study_stimuli
    from mfrs.pipeline import run_stage
    from mfrs.stages import stimuli

    tmp = tmp_path_factory.mktemp("study")
    exclusions = write_study_stimuli(tmp / "stimuli", n_per_category=N_PER_CATEGORY, size=32)
    spec = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    # every stimulus is presented (ds000117 shows all 450): simulate from the unexcluded set
    spec["root"] = str(tmp / "presented")
    spec["entries"]["stimulus_images"] = {"kind": "images", "location": str(tmp / "stimuli" / "meg")}
    (tmp / "presented.yaml").write_text(yaml.safe_dump(spec))
    presented = load_catalog(tmp / "presented.yaml")
    run_stage(stimuli, config=stimuli.Config(size=32), catalog=presented, client=local_client)
    anatomy = build_template_subjects_dir(tmp / "subjects", grid="ico4", region_size=20)
    sim = DemoDataConfig(n_subjects=2, n_runs=2, sfreq=1100.0, grid="ico4", region_size=20, seed=5)
    bids = generate_bids(tmp / "ds000117", subjects_dir=anatomy, stimuli=presented.open("stimuli"),
                         config=sim, weights=driver_weights(sim))
    # the study's catalog: the same entries, pointed at this set, the exclusion list named
    spec["root"] = str(tmp / "data")
    spec["entries"]["stimulus_images"]["params"] = {"exclude": f"../{exclusions.name}"}
    spec["entries"]["ds000117"]["location"] = str(bids)
    spec["entries"]["anatomy"]["location"] = str(anatomy)
    (tmp / "catalog.yaml").write_text(yaml.safe_dump(spec))
    pipeline, pipe_spec = _study_pipeline(tmp / "study.yaml")
    proc = run_mfrs("run", str(pipeline), root=tmp / "data", timeout=3600,
                    env={"MFRS_CATALOG": str(tmp / "catalog.yaml")})
    (tmp / "mfrs-run.log").write_text(proc.stdout + proc.stderr)
    return {"catalog": load_catalog(tmp / "catalog.yaml"), "bids": bids, "log": proc.stdout + proc.stderr,
            "exclusions": exclusions, "pipeline": pipe_spec,
            "truth": json.loads((bids / "derivatives/mfrs-simulation/truth.json").read_text())}


def _excluded(run) -> set[str]:
    text = run["exclusions"].read_text().splitlines()
    return {line.split()[0] for line in text if line and not line.startswith("#")}


def test_the_set_carries_ds000117_conventions(study_run):
    import mne

    bids = study_run["bids"]
    base = bids / "sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01"
    info = mne.io.read_info(f"{base}_meg.fif", verbose="error")
    assert info["sfreq"] == 1100.0 and "STI101" in info["ch_names"] and "MEG0113" in info["ch_names"]
    assert len(mne.pick_types(info, meg=True, exclude=())) == 306
    channels = pd.read_csv(f"{bids}/sub-01/ses-meg/meg/sub-01_ses-meg_task-facerecognition_run-01_channels.tsv",
                           sep="\t").set_index("name")["type"]
    assert channels[["EEG061", "EEG062", "EEG063", "EEG064"]].tolist() == ["HEOG", "VEOG", "ECG", "MISC"]
    events = pd.read_csv(f"{base}_events.tsv", sep="\t")
    assert {"onset", "duration", "trigger", "stim_type", "stim_file"} <= set(events.columns)
    assert set(events["trigger"]) <= {5, 6, 7, 13, 14, 15, 17, 18, 19}
    assert events["stim_file"].str.fullmatch(r"meg/[fus]\d{3}\.bmp").all()
    # the excluded stimuli were shown too (the exclusion is the analysis', not the recording's)
    shown = {f[4:8] for r in (1, 2) for f in pd.read_csv(
        str(base).replace("run-01", f"run-{r:02d}") + "_events.tsv", sep="\t")["stim_file"]}
    assert _excluded(study_run) <= shown


def test_study_keeps_the_stimuli_left_after_exclusions(study_run):
    catalog = study_run["catalog"]
    stim = catalog.open("stimuli")
    excluded = _excluded(study_run)
    expected = [f"{p}{k:03d}" for p in "fus" for k in range(1, N_PER_CATEGORY + 1)]
    expected = [s for s in expected if s not in excluded]
    assert stim["stimulus"].values.tolist() == expected
    assert set(stim.attrs["excluded_stimuli"]) == excluded
    src = catalog.open("sources")
    assert src["stimulus"].values.tolist() == expected  # no subject lost any
    # the excluded stimuli's events were dropped, every other first presentation kept (events.tsv
    # read here is the oracle)
    for sub in ("01", "02"):
        meg = study_run["bids"] / f"sub-{sub}/ses-meg/meg"
        tables = [pd.read_csv(f, sep="\t") for f in sorted(meg.glob("*_events.tsv"))]
        first = pd.concat(tables)
        first = first[first["trigger"].isin([5, 13, 17])]
        kept = first[~first["stim_file"].str[4:8].isin(excluded)]
        assert len(kept) < len(first)
        assert src.attrs["subject_reports"][f"sub-{sub}"]["n_events"] == len(kept)
    assert src["signal"].values.tolist() == ["broadband", "theta", "alpha", "beta", "gamma", "high_gamma"]


def test_cleaning_found_the_artefacts_and_bad_channels_by_the_datasets_conventions(study_run):
    from mfrs.store import ZarrStore

    prov = ZarrStore.open(study_run["catalog"].path("sources")).provenance
    truth = study_run["truth"]["subjects"]
    assert prov["parameters"]["covariance"] == {"method": "shrunk", "tmax": 0.0, "cv": 3}
    assert prov["parameters"]["ica"]["method"] == "fastica" and prov["parameters"]["ica"]["n_components"] == 0.999
    for sub in ("01", "02"):
        cleaning = prov["cleaning"][f"sub-{sub}"]
        assert cleaning["ica"]["ecg_channels"] == ["EEG063"] and cleaning["ica"]["eog_channels"] == ["EEG061", "EEG062"]
        assert len(cleaning["ica"]["ecg"]) >= 1 and len(cleaning["ica"]["eog"]) >= 1
        for run, drawn in truth[sub]["runs"].items():
            assert cleaning["bad_channels"][str(int(run))] == drawn["bads"]
            assert "MaxFilter log" in cleaning["bad_channel_sources"][str(int(run))]
            assert cleaning["maxwell_runs"][str(int(run))]["reason"].startswith("Maxwell filter skipped")


def test_rsa_uses_the_study_windows(study_run):
    rsa = study_run["catalog"].open("rsa")
    # 0.5 s windows stepping by 50 samples of 1100 Hz from 0 s to 0.8 s: 7 windows, labelled by centre
    centres = 0.25 + np.arange(7) * 50 / 1100
    np.testing.assert_allclose(rsa["time"].values, centres, atol=1 / 220)
    assert set(rsa["category"].values) == {"all", "famous", "unfamiliar", "scrambled"}
    assert np.isfinite(rsa["r"].sel(category="all").values).any()
