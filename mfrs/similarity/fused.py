"""The fused block kernel: brain RDMs of one region x time block for all subjects, reduced at once.

``(subject, time, stimulus, feature)`` patterns -> RDMs -> ranks -> r against every
layer, the subject-mean RDM's r, leave-one-out noise ceilings and permutation
p-values; only these reductions leave the function, never the RDM movie.
"""

from __future__ import annotations

import numpy as np

from mfrs.similarity.blocks import compare_block, noise_ceiling_block, prepare_block, rdm_block
from mfrs.similarity.nulls import null_block
from mfrs.similarity.types import Comparator, Dissimilarity, Pooling

__all__ = ["rsa_block"]


def rsa_block(
    x: np.ndarray,
    model: np.ndarray,
    *,
    metric: Dissimilarity = "correlation",
    method: Comparator = "spearman",
    pooling: Pooling = "normalized",
    pair_perms: np.ndarray | None = None,
    time_batch: int = 8,
    ceiling: bool = True,
) -> dict[str, np.ndarray]:
    """RSA of one block, all subjects, reduced on the fly.

    ``(subject, time, stimulus, feature), (layer, pair) -> r (subject + 1, time, layer)``
    (the last row is the subject-mean RDM), ``noise_ceiling_lower``/``_upper (time,)``,
    and with ``pair_perms (perm, pair)``: ``p`` and ``p_fwe_layer (time, layer)`` of
    the subject-mean RDM (the same permutations for every time point and layer).

    Parameters
    ----------
    model : ndarray
        Layer RDMs already passed through :func:`mfrs.similarity.blocks.prepare_block`
        for ``method`` (done once per stage, not per block).
    time_batch : int
        Time points whose RDMs are held at once: memory is about
        ``4 * (subject + 1) * time_batch * pair * 4`` bytes.
    """
    n_sub, n_time = x.shape[:2]
    n_layer = model.shape[0]
    r = np.empty((n_sub + 1, n_time, n_layer), np.float32)
    lower = np.full(n_time, np.nan, np.float32)
    upper = np.full(n_time, np.nan, np.float32)
    p = p_fwe = None
    if pair_perms is not None:
        p = np.empty((n_time, n_layer), np.float32)
        p_fwe = np.empty((n_time, n_layer), np.float32)
    for t0 in range(0, n_time, time_batch):
        tb = slice(t0, min(t0 + time_batch, n_time))
        rdms = rdm_block(x[:, tb], metric)  # (subject, tb, pair)
        both = np.concatenate([rdms, rdms.mean(axis=0, keepdims=True)], axis=0)
        prepared = prepare_block(both, method)
        r[:, tb] = compare_block(prepared, model, method, prepared=True)
        if ceiling and n_sub >= 2:
            lo, up = noise_ceiling_block(rdms, method, pooling)
            lower[tb], upper[tb] = lo.mean(axis=0), up.mean(axis=0)
        if pair_perms is not None:
            group = prepared[-1]  # (tb, pair)
            null = null_block(group, model, pair_perms, method)  # (perm, tb, layer)
            obs = r[-1, tb]
            k = (null >= obs[None]).sum(axis=0)
            p[tb] = (k + 1.0) / (len(pair_perms) + 1.0)
            k_max = (null.max(axis=2, keepdims=True) >= obs[None]).sum(axis=0)
            p_fwe[tb] = (k_max + 1.0) / (len(pair_perms) + 1.0)
            p[tb][np.isnan(obs)] = np.nan
            p_fwe[tb][np.isnan(obs)] = np.nan
    out = {"r": r, "noise_ceiling_lower": lower, "noise_ceiling_upper": upper}
    if p is not None:
        out["p"], out["p_fwe_layer"] = p, p_fwe
    return out
