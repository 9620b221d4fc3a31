"""Face losses of the training stage (reference.md §3): cross-entropy, center, SphereFace, ArcFace,
CosFace, the two circle losses, contrastive and triplet, with their pair and triplet miners.

Class-level losses act on the network's classifier (its final ``nn.Linear``) and on the
*embedding*, the classifier's input: the margin losses use the cosine between the
embedding and each class weight vector, so the architectures stay unchanged and their
weight files load like any other. Pair-wise losses (``circle_pair``, ``contrastive``,
``triplet``) compare the L2-normalised embeddings of the items of a batch, drawn as P
identities x K images of the training split (``mfrs.nets.training.identity_batches``);
the classifier is then not trained.

=============  =========================================================================
loss           per batch (``s``: cosine; ``d``: Euclidean distance of unit embeddings)
=============  =========================================================================
cross_entropy  mean CE of the logits
center         CE + lambda/2 mean ||x_i - c_{y_i}||^2, centres moved by alpha (Wen 2016)
sphereface     CE of ||x|| (lambda cos + psi(theta_y)) / (1 + lambda) for the target,
               psi = (-1)^k cos(m theta) - 2k (Liu 2017, m = 4, lambda annealed)
arcface        CE of s cos(theta_y + m) (Deng 2019, m = 0.5 rad)
cosface        CE of s (cos theta_y - m) (Wang 2018, m = 0.35)
circle_class   log(1 + sum_n exp(g a_n (s_n - m)) exp(-g a_p (s_p - 1 + m))), class proxies
circle_pair    the same over the positive and negative pairs of the batch (Sun 2020)
contrastive    mean 1/2 [y d^2 + (1 - y) max(0, m - d)^2] over pairs (Hadsell 2006)
triplet        mean max(0, d_ap^2 - d_an^2 + m) over triplets (Schroff 2015, m = 0.2)
=============  =========================================================================
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mfrs.nets.types import LossName, PairMiner, TripletMiner

__all__ = ["final_linear", "margin_logits", "sphereface_logits", "circle_class_logits", "circle_pair_loss",
           "contrastive_loss", "triplet_loss", "pair_indices", "triplet_indices", "FaceLoss", "PAIR_LOSSES",
           "DEFAULT_MARGINS", "DEFAULT_SCALES", "chebyshev_cos"]

#: Losses that compare items of a batch (they need identity batches, and train no classifier).
PAIR_LOSSES: tuple[LossName, ...] = ("circle_pair", "contrastive", "triplet")
#: Margins of the original papers (SphereFace: the integer angle multiplier m).
DEFAULT_MARGINS: dict[LossName, float] = {
    "cross_entropy": 0.0, "center": 0.0, "sphereface": 4, "arcface": 0.5, "cosface": 0.35,
    "circle_class": 0.25, "circle_pair": 0.25, "contrastive": 1.0, "triplet": 0.2,
}
#: Logit scales s (ArcFace, CosFace) and gamma (circle losses).
DEFAULT_SCALES: dict[LossName, float] = {"arcface": 30.0, "cosface": 30.0, "circle_class": 256.0,
                                         "circle_pair": 256.0}


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The classifier: the last ``nn.Linear`` registered in ``model``, with its path."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    return found[-1]


# ----------------------------------------------------------------------------- class-level logits
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


def chebyshev_cos(cosine: torch.Tensor, m: int) -> torch.Tensor:
    """``cos(m theta)`` from ``cos(theta)`` by the Chebyshev recursion (smooth at theta = 0, pi).

    Examples
    --------
    >>> import torch
    >>> round(float(chebyshev_cos(torch.tensor(0.5), 4)), 6)  # cos(4 * pi/3)
    -0.5
    """
    previous, current = torch.ones_like(cosine), cosine
    if m == 0:
        return previous
    for _ in range(m - 1):
        previous, current = current, 2 * cosine * current - previous
    return current


def sphereface_logits(cosine: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, *, m: int,
                      lam: float) -> torch.Tensor:
    """A-softmax logits (Liu et al. 2017, with the annealing of the authors' code).

    ``cosine (batch, classes)`` to unit class weights, ``norms (batch,)`` embedding norms:
    target ``||x|| (lam cos(theta_y) + psi(theta_y)) / (1 + lam)`` with
    ``psi(theta) = (-1)^k cos(m theta) - 2k``, ``k = floor(m theta / pi)``; others
    ``||x|| cos(theta_j)``.
    """
    target = cosine.gather(1, labels[:, None]).clamp(-1.0, 1.0)
    k = torch.floor(m * torch.acos(target.detach()) / math.pi)
    psi = (1.0 - 2.0 * torch.remainder(k, 2)) * chebyshev_cos(target, m) - 2.0 * k
    shifted = (lam * target + psi) / (1.0 + lam)
    return norms[:, None] * cosine.scatter(1, labels[:, None], shifted)


def _circle_terms(sp: torch.Tensor, sn: torch.Tensor, *, margin: float, gamma: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``gamma a_p (s_p - D_p)`` and ``gamma a_n (s_n - D_n)``; the weights a are not differentiated."""
    ap = (1.0 + margin - sp.detach()).clamp_min(0.0)
    an = (sn.detach() + margin).clamp_min(0.0)
    return gamma * ap * (sp - (1.0 - margin)), gamma * an * (sn - margin)


def circle_class_logits(cosine: torch.Tensor, labels: torch.Tensor, *, margin: float, gamma: float
                        ) -> torch.Tensor:
    """Logits whose cross-entropy is the class-level circle loss (Sun et al. 2020, eq. 4 with proxies).

    ``log(1 + sum_n exp(l_n) exp(-l_p)) = CE`` with target logit ``l_p = gamma a_p (s_p - 1 + m)``
    and others ``l_n = gamma a_n (s_n - m)``, ``a_p = [1 + m - s_p]_+``, ``a_n = [s_n + m]_+``.
    """
    sp = cosine.gather(1, labels[:, None])
    pos, neg = _circle_terms(sp, cosine, margin=margin, gamma=gamma)
    return neg.scatter(1, labels[:, None], pos)


# ----------------------------------------------------------------------------- miners
def _pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(len(labels), len(labels), 1, device=labels.device)
    return i, j, labels[i] == labels[j]


def pair_indices(labels: torch.Tensor, distances: torch.Tensor | None = None, *, miner: PairMiner = "all"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairs ``i < j`` of a batch, and whether each is of one identity.

    ``all``: every pair. ``hard``: positive pairs farther apart than the closest negative
    of either item, and negative pairs closer than the farthest positive of either item.

    Returns
    -------
    i, j : (pairs,) long tensors
    same : (pairs,) bool tensor
    """
    i, j, same = _pairs(labels)
    if miner == "all":
        return i, j, same
    if distances is None:
        raise ValueError("the hard pair miner needs the distances")
    eq = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    d = distances.detach()
    inf = torch.tensor(float("inf"), device=d.device)
    closest_neg = torch.where(eq, inf, d).min(1).values
    farthest_pos = torch.where(eq & ~eye, d, -inf).max(1).values
    dij = d[i, j]
    keep = torch.where(same, dij > torch.minimum(closest_neg[i], closest_neg[j]),
                       dij < torch.maximum(farthest_pos[i], farthest_pos[j]))
    return i[keep], j[keep], same[keep]


def triplet_indices(labels: torch.Tensor, distances: torch.Tensor | None = None, *,
                    miner: TripletMiner = "all", margin: float = 0.2
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Triplets (anchor, positive, negative) of a batch.

    ``all``: every anchor-positive pair (a != p, same identity) with every negative.
    ``semihard`` (FaceNet): negatives farther than the positive but within the margin,
    ``d_ap^2 < d_an^2 < d_ap^2 + margin`` (``distances``: squared). ``hard`` (batch hard):
    per anchor its farthest positive and closest negative.
    """
    n = len(labels)
    eq = labels[:, None] == labels[None, :]
    eye = torch.eye(n, dtype=torch.bool, device=labels.device)
    pos, neg = eq & ~eye, ~eq
    if miner == "hard":
        if distances is None:
            raise ValueError("the hard triplet miner needs the distances")
        d = distances.detach()
        inf = torch.tensor(float("inf"), device=d.device)
        anchors = torch.nonzero(pos.any(1) & neg.any(1)).flatten()
        p = torch.where(pos, d, -inf).argmax(1)[anchors]
        q = torch.where(neg, d, inf).argmin(1)[anchors]
        return anchors, p, q
    valid = pos[:, :, None] & neg[:, None, :]
    if miner == "semihard":
        if distances is None:
            raise ValueError("the semihard triplet miner needs the distances")
        d = distances.detach()
        dap, dan = d[:, :, None], d[:, None, :]
        valid = valid & (dan > dap) & (dan < dap + margin)
    a, p, q = torch.nonzero(valid, as_tuple=True)
    return a, p, q


# ----------------------------------------------------------------------------- pair-wise losses
def _distances(emb: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances of the rows (kept differentiable, >= 0)."""
    sq = emb.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * emb @ emb.T).clamp_min(0.0)


def _zero(emb: torch.Tensor) -> torch.Tensor:
    return emb.sum() * 0.0


def circle_pair_loss(emb: torch.Tensor, labels: torch.Tensor, *, margin: float, gamma: float,
                     miner: PairMiner = "all") -> torch.Tensor:
    """Pair-wise circle loss: ``log(1 + sum_n exp(l_n) sum_p exp(-l_p))`` over the batch's pairs."""
    emb = F.normalize(emb, dim=1)
    i, j, same = pair_indices(labels, 1.0 - emb @ emb.T, miner=miner)
    if not same.any() or same.all():
        return _zero(emb)
    sim = (emb[i] * emb[j]).sum(1)
    pos, neg = _circle_terms(sim[same], sim[~same], margin=margin, gamma=gamma)
    return F.softplus(torch.logsumexp(neg, 0) + torch.logsumexp(-pos, 0))


def contrastive_loss(emb: torch.Tensor, labels: torch.Tensor, *, margin: float,
                     miner: PairMiner = "all") -> torch.Tensor:
    """Contrastive loss of the batch's pairs, ``1/2 [y d^2 + (1 - y) max(0, m - d)^2]`` averaged."""
    emb = F.normalize(emb, dim=1)
    dist2 = _distances(emb)
    i, j, same = pair_indices(labels, dist2, miner=miner)
    if len(i) == 0:
        return _zero(emb)
    d2 = dist2[i, j]
    d = torch.sqrt(d2 + 1e-12)
    return 0.5 * torch.where(same, d2, (margin - d).clamp_min(0.0).pow(2)).mean()


def triplet_loss(emb: torch.Tensor, labels: torch.Tensor, *, margin: float,
                 miner: TripletMiner = "semihard") -> torch.Tensor:
    """Triplet loss ``max(0, d_ap^2 - d_an^2 + m)`` averaged over the mined triplets (zero if none)."""
    emb = F.normalize(emb, dim=1)
    dist2 = _distances(emb)
    a, p, q = triplet_indices(labels, dist2, miner=miner, margin=margin)
    if len(a) == 0:
        return _zero(emb)
    return (dist2[a, p] - dist2[a, q] + margin).clamp_min(0.0).mean()


# ----------------------------------------------------------------------------- the module
class FaceLoss(nn.Module):
    """One of the study's face losses, on the network's classifier and embedding.

    Parameters
    ----------
    kind : LossName
    classifier : nn.Linear
        The network's final layer; its weight rows are the class proxies of the
        class-level margin losses.
    margin, scale : float, optional
        Default: :data:`DEFAULT_MARGINS`, :data:`DEFAULT_SCALES`.
    center_weight, center_alpha : float
        Center loss lambda and centre learning rate alpha (paper: 0.003, 0.5).
    lambda_min, lambda_max : float
        SphereFace's annealing ``lambda = max(lambda_min, lambda_max / (1 + 0.12 t))`` at
        training step t (the authors' PyTorch code: 5 and 1000).
    pair_miner, triplet_miner
        Miners of the pair-wise losses.

    ``forward(logits, embedding, labels)`` -> scalar loss; in training mode the center
    loss moves its centres and SphereFace counts its step (both in ``state_dict``).
    """

    centers: torch.Tensor  #: center loss: one centre per class (a buffer)
    step: torch.Tensor  #: SphereFace: training steps so far (a buffer)

    def __init__(self, kind: LossName, classifier: nn.Linear, *, margin: float | None = None,
                 scale: float | None = None, center_weight: float = 0.003, center_alpha: float = 0.5,
                 lambda_min: float = 5.0, lambda_max: float = 1000.0, pair_miner: PairMiner = "all",
                 triplet_miner: TripletMiner = "semihard"):
        super().__init__()
        self.kind = kind
        self.classifier = [classifier]  # a list: not a submodule, so the loss's state_dict stays its own
        self.margin = float(DEFAULT_MARGINS[kind] if margin is None else margin)
        self.scale = float(DEFAULT_SCALES.get(kind, 1.0) if scale is None else scale)
        self.center_weight, self.center_alpha = center_weight, center_alpha
        self.lambda_min, self.lambda_max = lambda_min, lambda_max
        self.pair_miner, self.triplet_miner = pair_miner, triplet_miner
        if kind == "sphereface" and (self.margin != int(self.margin) or self.margin < 1):
            raise ValueError(f"SphereFace's margin is the integer angle multiplier m (1-4), not {margin!r}")
        if kind == "center":
            self.register_buffer("centers", torch.zeros(classifier.out_features, classifier.in_features))
        if kind == "sphereface":
            self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @property
    def pairwise(self) -> bool:
        """Whether the loss compares the items of a batch (identity batches needed)."""
        return self.kind in PAIR_LOSSES

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(batch, in_features) -> (batch, classes)`` cosines to the class weight vectors."""
        weight = self.classifier[0].weight
        return F.linear(F.normalize(embedding, dim=1), F.normalize(weight, dim=1))

    def sphereface_lambda(self) -> float:
        """The current annealed lambda of SphereFace."""
        return max(self.lambda_min, self.lambda_max / (1.0 + 0.12 * float(self.step)))

    def forward(self, logits: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        kind = self.kind
        if kind == "cross_entropy":
            return F.cross_entropy(logits, labels)
        if kind in ("arcface", "cosface"):
            return F.cross_entropy(margin_logits(self.cosine(embedding), labels, kind=kind, margin=self.margin,
                                                 scale=self.scale), labels)
        if kind == "center":
            return F.cross_entropy(logits, labels) + self.center_weight * self._center_term(embedding, labels)
        if kind == "sphereface":
            lam = self.sphereface_lambda()
            if self.training:
                self.step += 1
            return F.cross_entropy(sphereface_logits(self.cosine(embedding), embedding.norm(dim=1), labels,
                                                     m=int(self.margin), lam=lam), labels)
        if kind == "circle_class":
            return F.cross_entropy(circle_class_logits(self.cosine(embedding), labels, margin=self.margin,
                                                       gamma=self.scale), labels)
        if kind == "circle_pair":
            return circle_pair_loss(embedding, labels, margin=self.margin, gamma=self.scale, miner=self.pair_miner)
        if kind == "contrastive":
            return contrastive_loss(embedding, labels, margin=self.margin, miner=self.pair_miner)
        if kind == "triplet":
            return triplet_loss(embedding, labels, margin=self.margin, miner=self.triplet_miner)
        raise ValueError(f"unknown loss {kind!r}")

    def _center_term(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``1/2 mean ||x_i - c_{y_i}||^2``; in training, centres move by the paper's rule
        ``c_j -= alpha sum_{y_i = j} (c_j - x_i) / (1 + n_j)``."""
        term = 0.5 * (embedding - self.centers[labels]).pow(2).sum(1).mean()
        if self.training:
            with torch.no_grad():
                diff = torch.zeros_like(self.centers).index_add_(0, labels, self.centers[labels] - embedding)
                count = torch.bincount(labels, minlength=len(self.centers)).to(diff.dtype)
                self.centers -= self.center_alpha * diff / (1.0 + count)[:, None]
        return term

    def predict(self, logits: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor | None:
        """Predicted classes (argmax of the logits, or of the cosines for the angular losses);
        None for the pair-wise losses, which train no classifier."""
        if self.pairwise:
            return None
        if self.kind in ("cross_entropy", "center"):
            return logits.argmax(1)
        return self.cosine(embedding).argmax(1)
