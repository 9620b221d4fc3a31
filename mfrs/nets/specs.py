"""Torch-free facts about the networks: input sizes and weight labels (stage configs validate with these)."""

from __future__ import annotations

import re

from mfrs.nets.types import NETWORKS, Network

__all__ = ["INPUT_SIZES", "MIN_INPUT_SIZES", "UNTRAINED", "parse_untrained"]

#: Default square input size (pixels) of each network: the reference feeds 224 px to all;
#: Inception-v3's native size is 299.
INPUT_SIZES: dict[Network, int] = {name: 224 for name in NETWORKS} | {"inception_v3": 299}

#: Smallest input size each network accepts.
MIN_INPUT_SIZES: dict[Network, int] = {name: 32 for name in NETWORKS} | {
    "inception_v3": 75, "facenet": 75, "sphereface20": 16,
}

UNTRAINED = re.compile(r"^untrained-seed(?P<seed>\d+)$")


def parse_untrained(label: str) -> int | None:
    """The seed of an ``untrained-seed<N>`` label, or None for a weights entry name.

    Examples
    --------
    >>> parse_untrained("untrained-seed3"), parse_untrained("weights_mobilenet_v2_imagenet")
    (3, None)
    """
    match = UNTRAINED.match(label)
    return int(match["seed"]) if match else None
