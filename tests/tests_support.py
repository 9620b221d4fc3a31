"""Constants shared by test modules (conftest holds fixtures only)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
