"""The study's stimulus exclusions: a list file of the stimulus_images entry, and `mfrs plan study`."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from tests_support import REPO, run_mfrs

#: the study-shaped exclusions: 20 famous faces not matched to CelebA, 2 scrambled images
#: missing in a subject's recordings (reference.md §1: 428 remain)
UNMATCHED = [f"f{k:03d}" for k in range(3, 150, 7)][:20]
MISSING = ["s041", "s122"]


def _study_set(tmp_path):
    folder = tmp_path / "ds000117" / "stimuli" / "meg"
    folder.mkdir(parents=True)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8))
    for prefix in "fus":
        for k in range(1, 151):
            img.save(folder / f"{prefix}{k:03d}.bmp")
    (folder.parent / "exclusions.txt").write_text(
        "# stimuli excluded for every subject\n"
        + "".join(f"{s} identity not matched to CelebA\n" for s in UNMATCHED)
        + "".join(f"{s}  # missing in one subject\n" for s in MISSING))
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

    cat, _ = _study_set(tmp_path)
    entry = load_catalog(cat).entry("stimulus_images")
    dropped = exclusion_list(entry, ["u007"])
    assert dropped["f003"] == "identity not matched to CelebA" and "s041" in dropped
    assert dropped["u007"].startswith("excluded by the stimuli stage config")
    ids = [s.stimulus for s in list_stimuli(entry, None, ["u007"])]
    expected = [f"{p}{k:03d}" for p in "fus" for k in range(1, 151)]
    expected = [s for s in expected if s not in {*UNMATCHED, *MISSING, "u007"}]
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
