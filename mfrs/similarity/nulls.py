"""Permutation nulls and cluster masses on plain numpy arrays (block layer)."""

from __future__ import annotations

import numpy as np

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import compare_block, n_pairs
from mfrs.similarity.types import Comparator, PermutationScheme

__all__ = ["draw_pair_permutations", "null_block", "cluster_masses"]


def draw_pair_permutations(rng: np.random.Generator, n_stimuli: int, n_permutations: int,
                           scheme: PermutationScheme) -> np.ndarray:
    """Pair-index maps of random permutations: ``-> (permutation, pair)`` int64.

    ``labels``: a uniform random stimulus permutation each, applied to rows and columns
    together. ``legacy_entries``: pair entries shuffled independently (the reference
    study's test; not a valid null for RDMs).
    """
    p = n_pairs(n_stimuli)
    out = np.empty((n_permutations, p), dtype=np.int64)
    for k in range(n_permutations):
        if scheme == "labels":
            K.permuted_pair_index(rng.permutation(n_stimuli).astype(np.int64), out[k])
        else:
            out[k] = rng.permutation(p)
    return out


def null_block(brain: np.ndarray, model: np.ndarray, pair_perms: np.ndarray, method: Comparator,
               *, max_bytes: int = 64 << 20) -> np.ndarray:
    """Null comparisons of permuted brain RDMs with model RDMs.

    ``brain (B, pair), model (L, pair), pair_perms (K, pair) -> (K, B, L)`` where
    ``null[k] = compare(brain[:, perm_k], model)``. Inputs are already prepared
    (:func:`mfrs.similarity.blocks.prepare_block`), which commutes with permutation.
    The smaller side is gathered (permuting the model by the inverse permutation is
    the same number), and several permutations are stacked into one GEMM.
    """
    n_perm, p = pair_perms.shape
    b, m = brain.shape[0], model.shape[0]
    out = np.empty((n_perm, b, m), dtype=np.result_type(brain.dtype, model.dtype))
    if method == "kendall_tau_a":
        for k in range(n_perm):
            out[k] = compare_block(brain[:, pair_perms[k]], model, method, prepared=True)
        return out
    gather_brain = b <= m
    rows = b if gather_brain else m
    step = max(1, int(max_bytes // max(1, rows * p * brain.itemsize)))
    for start in range(0, n_perm, step):
        idx = pair_perms[start : start + step]
        if gather_brain:
            stack = brain[:, idx].transpose(1, 0, 2).reshape(-1, p)  # (k*B, pair)
            out[start : start + len(idx)] = (stack @ model.T).reshape(len(idx), b, m)
        else:
            inv = np.argsort(idx, axis=1)
            stack = model[:, inv].transpose(1, 0, 2).reshape(-1, p)  # (k*L, pair)
            out[start : start + len(idx)] = (brain @ stack.T).reshape(b, len(idx), m).transpose(1, 0, 2)
    return np.clip(out, -1.0, 1.0, out=out)


def cluster_masses(values: np.ndarray, supra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masses of runs of supra-threshold points along the last axis.

    ``(..., time), (..., time) -> mass_at (..., time), max_mass (...)``: ``mass_at`` is
    the summed value of the run containing each point (0 outside runs), ``max_mass``
    the largest run mass of each series (0 if none).
    """
    shape = values.shape
    v = values.reshape(-1, shape[-1])
    s = supra.reshape(-1, shape[-1]).astype(bool)
    starts = s & ~np.concatenate([np.zeros((s.shape[0], 1), bool), s[:, :-1]], axis=1)
    cid = np.cumsum(starts, axis=1) * s
    n_c = int(cid.max()) + 1 if cid.size else 1
    masses = np.zeros((v.shape[0], n_c))
    rows = np.broadcast_to(np.arange(v.shape[0])[:, None], cid.shape)
    np.add.at(masses, (rows[s], cid[s]), v[s])
    mass_at = np.take_along_axis(masses, cid, axis=1) * s
    return mass_at.reshape(shape), masses[:, 1:].max(axis=1, initial=0.0).reshape(shape[:-1])
