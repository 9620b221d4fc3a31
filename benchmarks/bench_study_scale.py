"""The study's shape through the MEG and similarity stages: wall time, peak RSS, bytes, plan vs measured.

Run: ``python benchmarks/bench_study_scale.py [--size quick|medium|study] [--grid ico4|ico5] [--workdir DIR]
[--steps all|similarity]``
(``python -m benchmarks study_scale`` takes the size from ``$MFRS_BENCH_STUDY_SIZE``, default ``quick``).

1. A simulated subject (the project's own simulation, :mod:`mfrs.demo.simulate`) at the study's
   shape: 428 stimuli (:mod:`mfrs.demo.study_stimuli`: 150 per category, 22 excluded as in the study)
   shown twice (first presentations and repeats), 1100 Hz, 6 runs. The ``ico4`` grid (5,124
   vertices) is the default on small disks: what scales with vertices is also given for ``ico5``
   (20,484, the factor printed).
2. The MEG stage (cleaning, then sources) on a local dask cluster, one worker, memory limit
   ``--memory-limit`` (8 GB): wall time per task kind, the worker's peak RSS, bytes read and written,
   and each task's CPU seconds (the worker's ``getrusage`` user + system time, all threads, polled
   every 0.5 s and given to the tasks it ran). The MEG plan's memory is checked against the worker's
   peak RSS (``VmHWM``) and its time against the tasks' CPU seconds (no longer wall time, which the
   shared machine inflates). ``--meg-only`` stops there; with ``--workdir`` a second run reuses the
   simulated recordings of the first (the MEG stage is recomputed).
3. Model RDMs (activations + model_rdms stages, the demo's two MobileNetV2s).
4. The similarity stage in raw mode for a block of regions over every sample (1101) with 16
   subjects (sub-01 and 15 noisy copies of it), on two one-thread workers; then the fused kernel
   (:func:`mfrs.similarity.fused.rsa_block`, one thread) on the same arrays: the stage/kernel ratio.
5. The plans of both stages (``mfrs plan``'s figures) against the measurements: PASS within +-30 %.
   Similarity: the plan's memory per task against the peak RSS (``VmHWM``) of the worker processes,
   and its CPU seconds (one worker's, plus each further worker's start and layer preparation)
   against the CPU seconds (user + system, all threads) the worker processes used during the run,
   read with ``getrusage`` before and after: CPU time, unlike wall time, is not inflated by the
   other processes of a shared machine. ``--steps similarity --workdir DIR`` reruns only this
   step on the data an earlier run with ``--workdir DIR`` left there.

Every number is measured in this run; the machine may be shared (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mfrs.meg.types import GRID_VERTICES  # noqa: E402
from mfrs.stage import format_bytes  # noqa: E402
from tests.tests_support import peak_rss  # noqa: E402

#: name -> (stimuli per category, runs, sfreq, similarity regions); "study" is reference.md's shape.
SIZES = {"quick": (10, 2, 1100.0, 2), "medium": (50, 6, 1100.0, 4), "study": (150, 6, 1100.0, 4)}
TOLERANCE = 0.30
N_SUBJECTS = 16


@dataclass
class Step:
    name: str
    seconds: float
    peak_rss: dict[str, int]
    read: int = 0
    written: int = 0
    task_seconds: dict[str, float] = field(default_factory=dict)
    task_rss: dict[str, int] = field(default_factory=dict)
    baseline_rss: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per worker process during the step
    task_cpu: dict[str, float] = field(default_factory=dict)


HEADER = f"{'step':48s} {'wall s':>8s} {'read':>10s} {'written':>10s}  peak RSS per worker"


def _print_step(s: Step) -> None:
    rss = ", ".join(f"{format_bytes(v)}" for v in s.peak_rss.values()) or "-"
    print(f"{s.name:48s} {s.seconds:8.1f} {format_bytes(s.read):>10s} {format_bytes(s.written):>10s}  {rss}")
    for task, sec in s.task_seconds.items():
        peak, cpu = s.task_rss.get(task), s.task_cpu.get(task)
        print(f"  task {task:42s} {sec:8.1f} s compute" + (f", {cpu:.1f} s CPU" if cpu is not None else "")
              + (f", RSS up to {format_bytes(peak)} (sampled; idle worker {format_bytes(s.baseline_rss)})"
                 if peak else ""), flush=True)


class _Steps(list):
    """Steps, each printed as soon as it is measured (a long run shows its numbers as it goes)."""

    def append(self, step: Step) -> None:
        super().append(step)
        _print_step(step)


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _cluster(n_workers: int, memory_limit: str):
    from mfrs.cluster import LocalProfile, get_client

    return get_client(LocalProfile(n_workers=n_workers, gpu_workers=0, memory_limit=memory_limit))


def _catalog(root: Path, stimulus_folder: Path, exclude: Path) -> Path:
    spec = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    spec["root"] = str(root)
    spec["entries"]["stimulus_images"]["location"] = str(stimulus_folder)
    spec["entries"]["stimulus_images"]["params"] = {"exclude": str(exclude)}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _worker_rss(client) -> dict[str, int]:
    return {k.rsplit(":", 1)[-1]: v for k, v in client.run(peak_rss).items()}


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class _Sampler(threading.Thread):
    """Polls the workers' RSS, CPU time and running tasks: peak RSS and CPU seconds per task name.

    A task's name is the part of its key before '-<n>'. The CPU a worker process used between two
    polls (``getrusage``: user + system, all threads) goes to the tasks it ran at either poll, split
    evenly: CPU time, unlike wall time, is not inflated by other jobs on a shared machine.
    """

    def __init__(self, client, period: float = 0.5):
        super().__init__(daemon=True)
        self.client, self.period, self.done = client, period, threading.Event()
        self.by_task: dict[str, int] = {}
        self.cpu: dict[str, float] = {}
        self.baseline = max(client.run(_rss).values())
        self._last_cpu = client.run(_cpu_seconds)
        self._last_running: dict[str, set[str]] = {}

    def run(self) -> None:
        while not self.done.wait(self.period):
            if not self.poll():
                return
        self.poll()

    def poll(self) -> bool:
        try:
            rss, cpu, running = self.client.run(_rss), self.client.run(_cpu_seconds), self.client.processing()
        except Exception:  # noqa: BLE001 - a poll during shutdown
            return False
        for worker, keys in running.items():
            names = {str(key[0] if isinstance(key, tuple) else key).rsplit("-", 1)[0] for key in keys}
            for name in names:
                self.by_task[name] = max(self.by_task.get(name, 0), rss.get(worker, 0))
            both = names | self._last_running.get(worker, set())
            spent = cpu.get(worker, 0.0) - self._last_cpu.get(worker, 0.0)
            for name in both:
                self.cpu[name] = self.cpu.get(name, 0.0) + spent / len(both)
            self._last_running[worker] = names
        self._last_cpu = cpu
        return True


def _run_stage(name: str, module, config, catalog, n_workers: int, memory_limit: str, *,
               read: int = 0, written: list[Path] = (), cpu=None) -> Step:
    from distributed import get_task_stream

    from mfrs.pipeline import run_stage

    with _cluster(n_workers, memory_limit) as client:
        sampler = _Sampler(client)
        sampler.start()
        cpu0 = client.run(cpu) if cpu else {}
        t0 = time.perf_counter()
        with get_task_stream(client) as ts:
            run_stage(module, config=config, catalog=catalog, client=client)
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        used = {k.rsplit(":", 1)[-1]: v - cpu0[k] for k, v in client.run(cpu).items()} if cpu else {}
        rss = _worker_rss(client)
    tasks: dict[str, float] = {}
    for t in ts.data:
        key = str(t["key"][0] if isinstance(t["key"], tuple) else t["key"]).rsplit("-", 1)[0]
        tasks[key] = tasks.get(key, 0.0) + sum(s["stop"] - s["start"] for s in t["startstops"]
                                               if s["action"] == "compute")
    return Step(name, seconds, rss, read, sum(_du(p) for p in written), tasks, sampler.by_task, sampler.baseline,
                used, sampler.cpu)


def meg_config(grid: str, signals: list[str], spacing: str):
    """The MEG stage as the study runs it (1100 Hz, 90 Hz low-pass), with the demo's cheaper ICA/covariance."""
    from mfrs.stages import meg

    return meg.Config.model_validate({
        "ica": {"method": "picard", "n_components": 20, "decim": 11, "fit_duration": 90.0},
        "covariance": {"method": "empirical"}, "source": {"spacing": spacing, "grid": grid},
        "envelopes": [s for s in signals if s != "broadband"]})


def similarity_config(regions: list[str]):
    from mfrs.stages import similarity

    # region_block and time_block are the stage's defaults (4 regions; the sources' time chunk): what a user gets
    return similarity.Config.model_validate({"mode": "raw", "regions": regions, "categories": ["all"]})


def _sixteen_subjects(src_path: Path, dest: Path, regions: list[str], seed: int = 0) -> int:
    """A sources store of 16 subjects (sub-01 and noisy copies), only the vertices of ``regions``."""
    import fnmatch

    import dask.array as da
    import xarray as xr

    from mfrs.store import ZarrStore

    store = ZarrStore.open(src_path, entry_name="sources")
    ds = store.dataset()
    keep = np.flatnonzero([any(fnmatch.fnmatch(str(r), p) for p in regions) for r in ds["region"].values])
    one = ds.isel(subject=[0], vertex=keep)
    first = one["activity"].values  # (1, signal, stimulus, time, vertex)
    subjects = [f"sub-{k:02d}" for k in range(1, N_SUBJECTS + 1)]
    tmpl = xr.concat([one.assign_coords(subject=[s]) for s in subjects], dim="subject")
    v_chunk = int(ds["activity"].chunks[4][0])  # the MEG stage's vertex chunk, as it writes them
    chunks = (1, 1, first.shape[2], ds["activity"].chunks[3], min(v_chunk, len(keep)))
    tmpl["activity"] = (tmpl["activity"].dims, da.zeros(tmpl["activity"].shape, dtype=np.float32, chunks=chunks),
                        dict(ds["activity"].attrs))
    prov = dict(store.provenance)
    prov["note"] = "bench_study_scale: sub-01 of the MEG stage and 15 noisy copies, regions " + ", ".join(regions)
    out = ZarrStore.create(dest, tmpl, unit_dims=("subject",), provenance=prov, overwrite=True,
                           entry_name="sources")
    rng = np.random.default_rng(seed)
    scale = float(np.nanstd(first))
    for unit in out.units():
        s = unit.labels["subject"][0]
        data = first if s == subjects[0] else first + rng.normal(0, scale, first.shape).astype(np.float32)
        out.write_unit(unit, tmpl[["activity"]].sel(subject=[s]).copy(data={"activity": data}))
    return len(keep)


def kernel_seconds(sources: Path, models: Path, regions: list[str], config) -> tuple[float, float]:
    """CPU seconds of :func:`rsa_block` (one thread, its CPU clock) on the stage's arrays, and seconds to read them."""
    from mfrs.similarity.blocks import prepare_block
    from mfrs.similarity.fused import model_matrix, rsa_block
    from mfrs.similarity.threads import single_threaded
    from mfrs.store import ZarrStore

    src = ZarrStore.open(sources, entry_name="sources").dataset()
    rdm = ZarrStore.open(models, entry_name="model_rdms").dataset()["rdm"].values.astype(np.float32)
    model = model_matrix(prepare_block(rdm, config.method))
    kernel = read = 0.0
    with single_threaded():
        warm = np.random.default_rng(0).standard_normal((2, 1, src.sizes["stimulus"], 3)).astype(np.float32)
        rsa_block(warm, model, metric=config.metric, method=config.method)  # compile outside the timing
        for region in sorted(set(src["region"].values.astype(str))):
            t0 = time.perf_counter()
            x = src["activity"].isel(signal=0).sel(vertex=src["region"].values == region).values
            read += time.perf_counter() - t0
            x = np.ascontiguousarray(x.transpose(0, 2, 1, 3))  # (subject, time, stimulus, vertex)
            t0 = time.thread_time()
            rsa_block(x, model, metric=config.metric, method=config.method, time_batch=config.exec.time_batch)
            kernel += time.thread_time() - t0
    return kernel, read


def _verdict(plan: float, measured: float) -> str:
    ratio = plan / measured if measured else float("inf")
    ok = abs(ratio - 1) <= TOLERANCE
    return f"{'PASS' if ok else 'MISS'} plan/measured {ratio:.2f} (target 1 +- {TOLERANCE:.0%})"


def _meg_verdicts(meg_plan, meg_step: Step) -> None:
    """The MEG plan against the worker's peak RSS (``VmHWM``) and the tasks' CPU seconds."""
    meg_rss = max(meg_step.peak_rss.values())
    cpu = sum(v for k, v in meg_step.task_cpu.items() if k.startswith("meg-"))
    for note in meg_plan.notes:
        print(f"  plan note: {note}")
    print(f"  meg memory/task   plan {format_bytes(meg_plan.memory_per_task):>10s}  measured "
          f"{format_bytes(meg_rss):>10s}  {_verdict(meg_plan.memory_per_task, meg_rss)}")
    print(f"  meg CPU time      plan {meg_plan.seconds:9.0f}s  measured {cpu:9.0f}s CPU of its tasks "
          f"({meg_step.seconds:.0f} s wall, load average {_loadavg()})  {_verdict(meg_plan.seconds, cpu)}",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default=os.environ.get("MFRS_BENCH_STUDY_SIZE", "quick"))
    ap.add_argument("--quick", action="store_const", const="quick", dest="size", help="same as --size quick")
    ap.add_argument("--grid", choices=["ico4", "ico5"], default="ico4")
    ap.add_argument("--spacing", default="oct5", help="source space (the study: oct6)")
    ap.add_argument("--signals", default="broadband", help="comma-separated: broadband,theta,alpha,...")
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--meg-only", action="store_true", help="stop after the MEG stage and its plan check")
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temporary folder, removed)")
    ap.add_argument("--steps", choices=["all", "similarity"], default="all",
                    help="similarity: only the similarity stage and its plan, on the 16-subject sources and model "
                    "RDMs an earlier run of the same --size left in --workdir")
    args = ap.parse_args(argv)
    n_per_cat, n_runs, sfreq, n_regions = SIZES[args.size]
    signals = args.signals.split(",")
    print(f"size {args.size}: {n_per_cat} stimuli per category (x2 presentations), {n_runs} runs, {sfreq:.0f} Hz, "
          f"grid {args.grid}, spacing {args.spacing}, signals {signals}; worker memory limit {args.memory_limit}")
    print(f"machine: {os.cpu_count()} cores, load average {_loadavg()} (shared)")
    if args.steps == "similarity":
        if not args.workdir:
            ap.error("--steps similarity reuses an earlier run's data: pass its --workdir")
        return _similarity_only(Path(args.workdir), args)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mfrs-bench-scale-"))
    try:
        return _bench(work, args, n_per_cat, n_runs, sfreq, n_regions, signals)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def _bench(work: Path, args, n_per_cat: int, n_runs: int, sfreq: float, n_regions: int,
           signals: list[str]) -> int:
    from mfrs.catalog import load_catalog
    from mfrs.demo.anatomy import build_template_subjects_dir
    from mfrs.demo.config import DemoDataConfig
    from mfrs.demo.simulate import generate_bids
    from mfrs.demo.study_stimuli import write_study_stimuli
    from mfrs.pipeline import run_stage
    from mfrs.stages import activations, meg, model_rdms, stimuli
    from mfrs.stages.demo_data import weights_sources

    steps: list[Step] = _Steps()
    print(HEADER)
    # ds000117's stimuli/meg in shape: 3 x n_per_cat bitmaps and the study's exclusions (150 -> 428 kept)
    exclude = write_study_stimuli(work / "stimuli", n_per_category=n_per_cat, size=96)
    folder = work / "stimuli" / "meg"
    catalog = load_catalog(_catalog(work / "root", folder, exclude))
    t0 = time.perf_counter()
    done = work / "root" / ".simulated"
    if done.exists():  # --workdir kept from an earlier run of the same size: simulated data reused
        print(f"reusing the simulated data of {done.parent}; the MEG stage's outputs are recomputed")
        for path in (catalog.path("epochs"), catalog.path("sources"), meg.work_folder(catalog)):
            shutil.rmtree(path, ignore_errors=True)
    else:
        with _cluster(1, args.memory_limit) as client:
            run_stage(stimuli, config=stimuli.Config(size=96), catalog=catalog, client=client)
        region_size = 45 if args.grid == "ico5" else 11
        subjects_dir = build_template_subjects_dir(catalog.path("anatomy"), grid=args.grid,
                                                   region_size=region_size)
        demo = DemoDataConfig(n_subjects=1, n_runs=n_runs, sfreq=sfreq, grid=args.grid, region_size=region_size)
        generate_bids(catalog.path("ds000117"), subjects_dir=subjects_dir, stimuli=catalog.open("stimuli"),
                      config=demo, weights=weights_sources(demo, catalog))
        done.write_text(f"{args.size} {args.grid}\n")
    raw = sum(p.stat().st_size for p in catalog.path("ds000117").rglob("*_meg.fif"))
    n_stim = catalog.open("stimuli").sizes["stimulus"]
    steps.append(Step("simulate (stimuli + BIDS)", time.perf_counter() - t0, {}, 0, raw))
    print(f"simulated: {n_stim} stimuli, {n_runs} runs at {sfreq:.0f} Hz, {format_bytes(raw)} of FIF")

    mcfg = meg_config(args.grid, signals, args.spacing)
    meg_plan = meg.plan(config=mcfg, catalog=catalog)
    steps.append(_run_stage("meg (clean + sources)", meg, mcfg, catalog, 1, args.memory_limit, read=raw,
                            written=[catalog.path("epochs"), catalog.path("sources"), meg.work_folder(catalog)]))
    print("\nplan vs measured (meg)")
    _meg_verdicts(meg_plan, steps[-1])
    if args.meg_only:
        return 0

    acfg = activations.Config.model_validate({"layer_kinds": ["relu", "linear"], "batch_size": 25, "networks": [
        {"network": "mobilenet_v2", "weights": "weights_mobilenet_v2_imagenet", "input_size": 96},
        {"network": "mobilenet_v2", "weights": "untrained-seed0", "input_size": 96}]})
    t0 = time.perf_counter()
    with _cluster(2, args.memory_limit) as client:
        run_stage(activations, config=acfg, catalog=catalog, client=client)
        run_stage(model_rdms, config=model_rdms.Config(), catalog=catalog, client=client)
    steps.append(Step("activations + model_rdms", time.perf_counter() - t0, {}, 0,
                      _du(catalog.path("activations")) + _du(catalog.path("model_rdms"))))

    # similarity: 16 subjects, a block of regions, every sample
    names = sorted({str(r) for r in catalog.open("sources")["region"].values if not str(r).startswith("unknown")})
    regions = names[:n_regions]
    root2 = work / "root16"
    cat2 = load_catalog(_catalog(root2, folder, exclude))
    t0 = time.perf_counter()
    n_vert = _sixteen_subjects(catalog.path("sources"), cat2.path("sources"), regions)
    shutil.copytree(catalog.path("model_rdms"), cat2.path("model_rdms"))
    steps.append(Step(f"16-subject sources ({len(regions)} regions, {n_vert} vertices)", time.perf_counter() - t0,
                      {}, 0, _du(cat2.path("sources"))))
    sim_lines = similarity_step(steps, cat2, regions, args.memory_limit)

    print(f"\n{HEADER}")
    for s in steps:
        _print_step(s)
    meg_step = steps[1]
    factor = GRID_VERTICES["ico5"] / GRID_VERTICES[args.grid]
    if factor != 1:
        src = _du(catalog.path("sources"))
        print(f"\nico5 extrapolation (x{factor:.1f} vertices): sources {format_bytes(src)} -> "
              f"{format_bytes(src * factor)} per subject and signal set")
    print("\nplan vs measured")
    _meg_verdicts(meg_plan, meg_step)
    for line in sim_lines:
        print(line)
    _gpu_ratio(catalog, acfg)
    return 0


def _cpu_seconds() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def similarity_step(steps: list[Step], catalog, regions: list[str], memory_limit: str,
                    n_workers: int = 2) -> list[str]:
    """Plan, run (``n_workers`` one-thread workers) and measure the similarity stage; the lines comparing them."""
    from mfrs.stages import similarity

    scfg = similarity_config(regions)
    sim_plan = similarity.plan(config=scfg, catalog=catalog)
    sim = _run_stage("similarity (raw, 16 subjects)", similarity, scfg, catalog, n_workers, memory_limit,
                     read=_du(catalog.path("sources")) + _du(catalog.path("model_rdms")),
                     written=[catalog.path("rsa")], cpu=_cpu_seconds)
    steps.append(sim)
    kernel, read = kernel_seconds(catalog.path("sources"), catalog.path("model_rdms"), regions, scfg)
    sim_rss = max(sim.peak_rss.values())
    workers = len(sim.peak_rss)
    cpu = sum(sim.cpu.values())
    planned = sim_plan.seconds + (workers - 1) * sim_plan.worker_seconds
    lines = [f"  similarity memory plan {format_bytes(sim_plan.memory_per_task):>10s}  measured "
             f"{format_bytes(sim_rss):>10s}  {_verdict(sim_plan.memory_per_task, sim_rss)}",
             f"  similarity CPU    plan {planned:9.1f}s  measured {cpu:9.1f}s  {_verdict(planned, cpu)}  "
             f"(CPU seconds of the {workers} worker processes during the run; plan {sim_plan.seconds:.1f} s on one "
             f"worker + {workers - 1} x {sim_plan.worker_seconds:.1f} s per further worker; wall {sim.seconds:.1f} s; "
             f"load average {_loadavg()})"]
    lines += [f"    plan: {note}" for note in sim_plan.notes]
    b = similarity.last_breakdown()  # the stage's own per-task phases, summed over its tasks
    if b:
        lines.append("similarity stage, summed over its " + f"{b.get('tasks', 0):.0f} tasks (wall s | worker CPU s): "
                     + ", ".join(f"{k} {b[k]:.1f} | {b['cpu_' + k]:.1f}" for k in similarity.TASK_PHASES)
                     + f"; kernel {b['kernel_fraction']:.0%} of task wall time, {b['cpu_kernel_fraction']:.0%} of "
                     "task CPU time")
        lines.append(f"stage efficiency (issue 14 item 4): kernel {b['cpu_kernel']:.1f} CPU s of the workers' "
                     f"{cpu:.1f} CPU s during the run = {b['cpu_kernel'] / cpu:.0%} (target >= 80 %; the rest: reads "
                     f"{b['cpu_read']:.1f}, copies {b['cpu_copy']:.1f}, writes {b['cpu_write']:.1f}, in tasks otherwise "
                     f"{b['cpu_other']:.1f}, outside tasks (dask, worker start, idle polling) "
                     f"{cpu - b['cpu_total']:.1f}) {'PASS' if b['cpu_kernel'] >= 0.8 * cpu else 'MISS'}")
    lines.append(f"fused kernel alone (same arrays, one thread, in this process after the run): {kernel:.1f} CPU s, "
                 f"{read:.1f} s to read them; stage {cpu:.1f} CPU s in {workers} workers -> stage/kernel "
                 f"{cpu / kernel:.2f} (varies with the machine's load: the two runs are minutes apart)")
    return lines


def _similarity_only(work: Path, args) -> int:
    """The similarity step alone, on the 16-subject sources and model RDMs an earlier run left in ``work``."""
    from mfrs.catalog import load_catalog

    path = work / "root16" / "data_catalog.yaml"
    if not path.exists():
        print(f"--steps similarity: no earlier run in {work} ({path} missing); run once with --workdir {work} "
              "(and no --steps) first", file=sys.stderr)
        return 2
    catalog = load_catalog(path)
    shutil.rmtree(catalog.path("rsa"), ignore_errors=True)
    regions = sorted({str(r) for r in catalog.open("sources")["region"].values})
    steps: list[Step] = _Steps()
    print(HEADER)
    lines = similarity_step(steps, catalog, regions, args.memory_limit)
    print("\nplan vs measured")
    for line in lines:
        print(line)
    return 0


def _gpu_ratio(catalog, acfg) -> None:
    """Activation extraction on the GPU against the CPU, same network and stimuli, when a GPU is present."""
    import torch

    if not torch.cuda.is_available():
        print("activations GPU/CPU: no CUDA device here; ratio not measured")
        return
    from mfrs.nets.hooks import LayerRecorder, select_modules
    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.weights import load_network

    spec = acfg.networks[1]
    images = catalog.open("stimuli")["image"].values
    times = {}
    for device in ("cpu", "cuda"):
        model = load_network(spec.network, spec.weights, in_channels=spec.in_channels,
                             num_classes=spec.num_classes).model.to(device).eval()
        x = prepare_images(images, size=spec.size, in_channels=spec.in_channels, mean=spec.mean,
                           std=spec.std).to(device)
        with LayerRecorder(model, select_modules(model, acfg.layer_kinds)) as rec:
            rec.run(x[:8])
            t0 = time.perf_counter()
            rec.run(x)
            times[device] = time.perf_counter() - t0
    print(f"activations GPU/CPU time: {times['cuda'] / times['cpu']:.3f} ({times['cuda']:.2f} s vs {times['cpu']:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
