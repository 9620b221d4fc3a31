"""Dask clients for the cluster profiles in ``cluster/*.yaml``: local, slurm, or an address.

Profiles are validated once. ``local`` is a distributed cluster of worker
processes on this machine, one thread each (one BLAS and one Numba thread per
process), with optional GPU workers that carry the resource ``GPU=1``.
``slurm`` is a dask-jobqueue SLURMCluster: CPU jobs plus GPU jobs
(``--gres=gpu:1``, worker resource ``GPU=1``) on the same scheduler. Anything
that looks like ``tcp://host:port`` connects to a running scheduler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from mfrs.errors import ClusterError, ConfigError

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["LocalProfile", "SlurmProfile", "AddressProfile", "SecuritySpec", "LOOPBACK", "load_profile", "get_client",
           "gpu_workers", "worker_memory_limit", "render_job_scripts", "WORKER_ENV"]

log = logging.getLogger(__name__)

#: Environment of every worker process: one BLAS / OpenMP / Numba thread each (threads fight here).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1"}


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Where the local cluster listens: loopback only, so no other machine can reach it.
LOOPBACK = "127.0.0.1"


class SecuritySpec(_Profile):
    """TLS between client, scheduler and workers (``distributed.security.Security``).

    ``temporary: true`` creates a self-signed certificate at start (SLURM jobs get it
    through ``shared_temp_directory``, a folder every node sees); otherwise name PEM files.
    """

    temporary: bool = Field(True, description="self-signed certificates made at start")
    ca_file: str | None = None
    cert: str | None = Field(None, description="PEM certificate of client, scheduler and workers")
    key: str | None = Field(None, description="its private key (may be inside cert)")
    shared_temp_directory: str | None = Field(None, description="SLURM: where workers read temporary certificates")

    def build(self) -> Any:
        """The ``distributed.security.Security`` object (ConfigError for missing files)."""
        from distributed.security import Security

        if self.temporary:
            return Security.temporary()
        missing = [f for f in (self.ca_file, self.cert) if not f or not Path(f).is_file()]
        if missing:
            raise ConfigError(f"cluster profile security: files {missing} do not exist; set ca_file and cert "
                              "(and key) to PEM files, or temporary: true.")
        files = {"tls_ca_file": self.ca_file, "require_encryption": True}
        for role in ("client", "scheduler", "worker"):
            files[f"tls_{role}_cert"] = self.cert
            files[f"tls_{role}_key"] = self.key
        return Security(**files)


class LocalProfile(_Profile):
    """A distributed cluster on this machine (listening on loopback only)."""

    kind: Literal["local"] = "local"
    n_workers: int | None = Field(None, ge=1, description="CPU worker processes; None: one per core")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = Field("auto", description="per worker, e.g. '4GB'; auto: machine memory / workers")
    gpu_workers: int | Literal["auto"] = "auto"
    dashboard_address: str | None = None
    no_worker_timeout: str | None = Field(None, description="fail (exit 3) after this long without a worker")


class GpuJobSpec(_Profile):
    """The GPU job spec added to a SLURM cluster."""

    jobs: int = Field(1, ge=0)
    cores: int = Field(1, ge=1)
    memory: str = "8GB"
    walltime: str | None = None
    job_extra_directives: list[str] = Field(default_factory=lambda: ["--gres=gpu:1"])


class SlurmProfile(_Profile):
    """A dask-jobqueue SLURMCluster."""

    kind: Literal["slurm"] = "slurm"
    queue: str | None = None
    account: str | None = None
    walltime: str = "01:00:00"
    cores: int = Field(1, ge=1)
    processes: int = Field(1, ge=1)
    memory: str = "4GB"
    interface: str | None = None
    log_directory: str | None = None
    local_directory: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    worker_extra_args: list[str] = Field(default_factory=list)
    jobs: int = Field(2, ge=0, description="fixed number of CPU jobs (ignored when adaptive is set)")
    adaptive: dict[str, int] | None = None
    gpu: GpuJobSpec | None = None
    death_timeout: int = 60
    wait_for_workers_s: float = Field(120, ge=0)
    no_worker_timeout: str | None = Field(None, description="fail (exit 3) after this long without a worker")
    max_resubmits: int = Field(3, ge=0, description="jobs that end or vanish early are submitted again this often")
    security: SecuritySpec | None = None


class AddressProfile(_Profile):
    """An already running scheduler."""

    kind: Literal["address"] = "address"
    address: str
    no_worker_timeout: str | None = None
    security: SecuritySpec | None = None


Profile = Annotated[LocalProfile | SlurmProfile | AddressProfile, Field(discriminator="kind")]


def profile_dir() -> Path:
    """``cluster/`` of the current directory, else of the mfrs repository."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / "cluster").is_dir():
            return base / "cluster"
    return Path.cwd() / "cluster"


def load_profile(name: str | None = None) -> LocalProfile | SlurmProfile | AddressProfile:
    """Load a cluster profile.

    Parameters
    ----------
    name : str, optional
        ``local`` (default), ``slurm``, another ``cluster/<name>.yaml``, a YAML path,
        or a scheduler address (``tcp://host:8786``).

    Raises
    ------
    ConfigError
        Unknown profile, malformed YAML or invalid keys (named with the file).
    """
    name = name or "local"
    if "://" in name:
        return AddressProfile(address=name)
    path = Path(name) if name.endswith((".yaml", ".yml")) else profile_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profile_dir().glob("*.yaml"))
        raise ConfigError(f"no cluster profile {name!r} (looked for {path}); known profiles: "
                          f"{', '.join(known)}, or give a scheduler address like tcp://host:8786.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return TypeAdapter(Profile).validate_python(raw)  # type: ignore[arg-type]  # an Annotated union, not a type
    except yaml.YAMLError as exc:
        raise ConfigError(f"cluster profile {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid cluster profile {path}:\n" + "\n".join(lines)) from exc


def _count_gpus() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    from mfrs._subprocess import run_command

    proc = run_command(["nvidia-smi", "-L"], check=False, timeout=20)
    return sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))


def _local_cluster(profile: LocalProfile) -> Any:
    from distributed import Nanny, Scheduler, SpecCluster
    from distributed.system import MEMORY_LIMIT

    n_cpu = profile.n_workers or os.cpu_count() or 1
    n_gpu = _count_gpus() if profile.gpu_workers == "auto" else profile.gpu_workers
    total = n_cpu + n_gpu
    memory = profile.memory_limit if profile.memory_limit != "auto" else int(MEMORY_LIMIT / total)
    base = {"nthreads": profile.threads_per_worker, "memory_limit": memory, "env": WORKER_ENV,
            "silence_logs": logging.WARNING, "dashboard": bool(profile.dashboard_address), "host": LOOPBACK}
    workers = {f"cpu-{i}": {"cls": Nanny, "options": dict(base)} for i in range(n_cpu)}
    for i in range(n_gpu):
        # CUDA_VISIBLE_DEVICES pins one device per GPU worker.
        env = {**WORKER_ENV, "CUDA_VISIBLE_DEVICES": str(i)} if n_gpu > 1 else WORKER_ENV
        workers[f"gpu-{i}"] = {"cls": Nanny, "options": {**base, "env": env, "resources": {"GPU": 1}}}
    scheduler_options = ({"dashboard_address": profile.dashboard_address} if profile.dashboard_address
                         else {"dashboard": False, "dashboard_address": ":0"})
    scheduler_options["host"] = LOOPBACK
    scheduler = {"cls": Scheduler, "options": scheduler_options}
    log.info("local cluster: %d CPU worker(s), %d GPU worker(s), %s memory each", n_cpu, n_gpu,
             memory if isinstance(memory, str) else f"{memory / 2**30:.1f} GiB")
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING)


def _slurm_job_kwargs(profile: SlurmProfile) -> dict[str, Any]:
    return dict(
        queue=profile.queue, account=profile.account, walltime=profile.walltime, cores=profile.cores,
        processes=profile.processes, memory=profile.memory, interface=profile.interface,
        log_directory=profile.log_directory, local_directory=profile.local_directory,
        job_extra_directives=list(profile.job_extra_directives),
        job_script_prologue=[*(f"export {k}={v}" for k, v in WORKER_ENV.items()),
                             *profile.job_script_prologue],
        worker_extra_args=list(profile.worker_extra_args), death_timeout=profile.death_timeout,
    )


def _gpu_job_kwargs(profile: SlurmProfile) -> dict[str, Any]:
    assert profile.gpu is not None
    kwargs = _slurm_job_kwargs(profile)
    kwargs.update(cores=profile.gpu.cores, processes=1, memory=profile.gpu.memory,
                  walltime=profile.gpu.walltime or profile.walltime,
                  job_extra_directives=[*profile.job_extra_directives, *profile.gpu.job_extra_directives],
                  worker_extra_args=[*profile.worker_extra_args, "--resources", "GPU=1"])
    return kwargs


def render_job_scripts(profile: SlurmProfile, *, scheduler_address: str = "tcp://SCHEDULER:8786") -> dict[str, str]:
    """The sbatch scripts the profile would submit, without starting anything.

    Returns
    -------
    dict
        ``{"cpu": script, "gpu": script}`` (``gpu`` only when the profile has a GPU spec).
    """
    from dask_jobqueue.slurm import SLURMJob

    scripts = {"cpu": SLURMJob(scheduler=scheduler_address, name="mfrs-cpu",
                               **_slurm_job_kwargs(profile)).job_script()}
    if profile.gpu is not None and profile.gpu.jobs:
        scripts["gpu"] = SLURMJob(scheduler=scheduler_address, name="mfrs-gpu",
                                  **_gpu_job_kwargs(profile)).job_script()
    return scripts


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if "stderr:" in text and text.split("stderr:", 1)[1].strip():  # a failed sbatch: what SLURM said
        text = text.split("stderr:", 1)[1].strip()
    return text if len(text) < 300 else text[:300] + " ..."


def _keep_gpu_adaptive() -> type:
    from distributed.deploy.adaptive import Adaptive

    class KeepGpuAdaptive(Adaptive):
        """Adaptive scaling of the CPU jobs that never retires a worker with a ``GPU`` resource.

        Plain ``Adaptive`` retires an idle GPU worker too; its job then ends and the
        next GPU task waits forever.
        """

        async def workers_to_close(self, target: int) -> list[str]:
            names = await super().workers_to_close(target)
            gpu = {str(w["name"]) for w in self.cluster.scheduler_info["workers"].values()
                   if w.get("resources", {}).get("GPU")}
            return [n for n in names if str(n) not in gpu]

    return KeepGpuAdaptive


@contextlib.contextmanager
def _slurm_cluster(profile: SlurmProfile) -> Iterator[Any]:
    """A SLURMCluster with its CPU jobs, plus GPU jobs started beside it on the same scheduler.

    GPU jobs are plain ``SLURMJob`` objects rather than ``worker_spec`` entries:
    ``SpecCluster.scale`` counts and pops ``worker_spec`` entries, so the next
    scale or adapt would drop a GPU entry kept there.
    """
    from dask_jobqueue import SLURMCluster

    if not shutil.which("sbatch"):
        raise ClusterError("the slurm profile needs SLURM's sbatch on PATH; on one machine start the "
                           "local SLURM with `bash cluster/slurm-local-start.sh` (as root).")
    if profile.log_directory:
        Path(profile.log_directory).mkdir(parents=True, exist_ok=True)
    security = profile.security.build() if profile.security else None
    extra: dict[str, Any] = {}
    if profile.security is not None:
        shared = profile.security.shared_temp_directory
        if shared:
            Path(os.path.expandvars(shared)).expanduser().mkdir(parents=True, exist_ok=True)
        extra = {"security": security, "shared_temp_directory": shared}
    try:
        cluster = SLURMCluster(job_name="mfrs-cpu", **_slurm_job_kwargs(profile), **extra,
                               scheduler_options={"dashboard": False, "dashboard_address": ":0"})
    except Exception as exc:  # noqa: BLE001 - sbatch/squeue errors come as many types
        raise ClusterError(f"the SLURM cluster could not start: {_one_line(exc)}. Is SLURM up (`sinfo`)?") from exc
    gpu_jobs: list[Any] = []
    watch: _LostJobWatch | None = None
    try:
        if profile.adaptive:
            cluster.adapt(Adaptive=_keep_gpu_adaptive(), **profile.adaptive)
        else:
            for _ in range(profile.jobs):  # as scale(jobs=...) does, but submitted here, not in a callback
                cluster.worker_spec.update(cluster.new_worker_spec())
            try:
                cluster.sync(cluster._correct_state)  # a refused sbatch is an error here, not a logged traceback
            except Exception as exc:  # noqa: BLE001 - sbatch failed: the controller is down or refuses
                raise ClusterError(f"SLURM refused the worker jobs: {_one_line(exc)}. Is SLURM up (`sinfo`)?") from exc
        for i in range(profile.gpu.jobs if profile.gpu else 0):
            job = _gpu_job(cluster, profile, i, security)
            try:
                cluster.sync(job.start)
            except Exception as exc:  # noqa: BLE001 - sbatch failed: the controller is down or refuses
                raise ClusterError(f"SLURM refused the GPU job: {_one_line(exc)}. Is SLURM up (`sinfo`)?") from exc
            gpu_jobs.append(job)
        watch = _LostJobWatch(cluster, gpu_jobs, lambda i: _gpu_job(cluster, profile, i, security),
                              budget=profile.max_resubmits)
        watch.start()
        yield cluster
    finally:
        if watch is not None:
            watch.stop()
        for job in gpu_jobs:
            try:
                cluster.sync(job.close)  # scancel
            except Exception as exc:  # keep closing the rest; the job ends at its walltime anyway
                log.warning("could not cancel GPU job %s: %s", getattr(job, "job_id", "?"), exc)
        try:
            cluster.close()
        except Exception as exc:  # noqa: BLE001 - a cluster whose jobs never started fails to close
            log.warning("closing the SLURM cluster: %s", _one_line(exc))


def _gpu_job(cluster: Any, profile: SlurmProfile, i: int, security: Any) -> Any:
    from dask_jobqueue.slurm import SLURMJob

    return SLURMJob(scheduler=cluster.scheduler_address, name=f"gpu-{i}", job_name="mfrs-gpu",
                    **_gpu_job_kwargs(profile), **({"security": cluster._job_kwargs["security"]} if security else {}))


class _LostJobWatch:
    """Submits again, up to ``budget`` times in all, the worker jobs that vanished from ``squeue``
    (cancelled, failed, past their walltime) while the client still runs."""

    def __init__(self, cluster: Any, gpu_jobs: list[Any], make_gpu_job: Any, *, budget: int,
                 interval_s: float = 5.0):
        import threading

        self.cluster, self.gpu_jobs, self.make_gpu_job = cluster, gpu_jobs, make_gpu_job
        self.budget, self.interval_s = budget, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mfrs-slurm-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - never let the watch kill the run; the watchdog decides
                log.warning("SLURM job watch: %s", _one_line(exc))

    def _alive(self) -> set[str] | None:
        from mfrs._subprocess import run_command

        proc = run_command(["squeue", "-h", "--me", "-o", "%i"], check=False, timeout=30)
        return set(proc.stdout.split()) if proc.returncode == 0 else None  # None: controller unreachable

    def check(self) -> None:
        alive = self._alive()
        if alive is None:
            return
        lost_cpu = [n for n, job in list(self.cluster.workers.items())
                    if getattr(job, "job_id", None) and str(job.job_id) not in alive]
        lost_gpu = [i for i, job in enumerate(self.gpu_jobs)
                    if getattr(job, "job_id", None) and str(job.job_id) not in alive]
        for kind, lost in (("CPU", lost_cpu), ("GPU", lost_gpu)):
            if lost and self.budget < len(lost):
                log.warning("SLURM: %d %s worker job(s) gone and %d resubmission(s) left; not replacing them",
                            len(lost), kind, self.budget)
        lost_cpu = lost_cpu[:self.budget]
        self.budget -= len(lost_cpu)
        lost_gpu = lost_gpu[:self.budget]
        self.budget -= len(lost_gpu)
        if lost_cpu:
            log.warning("SLURM: worker job(s) %s gone from squeue; submitting them again (%d resubmission(s) left)",
                        ", ".join(str(self.cluster.workers[n].job_id) for n in lost_cpu), self.budget)

            async def replace() -> None:
                for name in lost_cpu:
                    self.cluster.workers.pop(name, None)
                await self.cluster._correct_state()

            self.cluster.sync(replace)
        for i in lost_gpu:
            log.warning("SLURM: GPU job %s gone from squeue; submitting it again (%d resubmission(s) left)",
                        self.gpu_jobs[i].job_id, self.budget)
            job = self.make_gpu_job(i)
            self.cluster.sync(job.start)
            self.gpu_jobs[i] = job


@contextlib.contextmanager
def get_client(profile: str | LocalProfile | SlurmProfile | AddressProfile | None = None) -> Iterator[Any]:
    """A connected ``distributed.Client`` for a profile; the cluster closes on exit.

    Parameters
    ----------
    profile : str or profile, optional
        See :func:`load_profile`; default ``local``.

    Yields
    ------
    distributed.Client
    """
    import dask

    prof = load_profile(profile) if profile is None or isinstance(profile, str) else profile
    settings = {"mfrs.no-worker-timeout": prof.no_worker_timeout} if prof.no_worker_timeout else {}
    with dask.config.set(settings):
        yield from _connected(prof)


def _task_threads() -> int | None:
    """The thread count of the worker whose task the calling thread runs; None outside a task."""
    from distributed import get_worker

    try:
        worker = get_worker()
    except ValueError:
        return None
    return int(worker.state.nthreads)


def _setup_worker() -> None:
    """Run in every worker: hide the zarr warnings of :data:`mfrs.store.ZARR_NOISE` and tell the similarity
    engine how to recognise a task's thread (:func:`mfrs.similarity.threads.set_worker_probe`)."""
    from mfrs.similarity.threads import set_worker_probe
    from mfrs.store import ignore_zarr_noise

    ignore_zarr_noise()
    set_worker_probe(_task_threads)


def _quiet_workers(client: Client) -> Client:
    """Every worker (also those started later) runs :func:`_setup_worker`."""
    client.register_worker_callbacks(setup=_setup_worker)
    return client


def _connected(prof: LocalProfile | SlurmProfile | AddressProfile) -> Iterator[Client]:
    from distributed import Client

    if isinstance(prof, AddressProfile):
        security = prof.security.build() if prof.security else None
        try:
            client = Client(prof.address, timeout="20s", security=security)
        except OSError as exc:
            raise ClusterError(f"cannot reach the scheduler at {prof.address}: {exc}. Is it running?") from exc
        with client:
            yield _quiet_workers(client)
        return
    cluster_cm = contextlib.closing(_local_cluster(prof)) if isinstance(prof, LocalProfile) else _slurm_cluster(prof)
    with cluster_cm as cluster, Client(cluster) as client:
        if isinstance(prof, SlurmProfile) and not prof.adaptive:
            n = prof.jobs * prof.processes + (prof.gpu.jobs if prof.gpu else 0)
            try:
                client.wait_for_workers(n, timeout=prof.wait_for_workers_s)
            except TimeoutError as exc:
                raise ClusterError(
                    f"only {len(client.scheduler_info()['workers'])} of {n} SLURM workers started within "
                    f"{prof.wait_for_workers_s:.0f} s; check `squeue` and the job logs in "
                    f"{prof.log_directory or 'the working directory'}.") from exc
        yield _quiet_workers(client)


def gpu_workers(client: Client) -> list[str]:
    """Addresses of the workers that carry a ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(addr for addr, w in workers.items() if w.get("resources", {}).get("GPU"))


def worker_memory_limit(client: Client) -> int | None:
    """The smallest memory limit of the cluster's workers (None when unlimited or unknown)."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    limits = [w.get("memory_limit") or 0 for w in workers]
    return min(limits) if limits and min(limits) > 0 else None
