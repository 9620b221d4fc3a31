"""Results a scientist reads: the ``rsa`` store's answers in one line each.

Pure functions over the stores (no torch or MNE at import), and the ``ds.rsa``
accessor (registered by importing this package)::

    import mfrs.results as res
    ds = res.open_rsa()                                   # labelled rsa store
    ds.rsa.bilateral().rsa.peaks().sel(category="all")    # peak r, latency, best layer per region
    ds.sel(weights="imagenet").rsa.best_layer()           # best layer per (region, time)
    res.brain_rdm(region="FFA-lh", time=0.17)             # a brain RDM recomputed from sources
"""

from __future__ import annotations

from mfrs.results import accessor as _accessor  # noqa: F401 - registers ds.rsa
from mfrs.results.rdms import brain_rdm
from mfrs.results.stores import flat_layers, labelled, layer_ids, open_model_rdms, open_rsa
from mfrs.results.summary import (
    best_layer,
    bilateral,
    group_r,
    p_variables,
    peaks,
    significant,
    trained_vs_untrained,
)

__all__ = ["open_rsa", "open_model_rdms", "labelled", "layer_ids", "flat_layers", "group_r", "best_layer",
           "peaks", "bilateral", "significant", "trained_vs_untrained", "p_variables", "brain_rdm"]
