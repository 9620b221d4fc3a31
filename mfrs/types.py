"""Closed choices used across mfrs, as ``Literal`` aliases (one place, used in signatures)."""

from __future__ import annotations

from typing import Literal

__all__ = ["EntryKind", "Category", "ClusterKind", "CATEGORIES", "SIGNALS", "Signal"]

#: What a catalog entry holds.
EntryKind = Literal["zarr", "bids", "freesurfer", "images", "weights", "folder"]

#: Stimulus categories of ds000117, in study order.
Category = Literal["famous", "unfamiliar", "scrambled"]
CATEGORIES: tuple[Category, ...] = ("famous", "unfamiliar", "scrambled")

#: The MEG signals: broadband and the band-limited envelopes of reference.md §2.6.
Signal = Literal["broadband", "theta", "alpha", "beta", "gamma", "high_gamma"]
SIGNALS: tuple[Signal, ...] = ("broadband", "theta", "alpha", "beta", "gamma", "high_gamma")

#: Cluster profile kinds (cluster/*.yaml).
ClusterKind = Literal["local", "slurm", "address"]
