"""Bad input gets one clear message naming the file, the entry or key, and the remedy."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfrs.catalog import load_catalog
from mfrs.errors import CatalogError, ConfigError, InputDataError

REPO = Path(__file__).resolve().parent.parent


def test_unknown_catalog_entry_suggests_the_close_one(catalog):
    with pytest.raises(CatalogError, match=r"no entry 'stimulus' .*Did you mean 'stimuli'"):
        catalog.entry("stimulus")


def test_malformed_yaml_names_the_file(tmp_path):
    bad = tmp_path / "data_catalog.yaml"
    bad.write_text("root: .\nentries:\n  stimuli: {kind: zarr, location: [unclosed\n")
    with pytest.raises(CatalogError, match=rf"{bad}.*not valid YAML"):
        load_catalog(bad)


def test_unknown_kind_names_entry_and_field(tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text("entries:\n  stimuli: {kind: zar, location: s.zarr}\n")
    with pytest.raises(CatalogError, match=r"entries\.stimuli\.kind"):
        load_catalog(bad)


def test_unknown_key_in_an_entry_is_refused(tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text("entries:\n  stimuli: {kind: zarr, location: s.zarr, locaton: t}\n")
    with pytest.raises(CatalogError, match=r"entries\.stimuli\.locaton.*Extra inputs"):
        load_catalog(bad)


def test_unset_variable_without_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MFRS_NOT_SET", raising=False)
    bad = tmp_path / "cat.yaml"
    bad.write_text("entries:\n  x: {kind: zarr, location: \"${MFRS_NOT_SET}/x\"}\n")
    with pytest.raises(CatalogError, match=r"entry 'x'.*MFRS_NOT_SET.*not set"):
        load_catalog(bad)


def test_missing_catalog_path(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "nope.yaml")


def test_missing_stimulus_folder_names_entry_and_path(tmp_path):
    from mfrs.stages.stimuli import list_stimuli

    cat = tmp_path / "cat.yaml"
    cat.write_text(f"entries:\n  stimulus_images: {{kind: images, location: {tmp_path}/missing}}\n")
    with pytest.raises(InputDataError, match=r"'stimulus_images'.*missing does not exist"):
        list_stimuli(load_catalog(cat).entry("stimulus_images"), None)


def test_wrongly_named_stimulus_file(tmp_path):
    from mfrs.stages.stimuli import list_stimuli

    folder = tmp_path / "meg"
    folder.mkdir()
    (folder / "f001.bmp").write_bytes(b"x")
    (folder / "face_two.bmp").write_bytes(b"x")
    cat = tmp_path / "cat.yaml"
    cat.write_text(f"entries:\n  stimulus_images: {{kind: images, location: {folder}}}\n")
    with pytest.raises(InputDataError, match=r"not named like ds000117 stimuli.*face_two\.bmp"):
        list_stimuli(load_catalog(cat).entry("stimulus_images"), None)


def test_unreadable_stimulus_file(tmp_path):
    from mfrs.stages.stimuli import StimulusSpec, load_stimulus_pixels

    path = tmp_path / "f001.bmp"
    path.write_bytes(b"BM this is not a bitmap")
    spec = StimulusSpec("f001", "famous", 1, "meg/f001.bmp", str(path))
    with pytest.raises(InputDataError, match=r"f001\.bmp is not a readable image"):
        load_stimulus_pixels(spec, size=8, seed=0)


def test_embedded_set_is_limited_to_fifty_per_category(catalog):
    from mfrs.stages.stimuli import list_stimuli

    with pytest.raises(InputDataError, match="50 images per category"):
        list_stimuli(catalog.entry("stimulus_images"), 60)


def test_unknown_stage_setting_suggests_the_field(tmp_path):
    from mfrs.pipeline import load_pipeline

    pipe = tmp_path / "p.yaml"
    pipe.write_text("stages: [stimuli]\nconfig:\n  stimuli: {sise: 32}\n")
    with pytest.raises(ConfigError, match=r"config\.stimuli\.sise.*Did you mean 'size'"):
        load_pipeline(pipe)


def test_unknown_stage_suggests_the_stage(tmp_path):
    from mfrs.pipeline import load_pipeline

    pipe = tmp_path / "p.yaml"
    pipe.write_text("stages: [stimulus]\n")
    with pytest.raises(ConfigError, match=r"unknown stage 'stimulus'.*Did you mean 'stimuli'"):
        load_pipeline(pipe)


def test_unknown_pipeline_lists_known_ones():
    from mfrs.pipeline import load_pipeline

    with pytest.raises(ConfigError, match=r"no pipeline 'demoo'.*Did you mean 'demo'"):
        load_pipeline("demoo")


def test_unknown_cluster_profile():
    from mfrs.cluster import load_profile

    with pytest.raises(ConfigError, match=r"no cluster profile 'slrum'.*known profiles: .*slurm"):
        load_profile("slrum")


def test_invalid_cluster_profile_value(tmp_path):
    from mfrs.cluster import load_profile

    bad = tmp_path / "p.yaml"
    bad.write_text("kind: slurm\ncores: zero\n")
    with pytest.raises(ConfigError, match=rf"invalid cluster profile {bad}:\n  slurm\.cores"):
        load_profile(str(bad))


def test_plan_that_cannot_fit_a_worker_is_refused():
    from mfrs.stage import Plan

    with pytest.raises(ConfigError, match=r"one task needs 8\.0 GiB but a worker has 2\.0 GiB"):
        Plan(stage="x", memory_per_task=8 * 2**30).check_fits(2 * 2**30)
