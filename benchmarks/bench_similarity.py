"""Similarity engine speed against baselines measured in the same run, on the same data.

Run: ``python benchmarks/bench_similarity.py`` (one BLAS/Numba thread: per-core numbers).
Data: 428 stimuli x 45 features per region (91,378 pairs), 100 layer RDMs.
"""

from __future__ import annotations

import os

for _k, _v in {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}.items():
    os.environ[_k] = _v

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.similarity.reference import REFERENCE, numpy_gemm_rdms  # noqa: E402

from mfrs.similarity.blocks import n_pairs, prepare_block, rank_block, rdm_block  # noqa: E402
from mfrs.similarity.fused import rsa_block  # noqa: E402
from mfrs.similarity.nulls import draw_pair_permutations, null_block  # noqa: E402

N_STIM, N_FEAT, N_LAYER = 428, 45, 100


def timeit(fn, *, repeat: int = 3, number: int = 1) -> float:
    """Best-of-``repeat`` seconds per call."""
    fn()
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    batch = 32
    x = rng.standard_normal((batch, N_STIM, N_FEAT)).astype(np.float32)
    model = rng.random((N_LAYER, n_pairs(N_STIM))).astype(np.float32)
    print(f"data: {N_STIM} stimuli x {N_FEAT} features, {n_pairs(N_STIM)} pairs, {N_LAYER} layers; 1 thread")

    ms = {}
    ms["mfrs rdm"] = timeit(lambda: rdm_block(x, "correlation")) / batch * 1e3
    ms["numpy GEMM rdm"] = timeit(lambda: numpy_gemm_rdms(x)) / batch * 1e3
    ms["rsatoolbox calc_rdm"] = timeit(lambda: REFERENCE["rdm:correlation:rsatoolbox"](x[0])) * 1e3
    ms["mne-rsa compute_rdm"] = timeit(lambda: REFERENCE["rdm:correlation:mne_rsa"](x[0])) * 1e3
    small = x[0, :60].astype(np.float64)  # scipy per pair is ~1000x slower: time 60 stimuli, scale by pairs
    ms["scipy per pair rdm"] = timeit(lambda: REFERENCE["rdm:correlation:scipy_per_pair"](small), repeat=1) \
        * n_pairs(N_STIM) / n_pairs(60) * 1e3
    print("\nbrain RDM (ms per RDM)            target <= 0.2 ms")
    for k, v in ms.items():
        print(f"  {k:26s} {v:9.3f} ms   mfrs is {v / ms['mfrs rdm']:7.1f}x faster" if k != "mfrs rdm"
              else f"  {k:26s} {v:9.3f} ms")

    v = rdm_block(x[:16], "correlation")
    t_rank = timeit(lambda: rank_block(v)) / 16 * 1e3
    t_sp = timeit(lambda: [REFERENCE["rank"](r) for r in v[:4]]) / 4 * 1e3
    print(f"\nSpearman ranking of a {v.shape[1]}-value RDM   target <= 0.5 ms")
    print(f"  mfrs radix rank {t_rank:.3f} ms; scipy rankdata {t_sp:.3f} ms ({t_sp / t_rank:.1f}x)")

    prepared = prepare_block(model, "spearman")
    xs = x[None, :8]  # one subject, 8 time points
    t_fused = timeit(lambda: rsa_block(xs, prepared, ceiling=False)) / 8 * 1e3
    print(f"\nfused RDM -> rank -> r against {N_LAYER} layers   target <= 1.0 ms per brain RDM")
    print(f"  mfrs {t_fused:.3f} ms per brain RDM")
    per_subject = 448 * 1101 * t_fused / 1e3 / 60 / 2
    print(f"  one subject x signal x network (448 regions x 1101 times) on 2 cores: {per_subject:.1f} min "
          "(target <= 4.5)")

    a = rng.standard_normal((256, n_pairs(N_STIM))).astype(np.float32)
    t_gemm = timeit(lambda: a @ prepared.T)
    gemm_rate = 2 * a.shape[0] * a.shape[1] * N_LAYER / t_gemm
    brain = prepare_block(rdm_block(x[:64], "correlation"), "spearman")
    perms = draw_pair_permutations(rng, N_STIM, 8, "labels")
    t_perm = timeit(lambda: null_block(brain, prepared, perms, "spearman"), repeat=2)
    perm_rate = 2 * brain.shape[0] * brain.shape[1] * N_LAYER * len(perms) / t_perm
    print("\nexact permutation test (64 brain RDMs x 100 layers x 8 permutations)   target >= 60 % of GEMM")
    print(f"  GEMM {gemm_rate / 1e9:.1f} GFLOP/s; permutation null {perm_rate / 1e9:.1f} GFLOP/s "
          f"= {100 * perm_rate / gemm_rate:.0f} % of GEMM")


if __name__ == "__main__":
    main()
