"""Reading a ds000117-shaped BIDS data set through mne-bids (the same path as the real data)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mfrs.errors import InputDataError

if TYPE_CHECKING:
    import mne
    import pandas as pd

__all__ = ["BidsLayout", "RunFiles", "find_layout", "read_run", "read_events_tsv"]

TASK = "facerecognition"
SESSION = "meg"


@dataclass(frozen=True)
class RunFiles:
    """The files of one run: the raw FIF and its events.tsv."""

    subject: str
    run: int
    raw: Path
    events: Path
    task: str = TASK
    session: str = SESSION


@dataclass(frozen=True)
class BidsLayout:
    """Subjects and runs of a BIDS root, ``runs[subject] -> [RunFiles, ...]``."""

    root: Path
    subjects: tuple[str, ...]
    runs: dict[str, tuple[RunFiles, ...]]


def _bids_path(root: Path, subject: str, run: int, *, task: str = TASK, session: str = SESSION):
    from mne_bids import BIDSPath

    return BIDSPath(subject=subject, session=session, task=task, run=f"{run:02d}",
                    datatype="meg", suffix="meg", extension=".fif", root=root)


def find_layout(root: Path, *, subjects: list[str] | None = None, runs: list[int] | None = None,
                task: str = TASK, session: str = SESSION) -> BidsLayout:
    """List the subjects and runs of a ds000117-like BIDS root.

    Parameters
    ----------
    root : Path
        BIDS root (contains ``dataset_description.json`` and ``sub-XX/``).
    subjects : list of str, optional
        Subject labels to keep (without ``sub-``); all when None.
    runs : list of int, optional
        Run numbers to keep; all found when None. A listed run that a subject
        lacks is still returned, so that reading it names the missing file.
        Without ``runs``, a subject missing a run that others have gets it
        listed too, for the same reason.
    task, session : str
        BIDS entities (ds000117: ``facerecognition``, ``meg``).

    Returns
    -------
    BidsLayout
    """
    from mne_bids import get_entity_vals

    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise InputDataError(
            f"BIDS root {root} has no dataset_description.json; point the catalog entry "
            "'ds000117' at a BIDS data set (run `mfrs demo` to generate the embedded one)")
    found = sorted(get_entity_vals(root, "subject"))
    if subjects is not None:
        unknown = sorted(set(subjects) - set(found))
        if unknown:
            raise InputDataError(
                f"subjects {unknown} are not in the BIDS data set {root} (it has {found}); "
                "fix `meg.subjects` in the pipeline config")
        found = [s for s in found if s in subjects]
    all_runs = sorted(int(r) for r in get_entity_vals(root, "run"))
    by_subject: dict[str, tuple[RunFiles, ...]] = {}
    for sub in found:
        sub_runs = runs if runs is not None else all_runs
        files = []
        for run in sub_runs:
            bp = _bids_path(root, sub, run, task=task, session=session)
            files.append(RunFiles(sub, run, Path(bp.fpath),
                                  Path(bp.copy().update(suffix="events", extension=".tsv").fpath),
                                  task, session))
        by_subject[sub] = tuple(files)
    return BidsLayout(root, tuple(found), by_subject)


def read_run(root: Path, run: RunFiles) -> "mne.io.Raw":
    """Read one run with ``mne_bids.read_raw_bids`` and load its data.

    Raises
    ------
    InputDataError
        When the file is missing, truncated or unreadable; the message names it.
    """
    from mne_bids import read_raw_bids

    if not run.raw.is_file():
        raise InputDataError(
            f"sub-{run.subject} run {run.run}: raw file {run.raw} is missing; restore it "
            "(or regenerate the embedded set with `mfrs demo --overwrite`), or leave the run "
            "out with `meg.runs`")
    try:
        with warnings.catch_warnings():
            # MNE only warns on a truncated FIF and returns what it could read
            warnings.filterwarnings("error", message=".*(truncat|could not be read|EOF).*")
            raw = read_raw_bids(_bids_path(root, run.subject, run.run, task=run.task,
                                           session=run.session),
                                verbose="error", extra_params={"preload": True})
    except Exception as exc:  # noqa: BLE001 - every reader failure becomes one clear error
        raise InputDataError(
            f"sub-{run.subject} run {run.run}: cannot read {run.raw} ({type(exc).__name__}: "
            f"{exc}); the file is truncated or corrupt: restore it from the data set") from exc
    return raw


def read_events_tsv(run: RunFiles) -> "pd.DataFrame":
    """Read a run's ``events.tsv`` (columns ``onset``, ``trigger``, ``stim_file``).

    Raises
    ------
    InputDataError
        When the file is missing or lacks a column.
    """
    import pandas as pd

    if not run.events.is_file():
        raise InputDataError(
            f"sub-{run.subject} run {run.run}: events file {run.events} is missing; "
            "ds000117 ships one per run: restore it")
    df = pd.read_csv(run.events, sep="\t", na_values="n/a")
    missing = {"onset", "trigger", "stim_file"} - set(df.columns)
    if missing:
        raise InputDataError(
            f"{run.events} lacks columns {sorted(missing)} (has {list(df.columns)}); "
            "ds000117 events.tsv files carry onset, trigger and stim_file")
    return df
