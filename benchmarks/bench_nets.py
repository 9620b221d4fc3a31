"""CNN stage speed and memory: model RDMs from chunked moments, and layer extraction to Zarr.

Run: ``python benchmarks/bench_nets.py [N_STIMULI] [N_UNITS]`` (default 150 stimuli,
400,000 units). Two parts, each with baselines measured in the same run:

1. One layer's correlation RDM. Ours: ``mfrs.nets.model_rdms.layer_rdm`` reading the
   layer from a Zarr store 65,536 units at a time (I/O included). Baselines: scipy
   ``pdist`` on the whole layer in memory, and the reference study's loop of one
   ``scipy.stats.pearsonr`` per stimulus pair (timed on 30 stimuli, scaled by pairs).
   Peak memory from tracemalloc (numpy reports its buffers to it).
2. MobileNetV2 (grayscale, 224 px, every conv/bn/relu/linear layer) on 32 stimuli,
   batch 8: the stage's task (hooks, copies, Zarr writes of 140 layers) against a
   plain forward pass of the same batches without hooks or writes.
"""

from __future__ import annotations

import os

for _k, _v in {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "NUMBA_NUM_THREADS": "1"}.items():
    os.environ[_k] = _v

import logging
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def _peak(func, *args, **kwargs):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = func(*args, **kwargs)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak


def bench_rdm(tmp: Path, n: int, p: int) -> None:
    import xarray as xr
    from scipy.spatial.distance import pdist
    from scipy.stats import pearsonr

    from mfrs.nets.model_rdms import layer_rdm

    rng = np.random.default_rng(0)
    x = np.maximum(rng.normal(size=(n, p)).astype(np.float32) + rng.normal(size=(n, 1)).astype(np.float32), 0)
    path = tmp / "layer.zarr"
    xr.Dataset({"layer": (("stimulus", "unit"), x)}).to_zarr(
        path, mode="w", zarr_format=3, encoding={"layer": {"chunks": (8, 65536)}})
    stored = xr.open_zarr(path, chunks=None)["layer"]
    ours, t_ours, m_ours = _peak(layer_rdm, stored, metric="correlation", unit_chunk=65536)
    ref, t_pdist, m_pdist = _peak(pdist, x, "correlation")
    sub = 30
    t0 = time.perf_counter()
    for i in range(sub):
        for j in range(i + 1, sub):
            pearsonr(x[i], x[j])
    t_loop = (time.perf_counter() - t0) * (n * (n - 1) / 2) / (sub * (sub - 1) / 2)
    err = float(np.max(np.abs(ours - ref)))
    layer_mb = x.nbytes / 2**20
    print(f"\nmodel RDM, {n} stimuli x {p:,} units ({layer_mb:.0f} MiB float32), max |diff| vs pdist {err:.1e}")
    print(f"{'method':44s} {'seconds':>9s} {'peak MiB':>9s} {'speed-up':>9s}")
    print(f"{'pearsonr loop over pairs (reference style)*':44s} {t_loop:9.1f} {'-':>9s} {1.0:9.1f}")
    print(f"{'scipy pdist, layer in memory':44s} {t_pdist:9.2f} {m_pdist / 2**20:9.0f} {t_loop / t_pdist:9.1f}")
    print(f"{'mfrs layer_rdm from Zarr, 65,536-unit chunks':44s} {t_ours:9.2f} {m_ours / 2**20:9.0f} {t_loop / t_ours:9.1f}")
    print("* timed on 30 stimuli, scaled by the number of pairs")


def bench_extraction(tmp: Path, n: int = 32) -> None:
    import dask.array as da
    import torch
    import xarray as xr

    from mfrs.nets.activations import NetworkSpec, _Job, build_template, extract_activations, layer_table
    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.weights import load_network
    from mfrs.provenance import make_provenance
    from mfrs.store import ZarrStore

    torch.set_num_threads(1)
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(n, 224, 224), dtype=np.uint8)
    ids = [f"s{i:03d}" for i in range(n)]
    stim_t = xr.Dataset({"image": (("stimulus", "y", "x"), da.zeros(pixels.shape, chunks=(8, 224, 224), dtype="uint8"))},
                        coords={"stimulus": ids})
    stim = ZarrStore.create(tmp / "stimuli.zarr", stim_t, unit_dims=("stimulus",),
                            provenance=make_provenance(stage="stimuli", config={}, inputs={}, seed=0))
    for u in stim.units():
        stim.write_unit(u, xr.Dataset({"image": (("stimulus", "y", "x"), pixels[u.region["stimulus"]])},
                                      coords={"stimulus": ids[u.region["stimulus"]]}))
    spec = NetworkSpec(network="mobilenet_v2", weights="untrained-seed0")
    kinds = ["conv", "batchnorm", "relu", "linear"]
    layers = layer_table(spec, kinds)
    template = build_template(stim.dataset(), layers, network="mobilenet_v2", weights="untrained-seed0",
                              batch_size=8, unit_chunk=65536)
    store = ZarrStore.create(tmp / "acts.zarr", template, unit_dims=("stimulus",),
                             provenance=make_provenance(stage="activations", config={}, inputs={}, seed=0))
    job = _Job(store=store, spec=spec, label="bench", entry_params=None, location=None, kinds=tuple(kinds),
               stimuli_path=str(stim.path), units=tuple(store.units()), device="cpu")
    result, t_ours, _ = _peak(extract_activations, job)
    model = load_network("mobilenet_v2", "untrained-seed0", in_channels=1).model.eval()
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(0, n, 8):
            model(prepare_images(pixels[k:k + 8], size=224, in_channels=1, mean=[0.3612], std=[0.3056]))
    t_plain = time.perf_counter() - t0
    units = sum(lay.units for lay in layers)
    size = sum(f.stat().st_size for f in (tmp / "acts.zarr").rglob("*") if f.is_file())
    print(f"\nMobileNetV2 extraction, {n} stimuli at 224 px, {len(layers)} layers, {units:,} units per stimulus "
          f"({4 * units * n / 2**20:.0f} MiB float32, {size / 2**20:.0f} MiB on disk)")
    print(f"{'method':44s} {'seconds':>9s} {'stim/s':>9s}")
    print(f"{'plain forward, no hooks, no writes':44s} {t_plain:9.2f} {n / t_plain:9.1f}")
    print(f"{'mfrs task: hooks + Zarr writes (1 thread)':44s} {t_ours:9.2f} {n / t_ours:9.1f}")
    assert result["written"] == [u.key for u in store.units()]


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    n = int(argv[0]) if argv else 150
    p = int(argv[1]) if len(argv) > 1 else 400_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-nets-"))
    try:
        bench_rdm(tmp, n, p)
        bench_extraction(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
