"""Provenance records and fingerprints stored with every artifact."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["fingerprint", "make_provenance", "package_versions", "git_revision", "PROVENANCE_PACKAGES",
           "science_parameters", "parameter_changes"]

PROVENANCE_PACKAGES = (
    "mfrs", "numpy", "scipy", "xarray", "zarr", "dask", "distributed", "dask-jobqueue",
    "numba", "mne", "mne-bids", "torch", "torchvision", "scikit-image",
)


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data with a stable order."""
    if hasattr(obj, "model_dump"):  # pydantic models
        return _canonical(obj.model_dump(mode="json"))
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return {"dtype": str(obj.dtype), "shape": list(obj.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def fingerprint(obj: Any) -> str:
    """Return a short sha256 fingerprint of ``obj``.

    Parameters
    ----------
    obj : Any
        JSON-like data, pydantic models, numpy arrays or bytes.

    Returns
    -------
    str
        The first 16 hex digits of the sha256 of a canonical encoding.

    Examples
    --------
    >>> fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    True
    """
    if isinstance(obj, bytes):
        payload = obj
    else:
        payload = json.dumps(_canonical(obj), sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape results (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in PROVENANCE_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The git revision of the mfrs checkout, with ``-dirty`` if it has changes; None outside git."""
    from mfrs._subprocess import run_command

    repo = Path(__file__).resolve().parent.parent
    if not (repo / ".git").exists():
        return None
    try:
        rev = run_command(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True).stdout.strip()
        dirty = run_command(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                            check=True).stdout.strip()
    except Exception:  # no commits yet, git missing: provenance says unknown
        return None
    return rev + ("-dirty" if dirty else "")


def _cluster_layout(client: Client | None) -> dict[str, Any] | None:
    if client is None:
        return None
    info = client.scheduler_info()
    workers = info.get("workers", {})
    return {
        "scheduler": info.get("address"),
        "n_workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
        "gpu_workers": sum(1 for w in workers.values() if w.get("resources", {}).get("GPU")),
    }


def science_parameters(config: Any) -> tuple[Any, dict[str, Any]]:
    """``(parameters, execution)``: the config's canonical form split into what can change numbers and not.

    The one place that tells science from execution: a stage config holds its execution
    settings (memory, batch and chunk sizes that change no number, devices) in its nested
    ``exec`` section (:class:`mfrs.stage.ExecSettings`); they are recorded, not fingerprinted.

    Examples
    --------
    >>> science_parameters({"alpha": 1, "exec": {"time_batch": 8}})
    ({'alpha': 1}, {'time_batch': 8})
    """
    parameters = _canonical(config)
    execution: dict[str, Any] = {}
    if isinstance(parameters, dict):
        execution = dict(parameters.pop("exec", None) or {})
    return parameters, execution


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def parameter_changes(old: Any, new: Any) -> list[str]:
    """``key: old -> new`` for every (dotted) parameter that differs.

    Examples
    --------
    >>> parameter_changes({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}})
    ['b.c: 2 → 3']
    """
    flat_old, flat_new = _flatten(old or {}), _flatten(new or {})
    missing = "(unset)"
    return [f"{k}: {json.dumps(flat_old.get(k, missing))} → {json.dumps(flat_new.get(k, missing))}"
            .replace('"(unset)"', missing)
            for k in sorted(set(flat_old) | set(flat_new)) if flat_old.get(k, missing) != flat_new.get(k, missing)]


def make_provenance(*, stage: str, config: Any, inputs: dict[str, str], seed: int | None,
                    client: Client | None = None) -> dict[str, Any]:
    """Build the ``attrs["provenance"]`` record of a store.

    Parameters
    ----------
    stage : str
        Name of the stage that writes the store.
    config : pydantic model or dict
        The stage's narrowed configuration (only the fields it reads).
    inputs : dict
        Catalog entry name -> fingerprint of that input.
    seed : int or None
        The root seed of all randomness in the stage.
    client : distributed.Client, optional
        Used to record the cluster layout.

    Returns
    -------
    dict
        ``stage, parameters, execution, fingerprint, inputs, seed, versions, git_revision, cluster,
        created``. ``fingerprint`` covers stage, parameters, inputs and seed only, so that a rerun
        on another cluster, with other execution settings (``config.exec``) or with
        newer packages resumes the same store.
    """
    parameters, execution = science_parameters(config)
    return {
        "stage": stage,
        "parameters": parameters,
        "execution": execution,
        "inputs": dict(sorted(inputs.items())),
        "seed": seed,
        "fingerprint": fingerprint({"stage": stage, "parameters": parameters,
                                    "inputs": inputs, "seed": seed}),
        "versions": package_versions(),
        "git_revision": git_revision(),
        "cluster": _cluster_layout(client),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
