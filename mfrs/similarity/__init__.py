"""The similarity engine: RDMs, RSA, noise ceilings and permutation statistics.

Three layers (see style.md habit 2): ``_kernels`` (Numba loops), ``blocks`` and
``nulls`` (numpy blocks: one region block x time block), and the xarray-facing
functions exported here. Submodules load lazily so ``import mfrs.similarity`` does
not compile or import Numba.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "compute_rdms",
    "compare_rdms",
    "noise_ceiling",
    "permutation_test",
    "bootstrap",
    "compare_layer_sets",
    "compare_best_layers",
    "to_square",
    "to_pairs",
    "subset_pairs",
    "category_pairs",
    "pair_coords",
]

_WHERE = {
    "compute_rdms": "rdms",
    "compare_rdms": "compare",
    "noise_ceiling": "ceiling",
    "permutation_test": "stats",
    "bootstrap": "stats",
    "compare_layer_sets": "model_comparison",
    "compare_best_layers": "model_comparison",
    "to_square": "pairs",
    "to_pairs": "pairs",
    "subset_pairs": "pairs",
    "category_pairs": "pairs",
    "pair_coords": "pairs",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"mfrs.similarity.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mfrs.similarity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
