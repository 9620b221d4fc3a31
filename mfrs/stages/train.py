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
CPU and says so in the log.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from mfrs.catalog import Catalog
from mfrs.errors import InputDataError, StoreError
from mfrs.nets.specs import INPUT_SIZES, MIN_INPUT_SIZES
from mfrs.nets.types import Device, LossName, Network, OptimizerName, PairMiner, TripletMiner
from mfrs.provenance import fingerprint, make_provenance, science_parameters
from mfrs.runner import run_units
from mfrs.stage import ExecSettings, Plan, StageConfig

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["NAME", "Exec", "Config", "inputs", "outputs", "plan", "run", "train", "read_metrics", "read_checkpoint",
           "last_checkpoint", "batches", "identity_batches", "build_loss"]

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


def batches(item_index: np.ndarray, chunk: int, *, batch_size: int, shuffle_chunks: int,
            rng: np.random.Generator | None, drop_last: bool) -> Iterator[np.ndarray]:
    """Positions of the items to read, batch by batch, with a block shuffle.

    ``item_index`` (positions in the store) is grouped by store chunk of size ``chunk``;
    chunks are shuffled, ``shuffle_chunks`` at a time are pooled and shuffled within, so a
    batch reads at most ``shuffle_chunks`` chunks. ``rng=None`` keeps the order.
    """
    groups = [item_index[(item_index // chunk) == c] for c in np.unique(item_index // chunk)]
    if rng is not None:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    carry = np.empty(0, dtype=item_index.dtype)
    for k in range(0, len(groups), shuffle_chunks):
        pool = np.concatenate([carry, *groups[k:k + shuffle_chunks]])
        if rng is not None:
            pool = pool[rng.permutation(pool.size)]
        n_full = pool.size // batch_size
        for b in range(n_full):
            yield pool[b * batch_size:(b + 1) * batch_size]
        carry = pool[n_full * batch_size:]
    if carry.size and (not drop_last or carry.size == batch_size):
        yield carry


def identity_batches(item_index: np.ndarray, labels: np.ndarray, *, batch_size: int, per_identity: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Batches of P identities x K images (``K = per_identity``, ``P = batch_size // K``).

    ``item_index``: store positions of one split (the training split: pairs and triplets
    stay inside it); ``labels``: the label of every store position. Each identity's items
    are shuffled and cut into groups of K (a last group of 2 <= n < K is kept, a single
    item is left out this epoch: it has no positive); the groups are shuffled and dealt
    into batches of P groups. Identities with one item never appear.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat(np.arange(3), 4)
    >>> [len(b) for b in identity_batches(np.arange(12), labels, batch_size=4, per_identity=2,
    ...                                   rng=np.random.default_rng(0))]
    [4, 4, 4]
    """
    groups = []
    for label in np.unique(labels[item_index]):
        members = item_index[labels[item_index] == label]
        members = members[rng.permutation(members.size)]
        groups += [g for g in np.array_split(members, range(per_identity, members.size, per_identity))
                   if g.size >= 2]
    order = rng.permutation(len(groups))
    per_batch = max(batch_size // per_identity, 2)
    for start in range(0, len(order), per_batch):
        chosen = [groups[k] for k in order[start:start + per_batch]]
        if len(chosen) >= 2:
            yield np.concatenate(chosen)


# ----------------------------------------------------------------------------- checkpoints and metrics
def last_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of the highest epoch in ``folder/checkpoints`` (None when there is none)."""
    found = sorted((folder / "checkpoints").glob("epoch-*.pt"))
    return found[-1] if found else None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, read with ``torch.load(weights_only=True)`` (a file that would run
    code is refused: :func:`mfrs.nets.weights.load_torch_file`)."""
    from mfrs.nets.weights import load_torch_file

    state = load_torch_file(path)
    missing = [k for k in ("epoch", "fingerprint", "model", "optimizer", "scheduler", "torch_rng")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise InputDataError(f"training checkpoint {path} lacks {missing}; it was not written by this stage. "
                             f"Move it away, or rerun with --overwrite to start afresh.")
    return state


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch metrics of a training run (``metrics.jsonl``)."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _run_fingerprint(cfg: Config, images_fp: str) -> str:
    """What a checkpoint may be resumed under: the science settings (:func:`mfrs.provenance.science_parameters`)
    but ``epochs``, since a finished run continues to more epochs."""
    parameters, _ = science_parameters(cfg)
    return fingerprint({"config": {k: v for k, v in parameters.items() if k != "epochs"}, "images": images_fp})


# ----------------------------------------------------------------------------- the loop
def _optimizer(cfg: Config, params: Any) -> Any:
    import torch

    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "momentum":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_loss(cfg: Config, classifier: Any) -> Any:
    """The :class:`mfrs.nets.losses.FaceLoss` of ``cfg`` on the network's ``classifier``."""
    from mfrs.nets.losses import FaceLoss

    return FaceLoss(cfg.loss, classifier, margin=cfg.margin, scale=cfg.scale, center_weight=cfg.center_weight,
                    center_alpha=cfg.center_alpha, lambda_min=cfg.sphereface_lambda_min,
                    lambda_max=cfg.sphereface_lambda_max, pair_miner=cfg.pair_miner,
                    triplet_miner=cfg.triplet_miner)


def train(cfg: Config, *, images_path: Path, output_dir: Path, images_entry: str = "images",
          init_params: dict[str, Any] | None = None, init_location: str | None = None,
          overwrite: bool = False, stop_after: int | None = None,
          provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train (or resume training) ``cfg.network`` on an image dataset.

    Parameters
    ----------
    cfg : Config
    images_path : Path
        The Zarr image dataset.
    output_dir : Path
        Checkpoints, metrics and final weights go here.
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
    import torch

    from mfrs.nets.losses import final_linear
    from mfrs.nets.preprocess import prepare_images
    from mfrs.nets.weights import load_network, sha256_file
    from mfrs.stages.activations import choose_device

    try:
        from distributed import get_worker

        worker = get_worker().address
    except ValueError:
        worker = None
    ds = _open_images(images_path, images_entry)
    item_dim = ds["image"].dims[0]
    labels_all = ds["label"].values.astype(np.int64)
    split = ds["split"].values.astype(str)
    # items the images stage could not convert (status "failed: ...") stay out of every split
    usable = np.char.startswith(ds["status"].values.astype(str), "ok") if "status" in ds.variables \
        else np.ones(split.shape, dtype=bool)
    train_idx = np.flatnonzero((split == "train") & usable)
    valid_idx = np.flatnonzero((split == "valid") & usable)
    if train_idx.size < cfg.batch_size:
        raise InputDataError(f"catalog entry {images_entry!r}: {train_idx.size} training items, fewer than "
                             f"batch_size {cfg.batch_size}; lower batch_size.")
    num_classes = int(labels_all.max()) + 1
    chunk = int((ds["image"].encoding.get("chunks") or (ds.sizes[item_dim],))[0])
    images_fp = fingerprint({"attrs": ds.attrs.get("provenance", {}).get("fingerprint"),
                             "n": int(ds.sizes[item_dim]), "labels": labels_all, "split": split})
    run_fp = _run_fingerprint(cfg, images_fp)

    output_dir = Path(output_dir)
    if overwrite and output_dir.exists():
        log.warning("train: --overwrite given, deleting %s", output_dir)
        shutil.rmtree(output_dir)
    (output_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if provenance is not None:
        (output_dir / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")

    device = choose_device(cfg.exec.device, stage=NAME)
    loaded = load_network(cfg.network, cfg.init, in_channels=cfg.in_channels, num_classes=num_classes,
                          entry_params=init_params, location=init_location, seed=cfg.seed)
    model = loaded.model.to(device)
    _, classifier = final_linear(model)
    criterion = build_loss(cfg, classifier).to(device)
    optimizer = _optimizer(cfg, model.parameters())
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    features: dict[str, torch.Tensor] = {}
    classifier.register_forward_pre_hook(lambda m, args: features.__setitem__("x", args[0]))

    start_epoch = 0
    ckpt = last_checkpoint(output_dir)
    if ckpt is not None:
        state = read_checkpoint(ckpt)
        if state["fingerprint"] != run_fp:
            raise StoreError(
                f"train: {output_dir} holds checkpoints of other settings or data ({ckpt.name}, fingerprint "
                f"{state['fingerprint']} vs {run_fp}). Rerun with --overwrite to start afresh, or point "
                f"the {cfg.output!r} catalog entry at a new folder."
            )
        model.load_state_dict(state["model"])
        criterion.load_state_dict(state.get("loss", {}))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = state["epoch"]
        log.info("train: resuming %s from %s (epoch %d done)", output_dir, ckpt.name, start_epoch)
    else:
        torch.manual_seed(cfg.seed)
    metrics = [m for m in read_metrics(output_dir) if m["epoch"] <= start_epoch]
    (output_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))

    def load(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = ds["image"].isel({item_dim: idx}).values
        x = prepare_images(pixels, size=cfg.size, in_channels=cfg.in_channels, mean=cfg.mean, std=cfg.std)
        return x.to(device), torch.from_numpy(labels_all[idx]).to(device)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(x)
        aux = None
        if isinstance(out, tuple):  # Inception-v3 in training mode: (logits, aux_logits)
            out, aux = out[0], out[1]
        loss = criterion(out, features["x"], y)
        if aux is not None and cfg.aux_weight and not criterion.pairwise:
            loss = loss + cfg.aux_weight * torch.nn.functional.cross_entropy(aux, y)
        return loss, criterion.predict(out, features["x"])

    def epoch_batches(idx: np.ndarray, rng: np.random.Generator | None, training: bool) -> Iterator[np.ndarray]:
        if cfg.pairwise:  # identities x images, from this split only
            return identity_batches(idx, labels_all, batch_size=cfg.batch_size, per_identity=cfg.images_per_identity,
                                    rng=rng if rng is not None else np.random.default_rng(cfg.seed))
        return batches(idx, chunk, batch_size=cfg.batch_size, shuffle_chunks=cfg.shuffle_chunks if training else 1,
                       rng=rng, drop_last=training)

    epochs_run = 0
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        if stop_after is not None and epochs_run >= stop_after:
            break
        tic = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, epoch]))
        model.train()
        criterion.train()
        total, correct, seen = 0.0, 0, 0
        for idx in epoch_batches(train_idx, rng, True):
            x, y = load(idx)
            optimizer.zero_grad(set_to_none=True)
            loss, pred = step(x, y)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
            correct += int((pred == y).sum()) if pred is not None else 0
            seen += len(idx)
        if not seen:
            raise InputDataError(f"catalog entry {images_entry!r}: no training batch could be formed (loss "
                                 f"{cfg.loss} needs identities with 2 or more training images).")
        record = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": total / seen,
                  "train_accuracy": None if criterion.pairwise else correct / seen}
        scheduler.step()
        if valid_idx.size:
            model.eval()
            criterion.eval()
            v_total, v_correct, v_seen = 0.0, 0, 0
            with torch.no_grad():
                for idx in epoch_batches(valid_idx, None, False):
                    x, y = load(idx)
                    loss, pred = step(x, y)
                    v_total += float(loss) * len(idx)
                    v_correct += int((pred == y).sum()) if pred is not None else 0
                    v_seen += len(idx)
            if v_seen:
                record.update(valid_loss=v_total / v_seen,
                              valid_accuracy=None if criterion.pairwise else v_correct / v_seen)
        record["seconds"] = time.perf_counter() - tic
        torch.save({"epoch": epoch, "fingerprint": run_fp, "model": model.state_dict(),
                    "loss": criterion.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "config": cfg.model_dump(mode="json")},
                   output_dir / "checkpoints" / f"epoch-{epoch:03d}.pt")
        with open(output_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.info("train: epoch %d/%d %s", epoch, cfg.epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch" and v is not None))
        epochs_run += 1

    last = start_epoch + epochs_run
    weights = None
    if last >= cfg.epochs:
        weights = output_dir / "weights.pth"
        record_file = output_dir / "weights.json"
        if epochs_run or not record_file.exists():  # a finished run's files stay as they are
            record_file.unlink(missing_ok=True)  # never a record_file of other weights beside a half-written file
            partial = weights.with_name(weights.name + ".partial")
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, partial)
            partial.replace(weights)
            entry = {"kind": "weights", "location": str(weights),
                     "params": {"network": cfg.network, "dataset": cfg.images, "num_classes": num_classes,
                                "in_channels": cfg.in_channels, "sha256": sha256_file(weights)}}
            record_file.with_name(record_file.name + ".partial").write_text(json.dumps(entry, indent=2) + "\n")
            record_file.with_name(record_file.name + ".partial").replace(record_file)
            log.info("train: finished; add this weights entry to the catalog (or name the output folder "
                     "%r as weights): %s", cfg.output, json.dumps(entry))
    return {"epochs_run": epochs_run, "last_epoch": last, "weights": str(weights) if weights else None,
            "worker": worker, "device": str(device)}


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


def run(*, config: Config, catalog: Catalog, client: Client, overwrite: bool = False) -> dict[str, Any]:
    """Train as one task (on a GPU worker when there is one); resumes from the last checkpoint."""
    from mfrs.cluster import gpu_workers
    from mfrs.nets.specs import parse_untrained
    from mfrs.stages.activations import weights_entry
    from mfrs.store import open_inputs

    open_inputs(inputs(config, catalog), catalog=catalog, stage=NAME, writers={config.images: "images"})
    params = location = None
    if parse_untrained(config.init) is None:
        params, location = weights_entry(config.init, catalog, stage=NAME)
    output_dir = catalog.path(config.output)
    provenance = make_provenance(stage=NAME, config=config, inputs={config.images: str(catalog.path(config.images))},
                                 seed=config.seed, client=client)
    resources = {"GPU": 1.0} if gpu_workers(client) else None
    log.info("train: one task on %s", "a GPU worker" if resources else "a CPU worker (the cluster has no GPU workers)")
    task = TrainTask(config=config, images_path=catalog.path(config.images), images_entry=config.images,
                     output_dir=output_dir, init_params=params, init_location=location, overwrite=overwrite,
                     provenance=provenance)
    return run_units(client, _task, [task], key=lambda t: f"{t.config.network}->{t.config.output}",
                     description=NAME, resources=resources, stage=NAME)
