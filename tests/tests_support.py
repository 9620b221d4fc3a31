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
