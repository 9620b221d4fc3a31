"""Closed choices of the CNN stages, as ``Literal`` aliases (one place, used in signatures)."""

from __future__ import annotations

from typing import Literal

from mfrs.similarity.types import METRICS, Metric

__all__ = [
    "Network", "NETWORKS", "LayerKind", "LAYER_KINDS", "Device", "RdmMetric", "RDM_METRICS",
    "OptimizerName", "LossName", "PairMiner", "TripletMiner", "Split",
]

#: The seven architectures of reference.md §3 (torchvision names where torchvision has them).
Network = Literal[
    "cornet_s", "resnet50", "mobilenet_v2", "vgg16_bn", "inception_v3", "facenet", "sphereface20",
]
NETWORKS: tuple[Network, ...] = (
    "cornet_s", "resnet50", "mobilenet_v2", "vgg16_bn", "inception_v3", "facenet", "sphereface20",
)

#: Kinds of layers a forward hook can record (``block``: a whole Inception/FaceNet/CORnet block).
LayerKind = Literal["conv", "linear", "batchnorm", "relu", "maxpool", "avgpool", "block"]
LAYER_KINDS: tuple[LayerKind, ...] = (
    "conv", "linear", "batchnorm", "relu", "maxpool", "avgpool", "block",
)

#: Where a network runs; ``auto`` picks CUDA when the task's worker has a GPU.
Device = Literal["auto", "cpu", "cuda"]

#: Dissimilarity of a model RDM: the one list of :data:`mfrs.similarity.types.Metric` (the brain RDMs' too).
RdmMetric = Metric
RDM_METRICS: tuple[str, ...] = METRICS

#: Optimisers and losses of the training stage (reference.md §3).
OptimizerName = Literal["sgd", "momentum", "adam", "adamw"]
LossName = Literal["cross_entropy", "center", "sphereface", "arcface", "cosface", "circle_class", "circle_pair",
                   "contrastive", "triplet"]

#: Miners of the pair-wise losses: which pairs / triplets of a batch the loss sees.
PairMiner = Literal["all", "hard"]
TripletMiner = Literal["all", "semihard", "hard"]

#: Image dataset splits.
Split = Literal["train", "valid", "test"]
