"""Classification losses of the training stage: cross-entropy and the ArcFace / CosFace margins.

The margin losses act on the cosine between a sample's features (the input of the
network's final ``nn.Linear``) and each class weight vector, so the architectures
stay unchanged and their weight files load like any other.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfrs.nets.types import LossName

__all__ = ["margin_logits", "MarginLoss", "final_linear", "DEFAULT_MARGINS"]

#: Margins of the original papers: ArcFace additive angle 0.5 rad, CosFace cosine 0.35.
DEFAULT_MARGINS: dict[LossName, float] = {"cross_entropy": 0.0, "arcface": 0.5, "cosface": 0.35}


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier: the last ``nn.Linear`` registered in ``model``, with its path."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return found[-1]


def margin_logits(cosine: torch.Tensor, labels: torch.Tensor, *, kind: LossName, margin: float,
                  scale: float) -> torch.Tensor:
    """Scaled logits with the margin applied to each sample's target class.

    ``(batch, classes)`` cosines -> ``(batch, classes)`` logits:
    ``s * cos(theta_y + m)`` (ArcFace; beyond ``theta + m > pi`` the monotone extension
    ``cos(theta) - m sin(m)`` of the paper's code), ``s * (cos(theta_y) - m)`` (CosFace),
    ``s * cos(theta_j)`` for the other classes.
    """
    target = cosine.gather(1, labels[:, None])
    if kind == "arcface":
        sine = torch.sqrt((1.0 - target.pow(2)).clamp_min(1e-12))
        shifted = target * math.cos(margin) - sine * math.sin(margin)
        threshold = math.cos(math.pi - margin)
        shifted = torch.where(target > threshold, shifted, target - math.sin(math.pi - margin) * margin)
    elif kind == "cosface":
        shifted = target - margin
    else:
        raise ValueError(f"no margin for loss {kind!r}")
    return scale * cosine.scatter(1, labels[:, None], shifted)


class MarginLoss(nn.Module):
    """Cross-entropy, or ArcFace / CosFace on the cosines of the final linear layer.

    Parameters
    ----------
    kind : LossName
    classifier : nn.Linear
        The network's final layer; its weight rows are the class centres of the margin losses.
    margin, scale : float
        Margin (radians for ArcFace) and logit scale ``s``.

    ``forward(logits, features, labels)``: ``logits (batch, classes)`` from the network,
    ``features (batch, in_features)`` the classifier's input -> scalar loss.
    """

    def __init__(self, kind: LossName, classifier: nn.Linear, *, margin: float | None = None,
                 scale: float = 30.0):
        super().__init__()
        self.kind = kind
        self.classifier = classifier
        self.margin = DEFAULT_MARGINS[kind] if margin is None else margin
        self.scale = scale

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """``(batch, in_features) -> (batch, classes)`` cosines to the class weight vectors."""
        return F.linear(F.normalize(features, dim=1), F.normalize(self.classifier.weight, dim=1))

    def forward(self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.kind == "cross_entropy":
            return F.cross_entropy(logits, labels)
        return F.cross_entropy(margin_logits(self.cosine(features), labels, kind=self.kind,
                                             margin=self.margin, scale=self.scale), labels)

    def predict(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Predicted classes: argmax of the logits (cross-entropy) or of the cosines (margins)."""
        return (logits if self.kind == "cross_entropy" else self.cosine(features)).argmax(1)
