"""Network weights: local files from the catalog (checked by sha256), or seeded random init.

A network's weights are named by a *label*: the name of a ``weights`` catalog entry
(``location`` a path or ``package:<module>/<path inside it>``, ``params`` with ``sha256``,
``network``, ``dataset``, ``num_classes``, ``in_channels``), or ``untrained-seed<N>`` for
random initialisation from seed N. Nothing is ever downloaded. Files are read with
``torch.load(weights_only=True)`` only, and fitted to the architecture by
:func:`mfrs.nets.checkpoints.fit_checkpoint` (prefixes, renamed and position-matched
tensors, bias-less layers, optional heads, grayscale first convolution, another class
count), which refuses a file that does not fit with a report of every tensor at fault.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfrs.errors import ConfigError, InputDataError
from mfrs.locations import PACKAGE_PREFIX, package_file
from mfrs.nets.architectures import build_network, first_conv
from mfrs.nets.checkpoints import LoadReport, fit_checkpoint, sum_colour_channels
from mfrs.nets.losses import final_linear
from mfrs.nets.specs import UNTRAINED, parse_untrained
from mfrs.nets.types import Network

__all__ = [
    "UNTRAINED", "parse_untrained", "resolve_weights", "sha256_file", "sum_colour_channels",
    "load_torch_file", "read_state_dict", "LoadedNetwork", "load_network",
]

log = logging.getLogger(__name__)

_REQUIRED_PARAMS = ("sha256", "network")


def sha256_file(path: Path, *, block: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(entry_params: Mapping[str, Any], location: str | Path, *,
                    entry_name: str = "weights") -> Path:
    """The checked local file of a ``weights`` catalog entry.

    Parameters
    ----------
    entry_params : Mapping
        The entry's ``params``; ``sha256`` (hex) and ``network`` are required.
    location : str or Path
        The entry's location: a local path, or ``package:<module>/<path>`` for a file inside
        an installed Python package (found with ``importlib.util.find_spec``).
    entry_name : str
        Catalog entry name, for messages.

    Returns
    -------
    Path
        The weight file, whose sha256 matches ``entry_params["sha256"]``.

    Raises
    ------
    InputDataError
        Missing params, package or file, or a sha256 mismatch.
    """
    missing = [key for key in _REQUIRED_PARAMS if key not in entry_params]
    if missing:
        raise InputDataError(
            f"catalog entry {entry_name!r}: params lack {', '.join(missing)}; a weights entry "
            f"needs params {{sha256: <hex of the file>, network: <name>, dataset: ..., "
            f"num_classes: ..., in_channels: ...}}."
        )
    text = str(location)
    if text.startswith(PACKAGE_PREFIX):
        path = package_file(text, entry_name)
    else:
        path = Path(text.removeprefix("file://")).expanduser()
    if not path.is_file():
        raise InputDataError(
            f"catalog entry {entry_name!r}: weight file {path} does not exist; fix its "
            f"`location` in the catalog (mfrs never downloads weights)."
        )
    actual = sha256_file(path)
    if not entry_params["sha256"]:
        raise InputDataError(
            f"catalog entry {entry_name!r}: params.sha256 is empty, so weight file {path} cannot be "
            f"checked. If this file is the one you mean, write `sha256: {actual}` into the entry."
        )
    expected = str(entry_params["sha256"]).lower()
    if actual != expected:
        raise InputDataError(
            f"catalog entry {entry_name!r}: weight file {path} has sha256 {actual}, but the "
            f"catalog says {expected}. Replace the file with the right one, or correct "
            f"params.sha256 if the file is the one you mean."
        )
    return path


def load_torch_file(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that name the file.

    Only tensors and plain Python containers and numbers are unpickled: a file that would
    run code when loaded is refused, never executed.

    Raises
    ------
    InputDataError
        The file holds other Python objects, or is not a readable torch file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InputDataError(
            f"{path} holds Python objects that torch.load(weights_only=True) refuses to unpickle "
            f"(loading them could run code), so mfrs does not read it: {exc}. Save tensors only "
            f"(torch.save(model.state_dict(), path)), from a source you trust."
        ) from exc
    except Exception as exc:  # truncated or not a torch file
        raise InputDataError(f"{path} cannot be read by torch.load: {exc}") from exc


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weight file or a training checkpoint, as stored.

    Read with ``torch.load(weights_only=True)``: a file that would run code when unpickled
    is refused, never executed. A checkpoint's tensors are found under ``state_dict``,
    ``model_state_dict``, ``model``, ``net`` or ``network``; keys are kept as stored
    (wrapper prefixes and other names are :func:`mfrs.nets.checkpoints.fit_checkpoint`'s job).

    Raises
    ------
    InputDataError
        The file cannot be read safely, or holds no state dict.
    """
    obj = load_torch_file(path)
    for key in ("state_dict", "model_state_dict", "model", "net", "network"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputDataError(f"weight file {path} holds a {type(obj).__name__} without tensors, not a state "
                             f"dict; point the entry at the network's weights.")
    return dict(obj)


@dataclass
class LoadedNetwork:
    """A network ready to run, with what it was made from."""

    model: nn.Module
    network: Network
    weights: str
    in_channels: int
    num_classes: int
    file: str | None = None
    sha256: str | None = None
    seed: int | None = None
    reinitialised: list[str] = field(default_factory=list)
    report: LoadReport | None = None

    def record(self) -> dict[str, Any]:
        """Provenance of the weights (JSON-able)."""
        return {"network": self.network, "weights": self.weights, "in_channels": self.in_channels,
                "num_classes": self.num_classes, "file": self.file, "sha256": self.sha256,
                "seed": self.seed, "reinitialised": self.reinitialised,
                "fit": self.report.summary() if self.report is not None else None}


def load_network(network: Network, weights: str, *, in_channels: int, num_classes: int | None = None,
                 entry_params: Mapping[str, Any] | None = None, location: str | Path | None = None,
                 seed: int = 0) -> LoadedNetwork:
    """Build ``network`` with ``weights``, in eval mode on the CPU.

    Parameters
    ----------
    network : Network
        Architecture name.
    weights : str
        ``untrained-seed<N>``, or the label of a weights catalog entry (then give
        ``entry_params`` and ``location``).
    in_channels : int
        1 (grayscale: RGB kernels are summed over colour channels) or 3.
    num_classes : int, optional
        Classifier outputs; default: the entry's ``num_classes`` (1000 when untrained).
        A different number re-initialises the classifier from ``seed``.
    entry_params, location
        The weights entry's params and location. Optional params steer the fit of a file
        in a foreign layout (:func:`mfrs.nets.checkpoints.fit_checkpoint`): ``match``
        (``auto``: names, aliases, then position; ``names``), ``rename`` (regex ->
        replacement) and ``ignore`` (regexes of file keys to leave out).
    seed : int
        Seed of the initialisation that trained weights overwrite (classifier only).

    Returns
    -------
    LoadedNetwork
    """
    untrained_seed = parse_untrained(weights)
    if untrained_seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(untrained_seed)
            model = build_network(network, in_channels=in_channels, num_classes=num_classes or 1000)
        return LoadedNetwork(model.eval(), network, weights, in_channels, num_classes or 1000,
                             seed=untrained_seed)
    if entry_params is None or location is None:
        raise ConfigError(
            f"weights {weights!r} for network {network!r} is neither 'untrained-seed<N>' nor "
            f"given with its catalog entry; add a `kind: weights` entry named {weights!r}."
        )
    if entry_params.get("network") != network:
        raise ConfigError(
            f"weights entry {weights!r} is for network {entry_params.get('network')!r}, "
            f"not {network!r}; pick weights made for {network!r}."
        )
    path = resolve_weights(entry_params, location, entry_name=weights)
    classes = int(num_classes or entry_params.get("num_classes", 1000))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_network(network, in_channels=in_channels, num_classes=classes)
    report = fit_checkpoint(model, read_state_dict(path), network=network,
                            source=f"weights {weights!r} ({path})", first_conv=first_conv(model)[0],
                            classifier=final_linear(model)[0], match=entry_params.get("match", "auto"),
                            rename=entry_params.get("rename"), ignore=entry_params.get("ignore") or ())
    reinit = list(report.kept_init)
    if reinit:
        log.info("weights %r: %s re-initialised for %d classes (seed %d)", weights, reinit, classes, seed)
    return LoadedNetwork(model.eval(), network, weights, in_channels, classes, file=str(path),
                         sha256=str(entry_params["sha256"]).lower(), seed=seed if reinit else None,
                         reinitialised=reinit, report=report)
