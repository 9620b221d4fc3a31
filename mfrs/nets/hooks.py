"""Forward hooks: which layers of a network are recorded, and their flattened outputs.

A *layer* is one call of a module of a selected kind. A module called once is named by
its module path (``features.3.conv.0.0``); a module called k > 1 times in one forward
pass (ResNet's shared ReLU, CORnet-S's recurrent convolutions) gives k layers named
``<path>@0`` ... ``<path>@{k-1}``. Layers are listed in execution order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mfrs.errors import ConfigError
from mfrs.nets.architectures import BLOCK_TYPES
from mfrs.nets.types import LAYER_KINDS, LayerKind, Network

__all__ = ["LayerInfo", "kind_of", "select_modules", "LayerRecorder", "probe_layers", "network_layers"]

_KIND_TYPES: dict[LayerKind, tuple[type[nn.Module], ...]] = {
    "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
    "linear": (nn.Linear,),
    "batchnorm": (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d),
    "relu": (nn.ReLU, nn.ReLU6, nn.PReLU),
    "maxpool": (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d),
    "avgpool": (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d),
    "block": BLOCK_TYPES,
}


@dataclass(frozen=True)
class LayerInfo:
    """One recorded layer.

    Attributes
    ----------
    name : str
        Module path, with ``@k`` for the k-th call of a module called several times.
    module : str
        Module path.
    kind : LayerKind
    shape : tuple of int
        Output shape for one stimulus (channels, height, width, ...).
    index : int
        Position in execution order.
    """

    name: str
    module: str
    kind: LayerKind
    shape: tuple[int, ...]
    index: int

    @property
    def units(self) -> int:
        """Number of values per stimulus."""
        return int(np.prod(self.shape, dtype=np.int64))


def kind_of(module: nn.Module) -> LayerKind | None:
    """The hook kind of ``module`` (None when no kind applies)."""
    for kind, types in _KIND_TYPES.items():
        if types and isinstance(module, types):
            return kind
    return None


def select_modules(model: nn.Module, kinds: Iterable[LayerKind]) -> dict[str, LayerKind]:
    """Module path -> kind, for every module of ``model`` of one of ``kinds``.

    Raises
    ------
    ConfigError
        An unknown kind.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in LAYER_KINDS]
    if unknown:
        raise ConfigError(f"unknown layer kinds {unknown}; expected some of {', '.join(LAYER_KINDS)}.")
    selected = {}
    for name, module in model.named_modules():
        kind = kind_of(module)
        if name and kind in kinds:
            selected[name] = kind
    return selected


def _first_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class LayerRecorder:
    """Context manager holding forward hooks on the selected modules of ``model``.

    Each hook copies its module's output at once (later in-place operations such as
    ``out += identity`` or an in-place ReLU would change it), flattened to
    ``(batch, units)`` float32 on the CPU.

    Parameters
    ----------
    model : torch.nn.Module
    modules : dict
        Module path -> kind, from :func:`select_modules`.

    Examples
    --------
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    >>> with LayerRecorder(model, select_modules(model, ["conv"])) as rec:
    ...     outputs = rec.run(torch.zeros(5, 3, 8, 8))   # layer name -> (batch, units) array
    >>> {name: a.shape for name, a in outputs.items()}
    {'0': (5, 144), '2': (5, 32)}
    """

    def __init__(self, model: nn.Module, modules: dict[str, LayerKind]):
        self.model = model
        self.modules = dict(modules)
        self._handles: list[Any] = []
        self._calls: dict[str, int] = {}
        self._order: list[tuple[str, int]] = []
        self._outputs: dict[tuple[str, int], torch.Tensor] = {}

    def __enter__(self) -> LayerRecorder:
        for name in self.modules:
            module = self.model.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                return
            k = self._calls.get(name, 0)
            self._calls[name] = k + 1
            self._order.append((name, k))
            self._outputs[(name, k)] = tensor.detach().reshape(tensor.shape[0], -1).float().to(
                "cpu", copy=True)
        return hook

    def forward(self, x: torch.Tensor) -> list[tuple[str, str, torch.Tensor]]:
        """Run ``model(x)`` without gradients.

        Returns
        -------
        list of (layer name, module path, ``(batch, units)`` tensor), in execution order.
        """
        self._calls.clear()
        self._order.clear()
        self._outputs.clear()
        with torch.no_grad():
            self.model(x)
        result = []
        for name, k in self._order:
            label = name if self._calls[name] == 1 else f"{name}@{k}"
            result.append((label, name, self._outputs.pop((name, k))))
        return result

    def run(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Layer name -> ``(batch, units)`` float32 array, in execution order."""
        return {label: t.numpy() for label, _, t in self.forward(x)}


def probe_layers(model: nn.Module, kinds: Sequence[LayerKind], input_shape: tuple[int, ...],
                 *, device: torch.device | str = "cpu") -> list[LayerInfo]:
    """The layers a forward pass records, with their per-stimulus output shapes.

    Parameters
    ----------
    model : torch.nn.Module
        In the mode it will run in (eval: Inception's auxiliary head does not run).
    kinds : sequence of LayerKind
    input_shape : tuple of int
        ``(channels, height, width)`` of one stimulus.

    Returns
    -------
    list of LayerInfo
        In execution order.
    """
    modules = select_modules(model, kinds)
    shapes: dict[tuple[str, int], tuple[int, ...]] = {}
    order: list[tuple[str, int]] = []
    calls: dict[str, int] = {}

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is None:
                return
            k = calls.get(name, 0)
            calls[name] = k + 1
            order.append((name, k))
            shapes[(name, k)] = tuple(int(s) for s in tensor.shape[1:])
        return hook

    handles = [model.get_submodule(n).register_forward_hook(make_hook(n)) for n in modules]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return [
        LayerInfo(name=name if calls[name] == 1 else f"{name}@{k}", module=name, kind=modules[name],
                  shape=shapes[(name, k)], index=i)
        for i, (name, k) in enumerate(order)
    ]


def network_layers(network: Network, kinds: Sequence[LayerKind], *, in_channels: int, size: int,
                   num_classes: int = 1000) -> list[LayerInfo]:
    """The ``kinds`` layers of ``network`` for ``size`` x ``size`` inputs, from a shape-only pass on torch's
    meta device (no weights are made or read)."""
    from mfrs.nets.architectures import build_network

    with torch.device("meta"):
        model = build_network(network, in_channels=in_channels, num_classes=num_classes).eval()
    return probe_layers(model, kinds, (in_channels, size, size), device="meta")
