"""The faults of issue 10 on a copy of the finished demo, through the real `mfrs` command and stores:
damaged, missing and stale inputs, changed settings, a copied data root, plan counts."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from tests_support import REPO, run_mfrs

from mfrs.store import MARKER_DIR, ZarrStore


@pytest.fixture
def demo_copy(demo_run, tmp_path) -> Iterator[Path]:
    """A private copy of the finished demo's data root (the shared one is never damaged)."""
    root, _ = demo_run
    copy = tmp_path / "data"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(".mfrs-lock"))
    yield copy
    shutil.rmtree(copy, ignore_errors=True)  # GBs each: one copy on disk at a time


def _marks(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob(f"{MARKER_DIR}/*.json")}


def _rsa_unit_chunk(root: Path, subject: str) -> tuple[Path, str, str]:
    """A sources chunk of ``subject`` that the first rsa block reads: (file, chunk key, rsa unit key)."""
    rsa = ZarrStore.open(root / "rsa.zarr")
    unit = rsa.units()[0]
    src = xr.open_zarr(root / "sources.zarr")
    meta = json.loads((root / "sources.zarr" / "activity" / "zarr.json").read_text())
    chunks = dict(zip(src["activity"].dims, meta["chunk_grid"]["configuration"]["chunk_shape"]))
    vertex = int(np.flatnonzero(np.isin(src["region"].values, unit.labels["region"]))[0])
    index = {"subject": list(src["subject"].values).index(subject), "signal": 0, "stimulus": 0,
             "time": 0, "vertex": vertex // chunks["vertex"]}
    key = "activity/c/" + "/".join(str(index[d]) for d in src["activity"].dims)
    return root / "sources.zarr" / key, key, unit.key


def test_a_copied_root_resumes_with_nothing_to_do_and_plan_counts_per_unit(demo_copy):
    before = _marks(demo_copy)
    out = run_mfrs("demo", root=demo_copy).stdout
    assert "nothing to do" in out
    assert _marks(demo_copy) == before  # no unit rewritten, none re-marked
    plan = run_mfrs("plan", "demo", root=demo_copy).stdout
    counts = re.findall(r"^(\w+): (\d+) of (\d+) task\(s\) to run", plan, flags=re.M)
    assert {name for name, _, _ in counts} >= {"stimuli", "meg", "activations", "model_rdms", "similarity"}
    assert all(int(todo) == 0 for _, todo, _ in counts), plan
    assert ("meg", "0", "8") in counts  # epochs and sources, 4 subjects each


def test_a_corrupt_sources_chunk_is_named_verified_repaired_and_recomputed(demo_run, demo_copy):
    path, key, rsa_unit = _rsa_unit_chunk(demo_copy, "sub-02")
    content_before = _mark(demo_copy / "sources.zarr", "subject=sub-02.json")["content"]
    raw = bytearray(path.read_bytes())
    raw[40:56] = bytes(b ^ 0xFF for b in raw[40:56])  # 16 bytes flipped
    path.write_bytes(bytes(raw))
    (demo_copy / "rsa.zarr" / MARKER_DIR / ZarrStore.open(demo_copy / "rsa.zarr").units()[0].marker_name).unlink()

    run = run_mfrs("run", "demo", "--stages", "similarity", root=demo_copy, check=False)
    assert run.returncode == 4, run.stderr
    assert f"{demo_copy}/sources.zarr (catalog entry 'sources'): chunk {key} of unit subject=sub-02 is corrupt" \
        in run.stderr and rsa_unit in run.stderr

    verify = run_mfrs("status", "--verify", root=demo_copy, check=False)
    assert verify.returncode == 2
    assert f"damaged: sources ({demo_copy}/sources.zarr) unit subject=sub-02: chunk {key} is corrupt" in verify.stdout
    assert verify.stdout.count("damaged:") == 1
    repair = run_mfrs("status", "--verify", "--repair", root=demo_copy)
    assert "unmarked, `mfrs run` recomputes it" in repair.stdout

    before = _marks(demo_copy)
    run_mfrs("run", "demo", "--stages", "meg,similarity", root=demo_copy)
    after = _marks(demo_copy)
    changed = {k for k in after if after[k] != before.get(k)}
    # the damaged subject is recomputed, and nothing else of the MEG stores
    assert {k for k in changed if not k.startswith("rsa.zarr/")} == {
        "epochs.zarr/.mfrs-complete/subject=sub-02.json", "sources.zarr/.mfrs-complete/subject=sub-02.json"}
    rsa = ZarrStore.open(demo_copy / "rsa.zarr")
    unit_marks = {f"rsa.zarr/{MARKER_DIR}/{u.marker_name}" for u in rsa.units()}
    if _mark(demo_copy / "sources.zarr", "subject=sub-02.json").get("content") == content_before:
        # the same numbers again: only the rsa block never computed (and the final merge) ran
        assert changed & unit_marks == {f"rsa.zarr/{MARKER_DIR}/{rsa.units()[0].marker_name}"}
    else:  # other bits (a recomputed input): every rsa block computed from it was stale and recomputed
        assert unit_marks <= changed
    assert rsa.missing_units() == [] and rsa.is_final_complete()
    clean_root, _ = demo_run  # an independent clean run of the same pipeline
    fixed, clean = xr.open_zarr(demo_copy / "sources.zarr"), xr.open_zarr(clean_root / "sources.zarr")
    _assert_subject_close(fixed["activity"], clean["activity"], "sub-02")
    fixed, clean = xr.open_zarr(demo_copy / "rsa.zarr"), xr.open_zarr(clean_root / "rsa.zarr")
    # a recomputed MEG subject equals the clean one to ~1e-6 (not bit for bit: see the meg stage tests), which
    # moves a few Spearman ranks: r within 1e-4
    for name in ("r", "noise_ceiling_lower", "noise_ceiling_upper"):
        np.testing.assert_allclose(fixed[name].values, clean[name].values, atol=1e-4, err_msg=name)


def _assert_subject_close(got: xr.DataArray, want: xr.DataArray, subject: str) -> None:
    """One subject's sources against the clean run's, one signal at a time (the demo's are GBs)."""
    for signal in want["signal"].values:
        ref = want.sel(subject=subject, signal=signal).values
        np.testing.assert_allclose(got.sel(subject=subject, signal=signal).values, ref, rtol=1e-5,
                                   atol=1e-6 * float(np.nanmax(np.abs(ref))), err_msg=f"{subject} {signal}")


def _mark(store: Path, name: str) -> dict:
    return json.loads((store / MARKER_DIR / name).read_text())


def test_missing_chunks_and_unmarked_subjects_are_refused_at_the_door(demo_copy):
    path, key, _ = _rsa_unit_chunk(demo_copy, "sub-03")
    path.unlink()
    status = run_mfrs("status", "--json", root=demo_copy).stdout
    rows = {r["entry"]: r for r in json.loads(status)}
    assert rows["sources"]["state"] == "incomplete"
    assert rows["sources"]["problems"] == {"subject=sub-03": f"chunk {key} is missing"}

    (demo_copy / "sources.zarr" / MARKER_DIR / "subject=sub-04.json").unlink()
    run = run_mfrs("run", "demo", "--stages", "similarity", root=demo_copy, check=False)
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: stage 'similarity' cannot read store {demo_copy}/sources.zarr (catalog "
                                 "entry 'sources'): 2 of 4 unit(s) are not complete: ")
    assert f"subject=sub-03: chunk {key} is missing" in run.stderr
    assert "subject=sub-04: not marked complete" in run.stderr
    assert "`mfrs run <pipeline> --stages meg`" in run.stderr and "Traceback" not in run.stderr


def test_results_follow_a_recomputed_input(demo_run, demo_copy):
    sources = ZarrStore.open(demo_copy / "sources.zarr")
    unit = next(u for u in sources.units() if u.labels["subject"] == ["sub-02"])
    data = sources.dataset().isel(unit.region).drop_vars(["category", "condition", "file", "hemi", "region",
                                                          "fs_vertex", "ch_type"], errors="ignore")
    noise = np.random.default_rng(0).standard_normal(data["activity"].shape, dtype=np.float32)
    changed = data.assign(activity=data["activity"] + float(data["activity"].std()) * noise).load()
    sources.write_unit(unit, changed)  # sub-02's sources recomputed with other numbers

    status = json.loads(run_mfrs("status", "--json", "--stages", "similarity", root=demo_copy).stdout)[0]
    assert status["state"] == "stale" and status["complete"] == 0
    assert all(why.startswith("stale: input") and "sources.zarr" in why for why in status["problems"].values())
    plan = run_mfrs("plan", "demo", "--stages", "similarity", root=demo_copy).stdout
    n = status["tasks"]  # every block and the final task
    assert f"similarity: {n} of {n} task(s) to run" in plan

    run_mfrs("run", "demo", "--stages", "similarity", root=demo_copy)
    assert json.loads(run_mfrs("status", "--json", "--stages", "similarity", root=demo_copy).stdout)[0][
        "state"] == "complete"
    clean = xr.open_zarr(demo_run[0] / "rsa.zarr")["r"]
    redone = xr.open_zarr(demo_copy / "rsa.zarr")["r"]
    for subject in ("sub-01", "sub-03", "sub-04"):  # their inputs did not change: the same numbers
        np.testing.assert_array_equal(redone.sel(subject=subject).values, clean.sel(subject=subject).values)
    for subject in ("sub-02", "group"):  # computed from the new sub-02
        assert not np.allclose(redone.sel(subject=subject).values, clean.sel(subject=subject).values,
                               equal_nan=True)


def _pipeline(tmp_path: Path, exec: dict | None = None, **similarity) -> Path:
    pipe = yaml.safe_load((REPO / "pipelines" / "demo.yaml").read_text())
    pipe["config"]["similarity"].update(similarity)
    if exec:
        pipe["config"]["similarity"]["exec"] = exec
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(pipe))
    return path


def test_execution_settings_resume_science_parameters_are_named(demo_copy, tmp_path):
    before = _marks(demo_copy)
    execution = _pipeline(tmp_path, exec={"time_batch": 3, "worker_memory": "3GB"})
    run_mfrs("run", str(execution), "--stages", "similarity", root=demo_copy)
    assert _marks(demo_copy) == before

    science = _pipeline(tmp_path, n_permutations=60, exec={"time_batch": 3})
    status = run_mfrs("status", str(science), "--stages", "similarity", root=demo_copy).stdout
    assert "other parameters" in status and "n_permutations: 50 → 60" in status and "time_batch" not in status
    plan = run_mfrs("plan", str(science), "--stages", "similarity", root=demo_copy).stdout
    assert "rsa was made with other parameters (n_permutations: 50 → 60)" in plan
    run = run_mfrs("run", str(science), "--stages", "similarity", root=demo_copy, check=False)
    assert run.returncode == 2
    assert "was made with other parameters: n_permutations: 50 → 60" in run.stderr and "--overwrite" in run.stderr
    assert _marks(demo_copy) == before


def test_a_truncated_meg_cache_file_is_discarded_and_rebuilt(demo_run, demo_copy):
    cached = next((demo_copy / "meg-work").rglob("sub-01-epo.fif"))
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    run = run_mfrs("run", "demo", "--stages", "meg", root=demo_copy)
    log = run.stdout + run.stderr
    assert "sub-01 cache discarded and rebuilt" in log and str(cached) in " ".join(log.split())
    _assert_subject_close(xr.open_zarr(demo_copy / "sources.zarr")["activity"],
                          xr.open_zarr(demo_run[0] / "sources.zarr")["activity"], "sub-01")
