"""The similarity engine: RDMs, RSA, noise ceilings and permutation statistics.

Three layers (see style.md habit 2), as flox keeps aggregations / core / xarray:
``_kernels`` (Numba loops), ``blocks``, ``nulls`` and ``fused`` (numpy blocks: one region
block x time block; every p-value in ``inference``), and the one xarray-facing module
``mfrs.similarity.xarray``, whose functions are exported here. Submodules load lazily so ``import mfrs.similarity`` does
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
    "compute_rdms": "xarray",
    "compare_rdms": "xarray",
    "noise_ceiling": "xarray",
    "permutation_test": "xarray",
    "bootstrap": "xarray",
    "compare_layer_sets": "model_comparison",
    "compare_best_layers": "model_comparison",
    "to_square": "xarray",
    "to_pairs": "xarray",
    "subset_pairs": "xarray",
    "category_pairs": "xarray",
    "pair_coords": "xarray",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"mfrs.similarity.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'mfrs.similarity' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
