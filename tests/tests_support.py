"""Constants and helpers shared by test modules (conftest holds fixtures only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MFRS = [sys.executable, "-m", "mfrs.cli"]


def run_mfrs(*args: str, root: Path, check: bool = True, timeout: float = 900,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``mfrs`` command in a subprocess with its data root at ``root``."""
    full_env = {**os.environ, "MFRS_DATA_ROOT": str(root), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run([*MFRS, *args], cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"mfrs {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_complete_store(ds, path: Path, unit_dim: str):
    """Write ``ds`` as a finished mfrs store (one unit per ``unit_dim`` label, every unit marked),
    as the stage that makes it would: stages read their inputs only through the store layer."""
    from mfrs.provenance import make_provenance
    from mfrs.store import ZarrStore

    store = ZarrStore.create(path, ds.chunk({unit_dim: 1}), unit_dims=(unit_dim,), overwrite=True,
                             provenance=make_provenance(stage="test", config={}, inputs={}, seed=0))
    for unit in store.units():
        store.write_unit(unit, ds.isel(unit.region))
    return store


def peak_rss() -> int:
    """Peak RSS of this process image in bytes (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the forking parent's peak into it across ``exec``,
    so a dask worker spawned by a big process would report its parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def driver_weights(config) -> dict:
    """The ``weights`` argument of ``generate_bids`` for ``config``: its driving networks' entries in the
    repository's catalog (as the demo_data stage passes them)."""
    from mfrs.catalog import load_catalog
    from mfrs.stages.demo_data import weights_sources

    return weights_sources(config, load_catalog())
