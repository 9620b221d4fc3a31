"""Training: any of the seven networks on an ``images`` dataset, with checkpoints and resume.

Stage ``train``. Reads a Zarr image dataset (``image (item, y, x[, channel])`` uint8,
``label (item,)`` int, ``split (item,)`` train/valid/test) and writes into the folder of
its ``output`` catalog entry: ``checkpoints/epoch-NNN.pt`` after every epoch,
``metrics.jsonl`` (one line per epoch), and at the end ``weights.pth`` (a plain state
dict that ``mfrs.nets.weights`` loads) with ``weights.json`` (the catalog entry to add).
Optimisers SGD, momentum, Adam, AdamW; step learning-rate schedule; every face loss of
the study (``mfrs.nets.losses``: cross-entropy, center, SphereFace, ArcFace, CosFace, the
class-level and pair-wise circle losses, contrastive, triplet). Pair-wise losses train on
identity batches (P identities x K images of the training split only, so pairs and
triplets never cross into the validation or test identities). A rerun resumes from the
last checkpoint of the same settings (raising ``epochs`` continues a finished run);
``overwrite`` starts afresh. Checkpoints hold tensors and plain values only, and are read
back with ``torch.load(weights_only=True)``. The whole run is one task, with
``resources={"GPU": 1}`` when the cluster has GPU workers; without CUDA it runs on the
CPU and says so in the log. The steps (batches, resume, epoch, evaluation, checkpoint,
export) live in :mod:`mfrs.nets.training`; this module wires them to the Config.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import InputDataError
from mfrs.nets.specs import INPUT_SIZES, MIN_INPUT_SIZES
from mfrs.nets.types import Device, LossName, Network, OptimizerName, PairMiner, TripletMiner
from mfrs.provenance import fingerprint, make_provenance, science_parameters
from mfrs.runner import run_units
from mfrs.stage import ExecSettings, Plan, StageConfig

if TYPE_CHECKING:
    from distributed import Client

    from mfrs.store import ZarrStore

__all__ = ["NAME", "Exec", "Config", "inputs", "outputs", "plan", "run", "train", "build_loss", "TrainTask"]

NAME = "train"
log = logging.getLogger(__name__)

class Exec(ExecSettings):
    """Execution settings of the train stage: the same numbers whatever their values."""

    device: Device = Field("auto", description="auto: CUDA when the worker sees it, else the CPU")


class Config(StageConfig):
    """Settings of the train stage."""

    network: Network = "mobilenet_v2"
    images: str = Field("images", description="catalog entry of the image dataset (Zarr)")
    output: str = Field("trained", description="catalog entry (a folder) for checkpoints and weights")
    init: str = Field("untrained-seed0", description="untrained-seed<N>, or a weights entry to fine-tune")
    in_channels: Literal[1, 3] = 1
    input_size: int | None = Field(None, ge=16, le=1024)
    mean: list[float] = Field(default_factory=lambda: [0.3612], min_length=1, max_length=3)
    std: list[float] = Field(default_factory=lambda: [0.3056], min_length=1, max_length=3)
    optimizer: OptimizerName = "momentum"
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="used by 'momentum' only")
    weight_decay: float = Field(5e-4, ge=0)
    step_size: int = Field(10, ge=1, description="epochs between learning-rate steps")
    gamma: float = Field(0.1, gt=0, le=1, description="learning-rate factor at each step")
    loss: LossName = "cross_entropy"
    margin: float | None = Field(None, ge=0, description="default per loss: ArcFace 0.5 rad, CosFace 0.35, "
                                 "SphereFace m=4, circle 0.25, contrastive 1.0, triplet 0.2")
    scale: float | None = Field(None, gt=0, description="ArcFace/CosFace scale s (30), circle gamma (256)")
    center_weight: float = Field(0.003, ge=0, description="center loss lambda")
    center_alpha: float = Field(0.5, gt=0, le=1, description="center loss: learning rate of the centres")
    sphereface_lambda_min: float = Field(5.0, ge=0, description="SphereFace annealing floor")
    sphereface_lambda_max: float = Field(1000.0, ge=0, description="SphereFace annealing start")
    pair_miner: PairMiner = Field("all", description="pairs of circle_pair / contrastive")
    triplet_miner: TripletMiner = Field("semihard", description="triplets of the triplet loss")
    images_per_identity: int = Field(4, ge=2, description="K of the P x K batches of the pair-wise losses")
    aux_weight: float = Field(0.4, ge=0, description="Inception-v3 auxiliary-head loss weight")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=2)
    shuffle_chunks: int = Field(4, ge=1, description="store chunks shuffled together (bounded memory)")
    seed: int = 0
    exec: Exec = Exec()

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.input_size is not None and self.input_size < MIN_INPUT_SIZES[self.network]:
            raise ValueError(f"input_size {self.input_size} is below {self.network}'s minimum "
                             f"{MIN_INPUT_SIZES[self.network]}")
        for what in ("mean", "std"):
            if len(getattr(self, what)) not in (1, self.in_channels):
                raise ValueError(f"{what} has {len(getattr(self, what))} values for in_channels={self.in_channels}")
        if self.pairwise and self.batch_size < 2 * self.images_per_identity:
            raise ValueError(f"loss {self.loss} compares identities within a batch: batch_size "
                             f"{self.batch_size} must hold at least 2 identities x images_per_identity "
                             f"{self.images_per_identity}")
        if self.loss == "sphereface" and self.margin is not None and self.margin not in (1, 2, 3, 4):
            raise ValueError(f"SphereFace's margin is the integer angle multiplier m (1-4), not {self.margin}")
        return self

    @property
    def pairwise(self) -> bool:
        """Whether the loss compares items of a batch (identity batches, no classifier trained)."""
        return self.loss in ("circle_pair", "contrastive", "triplet")

    @property
    def size(self) -> int:
        """Input size in pixels."""
        return self.input_size or INPUT_SIZES[self.network]


def inputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries read."""
    from mfrs.nets.specs import parse_untrained

    return [cfg.images] + ([] if parse_untrained(cfg.init) is not None else [cfg.init])


def outputs(cfg: Config, catalog: Catalog) -> list[str]:
    """Catalog entries written."""
    return [cfg.output]


# ----------------------------------------------------------------------------- data
def _open_images(path: Path, entry: str) -> Any:
    import xarray as xr

    if not path.exists():
        raise InputDataError(f"catalog entry {entry!r}: no image dataset at {path}; build it first "
                             f"(`mfrs run <pipeline> --stages images`).")
    ds = xr.open_zarr(path, chunks=None)
    missing = [v for v in ("image", "label", "split") if v not in ds.variables]
    if missing:
        raise InputDataError(f"catalog entry {entry!r} ({path}) lacks {missing}; an image dataset needs "
                             f"image (item, y, x[, channel]) uint8, label (item,) and split (item,).")
    return ds


def _read_images(path: Path, *, entry: str, batch_size: int) -> Any:
    """The :class:`mfrs.nets.training.TrainingImages` of catalog ``entry``, with enough training items."""
    from mfrs.nets.training import TrainingImages

    images = TrainingImages.from_dataset(_open_images(path, entry))
    if images.train.size < batch_size:
        raise InputDataError(f"catalog entry {entry!r}: {images.train.size} training items, fewer than "
                             f"batch_size {batch_size}; lower batch_size.")
    return images


def _images_fingerprint(images: Any) -> str:
    """The dataset a checkpoint was trained on: its provenance, size, labels and splits."""
    return fingerprint({"attrs": images.attrs.get("provenance", {}).get("fingerprint"), "n": int(images.labels.size),
                        "labels": images.labels, "split": images.split})


def _run_fingerprint(cfg: Config, images_fp: str) -> str:
    """What a checkpoint may be resumed under: the science settings (:func:`mfrs.provenance.science_parameters`)
    but ``epochs``, since a finished run continues to more epochs."""
    parameters, _ = science_parameters(cfg)
    return fingerprint({"config": {k: v for k, v in parameters.items() if k != "epochs"}, "images": images_fp})


# ----------------------------------------------------------------------------- the task
def build_loss(cfg: Config, classifier: Any) -> Any:
    """The :class:`mfrs.nets.losses.FaceLoss` of ``cfg`` on the network's ``classifier``."""
    from mfrs.nets.losses import FaceLoss

    return FaceLoss(cfg.loss, classifier, margin=cfg.margin, scale=cfg.scale, center_weight=cfg.center_weight,
                    center_alpha=cfg.center_alpha, lambda_min=cfg.sphereface_lambda_min,
                    lambda_max=cfg.sphereface_lambda_max, pair_miner=cfg.pair_miner,
                    triplet_miner=cfg.triplet_miner)


def _trainer(cfg: Config, *, num_classes: int, init_params: dict[str, Any] | None, init_location: str | None,
             device: Any) -> Any:
    """The :class:`mfrs.nets.training.Trainer` of ``cfg``: network (``cfg.init``), loss, optimiser, schedule."""
    import torch

    from mfrs.nets.losses import final_linear
    from mfrs.nets.training import Trainer, make_optimizer
    from mfrs.nets.weights import load_network

    loaded = load_network(cfg.network, cfg.init, in_channels=cfg.in_channels, num_classes=num_classes,
                          entry_params=init_params, location=init_location, seed=cfg.seed)
    model = loaded.model.to(device)
    criterion = build_loss(cfg, final_linear(model)[1]).to(device)
    optimizer = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return Trainer(model=model, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
                   aux_weight=cfg.aux_weight)


def _prepare_folder(output_dir: Path, *, overwrite: bool, provenance: dict[str, Any] | None) -> Path:
    """The run's folder with its ``checkpoints/`` (emptied first with ``overwrite``) and ``provenance.json``."""
    output_dir = Path(output_dir)
    if overwrite and output_dir.exists():
        log.warning("train: --overwrite given, deleting %s", output_dir)
        shutil.rmtree(output_dir)
    (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if provenance is not None:
        (output_dir / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    return output_dir


def train(cfg: Config, *, images_path: Path, output_dir: Path, images_entry: str = "images",
          init_params: dict[str, Any] | None = None, init_location: str | None = None,
          overwrite: bool = False, stop_after: int | None = None,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or resume training) ``cfg.network`` on an image dataset: the steps of
    :mod:`mfrs.nets.training` (resume, then per epoch train, evaluate, checkpoint; export at the end).

    Parameters
    ----------
    cfg : Config
    images_path : Path
        The Zarr image dataset.
    output_dir : Path
        Checkpoints, metrics and final weights go here.
    images_entry : str
        The dataset's catalog entry, named in errors.
    init_params, init_location
        The weights entry of ``cfg.init`` when it is not ``untrained-seed<N>``.
    overwrite : bool
        Delete earlier checkpoints and metrics first.
    stop_after : int, optional
        Stop after this many epochs of this call (an interruption, for tests and time limits).
    provenance : dict, optional
        Written to ``output_dir/provenance.json``.

    Returns
    -------
    dict
        ``epochs_run`` (epochs trained by this call), ``last_epoch``, ``weights`` (path of the
        final weights, None when stopped early), ``worker``, ``device``.

    Raises
    ------
    StoreError
        ``output_dir`` holds checkpoints of other settings and ``overwrite`` is False.
    """
    from mfrs.nets import training as steps
    from mfrs.stages.activations import choose_device

    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:
        worker = None
    images = _read_images(images_path, entry=images_entry, batch_size=cfg.batch_size)
    run_fp = _run_fingerprint(cfg, _images_fingerprint(images))
    output_dir = _prepare_folder(output_dir, overwrite=overwrite, provenance=provenance)
    device = choose_device(cfg.exec.device, stage=NAME)
    trainer = _trainer(cfg, num_classes=images.num_classes, init_params=init_params, init_location=init_location,
                       device=device)
    def load(idx: np.ndarray) -> Any:
        return images.load(idx, size=cfg.size, in_channels=cfg.in_channels, mean=cfg.mean, std=cfg.std,
                           device=device)

    def epoch_batches(idx: np.ndarray, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
        return images.batches(idx, batch_size=cfg.batch_size, rng=rng, seed=cfg.seed,
                              per_identity=cfg.images_per_identity if cfg.pairwise else None,
                              shuffle_chunks=cfg.shuffle_chunks if rng is not None else 1)

    start_epoch = steps.resume(output_dir, trainer=trainer, fingerprint=run_fp, seed=cfg.seed, entry=cfg.output)
    last = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    for epoch in range(start_epoch + 1, last + 1):
        tic = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, epoch]))
        record = {"epoch": epoch, **steps.train_epoch(
            trainer, batches=epoch_batches(images.train, rng),
            load=load, source=f"catalog entry {images_entry!r}")}
        if images.valid.size:
            record.update(steps.evaluate(
                trainer, batches=epoch_batches(images.valid, None),
                load=load))
        record["seconds"] = time.perf_counter() - tic
        steps.save_checkpoint(output_dir, trainer=trainer, epoch=epoch, fingerprint=run_fp,
                              config=cfg.model_dump(mode="json"))
        steps.append_metrics(output_dir, record=record)
        log.info("train: epoch %d/%d %s", epoch, cfg.epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch" and v is not None))
    epochs_run = max(last - start_epoch, 0)
    weights = None
    if start_epoch + epochs_run >= cfg.epochs:  # a finished run's files stay as they are
        weights = steps.export_weights(
            output_dir, model=trainer.model, rewrite=epochs_run > 0,
            params={"network": cfg.network, "dataset": cfg.images, "num_classes": images.num_classes,
                    "in_channels": cfg.in_channels})
    return {"epochs_run": epochs_run, "last_epoch": start_epoch + epochs_run,
            "weights": str(weights) if weights else None, "worker": worker, "device": str(device)}


# ----------------------------------------------------------------------------- stage API
def plan(*, config: Config, catalog: Catalog) -> Plan:
    """What training reads and writes (one task)."""
    path = catalog.path(config.images)
    ds = _open_images(path, config.images)
    n_train = int((ds["split"].values.astype(str) == "train").sum())
    return Plan(stage=NAME, reads={config.images: int(ds["image"].nbytes) * config.epochs},
                n_tasks=1, n_units=config.epochs,
                memory_per_task=int(config.batch_size * config.in_channels * config.size**2 * 4 * 50 + 2**30),
                seconds=0.05 * n_train * config.epochs,
                notes=[f"{n_train} training items x {config.epochs} epochs of {config.network}"])


@dataclass(frozen=True)
class TrainTask:
    """The one training task's arguments (see :func:`train`)."""

    config: Config
    images_path: Path
    images_entry: str
    output_dir: Path
    init_params: dict[str, Any] | None
    init_location: str | None
    overwrite: bool
    provenance: dict[str, Any]


def _task(task: TrainTask) -> dict[str, Any]:
    return train(task.config, images_path=task.images_path, output_dir=task.output_dir,
                 images_entry=task.images_entry, init_params=task.init_params, init_location=task.init_location,
                 overwrite=task.overwrite, provenance=task.provenance)


def run(*, config: Config, catalog: Catalog, client: Client, inputs: Mapping[str, ZarrStore],
        overwrite: bool = False) -> dict[str, Any]:
    """Train as one task (on a GPU worker when there is one); resumes from the last checkpoint.

    The images store comes checked complete in ``inputs``; the task reads it by path.
    """
    from mfrs.cluster import gpu_workers
    from mfrs.nets.specs import parse_untrained
    from mfrs.stages.activations import weights_entry

    images_path = inputs[config.images].path
    params = location = None
    if parse_untrained(config.init) is None:
        params, location = weights_entry(config.init, catalog, stage=NAME)
    output_dir = catalog.path(config.output)
    provenance = make_provenance(stage=NAME, config=config, inputs={config.images: str(images_path)},
                                 seed=config.seed, client=client)
    resources = {"GPU": 1.0} if gpu_workers(client) else None
    log.info("train: one task on %s", "a GPU worker" if resources else "a CPU worker (the cluster has no GPU workers)")
    task = TrainTask(config=config, images_path=images_path, images_entry=config.images,
                     output_dir=output_dir, init_params=params, init_location=location, overwrite=overwrite,
                     provenance=provenance)
    return run_units(client, _task, [task], key=lambda t: f"{t.config.network}->{t.config.output}",
                     description=NAME, resources=resources, stage=NAME)
