"""Layer activations: every selected layer of each (network, weights), stimulus by stimulus, to Zarr.

Stage ``activations``. One task per (network, weights) runs the network over the
``stimuli`` store batch by batch and writes ``activations/<network>/<weights>``: one
variable per layer ``(stimulus, unit_<layer>)`` float32, chunked ``(batch_size,
unit_chunk)`` so that no reader holds a 10^6-unit layer whole, plus the ``layer``
index of design.md (coords ``network``, ``name``, ``depth``, ``kind``, ``weights``,
``units``). A unit of the store is one stimulus batch, marked complete after its
write, so a rerun continues where a killed task stopped. Tasks ask for
``resources={"GPU": 1}`` when the cluster has GPU workers; the device is chosen
inside the task (CUDA when visible, else the CPU with a log line saying so).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
from pydantic import Field, field_validator, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import ConfigError, StoreError
from mfrs.nets.types import LAYER_KINDS, Device, LayerKind, Network
from mfrs.provenance import make_provenance
from mfrs.runner import run_units
from mfrs.stage import ExecSettings, Plan, Settings, StageConfig, format_bytes
from mfrs.store import Unit, ZarrStore

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["NAME", "NetworkSpec", "Exec", "Config", "inputs", "outputs", "plan", "run", "weights_label",
           "layer_table", "build_template", "choose_device", "extract_activations", "weights_entry"]

NAME = "activations"
log = logging.getLogger(__name__)

#: Layer-index coordinate names (design.md §3) that no layer variable may shadow.
_RESERVED = {"stimulus", "category", "condition", "file", "layer", "network", "name", "depth", "kind",
             "weights", "units"}


class NetworkSpec(Settings):
    """One (network, weights) to run, with its input format."""

    network: Network
    weights: str = Field("untrained-seed0", description="a `weights` catalog entry, or untrained-seed<N>")
    in_channels: Literal[1, 3] = Field(1, description="1: grayscale, RGB kernels summed (the reference)")
    num_classes: int | None = Field(None, ge=1, description="default: the weights entry's, else 1000")
    input_size: int | None = Field(None, ge=16, le=1024, description="pixels; default per network")
    mean: list[float] = Field(default_factory=lambda: [0.3612], min_length=1, max_length=3)
    std: list[float] = Field(default_factory=lambda: [0.3056], min_length=1, max_length=3)

    @model_validator(mode="after")
    def _check(self) -> NetworkSpec:
        from mfrs.nets.specs import MIN_INPUT_SIZES

        for what in ("mean", "std"):
            if len(getattr(self, what)) not in (1, self.in_channels):
                raise ValueError(f"{what} has {len(getattr(self, what))} values for "
                                 f"in_channels={self.in_channels}; give 1 or {self.in_channels}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {self.std}")
        if self.input_size is not None and self.input_size < MIN_INPUT_SIZES[self.network]:
            raise ValueError(f"input_size {self.input_size} is below {self.network}'s minimum "
                             f"{MIN_INPUT_SIZES[self.network]}")
        return self

    @property
    def size(self) -> int:
        """Input size in pixels."""
        from mfrs.nets.specs import INPUT_SIZES

        return self.input_size or INPUT_SIZES[self.network]


def _default_networks() -> list[NetworkSpec]:
    return [NetworkSpec(network="mobilenet_v2", weights="weights_mobilenet_v2_imagenet"),
            NetworkSpec(network="mobilenet_v2", weights="untrained-seed0")]


class Exec(ExecSettings):
    """Execution settings of the activations stage: the same numbers whatever their values."""

    unit_chunk: int = Field(65536, ge=256, description="units per store chunk along unit_<layer>")
    device: Device = Field("auto", description="auto: CUDA when the worker sees it, else the CPU")


class Config(StageConfig):
    """Settings of the activations stage."""

    networks: list[NetworkSpec] = Field(default_factory=_default_networks, min_length=1)
    layer_kinds: list[LayerKind] = Field(default_factory=lambda: list(LAYER_KINDS), min_length=1)
    batch_size: int = Field(8, ge=1, le=4096, description="stimuli per forward pass and per store chunk")
    exec: Exec = Exec()

    @field_validator("layer_kinds")
    @classmethod
    def _unique_kinds(cls, kinds: list[LayerKind]) -> list[LayerKind]:
        return list(dict.fromkeys(kinds))


# ----------------------------------------------------------------------------- naming
def weights_label(spec: NetworkSpec, catalog: Catalog) -> str:
    """The ``weights`` coordinate of a spec: the entry's ``dataset`` param, ``untrained-seedN``, or
    for the output folder of a ``train`` stage its entry name with ``-`` for ``/``."""
    from mfrs.nets.specs import parse_untrained

    if parse_untrained(spec.weights) is not None:
        return spec.weights
    entry = catalog.entry(spec.weights)
    if entry.kind == "folder":
        return spec.weights.replace("/", "-")
    if entry.kind != "weights":
        raise ConfigError(f"stage activations: {spec.network} weights {spec.weights!r} is a catalog "
                          f"entry of kind {entry.kind!r}, not 'weights' (or a train stage's output "
                          f"folder); name a weights entry or untrained-seed<N>.")
    return str(entry.params.get("dataset") or spec.weights)


def weights_entry(name: str, catalog: Catalog, *, stage: str = NAME) -> tuple[dict[str, Any], str]:
    """``(params, location)`` of weights named ``name``: a ``weights`` catalog entry, or the
    output folder of a ``train`` stage (its ``weights.json``, the entry that training wrote,
    with the sha256 of the file it made).

    Raises
    ------
    ConfigError
        ``name`` is neither kind of entry.
    StoreError
        The folder has no finished training (no ``weights.json``).
    """
    import json

    entry = catalog.entry(name)
    if entry.kind == "weights":
        return dict(entry.params), entry.uri
    if entry.kind != "folder":
        raise ConfigError(f"stage {stage}: weights {name!r} is a catalog entry of kind {entry.kind!r}; name a "
                          f"weights entry, a train stage's output folder, or untrained-seed<N>.")
    record = entry.path / "weights.json"
    if not record.is_file():
        raise StoreError(f"stage {stage}: {entry.path} (catalog entry {name!r}) holds no finished training "
                         f"(no weights.json); run the train stage that writes {name!r} first.")
    written = json.loads(record.read_text())
    return dict(written["params"]), str(written["location"])


def _entry_name(spec: NetworkSpec, catalog: Catalog) -> str:
    return f"activations/{spec.network}/{weights_label(spec, catalog)}"


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read: the stimuli and every weights entry named."""
    from mfrs.nets.specs import parse_untrained

    named = [s.weights for s in cfg.networks if parse_untrained(s.weights) is None]
    return ["stimuli", *dict.fromkeys(named)]


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written: ``activations/<network>/<weights label>`` per spec (see :func:`weights_label`)."""
    return [_entry_name(s, catalog) for s in cfg.networks]


def _check_unique(cfg: Config, catalog: Catalog) -> None:
    seen: dict[str, int] = {}
    for i, spec in enumerate(cfg.networks):
        name = _entry_name(spec, catalog)
        if name in seen:
            raise ConfigError(f"stage activations: networks[{seen[name]}] and networks[{i}] both write "
                              f"{name!r}; give each (network, weights) once.")
        seen[name] = i


# ----------------------------------------------------------------------------- layers and template
def layer_table(spec: NetworkSpec, kinds: list[LayerKind], *, num_classes: int = 1000) -> list[Any]:
    """The layers recorded for ``spec`` (``LayerInfo`` list), from a shape-only pass on torch's meta device.

    ``num_classes``: used when ``spec.num_classes`` is None (the weights entry's count).
    """
    from mfrs.nets.hooks import network_layers

    layers = network_layers(spec.network, kinds, in_channels=spec.in_channels, size=spec.size,
                            num_classes=spec.num_classes or num_classes)
    clash = sorted({lay.name for lay in layers} & _RESERVED)
    if clash:
        raise ConfigError(f"{spec.network}: layer names {clash} clash with coordinate names.")
    return layers


def build_template(stimuli: xr.Dataset, layers: list[Any], *, network: str, weights: str,
                   batch_size: int, unit_chunk: int) -> xr.Dataset:
    """The empty (dask) activations Dataset of one (network, weights).

    ``stimuli``: the stimuli Dataset (its stimulus coords are copied). Returns one
    variable per layer ``(stimulus, unit_<layer>)`` plus the ``layer`` index with coords
    ``network, name, depth, kind, weights, units``.
    """
    import dask.array as da

    n = stimuli.sizes["stimulus"]
    denominator = max(len(layers) - 1, 1)
    data_vars = {}
    for lay in layers:
        chunks = (min(batch_size, n), min(unit_chunk, lay.units))
        data_vars[lay.name] = xr.Variable(
            ("stimulus", f"unit_{lay.name}"), da.zeros((n, lay.units), chunks=chunks, dtype="float32"),
            attrs={"layer": f"{network}/{weights}/{lay.name}", "module": lay.module, "kind": lay.kind,
                   "depth": lay.index / denominator, "shape": list(lay.shape)})
    coords: dict[str, tuple[str, Any]] = {
        name: ("stimulus", stimuli[name].values) for name in ("stimulus", "category", "condition", "file")
        if name in stimuli.coords}
    coords.update({
        "layer": ("layer", [f"{network}/{weights}/{lay.name}" for lay in layers]),
        "network": ("layer", [network] * len(layers)),
        "name": ("layer", [lay.name for lay in layers]),
        "depth": ("layer", np.array([lay.index / denominator for lay in layers], dtype="float64")),
        "kind": ("layer", [lay.kind for lay in layers]),
        "weights": ("layer", [weights] * len(layers)),
        "units": ("layer", np.array([lay.units for lay in layers], dtype="int64")),
    })
    return xr.Dataset(data_vars, coords=coords, attrs={"network": network, "weights": weights})


# ----------------------------------------------------------------------------- the task
def choose_device(setting: Device, *, stage: str = NAME) -> Any:
    """The torch device for ``setting`` on this worker (``auto``: CUDA when visible).

    With ``auto`` and no CUDA device the task runs on the CPU, and the log says so
    (naming the worker), so a GPU task that fell back is never silent.
    """
    import torch

    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError(f"stage {stage}: device 'cuda' was asked for, but this worker sees no "
                              "CUDA device; use device: auto, or run on GPU workers.")
        return torch.device("cuda")
    if setting == "auto":
        try:
            from distributed import get_worker

            where = f"worker {get_worker().address}"
        except ValueError:
            where = "this process"
        log.info("%s: no CUDA device visible in %s, running on the CPU", stage, where)
    return torch.device("cpu")


@dataclass(frozen=True)
class _Job:
    store: ZarrStore
    spec: NetworkSpec
    label: str
    entry_params: dict[str, Any] | None
    location: str | None
    kinds: tuple[LayerKind, ...]
    stimuli_path: str
    units: tuple[Unit, ...]
    device: Device


def extract_activations(job: _Job) -> dict[str, Any]:
    """Run one (network, weights) over the missing stimulus batches and write them.

    Returns
    -------
    dict
        ``worker`` (address), ``device``, ``written`` (unit keys), ``seconds``,
        ``peak_gpu_bytes`` (CUDA only).
    """
    import torch

    from mfrs.nets.hooks import LayerRecorder, select_modules
    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.weights import load_network

    start = time.perf_counter()
    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:  # run outside a worker (tests, debugging)
        worker = None
    device = choose_device(job.device)
    spec = job.spec
    loaded = load_network(spec.network, spec.weights, in_channels=spec.in_channels,
                          num_classes=spec.num_classes, entry_params=job.entry_params,
                          location=job.location)
    model = loaded.model.to(device).eval()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stimuli = xr.open_zarr(job.stimuli_path, chunks=None, consolidated=True)
    expected = xr.open_zarr(job.store.path, chunks=None, consolidated=True)["name"].values.tolist()
    written = []
    with LayerRecorder(model, select_modules(model, job.kinds)) as recorder:
        for unit in job.units:
            ids = unit.labels["stimulus"]
            images = stimuli["image"].sel(stimulus=ids).values
            x = prepare_images(images, size=spec.size, in_channels=spec.in_channels,
                               mean=spec.mean, std=spec.std).to(device)
            outputs = recorder.run(x)
            if list(outputs) != expected:
                missing = sorted(set(expected) - set(outputs))[:5]
                extra = sorted(set(outputs) - set(expected))[:5]
                raise StoreError(f"{job.label}: the forward pass recorded other layers than store "
                                 f"{job.store.path} holds (missing {missing}, extra {extra}, or another "
                                 f"order); rerun with --overwrite.")
            data = xr.Dataset({name: (("stimulus", f"unit_{name}"), arr) for name, arr in outputs.items()},
                              coords={"stimulus": list(ids)})
            job.store.write_unit(unit, data)
            written.append(unit.key)
            log.info("activations: %s wrote %s on %s", job.label, unit.key, device)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else None
    return {"worker": worker, "device": str(device), "written": written,
            "seconds": time.perf_counter() - start, "peak_gpu_bytes": peak, "weights": loaded.record()}


# ----------------------------------------------------------------------------- stage API
def _weights_entry(spec: NetworkSpec, catalog: Catalog) -> tuple[dict[str, Any] | None, str | None]:
    from mfrs.nets.specs import parse_untrained

    if parse_untrained(spec.weights) is not None:
        return None, None
    return weights_entry(spec.weights, catalog)


def _num_classes(spec: NetworkSpec, catalog: Catalog) -> int:
    """Classifier outputs: the spec's, else the weights entry's, else 1000."""
    params, _ = _weights_entry(spec, catalog)
    return int(spec.num_classes or (params or {}).get("num_classes") or 1000)


def _provenance(spec: NetworkSpec, config: Config, catalog: Catalog, stimuli_fp: str, client: Client) -> dict:
    """The provenance of one store: the config narrowed to its (network, weights)."""
    from mfrs.nets.specs import parse_untrained

    params, _ = _weights_entry(spec, catalog)
    inputs_fp = {"stimuli": stimuli_fp}
    if params is not None:
        inputs_fp[spec.weights] = str(params.get("sha256"))
    narrowed = {"network": spec, "layer_kinds": list(config.layer_kinds), "batch_size": config.batch_size,
                "exec": config.exec}
    return make_provenance(stage=NAME, config=narrowed, inputs=inputs_fp,
                           seed=parse_untrained(spec.weights), client=client)


def plan(*, config: Config, catalog: Catalog) -> Plan:
    """What the stage reads, writes and holds (layer sizes from a shape-only pass)."""
    _check_unique(config, catalog)
    stimuli = ZarrStore.open(catalog.path("stimuli"), entry_name="stimuli").dataset(warn_incomplete=False)
    n = stimuli.sizes["stimulus"]
    writes, memory, n_units, notes = {}, 0, 0, []
    for spec in config.networks:
        layers = layer_table(spec, config.layer_kinds, num_classes=_num_classes(spec, catalog))
        units = sum(lay.units for lay in layers)
        name = _entry_name(spec, catalog)
        writes[name] = 4 * n * units
        # one batch of all layers, its copy for writing, the input and the network's own buffers
        memory = max(memory, 2 * 4 * config.batch_size * units + 200 * 2**20)
        n_units += -(-n // config.batch_size)
        notes.append(f"{name}: {len(layers)} layers, {units:,} units per stimulus")
    notes.append(f"peak per task ~{format_bytes(memory)} at batch_size {config.batch_size}")
    return Plan(stage=NAME, reads={"stimuli": int(stimuli["image"].nbytes)}, writes=writes,
                n_tasks=len(config.networks), n_units=n_units, memory_per_task=memory,
                seconds=0.1 * n * len(config.networks), notes=notes)


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> dict[str, Any]:
    """Create or resume every activations store and fill its missing batches (one task per store).

    Returns
    -------
    dict
        Store entry name -> the task's record (see :func:`extract_activations`);
        stores already complete are absent.
    """
    from mfrs.cluster import gpu_workers

    stimuli_store = inputs["stimuli"]
    _check_unique(config, catalog)
    stimuli = stimuli_store.dataset(warn_incomplete=False)
    stimuli_fp = stimuli_store.provenance.get("fingerprint", "")
    jobs = []
    for spec in config.networks:
        label = weights_label(spec, catalog)
        name = _entry_name(spec, catalog)
        layers = layer_table(spec, config.layer_kinds, num_classes=_num_classes(spec, catalog))
        template = build_template(stimuli, layers, network=spec.network, weights=label,
                                  batch_size=config.batch_size, unit_chunk=config.exec.unit_chunk)
        store = ZarrStore.create(catalog.path(name), template, unit_dims=("stimulus",),
                                 provenance=_provenance(spec, config, catalog, stimuli_fp, client),
                                 overwrite=overwrite, entry_name=name)
        store.depends_on(stimuli_store)  # batches computed from other stimuli count as stale
        units = store.units()
        missing = store.missing_units()
        for unit in units:
            if unit in missing:
                log.info("activations: %s %s not marked complete, computing", name, unit.key)
            else:
                log.info("activations: %s %s complete, skipping", name, unit.key)
        if not missing:
            log.info("activations: %s complete (%d batches), nothing to do", name, len(units))
            continue
        log.info("activations: %s: %d of %d batches to compute", name, len(missing), len(units))
        params, location = _weights_entry(spec, catalog)
        jobs.append(_Job(store=store, spec=spec, label=name, entry_params=params, location=location,
                         kinds=tuple(config.layer_kinds), stimuli_path=str(stimuli_store.path),
                         units=tuple(missing), device=config.exec.device))
    gpus = gpu_workers(client)
    resources = {"GPU": 1.0} if gpus else None
    log.info("activations: %d task(s) on %s", len(jobs), f"{len(gpus)} GPU worker(s)" if gpus else "CPU workers")
    return run_units(client, extract_activations, jobs, key=lambda j: j.label, description=NAME,
                     resources=resources, stage=NAME)
