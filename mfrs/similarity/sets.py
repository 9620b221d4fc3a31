"""RSA of feature sets: sensor neighbourhoods, channel types and searchlight patches, one kernel for all.

A *set* is a list of feature indices (channels of a neighbourhood, vertices of a
cortical patch). :func:`rsa_of_sets` computes, for every set of a block, the brain
RDMs of all subjects over time with :func:`mfrs.similarity.fused.rsa_block` (one set
at a time, a time batch of RDMs at once: RDMs are never all in memory), their r
against every layer, the noise ceilings and permutation p of the subject-mean RDM
(:func:`mfrs.similarity.inference.permutation_p`, the same stimulus relabellings for
every set, time and layer, as the region mode draws them). :func:`sets_template`
lays out the output store shared by the sensor and searchlight stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr
from pydantic import Field

from mfrs.similarity.types import Alternative, Comparator, Dissimilarity, Pooling
from mfrs.stage import ExecSettings, StageConfig

__all__ = ["SetRsaConfig", "SetExec", "rsa_of_sets", "rsa_sets_block", "prepared_models", "sets_template", "stat_names",
           "SET_ATTRS", "decimated_times", "stimulus_subsets",
           "block_dataset", "union_members"]

SetCategory = Literal["all", "famous", "unfamiliar", "scrambled"]


class SetExec(ExecSettings):
    """Execution settings of the sensor and searchlight stages: the same numbers whatever their values."""

    time_batch: int = Field(8, ge=1, description="time points whose RDMs are held at once inside a task")
    worker_memory: str | None = Field(None, description="override the cluster's worker memory limit")


class SetRsaConfig(StageConfig):
    """Settings shared by the sensor and searchlight stages (the region mode's names and meanings)."""

    metric: Literal["correlation", "abs_correlation", "euclidean", "sqeuclidean", "cosine"] = "correlation"
    method: Comparator = "spearman"
    pooling: Pooling = "normalized"
    categories: list[SetCategory] = Field(default_factory=lambda: list[SetCategory](["all"]), min_length=1)
    time_step: int = Field(1, ge=1, description="analyse every time_step-th input sample (1: every sample)")
    tmin: float | None = Field(None, description="first time analysed (s); None: the epoch start")
    tmax: float | None = Field(None, description="last time analysed (s); None: the epoch end")
    n_permutations: int = Field(0, ge=0, description="label permutations for p of the group RDM (0: none)")
    alternative: Alternative = "greater"
    seed: int = 0
    exec: SetExec = SetExec()

    execution_fields: ClassVar[tuple[str, ...]] = ("worker_memory", "time_batch")  # same numbers whatever their values


def decimated_times(times: np.ndarray, cfg: SetRsaConfig) -> np.ndarray:
    """Indices of the input samples analysed: within ``[tmin, tmax]``, every ``time_step``-th.

    >>> decimated_times(np.arange(10) * 0.1, SetRsaConfig(time_step=3, tmin=0.1)).tolist()
    [1, 4, 7]
    """
    t = np.asarray(times, float)
    keep = np.ones(t.size, bool)
    eps = 1e-9
    if cfg.tmin is not None:
        keep &= t >= cfg.tmin - eps
    if cfg.tmax is not None:
        keep &= t <= cfg.tmax + eps
    return np.flatnonzero(keep)[:: cfg.time_step]


def stimulus_subsets(ds: xr.Dataset, categories: Sequence[str], *, what: str) -> dict[str, np.ndarray]:
    """Stimulus indices of each category of ``ds`` (stimulus coord ``category``; ``all``: every stimulus)."""
    from mfrs.errors import InputDataError

    cats = np.asarray(ds["category"].values).astype(str) if "category" in ds.coords else None
    out = {}
    for c in categories:
        if c == "all":
            out[c] = np.arange(ds.sizes["stimulus"])
            continue
        if cats is None:
            raise InputDataError(f"{what}: category {c!r} asked but the input has no stimulus coord 'category'")
        out[c] = np.flatnonzero(cats == c)
        if out[c].size < 3:
            raise InputDataError(f"{what}: category {c!r} has {out[c].size} stimuli; drop it from `categories`")
    return out


def prepared_models(model: np.ndarray, stim_index: dict[str, np.ndarray], method: Comparator) -> dict[str, np.ndarray]:
    """Layer RDMs ``(layer, pair)`` of all stimuli restricted to each category's pairs, prepared for ``rsa_block``."""
    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.fused import model_matrix

    n_all = int(round((1 + np.sqrt(1 + 8 * model.shape[1])) / 2))
    iu, ju = np.triu_indices(n_all, 1)
    out = {}
    for cat, idx in stim_index.items():
        keep = np.isin(iu, idx) & np.isin(ju, idx)
        out[cat] = model_matrix(prepare_block(np.ascontiguousarray(model[:, keep], dtype=np.float32), method))
    return out


def rsa_of_sets(x: np.ndarray, members: list[np.ndarray], model: np.ndarray, *, metric: Dissimilarity = "correlation",
                method: Comparator = "spearman", pooling: Pooling = "normalized", perms: np.ndarray | None = None,
                time_batch: int = 8, fwe_axes: tuple[int, ...] = (), cluster: bool = False,
                two_sided: bool = False) -> dict[str, np.ndarray]:
    """RSA of each feature set of ``x`` against every layer.

    Parameters
    ----------
    x : ndarray (subject, time, stimulus, feature)
        Patterns of one signal and stimulus subset.
    members : list of int arrays
        Feature indices of each set.
    model : ndarray (layer, pair)
        Prepared layer RDMs (:func:`prepared_models`).
    perms : ndarray (perm, stimulus), optional
        Stimulus relabellings for the permutation p of the subject-mean RDM.
    fwe_axes : tuple of int
        Axes of a set's ``(time, layer)`` statistic forming the family of ``p_fwe``.
    cluster : bool
        Cluster-mass p along time (its family: ``fwe_axes`` besides time).

    Returns
    -------
    dict
        ``r (subject + 1, set, time, layer)`` (last row: the subject-mean RDM),
        ``noise_ceiling_lower``/``_upper (set, time)`` and, with ``perms``, ``p``,
        ``p_fwe`` (with ``fwe_axes``), ``p_cluster``/``cluster_mass`` (with
        ``cluster``) ``(set, time, layer)``.

    Examples
    --------
    >>> from mfrs.similarity.blocks import prepare_block
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 3, 6, 4)).astype(np.float32)
    >>> model = prepare_block(rng.random((2, 15)).astype(np.float32), "spearman")
    >>> out = rsa_of_sets(x, [np.array([0, 1]), np.array([1, 2, 3])], model)
    >>> out["r"].shape, out["noise_ceiling_lower"].shape
    ((3, 2, 3, 2), (2, 3))
    """
    from mfrs.similarity.fused import rsa_block
    from mfrs.similarity.inference import permutation_p

    n_sub, n_t = x.shape[:2]
    n_set, n_layer = len(members), model.shape[0]
    out = {"r": np.full((n_sub + 1, n_set, n_t, n_layer), np.nan, np.float32),
           "noise_ceiling_lower": np.full((n_set, n_t), np.nan, np.float32),
           "noise_ceiling_upper": np.full((n_set, n_t), np.nan, np.float32)}
    names = stat_names(perms is not None and len(perms) > 0, bool(fwe_axes), cluster)
    out.update({k: np.full((n_set, n_t, n_layer), np.nan, np.float32) for k in names})
    for s, idx in enumerate(members):
        feats = np.ascontiguousarray(x[..., idx])
        res = rsa_block(feats, model, metric=metric, method=method, pooling=pooling, perms=perms,
                        time_batch=time_batch, return_null=True)
        out["r"][:, s] = res["r"]
        out["noise_ceiling_lower"][s], out["noise_ceiling_upper"][s] = (res["noise_ceiling_lower"],
                                                                      res["noise_ceiling_upper"])
        if names:
            stats = permutation_p(res["r"][-1], res["null"], fwe_axes=fwe_axes, cluster_axis=0 if cluster else None,
                                  two_sided=two_sided)
            for k in names:
                out[k][s] = stats[k]
    return out


def block_dataset(out: dict[str, np.ndarray], set_dim: str, labels: dict[str, Any]) -> xr.Dataset:
    """The variables of :func:`rsa_sets_block` as one unit's dataset (``labels``: the unit's set and time labels)."""
    dims = ("signal", "category", set_dim, "time")
    return xr.Dataset({k: ((("subject",) if k == "r" else ()) + dims + (("layer",) if v.ndim == 5 or k == "r" else ()),
                           v) for k, v in out.items()}, coords={set_dim: labels[set_dim], "time": labels["time"]})


def stat_names(permutations: bool, fwe: bool, cluster: bool) -> list[str]:
    """The permutation variables a set RSA stores."""
    if not permutations:
        return []
    return ["p"] + (["p_fwe"] if fwe else []) + (["p_cluster", "cluster_mass"] if cluster else [])


def union_members(members: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The features a block of sets reads, and each set's members as positions in them.

    >>> u, local = union_members([np.array([4, 7]), np.array([7, 9])])
    >>> u.tolist(), [m.tolist() for m in local]
    ([4, 7, 9], [[0, 1], [1, 2]])
    """
    union = np.unique(np.concatenate(members))
    return union, [np.searchsorted(union, m) for m in members]


def rsa_sets_block(block: np.ndarray, members: list[np.ndarray], model: np.ndarray,
                   stim_index: dict[str, np.ndarray], signals: list[str], cfg: SetRsaConfig, *,
                   fwe_axes: tuple[int, ...] = (), cluster: bool = False) -> dict[str, np.ndarray]:
    """:func:`rsa_of_sets` of every signal and category of one block, laid out as the store's variables.

    ``block (subject, signal, stimulus, time, feature)``, ``model (layer, pair)`` the
    layer RDMs of all stimuli (prepared here per category); returns ``r (subject + 1,
    signal, category, set, time, layer)``, ceilings ``(signal, category, set, time)``
    and the permutation variables ``(signal, category, set, time, layer)``. The
    permutations of each (signal, category) are drawn from
    ``unit_rng(seed, "permutation", signal, category)`` as in the region mode: the same
    for every block, set, time and layer.
    """
    from mfrs.similarity.nulls import draw_stimulus_permutations
    from mfrs.similarity.seeds import unit_rng
    from mfrs.similarity.threads import single_threaded

    models = prepared_models(model, stim_index, cfg.method)
    parts: dict[str, list[np.ndarray]] = {}  # name -> per (signal, category) in order
    with single_threaded():
        for s, signal in enumerate(signals):
            x_all = block[:, s].transpose(0, 2, 1, 3)  # (subject, time, stimulus, feature)
            for cat, idx in stim_index.items():
                perms = None
                if cfg.n_permutations:
                    perms = draw_stimulus_permutations(unit_rng(cfg.seed, "permutation", signal, cat), idx.size,
                                                       cfg.n_permutations)
                x = np.ascontiguousarray(x_all[:, :, idx], dtype=np.float32)
                res = rsa_of_sets(x, members, models[cat], metric=cfg.metric, method=cfg.method,
                                  pooling=cfg.pooling, perms=perms, time_batch=cfg.exec.time_batch, fwe_axes=fwe_axes,
                                  cluster=cluster, two_sided=cfg.alternative == "two-sided")
                for k, v in res.items():
                    parts.setdefault(k, []).append(v)
    out = {}
    for k, values in parts.items():
        stacked = np.stack(values).reshape(len(signals), len(stim_index), *values[0].shape)
        out[k] = np.moveaxis(stacked, 2, 0) if k == "r" else stacked
    return out


SET_ATTRS: dict[str, dict[str, str]] = {
    "r": {"description": "{method} r between the brain RDM of the set's features and the layer RDM; subject "
          "'group' is the subject-mean RDM", "units": "1"},
    "noise_ceiling_lower": {"description": "leave-one-out noise ceiling: each subject vs the pool of the others, "
                            "mean over subjects", "units": "1"},
    "noise_ceiling_upper": {"description": "noise ceiling: each subject vs the pool of all, mean over subjects",
                            "units": "1"},
    "p": {"description": "uncorrected permutation p of the group r, (k + 1) / (n + 1) over {n} stimulus "
          "relabellings of the subject-mean RDM", "units": "1", "family": "none (each element alone)"},
    "p_fwe": {"description": "family-wise p of the group r, max statistic over {family}, {n} stimulus relabellings",
              "units": "1", "family": "{family} (one family per signal, category, {set_dim})"},
    "p_cluster": {"description": "cluster-mass p of the group r: runs over time above the pointwise 0.95 null "
                  "quantile, each run's mass against the largest null run mass over {family}", "units": "1",
                  "family": "{family} (one family per signal, category, {set_dim})"},
    "cluster_mass": {"description": "sum of the group r over the supra-threshold run holding this point; 0 outside "
                     "clusters", "units": "1 (sum of r)"},
}


@dataclass(frozen=True)
class SetLayout:
    """Labels of a set dim and the chunking of the store (``set_block`` sets x ``time_block`` times per unit)."""

    set_dim: str
    labels: np.ndarray
    coords: dict[str, tuple[str, Any]]
    set_block: int
    time_block: int


def sets_template(subjects: list[str], signals: Any, times: np.ndarray, models: xr.Dataset, lay: SetLayout,
                  cfg: SetRsaConfig, *, fwe_family: str = "", cluster: bool = False) -> xr.Dataset:
    """Dask-backed template of a set RSA store: ``r (subject, signal, category, <set>, time, layer)`` and the rest.

    ``fwe_family`` names the dims of ``p_fwe``'s family (none: no ``p_fwe``).
    """
    import dask.array as da

    set_dim = lay.set_dim
    sizes = {"subject": len(subjects) + 1, "signal": len(signals), "category": len(cfg.categories),
             set_dim: len(lay.labels), "time": len(times), "layer": models.sizes["layer"]}
    chunks = {**sizes, set_dim: lay.set_block, "time": lay.time_block}

    def zeros(dims: tuple[str, ...]) -> tuple:
        return dims, da.zeros(tuple(sizes[d] for d in dims), chunks=tuple(chunks[d] for d in dims), dtype="float32")

    dims = ("signal", "category", set_dim, "time")
    variables = {"r": zeros(("subject", *dims, "layer")), "noise_ceiling_lower": zeros(dims),
                 "noise_ceiling_upper": zeros(dims)}
    for name in stat_names(bool(cfg.n_permutations), bool(fwe_family), cluster):
        variables[name] = zeros((*dims, "layer"))
    coords: dict[str, Any] = {"subject": [*subjects, "group"], "signal": np.asarray(signals),
                              "category": list(cfg.categories), set_dim: lay.labels, "time": np.asarray(times),
                              **lay.coords}
    coords.update({str(c): models[c].variable for c in models.coords if models[c].dims == ("layer",)})
    coords.setdefault("layer", models["layer"].values)
    out = xr.Dataset(variables, coords=coords)
    out["time"].attrs["units"] = "s"
    fmt = {"method": cfg.method, "n": cfg.n_permutations, "family": fwe_family, "set_dim": set_dim}
    for var in out.data_vars:
        out[var].attrs = {k: v.format(**fmt) for k, v in SET_ATTRS.get(str(var), {}).items()}
    return out
