"""Network-layer drivers of the planted effects: what a CNN layer represents of each stimulus.

A planted region's stimulus-specific pattern can follow the representational geometry of
one layer of a network whose weights ship offline (the ImageNet MobileNetV2 of the
catalog): the layer's activations are computed with the same library code as the
``activations`` stage (:func:`mfrs.nets.weights.load_network`,
:class:`mfrs.nets.hooks.LayerRecorder`, :func:`mfrs.nets.preprocess.prepare_images`),
each stimulus's activation vector is standardised (so that Euclidean distances are the
layer's correlation distances, the ``model_rdms`` metric) and the leading principal
components are kept as the region's code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mfrs.errors import ConfigError
from mfrs.nets.types import LayerKind, Network

__all__ = ["WeightsSource", "layer_activations", "layer_code", "layer_depth"]

log = logging.getLogger(__name__)

#: ``weights label -> (entry params, entry location)`` of the catalog's ``weights`` entries.
WeightsSource = Mapping[str, tuple[dict[str, Any], str]]


def _network(driver: Any, weights: WeightsSource) -> Any:
    from mfrs.nets.specs import parse_untrained
    from mfrs.nets.weights import load_network

    params, location = (None, None)
    if parse_untrained(driver.weights) is None:
        if driver.weights not in weights:
            raise ConfigError(
                f"planted effect driver: weights {driver.weights!r} are not a `weights` entry given "
                "to the simulation; add the entry to the catalog or drive the effect with other weights")
        params, location = weights[driver.weights]
    return load_network(driver.network, driver.weights, in_channels=1, entry_params=params,
                        location=location).model.eval()


def layer_activations(stimuli: xr.Dataset, drivers: list[Any], weights: WeightsSource) -> dict[str, np.ndarray]:
    """Activations ``(stimulus, unit)`` of every driver's layer, keyed ``network/weights/layer``.

    Inputs as the ``activations`` stage makes them: grayscale, ``driver.input_size`` pixels,
    the study's normalisation (mean 0.3612, std 0.3056), RGB kernels summed.
    """
    import torch

    from mfrs.nets.hooks import LayerRecorder, kind_of
    from mfrs.nets.preprocess import REFERENCE_MEAN, REFERENCE_STD, prepare_images

    out: dict[str, np.ndarray] = {}
    by_net: dict[tuple[str, str, int], list[Any]] = {}
    for d in drivers:
        by_net.setdefault((d.network, d.weights, d.input_size), []).append(d)
    images = np.asarray(stimuli["image"].values)
    for (network, weights_label, size), group in by_net.items():
        model = _network(group[0], weights)
        modules = {}
        for d in group:
            try:
                module = model.get_submodule(d.layer)
            except AttributeError as exc:
                raise ConfigError(f"planted effect driver: {network} has no layer {d.layer!r}; name a "
                                  "module path as in the activations store's `name` coord") from exc
            modules[d.layer] = kind_of(module) or "block"
        x = prepare_images(images, size=size, in_channels=1, mean=REFERENCE_MEAN, std=REFERENCE_STD)
        with torch.random.fork_rng(devices=[]), LayerRecorder(model, modules) as rec:
            acts = rec.run(x)
        for d in group:
            out[d.key] = np.asarray(acts[d.layer], dtype=np.float64)
        log.info("demo_data: driver activations of %s/%s at %d px: %s", network, weights_label, size,
                 ", ".join(f"{d.layer} ({out[d.key].shape[1]} units)" for d in group))
    return out


def layer_depth(network: Network, layer: str, kinds: Sequence[LayerKind], input_size: int) -> float:
    """Relative depth of ``layer`` among the ``kinds`` layers of ``network`` (0 first, 1 last).

    The ``depth`` coord of the ``activations`` store for the same kinds.
    """
    from mfrs.nets.hooks import network_layers

    layers = network_layers(network, kinds, in_channels=1, size=input_size)
    names = [lay.name for lay in layers]
    if layer not in names:
        raise ConfigError(f"planted effect driver: layer {layer!r} is not among the {kinds} layers of "
                          f"{network}; add its kind to `layer_kinds` or pick another layer")
    return names.index(layer) / max(len(names) - 1, 1)


def layer_code(activations: np.ndarray, n_components: int) -> np.ndarray:
    """Leading principal components of a layer's standardised activation patterns.

    Parameters
    ----------
    activations : ndarray, shape (stimulus, unit)
    n_components : int

    Returns
    -------
    ndarray, shape (stimulus, n_components)
        Scores on the top components, all divided by one number (the root mean variance
        of the kept scores), so that the components keep their relative sizes: squared
        Euclidean distances between rows approximate the layer's correlation distances
        (up to a constant factor).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> layer_code(rng.standard_normal((10, 50)), 3).shape
    (10, 3)
    """
    x = np.asarray(activations, dtype=np.float64)
    x = x - x.mean(axis=1, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    x = x - x.mean(axis=0, keepdims=True)
    k = min(n_components, x.shape[0] - 1)
    # scores from the small (stimulus x stimulus) Gram matrix: units outnumber stimuli
    evals, evecs = np.linalg.eigh(x @ x.T)
    top = np.argsort(evals)[::-1][:k]
    scores = evecs[:, top] * np.sqrt(np.maximum(evals[top], 0.0))
    return scores / np.sqrt(np.maximum(scores.var(axis=0).mean(), 1e-24))
