"""The package type-checks: mypy with the settings of ``[tool.mypy]`` in pyproject.toml (issue 11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_mfrs_type_checks() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=REPO, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, f"mypy found type errors:\n{proc.stdout[-8000:]}{proc.stderr[-2000:]}"
