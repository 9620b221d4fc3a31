"""Permutation nulls of stimulus relabelling on plain numpy arrays (block layer).

Their p-values, family maxima and cluster masses are computed in :mod:`mfrs.similarity.inference`.
"""

from __future__ import annotations

import numpy as np

from mfrs.similarity import _kernels as K
from mfrs.similarity.blocks import compare_block, n_pairs, triu_pairs
from mfrs.similarity.scratch import scratch
from mfrs.similarity.types import Comparator, PermutationScheme

__all__ = ["draw_pair_permutations", "draw_bootstrap_pairs", "draw_stimulus_permutations", "null_block", "null_block_labels",
           "null_block_labels_torch"]


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


def draw_bootstrap_pairs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pair indices of a stimulus bootstrap sample, dropping pairs of a stimulus with itself.

    ``n`` stimuli drawn with replacement (sorted) -> the pair index (into the ``n``
    stimuli's pair vector) of every pair of distinct draws, in pair order.
    """
    idx = np.sort(rng.integers(0, n, size=n))
    i, j = triu_pairs(n)
    lo, hi = idx[i], idx[j]
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    return lo * n - lo * (lo + 1) // 2 + hi - lo - 1


def draw_stimulus_permutations(rng: np.random.Generator, n_stimuli: int, n_permutations: int) -> np.ndarray:
    """Random stimulus permutations: ``-> (permutation, stimulus)`` int32.

    Row ``k`` is the permutation that :func:`draw_pair_permutations` (``labels``) turns
    into its ``k``-th pair-index map for the same generator state; it takes
    ``n_stimuli`` integers instead of ``n_pairs`` per permutation.
    """
    return np.stack([rng.permutation(n_stimuli) for _ in range(n_permutations)]).astype(np.int32).reshape(
        n_permutations, n_stimuli)


def _stack_rows(rows: int, p: int, itemsize: int, max_bytes: int) -> int:
    return max(1, int(max_bytes // max(1, rows * p * itemsize)))


def null_block(brain: np.ndarray, model: np.ndarray, pair_perms: np.ndarray, method: Comparator,
               *, max_bytes: int = 64 << 20) -> np.ndarray:
    """Null comparisons of permuted brain RDMs with model RDMs, from pair-index maps.

    ``brain (B, pair), model (L, pair), pair_perms (K, pair) -> (K, B, L)`` where
    ``null[k] = compare(brain[:, perm_k], model)``. Inputs are already prepared
    (:func:`mfrs.similarity.blocks.prepare_block`), which commutes with permutation.
    The smaller side is gathered (permuting the model by the inverse permutation is
    the same number) by a Numba kernel, and several permutations are stacked into one
    GEMM. For stimulus relabelling prefer :func:`null_block_labels` (no (K, pair) table).
    """
    n_perm, p = pair_perms.shape
    b, m = brain.shape[0], model.shape[0]
    dtype = np.result_type(brain.dtype, model.dtype)
    out = np.empty((n_perm, b, m), dtype=dtype)
    if method == "kendall_tau_a":
        for k in range(n_perm):
            out[k] = compare_block(brain[:, pair_perms[k]], model, method, prepared=True)
        return out
    gather_brain = b <= m
    src = np.ascontiguousarray(brain if gather_brain else model, dtype=dtype)
    other = np.ascontiguousarray(model if gather_brain else brain, dtype=dtype)
    step = _stack_rows(src.shape[0], p, src.itemsize, max_bytes)
    stack = scratch("null_stack", (min(step, n_perm) * src.shape[0], p), dtype)  # reused: no page faults
    for start in range(0, n_perm, step):
        idx = np.ascontiguousarray(pair_perms[start : start + step], dtype=np.int64)
        if not gather_brain:
            idx = np.ascontiguousarray(np.argsort(idx, axis=1))
        k = idx.shape[0]
        st = stack[: k * src.shape[0]]
        K.gather_pairs(src, idx, st)
        _fill(out[start : start + k], st, other, gather_brain, b, m)
    return np.clip(out, -1.0, 1.0, out=out)


def _fill(out: np.ndarray, stack: np.ndarray, other: np.ndarray, gather_brain: bool, b: int, m: int) -> None:
    """One GEMM of a permuted stack against the other side into ``out (k, B, L)``."""
    k = out.shape[0]
    if gather_brain:
        np.matmul(stack, other.T, out=out.reshape(k * b, m))
    else:
        out[...] = (other @ stack.T).reshape(b, k, m).transpose(1, 0, 2)


def null_block_labels(brain: np.ndarray, model: np.ndarray, perms: np.ndarray, method: Comparator,
                      *, max_bytes: int = 64 << 20) -> np.ndarray:
    """Null comparisons under stimulus relabelling (rows and columns of the RDM together).

    ``brain (B, pair), model (L, pair), perms (K, stimulus) -> (K, B, L)``, the same
    numbers as :func:`null_block` with the pair maps of ``perms``. The smaller side is
    relabelled (the model by the inverse permutations) straight from its square
    matrix by :func:`mfrs.similarity._kernels.gather_relabelled`; stacks of
    permutations go through one GEMM each.
    """
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    n_perm, n = perms.shape
    p = brain.shape[1]
    if n_pairs(n) != p:
        raise ValueError(f"null_block_labels: permutations of {n} stimuli do not fit {p} pairs")
    if method == "kendall_tau_a":
        idx = np.empty((n_perm, p), np.int64)
        for k in range(n_perm):
            K.permuted_pair_index(perms[k], idx[k])
        return null_block(brain, model, idx, method, max_bytes=max_bytes)
    b, m = brain.shape[0], model.shape[0]
    dtype = np.result_type(brain.dtype, model.dtype)
    out = np.empty((n_perm, b, m), dtype=dtype)
    gather_brain = b <= m
    src = np.ascontiguousarray(brain if gather_brain else model, dtype=dtype)
    other = brain if not gather_brain else model
    other = other if other.dtype == dtype else other.astype(dtype)
    if not gather_brain:
        perms = np.ascontiguousarray(np.argsort(perms, axis=1))
    step = _stack_rows(src.shape[0], p, src.itemsize, max_bytes)
    stack = scratch("null_stack", (min(step, n_perm) * src.shape[0], p), dtype)  # reused: no page faults
    square = scratch("null_square", (n, n), dtype)
    for start in range(0, n_perm, step):
        chunk = perms[start : start + step]
        k = chunk.shape[0]
        st = stack[: k * src.shape[0]]
        K.gather_relabelled(src, chunk, square, st)
        _fill(out[start : start + k], st, other, gather_brain, b, m)
    return np.clip(out, -1.0, 1.0, out=out)


def null_block_labels_torch(brain: np.ndarray, model: np.ndarray, perms: np.ndarray, method: Comparator, *,
                            device: str = "cuda", max_bytes: int = 256 << 20) -> np.ndarray:
    """:func:`null_block_labels` through torch on ``device`` (a GPU worker's ``"cuda"``; ``"cpu"`` runs the same code).

    ``brain (B, pair), model (L, pair), perms (K, stimulus) -> (K, B, L)``. Each brain RDM
    is expanded to its square on the device once; a chunk of relabellings gathers
    ``D[perm[i], perm[j]]`` for every pair at once and goes through one batched GEMM
    against the model. The gather is exact; the GEMM sums in float32 (TF32 is never
    used: ``torch.backends.cuda.matmul.allow_tf32`` is switched off inside), so the
    numbers equal the numpy path to about 1e-6 (tested to 1e-5). Comparators other than
    inner products (``kendall_tau_a``) take the numpy path.
    """
    if method == "kendall_tau_a":
        return null_block_labels(brain, model, perms, method)
    import torch

    perms = np.ascontiguousarray(perms, dtype=np.int64)
    n_perm, n = perms.shape
    b, p = brain.shape
    if n_pairs(n) != p:
        raise ValueError(f"null_block_labels_torch: permutations of {n} stimuli do not fit {p} pairs")
    dtype = torch.float32 if np.result_type(brain.dtype, model.dtype) == np.float32 else torch.float64
    dev = torch.device(device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            iu = torch.triu_indices(n, n, 1, device=dev)  # pairs i < j row by row, as pdist
            square = torch.zeros((b, n, n), dtype=dtype, device=dev)
            src = torch.as_tensor(np.ascontiguousarray(brain), device=dev).to(dtype)
            square[:, iu[0], iu[1]] = src
            square[:, iu[1], iu[0]] = src
            flat = square.view(b, n * n)
            mt = torch.as_tensor(np.ascontiguousarray(model), device=dev).to(dtype).T  # (pair, layer)
            out = torch.empty((n_perm, b, model.shape[0]), dtype=dtype, device=dev)
            step = _stack_rows(b, p, 4 if dtype == torch.float32 else 8, max_bytes)
            all_perms = torch.as_tensor(perms, device=dev)
            for start in range(0, n_perm, step):
                pk = all_perms[start : start + step]  # (k, stimulus)
                k = pk.shape[0]
                stack = flat[:, pk[:, iu[0]] * n + pk[:, iu[1]]]  # (B, k, pair): D_b[perm[i], perm[j]]
                torch.matmul(stack.transpose(0, 1).reshape(k * b, p), mt, out=out[start : start + k].view(k * b, -1))
            out.clamp_(-1.0, 1.0)
            return out.cpu().numpy()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
