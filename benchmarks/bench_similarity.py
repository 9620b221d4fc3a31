"""Similarity engine speed and memory against baselines measured in the same run, on the same data.

Run: ``python benchmarks/bench_similarity.py`` (one BLAS/Numba thread: per-core numbers).
Data: 428 stimuli x 45 features per region (91,378 pairs), 100 layer RDMs. The machine
may be shared: every row is the best of several rounds that alternate mfrs and its
baseline, and is also given as a ratio to the numpy GEMM baseline of the same run.
"""

from __future__ import annotations

import os

for _k, _v in {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}.items():
    os.environ[_k] = _v

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mfrs.similarity import _kernels as K  # noqa: E402
from mfrs.similarity.blocks import n_pairs, prepare_block, rdm_block, spearman_prepare  # noqa: E402
from mfrs.similarity.fused import model_matrix, rsa_block  # noqa: E402
from mfrs.similarity.nulls import draw_stimulus_permutations, null_block_labels  # noqa: E402
from mfrs.stages.similarity import block_memory, calibrate  # noqa: E402
from tests.similarity.reference import REFERENCE, numpy_gemm_rdms  # noqa: E402

N_STIM, N_FEAT, N_LAYER = 428, 45, 100
P = n_pairs(N_STIM)


def race(fns: dict, *, rounds: int = 5) -> dict[str, float]:
    """Best seconds per call of each function, rounds alternating between them (fair under load)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, np.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"data: {N_STIM} stimuli x {N_FEAT} features, {P} pairs, {N_LAYER} layers; 1 thread")
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    batch = 32
    x = rng.standard_normal((batch, N_STIM, N_FEAT)).astype(np.float32)
    model = model_matrix(prepare_block(rng.random((N_LAYER, P)).astype(np.float32), "spearman"))

    # ---- brain RDMs
    t = race({"mfrs": lambda: rdm_block(x, "correlation"), "gemm": lambda: numpy_gemm_rdms(x)})
    base = t["gemm"] / batch
    rows = [("brain RDM", "mfrs rdm_block (syrk)", t["mfrs"] / batch, 0.2e-3),
            ("brain RDM", "numpy GEMM baseline", base, None)]
    t1 = race({"mne": lambda: REFERENCE["rdm:correlation:mne_rsa"](x[0]),
               "rsa": lambda: REFERENCE["rdm:correlation:rsatoolbox"](x[0])}, rounds=3)
    rows += [("brain RDM", "mne-rsa compute_rdm", t1["mne"], None),
             ("brain RDM", "rsatoolbox calc_rdm", t1["rsa"], None)]

    # ---- ranking
    v = rdm_block(x[:16], "correlation")
    old = np.empty_like(v)
    words = np.empty(v.shape, np.uint64)
    K.pack_rank_keys(v, words, np.empty(16, np.bool_))
    sorted_words, sorted_f32 = words.copy(), v.copy()

    def sort_words() -> None:  # the floor of the packed-key method: numpy's SIMD sort alone
        sorted_words[...] = words
        sorted_words.sort(axis=-1)

    def sort_f32() -> None:  # values only (no ranks): the floor of any sort of 32-bit keys
        sorted_f32[...] = v
        sorted_f32.sort(axis=-1)

    t = race({"mfrs": lambda: spearman_prepare(v), "radix": lambda: K.rank_rows_f32(v, old),
              "scipy": lambda: [REFERENCE["rank"](r) for r in v[:2]], "words": sort_words, "f32": sort_f32})
    rows += [("Spearman ranking", "mfrs spearman_prepare (sort)", t["mfrs"] / 16, 0.5e-3),
             ("Spearman ranking", "LSD radix kernel (3 x 11 bits)", t["radix"] / 16, None),
             ("Spearman ranking", "floor: np.sort of packed words", t["words"] / 16, None),
             ("Spearman ranking", "floor: np.sort of float32 values", t["f32"] / 16, None),
             ("Spearman ranking", "scipy rankdata", t["scipy"] / 2, None)]

    # ---- fused: the study's 16 subjects x 4 times (+ the group RDM), no ceiling / with ceiling
    n_sub_study = 16
    xs = x[: n_sub_study * 2].reshape(n_sub_study, 2, N_STIM, N_FEAT)
    xs = np.concatenate([xs, xs[:, ::-1] * np.float32(1.5)], axis=1)  # 4 times (scaled copies: other RDM values)
    n_rdm = n_sub_study * 4
    t = race({"fused": lambda: rsa_block(xs, model, ceiling=False),
              "ceiling": lambda: rsa_block(xs, model, ceiling=True)}, rounds=3)
    rows += [("fused RDM->rank->r", "mfrs rsa_block, per subject RDM", t["fused"] / n_rdm, 1.0e-3),
             ("fused RDM->rank->r", "  + leave-one-out ceiling", t["ceiling"] / n_rdm, None)]
    fused = t["fused"] / n_rdm

    # ---- permutations: GEMM rate of the same shapes vs the null
    brain = spearman_prepare(v[:8])[0]
    perms = draw_stimulus_permutations(rng, N_STIM, 16)
    stack = rng.standard_normal((8 * 16, P)).astype(np.float32)
    t = race({"gemm": lambda: stack @ model.T, "null": lambda: null_block_labels(brain, model, perms, "spearman")},
             rounds=3)
    flop = 2.0 * 8 * 16 * P * N_LAYER
    gemm_rate, null_rate = flop / t["gemm"], flop / t["null"]

    print(f"\n{'what':22s} {'implementation':34s} {'ms':>9s} {'x numpy GEMM rdm':>17s} {'target':>8s}")
    for what, name, sec, target in rows:
        tgt = f"<= {target * 1e3:.1f}" if target else ""
        print(f"{what:22s} {name:34s} {sec * 1e3:9.3f} {sec / base:17.2f} {tgt:>8s}")
    per_subject = 448 * 1101 * fused / 60 / 2
    print(f"\none subject x signal x network (448 regions x 1101 times) on 2 cores at the fused rate: "
          f"{per_subject:.1f} min (target <= 4.5)")
    print(f"exact permutation null (8 group RDMs x 100 layers x 16 relabellings): {null_rate / 1e9:.1f} GFLOP/s "
          f"= {100 * null_rate / gemm_rate:.0f} % of the same-shape sgemm ({gemm_rate / 1e9:.1f} GFLOP/s; "
          "target >= 60 %)")

    # ---- memory of one task's kernel work against the plan's estimate
    n_sub, n_t, n_perm = 8, 16, 50
    xb = rng.standard_normal((n_sub, n_t, N_STIM, N_FEAT)).astype(np.float32)
    pm = draw_stimulus_permutations(rng, N_STIM, n_perm)
    tracemalloc.start()
    rsa_block(xb, model, perms=pm, time_batch=8, return_null=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    est = block_memory(n_sub=n_sub, n_stim=N_STIM, n_feat=N_FEAT, samples=n_t, block_vertices=N_FEAT, n_time=n_t,
                       n_region=1, n_layer=N_LAYER, n_signal=1, n_cat=1, time_batch=8, n_permutations=n_perm)
    print(f"\nmemory: rsa_block of {n_sub} subjects x {n_t} times, {n_perm} permutations: peak "
          f"{peak / 2**20:.0f} MiB traced (numpy) vs plan memory_per_task {est / 2**20:.0f} MiB "
          f"({'within' if peak <= est else 'OVER'} the estimate; the model matrix is counted in the plan only)")
    cal = calibrate(N_STIM, N_FEAT, N_LAYER, "correlation", "spearman")
    print(f"plan calibration constants on this machine: {cal['seconds_per_rdm'] * 1e3:.2f} ms per brain RDM "
          f"(ceiling on), {cal['seconds_per_permuted_rdm'] * 1e3:.2f} ms per permuted group RDM")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
