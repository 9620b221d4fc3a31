"""What MaxFilter left per run: static bad channels from its log (ds000117's derivatives).

MaxFilter prints one line per run such as ``Static bad channels (2): 0813 1143``: logical
channel numbers of the VectorView, which the FIF files name ``MEG0813`` (or ``MEG 0813``).
The study read them from each run's log (``run_NN_sss_log.txt``) and passed them to the
Maxwell filter; the catalog entry ``ds000117`` names these files with ``params.bad_channels``.
"""

from __future__ import annotations

import re
from pathlib import Path

from mfrs.errors import InputDataError

__all__ = ["parse_static_bads", "read_static_bads"]

_LINE = re.compile(r"^\s*static bad channels\b[^:]*:(?P<channels>.*)$", re.IGNORECASE)


def parse_static_bads(text: str) -> list[str]:
    """The channel numbers of a MaxFilter log's ``Static bad channels`` lines, in order, once each.

    Examples
    --------
    >>> parse_static_bads("maxfilter 2.2\\nStatic bad channels (2): 813 1143\\n")
    ['0813', '1143']
    >>> parse_static_bads("no bad channel line")
    []
    """
    out: list[str] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        for token in m["channels"].split():
            number = token.upper().removeprefix("MEG").strip()
            if number.isdigit() and f"{int(number):04d}" not in out:
                out.append(f"{int(number):04d}")
    return out


def read_static_bads(path: Path, ch_names: list[str]) -> list[str]:
    """The static bad channels of one run's MaxFilter log, named as in the recording.

    Parameters
    ----------
    path : Path
        The run's MaxFilter log.
    ch_names : list of str
        Channel names of the recording (``MEG0113`` or ``MEG 0113``).

    Returns
    -------
    list of str
        Names from ``ch_names``; empty when the log lists none.

    Raises
    ------
    InputDataError
        When the log names a channel the recording lacks.
    """
    by_number = {name.upper().removeprefix("MEG").strip(): name for name in ch_names
                 if name.upper().startswith("MEG")}
    numbers = parse_static_bads(Path(path).read_text(errors="replace"))
    unknown = [n for n in numbers if n not in by_number]
    if unknown:
        raise InputDataError(
            f"{path}: static bad channels {unknown} are not MEG channels of the recording (it has "
            f"e.g. {list(by_number.values())[:3]}); check that the log belongs to this run")
    return [by_number[n] for n in numbers]
