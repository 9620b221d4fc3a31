"""Fitting a checkpoint as it is found to an mfrs architecture, with a report of every tensor.

Weight files of the study's networks come in several layouts: torchvision's names,
wrapped by ``DataParallel`` (``module.``) or by the study's own training code
(``model.``), with other classifier and batch-norm names, with layers renamed
altogether (the study's ``load_weights`` copied tensors by position), without the
optional heads (Inception-v3's ``AuxLogits``), without a bias where the original layer
had none (SphereFace-20's ``fc6``, an ``AngleLinear`` stored ``(in, out)``), or with a
classifier for another number of identities. :func:`fit_checkpoint` matches the
tensors of such a state dict to a freshly built network in three passes:

1. **names**: after stripping wrapper prefixes and applying the entry's own ``rename``
   rules, the same key;
2. **aliases**: the same key once both sides are written canonically (lower case;
   ``bn``/``norm``/``batchnorm`` modules are one name; ``gamma``/``beta``/``moving_mean``/
   ``moving_variance`` are ``weight``/``bias``/``running_mean``/``running_var``; a
   classifier named ``fc``, ``classifier``, ``logits``, ``head`` ... is the network's
   final ``nn.Linear``), when exactly one tensor on each side has that canonical name;
3. **position** (``match: auto``, the default): the tensors left on both sides, paired
   in order when both sides have equally many left (as the study's ``load_weights`` did).

Then each pair is checked: equal shapes are copied as they are; an RGB first
convolution for a 1-channel network is summed over colour channels; a linear weight
stored transposed is transposed; a classifier (or Inception-v3's auxiliary classifier)
for another number of classes keeps the network's seeded initialisation. Model surgery follows the file: a bias the file lacks
is removed from its layer, an optional head the file lacks is removed from the network.
Everything left over (a network tensor without a counterpart, a file tensor used
nowhere, a shape no rule explains) is listed in the :class:`LoadReport`, and fitting
refuses with an error naming the file, each tensor and its expected shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from mfrs.errors import InputDataError
from mfrs.nets.types import Network

__all__ = ["MatchMode", "WRAPPER_PREFIXES", "OPTIONAL_HEADS", "CLASS_HEADS", "CLASSIFIER_ALIASES", "Pair", "LoadReport",
           "strip_prefixes", "canonical", "sum_colour_channels", "fit_checkpoint"]

log = logging.getLogger(__name__)

MatchMode = Literal["auto", "names"]

#: Prefixes that wrappers put before every key (DataParallel, the study's trainer, others).
WRAPPER_PREFIXES = ("module.", "model.", "net.", "backbone.")
#: Heads a checkpoint may lack; the network then goes without them.
OPTIONAL_HEADS: dict[str, tuple[str, ...]] = {"inception_v3": ("AuxLogits",)}
#: Other layers whose outputs are the classes (they follow the class count like the classifier).
CLASS_HEADS: dict[str, tuple[str, ...]] = {"inception_v3": ("AuxLogits.fc",)}
#: Module names under which files store a network's classifier.
CLASSIFIER_ALIASES = ("fc", "classifier", "logits", "linear", "head", "last_linear", "fc6", "out", "output",
                      "decoder.linear")
_CLASSIFIER = "@classifier"
_COUNTER = "num_batches_tracked"
_TENSOR_ALIASES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                   "moving_variance": "running_var", "moving_var": "running_var",
                   "running_variance": "running_var"}
_NORM = re.compile(r"(?:batch_?norm|bn|norm)(\w*)", re.IGNORECASE)


@dataclass(frozen=True)
class Pair:
    """A network tensor and the file tensor that fills it.

    ``how``: ``name``, ``alias`` or ``position``; ``adapt``: ``None`` (copied as is),
    ``gray`` (summed over colour channels), ``transpose`` or ``reinit`` (class count
    differs: the network's seeded initialisation is kept).
    """

    target: str
    source: str
    how: str
    adapt: str | None = None


@dataclass
class LoadReport:
    """What fitting a checkpoint did, tensor by tensor.

    Attributes
    ----------
    source : str
        The file (or entry) fitted, for messages.
    pairs : list of Pair
        Every network tensor filled from the file.
    missing : list of (name, expected shape)
        Network tensors the file has no counterpart for.
    unused : list of (name, shape)
        File tensors used nowhere.
    mismatched : list of (network name, file name, file shape, expected shape)
        Paired tensors whose shapes no rule explains.
    kept_init : list of str
        Network tensors that keep the seeded initialisation (a classifier for another
        number of classes, or one the file lacks).
    removed : list of str
        Parameters and heads taken out of the network because the file lacks them.
    ignored : list of str
        File tensors left out by the entry's ``ignore`` patterns.
    prefixes : list of str
        Wrapper prefixes stripped from the file's keys.
    """

    source: str
    pairs: list[Pair] = field(default_factory=list)
    missing: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    unused: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every network tensor is filled or deliberately kept, every file tensor used."""
        return not (self.missing or self.unused or self.mismatched)

    def count(self, how: str) -> int:
        """Number of pairs matched by ``how`` (``name``, ``alias``, ``position``)."""
        return sum(p.how == how for p in self.pairs)

    def problems(self) -> list[str]:
        """One line per tensor that stops the fit."""
        lines = [f"tensor {s!r} of the file has shape {have}, network tensor {t!r} expects {want}"
                 for t, s, have, want in self.mismatched]
        lines += [f"network tensor {t!r} (expected shape {want}) has no counterpart in the file"
                  for t, want in self.missing]
        lines += [f"tensor {s!r} of the file (shape {shape}) matches no network tensor" for s, shape in self.unused]
        return lines

    def summary(self) -> dict[str, Any]:
        """JSON-able digest for provenance (``renamed``: the alias pass; position pairs are counted)."""
        adapted = {p.target: p.adapt for p in self.pairs if p.adapt}
        renamed = {p.target: p.source for p in self.pairs if p.how == "alias"}
        return {"by_name": self.count("name"), "by_alias": self.count("alias"),
                "by_position": self.count("position"), "renamed": renamed, "adapted": adapted,
                "kept_init": list(self.kept_init), "removed": list(self.removed),
                "ignored": list(self.ignored), "prefixes": list(self.prefixes)}


def sum_colour_channels(kernel: torch.Tensor) -> torch.Tensor:
    """Grayscale adaptation of an RGB first-layer kernel.

    ``(out, 3, kh, kw) -> (out, 1, kh, kw)``: the sum over colour channels, so a gray
    image g gives the response the RGB network gives to the image (g, g, g).
    """
    return kernel.sum(dim=1, keepdim=True)


# ----------------------------------------------------------------------------- names
def strip_prefixes(state: Mapping[str, torch.Tensor], *, source: str = "weights",
                   extra: Sequence[str] = ()) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes (``module.``, ``model.`` ...) from every key that has them.

    Repeated until none is left (``module.model.conv1.weight`` -> ``conv1.weight``).

    Examples
    --------
    >>> import torch
    >>> state, found = strip_prefixes({"module.model.fc.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})
    >>> sorted(state), found
    (['fc.bias', 'fc.weight'], ['module.', 'model.'])
    """
    prefixes = tuple(extra) + WRAPPER_PREFIXES
    out: dict[str, torch.Tensor] = {}
    found: list[str] = []
    for key, value in state.items():
        name = key
        while (hit := next((p for p in prefixes if name.startswith(p)), None)) is not None:
            name = name[len(hit):]
            if hit not in found:
                found.append(hit)
        if name in out:
            raise InputDataError(f"{source}: keys {key!r} and another key both become {name!r} once the "
                                 f"wrapper prefixes {found} are removed; the file holds two networks?")
        out[name] = value
    return out, found


def canonical(key: str, *, classifier: str | None = None, aliases: bool = True) -> str:
    """The name a key is compared under in the alias pass.

    Lower case; batch-norm modules named ``bn``/``norm``/``batchnorm`` (with their suffix)
    read ``bn``; TensorFlow-style tensor names read as torch's; the classifier module
    (``classifier``: the network's own path, or with ``aliases`` any of
    :data:`CLASSIFIER_ALIASES`, with an index after it) reads ``@classifier``.

    Examples
    --------
    >>> canonical("layer1.0.norm1.gamma"), canonical("classifier.1.weight", classifier="fc")
    ('layer1.0.bn1.weight', '@classifier.weight')
    """
    module, _, tensor = key.rpartition(".")
    tensor = _TENSOR_ALIASES.get(tensor.lower(), tensor.lower())
    if module == classifier or (aliases and _is_classifier_alias(module)):
        return f"{_CLASSIFIER}.{tensor}"
    tokens = [_NORM.sub(lambda m: "bn" + m.group(1).lower(), t) if _NORM.fullmatch(t) else t.lower()
              for t in module.split(".")] if module else []
    return ".".join([*tokens, tensor])


def _is_classifier_alias(module: str) -> bool:
    if module in CLASSIFIER_ALIASES:
        return True
    head, _, rest = module.rpartition(".")
    return head in CLASSIFIER_ALIASES and rest.isdigit()


# ----------------------------------------------------------------------------- matching
def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


def _unique_pairs(targets: list[str], sources: list[str], key_of_target: Any, key_of_source: Any
                  ) -> list[tuple[str, str]]:
    """Pairs whose keys agree and are unique on both sides."""
    by_t: dict[str, list[str]] = {}
    by_s: dict[str, list[str]] = {}
    for t in targets:
        by_t.setdefault(key_of_target(t), []).append(t)
    for s in sources:
        by_s.setdefault(key_of_source(s), []).append(s)
    return [(ts[0], by_s[k][0]) for k, ts in by_t.items() if len(ts) == 1 and len(by_s.get(k, ())) == 1]


def _adaptation(key: str, have: tuple[int, ...], want: tuple[int, ...], *, first_conv: str,
                heads: tuple[str, ...]) -> str | None | Literal[False]:
    """How a file tensor of shape ``have`` fills network tensor ``key`` of shape ``want``
    (None: as it is; False: no rule explains the shapes)."""
    if have == want:
        return None
    if (key == f"{first_conv}.weight" and len(have) == 4 and have[1] == 3 and want[1] == 1
            and have[0] == want[0] and have[2:] == want[2:]):
        return "gray"
    if len(have) == 2 and have == want[::-1] and key.endswith(".weight"):
        return "transpose"
    if key.startswith(tuple(f"{h}." for h in heads)) and len(have) == len(want) and (
            have[1:] == want[1:] or (len(have) == 2 and have[0] == want[1])):  # (in, out) AngleLinear layout
        return "reinit"
    return False


def _remove_parameter(model: nn.Module, key: str) -> None:
    module_name, _, name = key.rpartition(".")
    model.get_submodule(module_name).register_parameter(name, None)


def _remove_head(model: nn.Module, head: str) -> None:
    setattr(model, head, None)
    if head == "AuxLogits" and hasattr(model, "aux_logits"):
        model.aux_logits = False  # type: ignore[assignment]  # a plain bool; torch types Module attributes as Tensor | Module


def fit_checkpoint(model: nn.Module, state: Mapping[str, torch.Tensor], *, network: Network, source: str,
                   first_conv: str, classifier: str, match: MatchMode = "auto",
                   rename: Mapping[str, str] | None = None, ignore: Sequence[str] = (),
                   strict: bool = True) -> LoadReport:
    """Load ``state`` into ``model`` (in place), matching names as described in the module docs.

    Parameters
    ----------
    model : torch.nn.Module
        The freshly built network (seeded initialisation), on the CPU.
    state : Mapping
        The file's tensors (``mfrs.nets.weights.read_state_dict``).
    network : Network
        Architecture name (which heads are optional).
    source : str
        The file and entry, named in messages.
    first_conv, classifier : str
        Module paths of the network's first convolution and final ``nn.Linear``.
    match : {"auto", "names"}
        ``names``: passes 1 and 2 only; ``auto`` adds the positional pass.
    rename : Mapping, optional
        Regular expression -> replacement, applied to the file's keys after the prefixes go.
    ignore : sequence of str
        Regular expressions of file keys to leave out (a loss's weights saved alongside).
    strict : bool
        Raise when the report is not ``ok``; False returns the report and loads nothing.

    Returns
    -------
    LoadReport

    Raises
    ------
    InputDataError
        ``strict`` and some tensor is missing, unused or of an unexplained shape; the
        message names the file, each tensor and its expected shape.
    """
    if match not in ("auto", "names"):
        raise InputDataError(f"{source}: params.match is {match!r}; use 'auto' (names, aliases, then "
                             f"position) or 'names'.")
    report = LoadReport(source=source)
    state, report.prefixes = strip_prefixes(state, source=source)
    for pattern, replacement in (rename or {}).items():
        state = {re.sub(pattern, replacement, k): v for k, v in state.items()}
    kept: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if any(re.search(p, key) for p in ignore):
            report.ignored.append(key)
        elif isinstance(value, torch.Tensor):
            kept[key] = value
        else:
            report.unused.append((key, ()))
    state = kept
    target = model.state_dict()
    targets = [k for k in target if not k.endswith(_COUNTER)]
    sources = [k for k in state if not k.endswith(_COUNTER)]
    pairs: dict[str, Pair] = {}

    def take(found: list[tuple[str, str]], how: str) -> None:
        for t, s in found:
            pairs[t] = Pair(t, s, how)
            targets.remove(t)
            sources.remove(s)

    take([(k, k) for k in list(targets) if k in state], "name")
    take(_unique_pairs(targets, sources, lambda k: canonical(k, classifier=classifier, aliases=False),
                        canonical), "alias")

    # a bias the file lacks for a layer whose weight it has: the layer goes without (SphereFace's fc6)
    matched_modules = {t.rpartition(".")[0] for t in pairs}
    for t in [t for t in targets if t.endswith(".bias") and t.rpartition(".")[0] in matched_modules]:
        module = model.get_submodule(t.rpartition(".")[0])
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            targets.remove(t)
            report.removed.append(t)

    # optional heads with no tensor matched: kept when the positional pass needs them, else removed
    heads = [h for h in OPTIONAL_HEADS.get(network, ())
             if getattr(model, h, None) is not None and not any(t.startswith(f"{h}.") for t in pairs)]
    positional = match == "auto" and bool(targets)
    if heads and not (positional and len(targets) == len(sources)):
        targets[:] = [t for t in targets if not any(t.startswith(f"{h}.") for h in heads)]
        report.removed += heads
    if positional and len(targets) == len(sources):
        take(list(zip(list(targets), list(sources))), "position")

    # the classifier may be missing from the file (a backbone saved alone): keep the seeded one
    for t in [t for t in targets if t.startswith(f"{classifier}.")]:
        targets.remove(t)
        report.kept_init.append(t)

    # shapes
    for t, pair in list(pairs.items()):
        have, want = _shape(state[pair.source]), _shape(target[t])
        how = _adaptation(t, have, want, first_conv=first_conv, heads=(classifier, *CLASS_HEADS.get(network, ())))
        if how is False:
            report.mismatched.append((t, pair.source, have, want))
            del pairs[t]
        elif how is not None:
            pairs[t] = Pair(t, pair.source, pair.how, how)
            if how == "reinit":
                report.kept_init.append(t)
    report.pairs = list(pairs.values())
    report.missing = [(t, _shape(target[t])) for t in targets]
    report.unused += [(s, _shape(state[s])) for s in sources]
    if not report.ok:
        if strict:
            problems = report.problems()
            shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
            raise InputDataError(
                f"{source}: the file does not fit {network} ({type(model).__name__}); "
                f"{len(report.pairs)} tensors matched ({report.count('name')} by name, "
                f"{report.count('alias')} by alias, {report.count('position')} by position), but:\n  {shown}\n"
                f"Check the entry's params.network, in_channels and num_classes; name tensors to leave out "
                f"with params.ignore, or key renames with params.rename."
            )
        return report

    for name in report.removed:
        if name in OPTIONAL_HEADS.get(network, ()):
            _remove_head(model, name)
        else:
            _remove_parameter(model, name)
    values = {}
    for pair in report.pairs:
        tensor = state[pair.source]
        if pair.adapt == "reinit":
            continue
        if pair.adapt == "gray":
            tensor = sum_colour_channels(tensor)
        elif pair.adapt == "transpose":
            tensor = tensor.t()
        values[pair.target] = tensor
        counter = f"{pair.target.rpartition('.')[0]}.{_COUNTER}"
        source_counter = f"{pair.source.rpartition('.')[0]}.{_COUNTER}"
        if counter in target and source_counter in state:
            values[counter] = state[source_counter]
    model.load_state_dict(values, strict=False)  # the keys left out keep the seeded initialisation
    if report.kept_init or report.removed or report.count("position") or report.count("alias"):
        log.info("%s: fitted to %s: %s", source, network, report.summary())
    return report
