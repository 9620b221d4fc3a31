"""CNN stage speed and memory: model RDMs from chunked moments, and layer extraction to Zarr.

Run: ``python benchmarks/bench_nets.py [N_STIMULI] [N_UNITS]`` (default 150 stimuli,
400,000 units). Three parts, each with baselines measured in the same run; the networks
run on CUDA when this machine has it, else on the CPU, and every table names the device:

1. One layer's correlation RDM. Ours: ``mfrs.stages.model_rdms.layer_rdm`` reading the
   layer from a Zarr store 65,536 units at a time (I/O included). Baselines: scipy
   ``pdist`` on the whole layer in memory, and the reference study's loop of one
   ``scipy.stats.pearsonr`` per stimulus pair (timed on 30 stimuli, scaled by pairs).
   Peak memory from tracemalloc (numpy reports its buffers to it).
2. MobileNetV2 (grayscale, 224 px, every conv/bn/relu/linear layer) on 32 stimuli,
   batch 8: the stage's task (hooks, copies, Zarr writes of 140 layers) against a
   plain forward pass of the same batches without hooks or writes, in images/s.
3. Training steps/s: the train stage (Zarr reads, preprocessing, ArcFace loss,
   optimiser, checkpoint) for MobileNetV2 at 112 px, batch 16, against bare training
   steps on tensors already in memory.
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

    from mfrs.stages.model_rdms import layer_rdm

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


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} thread(s))"


def bench_extraction(tmp: Path, n: int = 32) -> None:
    import dask.array as da
    import torch
    import xarray as xr

    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.weights import load_network
    from mfrs.provenance import make_provenance
    from mfrs.stages.activations import NetworkSpec, _Job, build_template, extract_activations, layer_table
    from mfrs.store import ZarrStore

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
               stimuli_path=str(stim.path), units=tuple(store.units()), device="auto")
    t0 = time.perf_counter()
    result = extract_activations(job)
    t_ours = time.perf_counter() - t0
    model = load_network("mobilenet_v2", "untrained-seed0", in_channels=1).model.eval().to(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(0, n, 8):
            model(prepare_images(pixels[k:k + 8], size=224, in_channels=1, mean=[0.3612], std=[0.3056]).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_plain = time.perf_counter() - t0
    units = sum(lay.units for lay in layers)
    size = sum(f.stat().st_size for f in (tmp / "acts.zarr").rglob("*") if f.is_file())
    print(f"\nMobileNetV2 extraction, {n} stimuli at 224 px, {len(layers)} layers, {units:,} units per stimulus "
          f"({4 * units * n / 2**20:.0f} MiB float32, {size / 2**20:.0f} MiB on disk), device {_device()}")
    print(f"{'method':44s} {'seconds':>9s} {'images/s':>9s}")
    print(f"{'plain forward, no hooks, no writes':44s} {t_plain:9.2f} {n / t_plain:9.1f}")
    print(f"{'mfrs task: hooks + Zarr writes':44s} {t_ours:9.2f} {n / t_ours:9.1f}")
    assert result["written"] == [u.key for u in store.units()]
    assert result["device"] == str(device)


def bench_training(tmp: Path, n: int = 96, batch: int = 16, size: int = 112) -> None:
    import torch
    import xarray as xr

    from mfrs.nets.losses import final_linear
    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.training import read_metrics
    from mfrs.nets.weights import load_network
    from mfrs.stages import train as training

    torch.set_num_threads(1)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(2)
    labels = np.arange(n) % 8
    pixels = rng.integers(0, 256, size=(n, size, size), dtype=np.uint8)
    xr.Dataset({"image": (("item", "y", "x"), pixels), "label": ("item", labels.astype(np.int32)),
                "split": ("item", np.array(["train"] * n))}).chunk({"item": 32}).to_zarr(
        tmp / "faces.zarr", mode="w", zarr_format=3, consolidated=True)
    cfg = training.Config(network="mobilenet_v2", images="faces", input_size=size, loss="arcface",
                          optimizer="momentum", epochs=1, batch_size=batch, seed=0)
    t0 = time.perf_counter()
    result = training.train(cfg, images_path=tmp / "faces.zarr", output_dir=tmp / "trained", images_entry="faces")
    t_stage = time.perf_counter() - t0
    steps = n // batch
    seconds_epoch = read_metrics(tmp / "trained")[0]["seconds"]

    model = load_network("mobilenet_v2", "untrained-seed0", in_channels=1, num_classes=8).model.to(device).train()
    loss_fn = training.build_loss(cfg, final_linear(model)[1]).to(device)
    feats: dict = {}
    final_linear(model)[1].register_forward_pre_hook(lambda m, a: feats.__setitem__("x", a[0]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = prepare_images(pixels[:batch], size=size, in_channels=1, mean=[0.3612], std=[0.3056]).to(device)
    y = torch.from_numpy(labels[:batch]).to(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), feats["x"], y).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t_bare = time.perf_counter() - t0
    print(f"\nTraining MobileNetV2, {n} images at {size} px, batch {batch}, ArcFace, {steps} steps, "
          f"device {_device()}")
    print(f"{'method':44s} {'seconds':>9s} {'steps/s':>9s}")
    print(f"{'bare steps, batch in memory':44s} {t_bare:9.2f} {steps / t_bare:9.2f}")
    print(f"{'train stage epoch (reads, loss, metrics)':44s} {seconds_epoch:9.2f} {steps / seconds_epoch:9.2f}")
    print(f"{'train stage call (+ build, checkpoint)':44s} {t_stage:9.2f} {steps / t_stage:9.2f}")
    assert result["device"] == str(device)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    n = int(argv[0]) if argv else 150
    p = int(argv[1]) if len(argv) > 1 else 400_000
    tmp = Path(tempfile.mkdtemp(prefix="bench-nets-"))
    try:
        bench_rdm(tmp, n, p)
        bench_extraction(tmp)
        bench_training(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
