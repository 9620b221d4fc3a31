"""The study's stimulus exclusions: a list file of the stimulus_images entry, and `mfrs plan study`."""

from __future__ import annotations

import pytest
import yaml
from tests_support import REPO, run_mfrs


def _study_set(tmp_path):
    """The project's embedded study-shaped stimulus folder (450 images, 22 excluded) in a catalog."""
    from mfrs.demo.study_stimuli import write_study_stimuli

    exclusions = write_study_stimuli(tmp_path / "ds000117" / "stimuli", size=16)
    folder = exclusions.parent / "meg"
    spec = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    spec["root"] = str(tmp_path / "data")
    spec["entries"]["stimulus_images"] = {"kind": "images", "location": str(folder),
                                          "params": {"exclude": "../exclusions.txt"}}
    (tmp_path / "cat.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "cat.yaml", folder


def test_plan_study_reports_428_with_the_study_split(tmp_path):
    cat, _ = _study_set(tmp_path)
    out = run_mfrs("plan", "study", "--stages", "stimuli", root=tmp_path / "data",
                   env={"MFRS_CATALOG": str(cat)}).stdout
    assert "428 stimuli at 224x224 after exclusions: [0:130] famous, [130:280] unfamiliar, " \
           "[280:428] scrambled" in out, out


def test_listed_stimuli_are_left_out_in_study_order(tmp_path):
    from mfrs.catalog import load_catalog
    from mfrs.stages.stimuli import exclusion_list, list_stimuli

    cat, folder = _study_set(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{p}{k:03d}.bmp" for p in "fus" for k in range(1, 151))  # ds000117's 450 file names
    # the list file, read independently: 20 famous and 2 scrambled ids with their reasons
    listed = [line.split(" ", 1) for line in (folder.parent / "exclusions.txt").read_text().splitlines()
              if line and not line.startswith("#")]
    unmatched = {sid for sid, why in listed if why == "identity not matched to CelebA"}
    missing = {sid for sid, why in listed if why == "missing in a subject's recordings"}
    assert len(unmatched) == 20 and all(s[0] == "f" for s in unmatched)
    assert len(missing) == 2 and all(s[0] == "s" for s in missing)
    entry = load_catalog(cat).entry("stimulus_images")
    dropped = exclusion_list(entry, ["u007"])
    assert set(dropped) == unmatched | missing | {"u007"}
    assert dropped["u007"].startswith("excluded by the stimuli stage config")
    ids = [s.stimulus for s in list_stimuli(entry, None, ["u007"])]
    expected = [f"{p}{k:03d}" for p in "fus" for k in range(1, 151)]
    expected = [s for s in expected if s not in {*unmatched, *missing, "u007"}]
    assert ids == expected and len(ids) == 427


def test_a_bad_exclusion_list_is_named(tmp_path):
    from mfrs.catalog import load_catalog
    from mfrs.errors import InputDataError
    from mfrs.stages.stimuli import list_stimuli

    cat, folder = _study_set(tmp_path)
    (folder.parent / "exclusions.txt").write_text("f001\nface_12\n")
    with pytest.raises(InputDataError, match=r"exclusions\.txt:2: 'face_12' is not a stimulus id"):
        list_stimuli(load_catalog(cat).entry("stimulus_images"), None)
    (folder.parent / "exclusions.txt").write_text("f151\n")
    with pytest.raises(InputDataError, match=r"names stimuli it does not have: f151"):
        list_stimuli(load_catalog(cat).entry("stimulus_images"), None)
