"""The whole study on paper: `mfrs plan study --shape study` without any data, checked against reference.md's counts."""

from __future__ import annotations

import json
import math

from tests_support import run_mfrs


def test_study_on_paper_needs_no_data_and_prints_every_field(tmp_path):
    empty = tmp_path / "no-data"  # no catalog outputs, no BIDS set, no stimuli
    out = run_mfrs("plan", "study", "--shape", "study", "--nodes", "1", "--nodes", "50", "--searchlight",
                   root=empty).stdout
    assert not empty.exists() or not any(empty.iterdir())  # nothing was read or written
    for field in ("tasks", "memory/task", "reads", "writes", "core-hours", "wall time on 1 node(s)",
                  "wall time on 50 node(s)"):
        assert field in out, field
    assert "16 subjects, 6 signals, 7 networks, 448 regions x 1101 samples" in out
    assert "1000 permutations" in out
    assert "searchlight" in out and "20,484 centres" in out  # the optional row


def test_study_on_paper_counts_match_the_reference(tmp_path):
    rows = json.loads(run_mfrs("plan", "study", "--shape", "study", "--json", "--nodes", "1", "--nodes", "50",
                               root=tmp_path / "none").stdout)
    stages = {s["stage"]: s for s in rows["stages"]}
    # reference.md §5: 428 stimuli x 20,484 vertices x 1101 samples float32, 16 subjects x 6 signals = 3.7 TB
    assert math.isclose(stages["meg"]["writes"], 16 * 6 * 428 * 20484 * 1101 * 4)
    assert round(stages["meg"]["writes"] / 1e12, 1) == 3.7
    assert stages["meg"]["tasks"] == 2 * 16
    # blocks of 4 regions x 128 samples (the stage's default: the MEG stage's time chunk) over 448 x 1101
    assert stages["similarity"]["tasks"] == math.ceil(448 / 4) * math.ceil(1101 / 128)
    for s in rows["stages"]:
        one, fifty = s["wall_seconds"]["1"], s["wall_seconds"]["50"]
        assert s["core_hours"] > 0 and s["memory_per_task"] > 0
        # one core per job in cluster/slurm.yaml: one node runs every task in turn
        assert math.isclose(one, s["tasks"] * s["seconds_per_task"] / rows["cores_per_node"])
        assert fifty <= one
    # 50 one-core nodes: the 16 cleanings at once, then the 16 sources; similarity in waves of 50 blocks
    assert math.isclose(stages["meg"]["wall_seconds"]["50"], 2 * stages["meg"]["seconds_per_task"])
    assert math.isclose(stages["similarity"]["wall_seconds"]["50"],
                        math.ceil(1008 / 50) * stages["similarity"]["seconds_per_task"])
