"""Face losses against direct numpy implementations of the papers' equations, miners against brute
force, and a few optimisation steps on separable toy identities reduce every loss."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from mfrs.nets.losses import FaceLoss, pair_indices, triplet_indices
from mfrs.nets.types import LossName

LABELS = np.array([0, 1, 2, 1, 0, 2, 2, 3])


def batch(seed: int = 0, dim: int = 6, classes: int = 4):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(len(LABELS), dim))
    weight = rng.normal(size=(classes, dim))
    bias = rng.normal(size=classes)
    fc = torch.nn.Linear(dim, classes).double()
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(weight))
        fc.bias.copy_(torch.from_numpy(bias))
    return emb, weight, bias, fc


def torch_loss(loss: FaceLoss, emb: np.ndarray, fc: torch.nn.Linear) -> float:
    x = torch.from_numpy(emb)
    with torch.no_grad():
        return float(loss.double()(fc(x), x, torch.from_numpy(LABELS)))


def np_ce(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logsumexp(logits, axis=1) - logits[np.arange(len(labels)), labels]))


def np_cos(emb: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return (emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ (weight / np.linalg.norm(weight, axis=1,
                                                                                       keepdims=True)).T


def unit(emb: np.ndarray) -> np.ndarray:
    return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_cross_entropy_arcface_cosface() -> None:
    emb, w, b, fc = batch()
    logits = emb @ w.T + b
    assert torch_loss(FaceLoss("cross_entropy", fc), emb, fc) == pytest.approx(np_ce(logits, LABELS), rel=1e-12)
    cos = np_cos(emb, w)
    s = 16.0
    arc, cosf = s * cos.copy(), s * cos.copy()
    for i, y in enumerate(LABELS):
        theta = math.acos(cos[i, y])
        assert theta + 0.5 < math.pi
        arc[i, y] = s * math.cos(theta + 0.5)
        cosf[i, y] = s * (cos[i, y] - 0.35)
    assert torch_loss(FaceLoss("arcface", fc, scale=s), emb, fc) == pytest.approx(np_ce(arc, LABELS), rel=1e-10)
    assert torch_loss(FaceLoss("cosface", fc, scale=s), emb, fc) == pytest.approx(np_ce(cosf, LABELS), rel=1e-10)


def test_center_loss_and_its_centre_update() -> None:
    """Wen et al. 2016: L = L_S + lambda/2 mean ||x_i - c_yi||^2; c_j -= alpha sum (c_j - x_i) / (1 + n_j)."""
    emb, w, b, fc = batch(1)
    loss = FaceLoss("center", fc, center_weight=0.1, center_alpha=0.5).double()
    centres = np.random.default_rng(2).normal(size=(4, 6))
    loss.centers.copy_(torch.from_numpy(centres))
    want = np_ce(emb @ w.T + b, LABELS) + 0.1 * 0.5 * np.mean([np.sum((emb[i] - centres[y]) ** 2)
                                                               for i, y in enumerate(LABELS)])
    assert torch_loss(loss.eval(), emb, fc) == pytest.approx(want, rel=1e-12)
    assert np.array_equal(loss.centers.numpy(), centres)  # eval: no update
    torch_loss(loss.train(), emb, fc)
    moved = centres.copy()
    for j in range(4):
        members = [i for i, y in enumerate(LABELS) if y == j]
        moved[j] -= 0.5 * sum(centres[j] - emb[i] for i in members) / (1 + len(members))
    np.testing.assert_allclose(loss.centers.numpy(), moved, rtol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 5.0])
def test_sphereface_a_softmax(lam: float) -> None:
    """Liu et al. 2017: target ||x|| (lam cos + psi(theta)) / (1 + lam), psi = (-1)^k cos(m theta) - 2k."""
    emb, w, _, fc = batch(3)
    m = 4
    cos = np_cos(emb, w)
    norms = np.linalg.norm(emb, axis=1)
    logits = norms[:, None] * cos
    for i, y in enumerate(LABELS):
        theta = math.acos(cos[i, y])
        k = math.floor(m * theta / math.pi)
        psi = (-1) ** k * math.cos(m * theta) - 2 * k
        logits[i, y] = norms[i] * (lam * cos[i, y] + psi) / (1 + lam)
    loss = FaceLoss("sphereface", fc, lambda_min=lam, lambda_max=lam).eval()
    assert torch_loss(loss, emb, fc) == pytest.approx(np_ce(logits, LABELS), rel=1e-9)
    # the authors' annealing: lambda = max(5, 1000 / (1 + 0.12 t)) at step t, one step per training batch
    anneal = FaceLoss("sphereface", fc).double().train()
    lambdas = []
    for _ in range(3):
        lambdas.append(anneal.sphereface_lambda())
        torch_loss(anneal, emb, fc)
    assert lambdas == pytest.approx([1000.0, 1000 / 1.12, 1000 / 1.24])
    anneal.step.fill_(10_000)
    assert anneal.sphereface_lambda() == 5.0


def test_circle_loss_class_level() -> None:
    """Sun et al. 2020 eq. 4 with class proxies: log[1 + sum_n exp(g a_n (s_n - m)) exp(-g a_p (s_p - 1 + m))]."""
    emb, w, _, fc = batch(4)
    m, g = 0.25, 8.0
    cos = np_cos(emb, w)
    per = []
    for i, y in enumerate(LABELS):
        sp = cos[i, y]
        sn = np.delete(cos[i], y)
        ap, an = max(0.0, 1 + m - sp), np.maximum(0.0, sn + m)
        per.append(math.log(1 + np.sum(np.exp(g * an * (sn - m))) * math.exp(-g * ap * (sp - 1 + m))))
    assert torch_loss(FaceLoss("circle_class", fc, margin=m, scale=g), emb, fc) == pytest.approx(np.mean(per),
                                                                                                 rel=1e-10)


def test_circle_loss_pair_wise() -> None:
    """The same over every positive and negative pair of the batch (cosine similarities)."""
    emb, _, _, fc = batch(5)
    m, g = 0.25, 8.0
    u = unit(emb)
    sp, sn = [], []
    for i, j in itertools.combinations(range(len(LABELS)), 2):
        (sp if LABELS[i] == LABELS[j] else sn).append(u[i] @ u[j])
    sp, sn = np.array(sp), np.array(sn)
    ap, an = np.maximum(0, 1 + m - sp), np.maximum(0, sn + m)
    want = math.log(1 + np.sum(np.exp(g * an * (sn - m))) * np.sum(np.exp(-g * ap * (sp - 1 + m))))
    assert torch_loss(FaceLoss("circle_pair", fc, margin=m, scale=g), emb, fc) == pytest.approx(want, rel=1e-10)


def test_contrastive_loss() -> None:
    """Hadsell et al. 2006: mean over pairs of 1/2 [y d^2 + (1 - y) max(0, m - d)^2], unit embeddings."""
    emb, _, _, fc = batch(6)
    u = unit(emb)
    terms = []
    for i, j in itertools.combinations(range(len(LABELS)), 2):
        d = np.linalg.norm(u[i] - u[j])
        terms.append(0.5 * (d**2 if LABELS[i] == LABELS[j] else max(0.0, 1.2 - d) ** 2))
    assert torch_loss(FaceLoss("contrastive", fc, margin=1.2), emb, fc) == pytest.approx(np.mean(terms), rel=1e-9)


@pytest.mark.parametrize("miner", ["all", "semihard", "hard"])
def test_triplet_loss_and_miners(miner: str) -> None:
    """Schroff et al. 2015: mean max(0, ||a - p||^2 - ||a - n||^2 + alpha), triplets mined by brute force."""
    emb, _, _, fc = batch(7)
    u = unit(emb)
    alpha = 0.6
    d2 = ((u[:, None] - u[None]) ** 2).sum(-1)
    n = len(LABELS)
    triplets = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and LABELS[p] == LABELS[a]]
        neg = [q for q in range(n) if LABELS[q] != LABELS[a]]
        if miner == "hard":
            if pos and neg:
                triplets.append((a, max(pos, key=lambda p: d2[a, p]), min(neg, key=lambda q: d2[a, q])))
            continue
        for p, q in itertools.product(pos, neg):
            if miner == "all" or d2[a, p] < d2[a, q] < d2[a, p] + alpha:
                triplets.append((a, p, q))
    got = triplet_indices(torch.from_numpy(LABELS), torch.from_numpy(d2), miner=miner, margin=alpha)
    assert sorted(zip(*[t.tolist() for t in got])) == sorted(triplets)
    assert len(triplets) > 0
    want = np.mean([max(0.0, d2[a, p] - d2[a, q] + alpha) for a, p, q in triplets])
    loss = FaceLoss("triplet", fc, margin=alpha, triplet_miner=miner)
    assert torch_loss(loss, emb, fc) == pytest.approx(want, rel=1e-9)


def test_hard_pair_miner_by_brute_force() -> None:
    emb, _, _, _ = batch(8)
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    n = len(LABELS)
    same = LABELS[:, None] == LABELS[None]
    closest_neg = [min(d[i, j] for j in range(n) if not same[i, j]) for i in range(n)]
    farthest_pos = [max([d[i, j] for j in range(n) if same[i, j] and j != i], default=-np.inf) for i in range(n)]
    want = [(i, j) for i, j in itertools.combinations(range(n), 2)
            if (same[i, j] and d[i, j] > min(closest_neg[i], closest_neg[j]))
            or (not same[i, j] and d[i, j] < max(farthest_pos[i], farthest_pos[j]))]
    i, j, s = pair_indices(torch.from_numpy(LABELS), torch.from_numpy(d), miner="hard")
    assert list(zip(i.tolist(), j.tolist())) == want
    assert s.tolist() == [bool(same[a, b]) for a, b in want]
    assert 0 < len(want) < n * (n - 1) // 2  # the miner does choose


ALL: list[LossName] = ["cross_entropy", "center", "sphereface", "arcface", "cosface", "circle_class",
                       "circle_pair", "contrastive", "triplet"]


@pytest.mark.parametrize("kind", ALL)
def test_a_few_steps_reduce_the_loss_on_separable_identities(kind: LossName) -> None:
    """4 identities as Gaussian clusters; an MLP embedding + classifier; 25 Adam steps on P x K batches
    (triplet: semi-hard mining, the loss measured on every triplet)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    means = rng.normal(scale=3.0, size=(4, 10))
    labels = np.repeat(np.arange(4), 12)
    points = torch.from_numpy(means[labels] + rng.normal(size=(48, 10))).float()
    y = torch.from_numpy(labels)
    embed = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
    fc = torch.nn.Linear(8, 4)
    extra = {"lambda_min": 5.0, "lambda_max": 5.0} if kind == "sphereface" else {}
    loss = FaceLoss(kind, fc, center_weight=0.5, **extra)
    optimizer = torch.optim.Adam([*embed.parameters(), *fc.parameters()], lr=0.01)
    # semi-hard triplets change as the embedding moves: measure on every triplet
    measure = FaceLoss(kind, fc, triplet_miner="all") if kind == "triplet" else loss

    def value() -> float:
        measure.eval()
        with torch.no_grad():
            e = embed(points)
            return float(measure(fc(e), e, y))

    before = value()
    for step in range(25):
        pick = np.concatenate([np.flatnonzero(labels == c)[(step * 4) % 12:][:4] for c in range(4)])
        loss.train()
        e = embed(points[pick])
        optimizer.zero_grad()
        loss(fc(e), e, y[pick]).backward()
        optimizer.step()
    after = value()
    assert np.isfinite(before) and after < 0.8 * before
