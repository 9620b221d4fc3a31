"""Searchlight patch RDMs per second per core against the region-mode kernel, in the same run on the same data.

Run: ``python benchmarks/bench_searchlight.py`` (one BLAS/Numba thread: per-core numbers).
Data: the study's 428 stimuli (91,378 pairs) and 72 layer RDMs; 4 subjects x 8 times;
searchlight patches of 30 vertices (about 10 mm on the ico5 grid) taken from one block
of neighbouring vertices; the region mode's block is one 45-vertex region. The machine
may be shared: times are this process's CPU seconds (one thread, so per core), the best of
rounds alternating the two kernels. Ends with
:func:`mfrs.stages.searchlight.searchlight_plan` at the study's shape (20,484 centres x
1101 samples x 16 subjects) timed with the rate measured here.
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
from mfrs.similarity.blocks import n_pairs, prepare_block  # noqa: E402
from mfrs.similarity.fused import model_matrix, rsa_block  # noqa: E402
from mfrs.similarity.sets import rsa_of_sets  # noqa: E402
from mfrs.stage import format_bytes  # noqa: E402
from mfrs.stages.searchlight import searchlight_plan  # noqa: E402

N_STIM, N_LAYER, N_SUB, N_TIME, PATCH, REGION, N_PATCH = 428, 72, 4, 8, 30, 45, 16


def best_of(fns: dict, rounds: int = 3) -> dict[str, float]:
    """Best CPU seconds per call of each function, rounds alternating between them (fair under load)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, np.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"data: {N_STIM} stimuli ({n_pairs(N_STIM)} pairs), {N_LAYER} layers, {N_SUB} subjects x {N_TIME} times; "
          f"1 thread; load average at start: {open('/proc/loadavg').read().split()[:3]}")
    model = model_matrix(prepare_block(rng.random((N_LAYER, n_pairs(N_STIM))).astype(np.float32), "spearman"))
    # a block of neighbouring vertices; each patch: 30 of them around its centre
    n_vert = N_PATCH + PATCH
    x = rng.standard_normal((N_SUB, N_TIME, N_STIM, n_vert)).astype(np.float32)
    patches = [np.arange(k, k + PATCH) for k in range(N_PATCH)]
    region = np.ascontiguousarray(x[..., :REGION])
    t = best_of({"region": lambda: rsa_block(region, model),
                 "searchlight": lambda: rsa_of_sets(x, patches, model)})
    per = (N_SUB + 1) * N_TIME
    region_rate = per / t["region"]
    sl_rate = per * N_PATCH / t["searchlight"]
    print(f"\n{'kernel':46s} {'RDMs/s/core':>12s} {'x region':>9s}")
    print(f"{'region mode: rsa_block, 45-vertex region':46s} {region_rate:12.0f} {1.0:9.2f}")
    print(f"{'searchlight: rsa_of_sets, 16 patches of 30':46s} {sl_rate:12.0f} {sl_rate / region_rate:9.2f}")
    sec = 1.0 / sl_rate
    plan = searchlight_plan(20484, 1101, 16, n_stimuli=N_STIM, n_layers=N_LAYER, patch_size=PATCH,
                            seconds_per_rdm=sec)
    print(f"\nstudy-shape searchlight (20,484 centres x 1101 samples x 16 subjects, one signal, 'all', no "
          f"permutations) at this rate: {plan.seconds / 3600:.0f} core-hours = {plan.seconds / 3600 / 64:.1f} h on "
          f"64 cores; {plan.n_units} tasks of {format_bytes(plan.memory_per_task)}; writes "
          f"{format_bytes(plan.writes['searchlight'])}")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
