"""Run every benchmark: ``python -m benchmarks [NAME ...]`` (NAME: similarity, nets, images, ...).

Each ``benchmarks/bench_<name>.py`` is run as its own process, one BLAS and one
Numba thread per process unless it sets otherwise, and prints its own table of
ratios against baselines measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    available = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    chosen = argv or list(available)
    unknown = [n for n in chosen if n not in available]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    from mfrs.cluster import WORKER_ENV

    env = {**os.environ, **WORKER_ENV, "PYTHONUNBUFFERED": "1"}
    status = 0
    for name in chosen:
        print(f"=== benchmark {name} ({available[name].name}) ===", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(available[name])], env=env)
        print(f"=== {name}: exit {proc.returncode}, {time.perf_counter() - t0:.0f} s ===\n", flush=True)
        status = status or proc.returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
