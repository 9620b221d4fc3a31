"""Closed choices of the similarity engine, as ``Literal`` aliases (the one place they live)."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "Dissimilarity",
    "Metric",
    "Comparator",
    "Pooling",
    "PermutationScheme",
    "BrainMode",
    "Alternative",
    "BootstrapOver",
    "ClusterFamily",
    "DISSIMILARITIES",
    "COMPARATORS",
    "RANK_COMPARATORS",
    "FAST_METHODS",
    "METRICS",
]

#: How two stimulus patterns are turned into one dissimilarity.
#: ``correlation`` = 1 - r, ``abs_correlation`` = 1 - |r|, ``euclidean`` and
#: ``sqeuclidean`` as in :func:`scipy.spatial.distance.pdist`, ``cosine`` = 1 - cos,
#: ``crossnobis`` = cross-validated Mahalanobis distance as in
#: :func:`rsatoolbox.rdm.calc_rdm_crossnobis`.
Dissimilarity = Literal["correlation", "abs_correlation", "euclidean", "sqeuclidean", "cosine", "crossnobis"]

#: How two RDM pair vectors are compared.
#: ``spearman`` (average ranks for ties, like :func:`scipy.stats.spearmanr`), ``pearson``,
#: ``kendall_tau_a`` (ties count as neither concordant nor discordant, denominator n(n-1)/2),
#: ``rho_a`` (rsatoolbox's Spearman without tie correction of the denominator), ``cosine``.
Comparator = Literal["spearman", "pearson", "kendall_tau_a", "rho_a", "cosine"]

#: How the subject RDMs are pooled into the reference RDM of a noise ceiling.
#: ``normalized`` pools the comparator's normalised vectors (ranks for rank comparators,
#: z-scores for pearson, RMS-scaled vectors for cosine), as rsatoolbox's ``pool_rdm``;
#: ``mean`` averages the raw dissimilarities (what the reference study did).
Pooling = Literal["normalized", "mean"]

#: What a permutation test shuffles. ``labels`` permutes stimulus labels (rows and columns of
#: the RDM together: the valid test). ``legacy_entries`` shuffles pair-vector entries
#: independently, as the reference study did; it ignores the dependence between pairs that
#: share a stimulus and is offered only to reproduce old numbers.
PermutationScheme = Literal["labels", "legacy_entries"]

#: Brain RDM features: ``raw`` = the region's vertices at one time sample (RDM movie),
#: ``avg`` = the region-mean time course inside a sliding window.
BrainMode = Literal["raw", "avg"]

#: Direction of a test: ``greater`` asks whether r exceeds chance.
Alternative = Literal["greater", "two-sided"]

DISSIMILARITIES: tuple[str, ...] = get_args(Dissimilarity)
COMPARATORS: tuple[str, ...] = get_args(Comparator)
#: Comparators that work on rank-transformed vectors.
RANK_COMPARATORS: tuple[str, ...] = ("spearman", "rho_a", "kendall_tau_a")
#: Comparators with the fused fast path (an inner product of prepared vectors,
#: :func:`mfrs.similarity.fused.rsa_block`); the split-half ceiling needs one of them.
FAST_METHODS: tuple[str, ...] = ("spearman", "pearson", "cosine")

#: Dissimilarities of brain RDMs made from one measurement per stimulus (every one but
#: ``crossnobis``, which needs folds): the choices of the similarity stage's ``metric``.
Metric = Literal["correlation", "abs_correlation", "euclidean", "sqeuclidean", "cosine"]
METRICS: tuple[str, ...] = get_args(Metric)

#: What a bootstrap resamples: subjects (per-subject r values), stimuli (RDM rows/cols) or
#: subject RDMs (RSA recomputed on the mean RDM of the drawn subjects, as the reference study did).
BootstrapOver = Literal["subjects", "stimuli", "subject_rdms"]

#: Which family the largest-cluster null of ``p_cluster`` is taken over. ``fwe_dims``: every
#: time course of the family of ``p_fwe`` (e.g. every layer, and every region when
#: ``region`` is in ``fwe_dims``), so ``p_cluster`` controls the family-wise error as
#: ``p_fwe`` does. ``per_layer``: each (region, layer) time course alone; controls the error
#: of one layer's time course only (false clusters somewhere among many layers are likely).
ClusterFamily = Literal["fwe_dims", "per_layer"]
