"""Images stage throughput: 10,000 generated face photos with face crops, on 1 and 2 dask workers.

Run: ``python benchmarks/bench_images.py [N_IMAGES]`` (default 10,000). Writes a
folder of 128x128 JPEG photos (a real LFW face from scikit-image, scaled to
72 px, planted at a random place on a noisy background) in 200 identity
folders, then converts it with Haar face crops (64 px, gray) into
a Zarr store on a LocalCluster of 1 and then 2 single-thread worker processes,
measured in the same run. Baseline: the same per-image work in one plain
Python loop (no dask, no Zarr) on the first 1,000 images.
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
from pathlib import Path

import numpy as np

N_IDENTITIES = 200
#: Face crops as CelebA-like photos need them: faces fill about half the picture, so min_face 0.3.
CROP = {"mode": "face", "size": 64, "color": "gray", "min_face": 0.3}


def generate(root: Path, n: int) -> float:
    """Write ``n`` face photos into identity folders; return seconds taken."""
    import cv2
    from PIL import Image
    from skimage.data import lfw_subset

    t0 = time.perf_counter()
    faces = np.round(lfw_subset()[:100] * 255).astype(np.uint8)
    faces = np.stack([cv2.resize(f, (72, 72), interpolation=cv2.INTER_CUBIC) for f in faces])
    rng = np.random.default_rng(0)
    for i in range(n):
        identity = f"id{i % N_IDENTITIES:04d}"
        img = np.clip(128 + rng.integers(-20, 21, (128, 128)), 0, 255).astype(np.uint8)
        x0, y0 = rng.integers(0, 57, 2)
        img[y0:y0 + 72, x0:x0 + 72] = faces[(i * 7 + i // N_IDENTITIES) % 100]
        folder = root / identity
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - t0


def write_catalog(path: Path, source: Path, out: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"root": str(path.parent), "entries": {
        "bench_faces": {"kind": "images", "location": str(source)},
        "images": {"kind": "zarr", "location": str(out)}}}))
    return path


def _cpu_seconds() -> float:
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system


def run_once(catalog_path: Path, n_workers: int, output: str) -> tuple[float, int, int, float]:
    """Convert on ``n_workers`` worker processes; return (seconds, items, failed, worker CPU seconds)."""
    from distributed import Client, LocalCluster

    from mfrs.catalog import load_catalog
    from mfrs.pipeline import run_stage
    from mfrs.stages import images as stage

    catalog = load_catalog(catalog_path)
    cfg = stage.Config.model_validate({"seed": 0, "datasets": [{
        "output": output, "source": "bench_faces", "layout": "identity_folders",
        "split": {"train": None, "valid": 0.1, "test": 0.1},
        "crop": CROP, "chunk_items": 250}]})
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: __import__("mfrs.stages.images"))  # imports are not part of the work
        cpu0 = client.run(_cpu_seconds)
        t0 = time.perf_counter()
        run_stage(stage, config=cfg, catalog=catalog, client=client)
        seconds = time.perf_counter() - t0
        cpu = sum(client.run(_cpu_seconds).values()) - sum(cpu0.values())
    ds = catalog.open(output)
    return seconds, ds.sizes["item"], int(ds.attrs["n_failed"]), cpu


def baseline(source: Path, n: int) -> float:
    """Images/s of the bare per-image work (decode, detect, crop) in one loop, no dask or Zarr."""
    from mfrs.images.convert import convert_items
    from mfrs.images.faces import CropSpec

    paths = sorted(source.glob("*/*.jpg"))[:n]
    spec = CropSpec(**CROP)
    convert_items(paths[:10], spec)
    t0 = time.perf_counter()
    convert_items(paths, spec)
    return n / (time.perf_counter() - t0)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    work = Path(tempfile.mkdtemp(prefix="mfrs-bench-images-"))
    try:
        source = work / "faces"
        gen = generate(source, n)
        print(f"data: {n} JPEG photos 128x128 (LFW face at 72 px on noise), {N_IDENTITIES} identities; "
              f"generated in {gen:.1f} s; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        catalog_path = write_catalog(work / "catalog.yaml", source, work / "out")
        base = baseline(source, min(n, 1000))
        print(f"\n  {'baseline: one Python loop':32s} {base:8.1f} images/s  (decode + Haar face + crop, "
              "no dask, no Zarr)")
        rates = {}
        for workers in (1, 2):
            seconds, items, failed, cpu = run_once(catalog_path, workers, f"images/w{workers}")
            rates[workers] = items / seconds
            print(f"  {f'images stage, {workers} worker(s)':32s} {rates[workers]:8.1f} images/s  "
                  f"({items} items in {seconds:.1f} s, {items / cpu:.0f} images per worker CPU-second, "
                  f"{failed} without a face found)")
        print(f"\n  speed-up 2 workers vs 1: {rates[2] / rates[1]:.2f}x; stage on 1 worker vs bare loop: "
              f"{rates[1] / base:.2f}x; load average at the end {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores (other work on the machine lowers the speed-up)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
