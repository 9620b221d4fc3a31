"""Stage configs: validated once, narrowed to the fields each stage reads."""

from __future__ import annotations

import pytest

from mfrs.errors import ConfigError
from mfrs.pipeline import PipelineConfig, stage_config
from mfrs.stages import activations, model_rdms
from mfrs.stages import train as training


def _pipeline(config: dict) -> PipelineConfig:
    return PipelineConfig(stages=["activations", "model_rdms", "train"], config=config, seed=7)


def test_model_rdms_takes_networks_from_the_activations_section() -> None:
    pipe = _pipeline({"activations": {"networks": [{"network": "resnet50", "weights": "untrained-seed2",
                                                    "input_size": 64}]},
                      "model_rdms": {"metric": "euclidean"}})
    cfg = stage_config(model_rdms, pipe)
    assert [(r.network, r.weights) for r in cfg.networks] == [("resnet50", "untrained-seed2")]
    assert cfg.metric == "euclidean"
    # an explicit list wins
    pipe = _pipeline({"activations": {"networks": [{"network": "resnet50"}]},
                      "model_rdms": {"networks": [{"network": "vgg16_bn"}]}})
    assert stage_config(model_rdms, pipe).networks[0].network == "vgg16_bn"


def test_pipeline_seed_reaches_train_only() -> None:
    pipe = _pipeline({})
    assert stage_config(training, pipe).seed == 7
    assert "seed" not in activations.Config.model_fields


def test_unknown_keys_are_refused_with_a_suggestion() -> None:
    pipe = _pipeline({"model_rdms": {"metrc": "correlation"}})
    with pytest.raises(ConfigError, match=r"config.model_rdms.metrc.*Did you mean 'metric'"):
        stage_config(model_rdms, pipe)
    pipe = _pipeline({"train": {"optimizer": "rmsprop"}})
    with pytest.raises(ConfigError, match=r"config.train.optimizer.*'sgd', 'momentum', 'adam' or 'adamw'"):
        stage_config(training, pipe)


def test_inputs_and_outputs_name_catalog_entries(nets_catalog) -> None:
    cfg = activations.Config()
    assert activations.inputs(cfg, nets_catalog) == ["stimuli", "weights_mobilenet_v2_imagenet"]
    assert activations.outputs(cfg, nets_catalog) == ["activations/mobilenet_v2/imagenet",
                                                      "activations/mobilenet_v2/untrained-seed0"]
    assert model_rdms.inputs(model_rdms.Config(), nets_catalog) == activations.outputs(cfg, nets_catalog)
    assert model_rdms.outputs(model_rdms.Config(), nets_catalog) == ["model_rdms"]
    t = training.Config(images="faces", init="weights_mobilenet_v2_imagenet")
    assert training.inputs(t, nets_catalog) == ["faces", "weights_mobilenet_v2_imagenet"] and training.outputs(t, nets_catalog) == ["trained"]


def test_every_face_loss_is_selectable_in_the_train_section() -> None:
    from mfrs.nets.types import LossName

    for loss in LossName.__args__:
        cfg = stage_config(training, _pipeline({"train": {"loss": loss, "batch_size": 16}}))
        assert cfg.loss == loss
    cfg = stage_config(training, _pipeline({"train": {"loss": "triplet", "triplet_miner": "hard", "margin": 0.3}}))
    assert (cfg.triplet_miner, cfg.margin, cfg.pairwise) == ("hard", 0.3, True)
    with pytest.raises(ConfigError, match=r"config.train.loss.*'circle_pair'"):
        stage_config(training, _pipeline({"train": {"loss": "circle"}}))
    with pytest.raises(ConfigError, match=r"batch_size 6 must hold at least 2 identities x images_per_identity 4"):
        stage_config(training, _pipeline({"train": {"loss": "contrastive", "batch_size": 6}}))
    with pytest.raises(ConfigError, match=r"SphereFace's margin is the integer angle multiplier"):
        stage_config(training, _pipeline({"train": {"loss": "sphereface", "margin": 0.5}}))
