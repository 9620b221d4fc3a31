"""Sensor sets of MEG channels: neighbourhoods (MNE's Neuromag-306 adjacency) and channel types.

Channel names are matched without spaces (``MEG 0111`` is ``MEG0111``).
Magnetometers (``mag``) are in T and planar gradiometers (``grad``) in T/m in the
``epochs`` store; :data:`SCALE` turns them into fT and fT/cm so that single
precision never meets 1e-26 squares (every RDM metric of one channel type is
unchanged up to a constant factor, and neighbourhoods never mix types).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mfrs.errors import InputDataError

if TYPE_CHECKING:
    from scipy import sparse

__all__ = ["SensorSets", "sensor_sets", "ADJACENCY", "SCALE", "sensor_positions", "gradiometer_orientation"]

log = logging.getLogger(__name__)

#: MNE's built-in adjacency of each channel type (``mne.channels.read_ch_adjacency``).
ADJACENCY = {"mag": "neuromag306mag", "grad": "neuromag306planar"}
#: Factor to the units the sensor RSA works in: T -> fT, T/m -> fT/cm.
SCALE = {"mag": 1e15, "grad": 1e13}


def _plain(name: str) -> str:
    return str(name).replace(" ", "")


@dataclass(frozen=True)
class SensorSets:
    """The sets of one sensor RSA: a label, kind, channel type and member channel indices per set."""

    labels: list[str]
    kind: list[str]  # "neighbourhood" or "channel_type"
    ch_type: list[str]
    members: list[np.ndarray]

    @property
    def sizes(self) -> np.ndarray:
        """Channels per set."""
        return np.array([m.size for m in self.members])


def sensor_sets(channels: list[str], ch_types: list[str], *, types: tuple[str, ...] = ("mag", "grad"),
                neighbourhoods: bool = True, channel_types: bool = True,
                adjacency: dict[str, tuple[sparse.spmatrix | sparse.sparray, list[str]]] | None = None) -> SensorSets:
    """Neighbourhood of every channel of ``types`` (itself and its adjacent channels) and one set per type.

    Parameters
    ----------
    channels, ch_types : list of str
        The channels usable in every subject, with their MNE channel types.
    adjacency : dict, optional
        Type -> ``(sparse adjacency, names)``; default ``mne.channels.read_ch_adjacency``
        of :data:`ADJACENCY` (the diagonal is always included).

    Examples
    --------
    >>> s = sensor_sets(["MEG0111", "MEG0121", "MEG0113"], ["mag", "mag", "grad"], neighbourhoods=False)
    >>> s.labels, [m.tolist() for m in s.members]
    (['mag', 'grad'], [[0, 1], [2]])
    """
    ch_types = [str(t) for t in ch_types]
    index = {_plain(c): i for i, c in enumerate(channels)}
    labels, kind, kinds, members = [], [], [], []
    for t in types:
        of_type = [i for i, k in enumerate(ch_types) if k == t]
        if not of_type:
            continue
        if neighbourhoods:
            if adjacency is not None and t in adjacency:
                adj, names = adjacency[t]
            else:
                import mne

                adj, names = mne.channels.read_ch_adjacency(ADJACENCY[t])
            adj = adj.tocsr()
            names = [_plain(n) for n in names]
            row_of = {n: r for r, n in enumerate(names)}
            missing = [channels[i] for i in of_type if _plain(channels[i]) not in row_of]
            if len(missing) == len(of_type):
                raise InputDataError(f"sensor RSA: no {t} channel of epochs ({channels[of_type[0]]}, ...) is in "
                                     f"MNE's {ADJACENCY[t]} adjacency; set neighbourhoods: false for other "
                                     "systems than the Neuromag/Elekta/MEGIN 306-channel MEG")
            if missing:
                log.warning("sensor RSA: %d %s channels are not in %s and have no neighbourhood: %s", len(missing),
                            t, ADJACENCY[t], ", ".join(missing[:5]))
            for i in of_type:
                row = row_of.get(_plain(channels[i]))
                if row is None:
                    continue
                near = [index[names[j]] for j in adj[[row]].nonzero()[1] if names[j] in index]
                members.append(np.array(sorted({i, *near}), dtype=np.int64))
                labels.append(str(channels[i]))
                kind.append("neighbourhood")
                kinds.append(t)
        if channel_types:
            members.append(np.array(of_type, dtype=np.int64))
            labels.append(t)
            kind.append("channel_type")
            kinds.append(t)
    if not labels:
        raise InputDataError(f"sensor RSA: epochs has no channel of types {list(types)} (it has "
                             f"{sorted(set(ch_types))}); set `ch_types` in the sensor_rsa config")
    return SensorSets(labels, kind, kinds, members)


def gradiometer_orientation(name: str) -> str:
    """``grad1``/``grad2``: Neuromag planar gradiometers end in 2 (first) or 3 (second orientation).

    >>> gradiometer_orientation("MEG 0112"), gradiometer_orientation("MEG0113")
    ('grad1', 'grad2')
    """
    return {"2": "grad1", "3": "grad2"}.get(_plain(name)[-1], "grad")


def sensor_positions(channels: list[str]) -> np.ndarray:
    """2-D topomap positions ``(channel, 2)`` from MNE's ``Vectorview-all`` layout (NaN where unknown)."""
    import mne

    lay = mne.channels.read_layout("Vectorview-all")
    pos = {_plain(n): p[:2] + p[2:4] / 2 for n, p in zip(lay.names, lay.pos)}
    return np.array([pos.get(_plain(c), (np.nan, np.nan)) for c in channels], float)
