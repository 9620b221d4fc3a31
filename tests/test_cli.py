"""The `mfrs` command as a user and a scheduler see it: output, status, resume, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests_support import MFRS
from tests_support import run_mfrs as _mfrs


@pytest.fixture(scope="module")
def demo_root(demo_run):
    return demo_run


def test_demo_builds_the_stimuli_store_and_says_where(demo_root):
    root, first = demo_root
    assert f"stimuli: {root}/stimuli.zarr" in first.stdout
    assert "stimulus=150" in first.stdout
    assert "nothing to do" not in first.stdout


def test_status_shows_it_complete(demo_root):
    root, _ = demo_root
    out = _mfrs("status", "--json", root=root).stdout
    import json

    rows = {r["entry"]: r for r in json.loads(out)}
    assert rows["stimuli"]["state"] == "complete" and rows["stimuli"]["missing"] == []


def test_second_demo_does_no_work_and_says_so(demo_root):
    root, _ = demo_root
    marks = sorted((root / "stimuli.zarr" / ".mfrs-complete").iterdir())
    before = [p.stat().st_mtime_ns for p in marks]
    second = _mfrs("demo", root=root)
    assert "nothing to do" in second.stdout
    assert [p.stat().st_mtime_ns for p in marks] == before


def test_plan_gives_sizes(demo_root):
    root, _ = demo_root
    out = _mfrs("plan", "demo", "--stages", "stimuli", root=root).stdout
    assert "stimuli: 0 of 3 task(s) to run" in out and "writes stimuli" in out


def test_user_error_is_one_line_and_exit_code_2(tmp_path):
    proc = _mfrs("run", "nosuchpipeline", root=tmp_path, check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: no pipeline 'nosuchpipeline'")
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = _mfrs("--debug", "run", "nosuchpipeline", root=tmp_path, check=False)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_malformed_catalog_exit_code(tmp_path):
    bad = tmp_path / "cat.yaml"
    bad.write_text("entries: [oops\n")
    proc = _mfrs("--catalog", str(bad), "status", root=tmp_path, check=False)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_every_command():
    out = subprocess.run([*MFRS, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("demo", "run", "plan", "status", "catalog"):
        assert command in out


def test_import_mfrs_loads_no_heavy_dependency():
    code = ("import sys, mfrs; heavy = {'torch', 'mne', 'numba', 'sklearn', 'matplotlib', 'dask', "
            "'distributed', 'xarray', 'zarr'}; print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plan_before_any_run_sizes_what_it_can(tmp_path):
    out = _mfrs("plan", "demo", root=tmp_path).stdout
    assert "stimuli: 3 of 3 task(s) to run" in out
    assert "similarity: not sized yet" in out and "run the 'meg' stage first" in out


def test_plan_warns_when_another_pipeline_is_sized_on_the_demo_data(catalog):
    from mfrs.cli import _demo_data_warning
    from mfrs.demo.simulate import TRUTH_FILE
    from mfrs.pipeline import load_pipeline

    study, demo = load_pipeline("study"), load_pipeline("demo")
    assert _demo_data_warning(catalog, study) is None  # no data yet: nothing to warn about
    truth = catalog.path("ds000117") / TRUTH_FILE      # what the demo's simulation leaves behind
    truth.parent.mkdir(parents=True)
    truth.write_text("{}")
    warning = _demo_data_warning(catalog, study)
    assert warning and "demo's simulated set" in warning and "not study's real data" in warning
    assert str(catalog.path("ds000117")) in warning
    assert _demo_data_warning(catalog, demo) is None   # the demo is meant to run on it
