"""The steps of training a network: batches, resume, one epoch, evaluation, checkpoint, export.

The ``train`` stage (``mfrs/stages/train.py``) opens the image dataset and strings these
steps together; each step here works on arrays, tensors and a folder it is given:

- :class:`TrainingImages`, :func:`batches`, :func:`identity_batches`: the items of each split,
  the store positions of each batch, their tensors;
- :func:`resume`: find the last checkpoint of a folder, check it belongs to this run and load
  it (``torch.load(weights_only=True)``), or seed a fresh run;
- :func:`train_epoch`, :func:`evaluate`: one pass over the training or validation batches;
- :func:`save_checkpoint`, :func:`append_metrics`: what one finished epoch leaves behind;
- :func:`export_weights`: the final plain state dict and the catalog entry to add.

A folder of a run holds ``checkpoints/epoch-NNN.pt`` (tensors and plain values only),
``metrics.jsonl`` (one line per epoch) and, once finished, ``weights.pth`` with
``weights.json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfrs.errors import InputDataError, StoreError
from mfrs.nets.losses import FaceLoss
from mfrs.nets.types import OptimizerName

__all__ = ["batches", "identity_batches", "TrainingImages", "last_checkpoint", "read_checkpoint", "read_metrics", "make_optimizer",
           "Trainer", "resume", "train_epoch", "evaluate", "save_checkpoint", "append_metrics", "export_weights",
           "CHECKPOINT_KEYS"]

log = logging.getLogger(__name__)

#: What every training checkpoint holds (``loss``, the loss's own state, and ``config`` besides).
CHECKPOINT_KEYS = ("epoch", "fingerprint", "model", "optimizer", "scheduler", "torch_rng")

#: The tensors of one batch: network input (on the device) and labels.
Batch = tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- batches
def batches(item_index: np.ndarray, chunk: int, *, batch_size: int, shuffle_chunks: int,
            rng: np.random.Generator | None, drop_last: bool) -> Iterator[np.ndarray]:
    """Positions of the items to read, batch by batch, with a block shuffle.

    ``item_index`` (positions in the store) is grouped by store chunk of size ``chunk``;
    chunks are shuffled, ``shuffle_chunks`` at a time are pooled and shuffled within, so a
    batch reads at most ``shuffle_chunks`` chunks. ``rng=None`` keeps the order.

    Examples
    --------
    >>> import numpy as np
    >>> [b.tolist() for b in batches(np.arange(7), 4, batch_size=3, shuffle_chunks=1, rng=None, drop_last=False)]
    [[0, 1, 2], [3, 4, 5], [6]]
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


@dataclass(frozen=True)
class TrainingImages:
    """An image dataset as training reads it: pixels, labels and the usable items of each split.

    Build it with :meth:`from_dataset`; :meth:`batches` gives an epoch's store positions and
    :meth:`load` turns them into network input and labels.
    """

    image: Any  #: ``image (item, y, x[, channel])`` uint8 (an xarray DataArray, read lazily)
    labels: np.ndarray  #: the label of every store position (int64)
    split: np.ndarray  #: train / valid / test of every store position
    train: np.ndarray  #: store positions of the usable training items
    valid: np.ndarray  #: store positions of the usable validation items
    chunk: int  #: store chunk length along ``item``
    attrs: dict[str, Any] = field(default_factory=dict)  #: the dataset's attrs (its provenance)

    @classmethod
    def from_dataset(cls, ds: Any) -> TrainingImages:
        """The training view of an image dataset (``image``, ``label``, ``split``, optional ``status``):
        items the images stage could not convert (``status`` not "ok...") stay out of every split.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> ds = xr.Dataset({"image": (("item", "y", "x"), np.zeros((4, 2, 2), np.uint8)),
        ...                  "label": ("item", [0, 1, 0, 1]), "split": ("item", ["train", "train", "valid", "test"]),
        ...                  "status": ("item", ["ok", "failed: unreadable", "ok", "ok"])})
        >>> images = TrainingImages.from_dataset(ds)
        >>> images.train.tolist(), images.valid.tolist(), images.num_classes, images.chunk
        ([0], [2], 2, 4)
        """
        item_dim = ds["image"].dims[0]
        split = ds["split"].values.astype(str)
        usable = np.char.startswith(ds["status"].values.astype(str), "ok") if "status" in ds.variables \
            else np.ones(split.shape, dtype=bool)
        return cls(image=ds["image"], labels=ds["label"].values.astype(np.int64), split=split,
                   train=np.flatnonzero((split == "train") & usable), valid=np.flatnonzero((split == "valid") & usable),
                   chunk=int((ds["image"].encoding.get("chunks") or (ds.sizes[item_dim],))[0]), attrs=dict(ds.attrs))

    @property
    def num_classes(self) -> int:
        """Classes of the network's classifier (labels are 0..n-1)."""
        return int(self.labels.max()) + 1

    def batches(self, idx: np.ndarray, *, batch_size: int, per_identity: int | None, shuffle_chunks: int,
                rng: np.random.Generator | None, seed: int) -> Iterator[np.ndarray]:
        """One pass over the store positions ``idx``.

        ``per_identity`` (pair-wise losses): :func:`identity_batches` from ``idx`` only (with
        ``rng``, or a generator seeded with ``seed``); else :func:`batches` of the store
        chunks. ``rng=None`` is an evaluation pass: in order, the last short batch kept.
        """
        if per_identity is not None:
            return identity_batches(idx, self.labels, batch_size=batch_size, per_identity=per_identity,
                                    rng=rng if rng is not None else np.random.default_rng(seed))
        return batches(idx, self.chunk, batch_size=batch_size, shuffle_chunks=shuffle_chunks, rng=rng,
                       drop_last=rng is not None)

    def load(self, idx: np.ndarray, *, size: int, in_channels: int, mean: Sequence[float], std: Sequence[float],
             device: torch.device) -> Batch:
        """Network input (:func:`mfrs.nets.preprocess.prepare_images`) and labels of the items ``idx``, on
        ``device``."""
        from mfrs.nets.preprocess import prepare_images

        pixels = self.image.isel({self.image.dims[0]: idx}).values
        x = prepare_images(pixels, size=size, in_channels=in_channels, mean=mean, std=std)
        return x.to(device), torch.from_numpy(self.labels[idx]).to(device)


# ----------------------------------------------------------------------------- the run's folder
def last_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of the highest epoch in ``folder/checkpoints`` (None when there is none).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     (Path(tmp) / "checkpoints").mkdir()
    ...     for epoch in (2, 10, 1):
    ...         _ = (Path(tmp) / "checkpoints" / f"epoch-{epoch:03d}.pt").write_bytes(b"")
    ...     last_checkpoint(Path(tmp)).name
    'epoch-010.pt'
    """
    found = sorted((folder / "checkpoints").glob("epoch-*.pt"))
    return found[-1] if found else None


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, read with ``torch.load(weights_only=True)`` (a file that would run
    code is refused: :func:`mfrs.nets.weights.load_torch_file`).

    Raises
    ------
    InputDataError
        The file lacks one of :data:`CHECKPOINT_KEYS` (it was not written by :func:`save_checkpoint`).
    """
    from mfrs.nets.weights import load_torch_file

    state = load_torch_file(path)
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise InputDataError(f"training checkpoint {path} lacks {missing}; it was not written by this stage. "
                             f"Move it away, or rerun with --overwrite to start afresh.")
    return state  # type: ignore[no-any-return]  # a dict with the checkpoint's keys, checked above


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch metrics of a training run (``folder/metrics.jsonl``; empty when there is none)."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(folder: Path, *, record: dict[str, Any]) -> None:
    """Add one epoch's ``record`` to ``folder/metrics.jsonl``."""
    with open(folder / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")


# ----------------------------------------------------------------------------- what is trained
def make_optimizer(name: OptimizerName, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser ``name`` (SGD, SGD with ``momentum``, Adam, AdamW) over ``params``.

    Examples
    --------
    >>> import torch
    >>> opt = make_optimizer("momentum", torch.nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9,
    ...                      weight_decay=0.0)
    >>> type(opt).__name__, opt.param_groups[0]["momentum"]
    ('SGD', 0.9)
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@dataclass
class Trainer:
    """A network with its loss, optimiser and learning-rate schedule: what a checkpoint holds.

    The loss reads the classifier's input (the embedding) from ``features``, filled by a
    forward pre-hook on ``criterion``'s classifier that :meth:`__post_init__` registers.
    ``aux_weight`` weighs Inception-v3's auxiliary-head cross-entropy (class-level losses only).
    """

    model: torch.nn.Module
    criterion: FaceLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    aux_weight: float = 0.0
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.criterion.classifier[0].register_forward_pre_hook(
            lambda m, args: self.features.__setitem__("x", args[0]))

    def mode(self, *, training: bool) -> None:
        """Training or evaluation mode, for the network and its loss."""
        self.model.train(training)
        self.criterion.train(training)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Loss and predicted labels (None for pair-wise losses) of one batch."""
        out = self.model(x)
        aux = None
        if isinstance(out, tuple):  # Inception-v3 in training mode: (logits, aux_logits)
            out, aux = out[0], out[1]
        loss = self.criterion(out, self.features["x"], y)
        if aux is not None and self.aux_weight and not self.criterion.pairwise:
            loss = loss + self.aux_weight * torch.nn.functional.cross_entropy(aux, y)
        return loss, self.criterion.predict(out, self.features["x"])


# ----------------------------------------------------------------------------- the steps
def resume(folder: Path, *, trainer: Trainer, fingerprint: str, seed: int, entry: str) -> int:
    """Load the last checkpoint of ``folder`` into ``trainer``; the number of epochs it had done.

    Without a checkpoint, torch's generator is seeded with ``seed`` and 0 is returned. The
    metrics log is cut back to the epochs the checkpoint holds (an interrupted epoch's line
    goes).

    Parameters
    ----------
    folder : Path
        The run's folder (``checkpoints/``, ``metrics.jsonl``).
    trainer : Trainer
        Receives the network, loss, optimiser, schedule and torch generator state.
    fingerprint : str
        What the checkpoint must have been written under (the run's settings and data).
    seed : int
        Torch's seed of a fresh run.
    entry : str
        The catalog entry of ``folder``, named in the error.

    Raises
    ------
    StoreError
        The last checkpoint was written under another fingerprint.
    """
    start_epoch = 0
    ckpt = last_checkpoint(folder)
    if ckpt is not None:
        state = read_checkpoint(ckpt)
        if state["fingerprint"] != fingerprint:
            raise StoreError(
                f"train: {folder} holds checkpoints of other settings or data ({ckpt.name}, fingerprint "
                f"{state['fingerprint']} vs {fingerprint}). Rerun with --overwrite to start afresh, or point "
                f"the {entry!r} catalog entry at a new folder."
            )
        trainer.model.load_state_dict(state["model"])
        trainer.criterion.load_state_dict(state.get("loss", {}))
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])
        log.info("train: resuming %s from %s (epoch %d done)", folder, ckpt.name, start_epoch)
    else:
        torch.manual_seed(seed)
    metrics = [m for m in read_metrics(folder) if m["epoch"] <= start_epoch]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    return start_epoch


def _accumulate(trainer: Trainer, *, batches: Iterable[np.ndarray], load: Callable[[np.ndarray], Batch],
                update: bool) -> tuple[float, float | None, int]:
    """Mean loss, accuracy (None for pair-wise losses) and item count over ``batches``;
    ``update``: step the optimiser after each batch."""
    total, correct, seen = 0.0, 0, 0
    for idx in batches:
        x, y = load(idx)
        if update:
            trainer.optimizer.zero_grad(set_to_none=True)
        loss, pred = trainer.step(x, y)
        if update:
            loss.backward()
            trainer.optimizer.step()
        total += float(loss.detach()) * len(idx)
        correct += int((pred == y).sum()) if pred is not None else 0
        seen += len(idx)
    if not seen:
        return float("nan"), None, 0
    return total / seen, None if trainer.criterion.pairwise else correct / seen, seen


def train_epoch(trainer: Trainer, *, batches: Iterable[np.ndarray], load: Callable[[np.ndarray], Batch],
                source: str) -> dict[str, Any]:
    """One pass of training over ``batches`` (store positions; ``load`` turns them into tensors).

    Returns the record's ``lr`` (of this epoch), ``train_loss`` and ``train_accuracy`` (None
    for pair-wise losses); then steps the learning-rate schedule.

    Raises
    ------
    InputDataError
        Not one batch could be formed from ``source`` (named in the message).
    """
    trainer.mode(training=True)
    loss, accuracy, seen = _accumulate(trainer, batches=batches, load=load, update=True)
    if not seen:
        raise InputDataError(f"{source}: no training batch could be formed (loss {trainer.criterion.kind} "
                             f"needs identities with 2 or more training images).")
    record = {"lr": trainer.optimizer.param_groups[0]["lr"], "train_loss": loss, "train_accuracy": accuracy}
    trainer.scheduler.step()
    return record


def evaluate(trainer: Trainer, *, batches: Iterable[np.ndarray], load: Callable[[np.ndarray], Batch]
             ) -> dict[str, Any]:
    """``valid_loss`` and ``valid_accuracy`` (None for pair-wise losses) over ``batches``, without
    gradients; empty when no batch was formed."""
    trainer.mode(training=False)
    with torch.no_grad():
        loss, accuracy, seen = _accumulate(trainer, batches=batches, load=load, update=False)
    return {"valid_loss": loss, "valid_accuracy": accuracy} if seen else {}


def save_checkpoint(folder: Path, *, trainer: Trainer, epoch: int, fingerprint: str,
                    config: dict[str, Any]) -> Path:
    """Write ``folder/checkpoints/epoch-NNN.pt``: the trainer's state, torch's generator state,
    ``fingerprint`` (what :func:`resume` checks) and ``config`` (for the reader), tensors and plain
    values only."""
    path = folder / "checkpoints" / f"epoch-{epoch:03d}.pt"
    torch.save({"epoch": epoch, "fingerprint": fingerprint, "model": trainer.model.state_dict(),
                "loss": trainer.criterion.state_dict(), "optimizer": trainer.optimizer.state_dict(),
                "scheduler": trainer.scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "config": config},
               path)
    return path


def export_weights(folder: Path, *, model: torch.nn.Module, params: dict[str, Any], rewrite: bool) -> Path:
    """``folder/weights.pth`` (the plain CPU state dict) and ``folder/weights.json`` (its catalog entry).

    Parameters
    ----------
    folder : Path
    model : torch.nn.Module
    params : dict
        The entry's ``params`` (network, dataset, num_classes, in_channels); ``sha256`` is added.
    rewrite : bool
        False keeps a finished run's files as they are when ``weights.json`` exists.

    Returns
    -------
    Path
        ``folder/weights.pth``.

    Each file is written beside (``.partial``) and moved into place, the entry last, so an
    entry never names half-written or other weights.
    """
    from mfrs.nets.weights import sha256_file

    weights = folder / "weights.pth"
    record_file = folder / "weights.json"
    if not rewrite and record_file.exists():
        return weights
    record_file.unlink(missing_ok=True)
    partial = weights.with_name(weights.name + ".partial")
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, partial)
    partial.replace(weights)
    entry = {"kind": "weights", "location": str(weights), "params": {**params, "sha256": sha256_file(weights)}}
    record_file.with_name(record_file.name + ".partial").write_text(json.dumps(entry, indent=2) + "\n")
    record_file.with_name(record_file.name + ".partial").replace(record_file)
    log.info("train: finished; add this weights entry to the catalog (or name the folder %s as weights): %s",
             folder, json.dumps(entry))
    return weights
