"""Per-subject anatomy from the ``anatomy`` catalog entry, staged and cached for MNE.

MNE writes beside its inputs (morph maps) and wants ``{hemi}.sphere.reg``; a
staging ``subjects_dir`` of symbolic links in the stage's work folder keeps
the catalog's anatomy read-only and supplies ``sphere.reg`` for the template
(whose registration is the identity) when only ``sphere`` exists.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfrs.errors import InputDataError

if TYPE_CHECKING:
    import mne

__all__ = ["Anatomy", "resolve_anatomy", "stage_subjects_dir", "cached_source_space",
           "cached_bem_solution", "TEMPLATE"]

log = logging.getLogger(__name__)

TEMPLATE = "fsaverage"


@dataclass(frozen=True)
class Anatomy:
    """Where one BIDS subject's anatomy lives.

    Attributes
    ----------
    subjects_dir : Path
        The catalog's FreeSurfer subjects_dir (read only).
    fs_subject : str
        FreeSurfer subject of this BIDS subject (``fsaverage`` on the embedded set).
    trans : Path
        head -> MRI transform (``-trans.fif``).
    parcellation : str
        Annotation name on fsaverage (``aparc_sub``).
    """

    subjects_dir: Path
    fs_subject: str
    trans: Path
    parcellation: str


def resolve_anatomy(subjects_dir: Path, params: dict[str, Any], bids_subject: str) -> Anatomy:
    """Anatomy of ``bids_subject`` from the ``anatomy`` entry's params.

    Params (:class:`mfrs.catalog.FreesurferParams`, defaults filled): ``subject`` (the FreeSurfer
    subject), ``parcellation``, optional ``subjects`` (BIDS label -> FreeSurfer subject) and ``trans`` (one path, or BIDS label -> path; relative paths are below
    subjects_dir). Without ``trans`` the file is ``<fs>/bem/<fs>-trans.fif``.
    """
    subjects_dir = Path(subjects_dir)
    mapping = params.get("subjects") or {}
    fs = str(mapping.get(bids_subject, mapping.get(f"sub-{bids_subject}", params["subject"])))
    trans_param = params.get("trans")
    if isinstance(trans_param, dict):
        trans_param = trans_param.get(bids_subject, trans_param.get(f"sub-{bids_subject}"))
    trans = Path(trans_param) if trans_param else subjects_dir / fs / "bem" / f"{fs}-trans.fif"
    if not trans.is_absolute():
        trans = subjects_dir / trans
    anat = Anatomy(subjects_dir, fs, trans, str(params["parcellation"]))
    for need in (subjects_dir / fs / "surf", trans, subjects_dir / TEMPLATE / "label"):
        if not need.exists():
            raise InputDataError(
                f"sub-{bids_subject}: anatomy file {need} is missing (catalog entry 'anatomy', "
                f"FreeSurfer subject {fs!r}); run `mfrs demo` for the template, or set "
                "params.subjects / params.trans of the 'anatomy' entry")
    return anat


def _link(src: Path, dst: Path) -> None:
    if dst.is_symlink() or dst.exists():
        return
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(src, tmp)
    os.replace(tmp, dst)  # atomic: concurrent workers may stage the same subject


def stage_subjects_dir(anat: Anatomy, work: Path) -> Path:
    """A subjects_dir of links to ``anat.fs_subject`` and fsaverage under ``work``.

    Returns
    -------
    Path
        The staging subjects_dir (MNE may write morph maps into it).
    """
    staged = Path(work) / "subjects"
    for subject in {anat.fs_subject, TEMPLATE}:
        src = anat.subjects_dir / subject
        dst = staged / subject
        (dst / "surf").mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.name != "surf":
                _link(item.resolve(), dst / item.name)
        for surf in (src / "surf").iterdir():
            _link(surf.resolve(), dst / "surf" / surf.name)
        for hemi in ("lh", "rh"):
            reg = dst / "surf" / f"{hemi}.sphere.reg"
            if not reg.exists() and subject == TEMPLATE and (src / "surf" / f"{hemi}.sphere").exists():
                log.info("meg: %s has no %s.sphere.reg; using %s.sphere (the template's "
                         "registration is the identity)", src / "surf", hemi, hemi)
                _link((src / "surf" / f"{hemi}.sphere").resolve(), reg)
    (staged / "morph-maps").mkdir(exist_ok=True)
    return staged


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}{''.join(path.suffixes)}")
    write(tmp)
    os.replace(tmp, path)


def cached_source_space(subjects_dir: Path, fs_subject: str, spacing: str,
                        cache: Path) -> "mne.SourceSpaces":
    """``mne.setup_source_space`` once per (subject, spacing), cached as FIF."""
    import mne

    cache.mkdir(parents=True, exist_ok=True)
    fname = cache / f"{fs_subject}-{spacing}-src.fif"
    if fname.exists():
        return mne.read_source_spaces(fname, verbose="error")
    src = mne.setup_source_space(fs_subject, spacing=spacing, subjects_dir=subjects_dir,
                                 add_dist=False, verbose="error")
    _atomic_write(fname, lambda p: src.save(p, overwrite=True, verbose="error"))
    return src


def cached_bem_solution(subjects_dir: Path, fs_subject: str, ico: int, conductivity: float,
                        cache: Path) -> "mne.bem.ConductorModel":
    """Single-layer BEM solution once per subject, cached as FIF.

    Uses ``bem/inner_skull.surf`` (FreeSurfer watershed output) or else
    ``bem/<subject>-inner_skull-bem.fif``, downsampled to ``ico``.
    """
    import mne

    cache.mkdir(parents=True, exist_ok=True)
    fname = cache / f"{fs_subject}-ico{ico}-{conductivity:g}-bem-sol.fif"
    if fname.exists():
        return mne.read_bem_solution(fname, verbose="error")
    bem_dir = subjects_dir / fs_subject / "bem"
    shipped = bem_dir / f"{fs_subject}-{20 * 4 ** ico}-bem-sol.fif"  # single layer, mne naming
    if shipped.exists():
        sol = mne.read_bem_solution(shipped, verbose="error")
        if len(sol["surfs"]) == 1 and abs(float(sol["sigma"][0]) - conductivity) < 1e-6:
            return sol
    if not (bem_dir / "inner_skull.surf").exists():
        fif = bem_dir / f"{fs_subject}-inner_skull-bem.fif"
        if not fif.exists():
            raise InputDataError(
                f"anatomy {subjects_dir / fs_subject}: no inner skull surface ({bem_dir}/inner_skull.surf "
                f"or {fif.name}); run FreeSurfer's watershed (mne watershed_bem) for this subject")
        surf = mne.read_bem_surfaces(fif, verbose="error")[0]
        # staged dirs hold links: write the surface beside them, never into the catalog's anatomy
        staged_bem = cache / "bem" / fs_subject / "bem"
        staged_bem.mkdir(parents=True, exist_ok=True)
        target = staged_bem / "inner_skull.surf"
        if not target.exists():
            _atomic_write(target, lambda p: mne.write_surface(p, surf["rr"] * 1e3, surf["tris"],
                                                              overwrite=True))
        subjects_dir = cache / "bem"
    model = mne.make_bem_model(fs_subject, ico=ico, conductivity=(conductivity,),
                               subjects_dir=subjects_dir, verbose="error")
    sol = mne.make_bem_solution(model, verbose="error")
    _atomic_write(fname, lambda p: mne.write_bem_solution(p, sol, overwrite=True, verbose="error"))
    return sol
