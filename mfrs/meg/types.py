"""Closed choices and fixed tables of the MEG stage (ds000117 conventions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = [
    "Band",
    "BANDS",
    "Category",
    "CovMethod",
    "EcgMethod",
    "IcaMethod",
    "InverseMethod",
    "Orientation",
    "Presentation",
    "SensorType",
    "SourceSpacing",
    "TargetGrid",
    "TRIGGERS",
    "GRID_VERTICES",
    "signal_names",
]

Band = Literal["theta", "alpha", "beta", "gamma", "high_gamma"]
Category = Literal["famous", "unfamiliar", "scrambled"]
Presentation = Literal["first", "immediate", "delayed"]
InverseMethod = Literal["MNE", "dSPM", "sLORETA"]
IcaMethod = Literal["fastica", "picard", "infomax"]
EcgMethod = Literal["ctps", "correlation"]
CovMethod = Literal["empirical", "shrunk", "diagonal_fixed", "ledoit_wolf", "oas"]
Orientation = Literal["norm", "normal"]
SensorType = Literal["meg", "grad", "mag"]
SourceSpacing = Literal["oct5", "oct6", "ico4", "ico5"]
TargetGrid = Literal["ico4", "ico5"]

#: Pass bands (Hz) of the optional Hilbert envelopes (reference.md §2.6).
BANDS: dict[str, tuple[float, float]] = {
    "theta": (4.0, 8.0),
    "alpha": (8.0, 12.0),
    "beta": (12.0, 30.0),
    "gamma": (30.0, 55.0),
    "high_gamma": (55.0, 90.0),
}

#: ds000117 STI101 trigger codes: category -> presentation -> code.
TRIGGERS: dict[str, dict[str, int]] = {
    "famous": {"first": 5, "immediate": 6, "delayed": 7},
    "unfamiliar": {"first": 13, "immediate": 14, "delayed": 15},
    "scrambled": {"first": 17, "immediate": 18, "delayed": 19},
}

#: Vertices per hemisphere of the fsaverage icosahedral grids (nested: ico4 ⊂ ico5).
GRID_VERTICES: dict[str, int] = {"ico4": 2562, "ico5": 10242}


def signal_names(bands: Sequence[str]) -> list[str]:
    """The ``signal`` coordinate: ``broadband`` then the requested bands in table order."""
    return ["broadband", *[b for b in BANDS if b in bands]]
