"""The activations and model_rdms stages on a real LocalCluster with a GPU-resource worker."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from nets_helpers import MOBILENET_LOCATION, MOBILENET_SHA256, STIMULUS_SIZE, write_stimuli
from scipy.spatial.distance import pdist

from mfrs.errors import ConfigError, StoreError
from mfrs.pipeline import run_stage
from mfrs.similarity import to_square
from mfrs.stages import activations, model_rdms
from mfrs.store import ZarrStore

SPECS = [
    {"network": "mobilenet_v2", "weights": "weights_mobilenet_v2_imagenet", "input_size": STIMULUS_SIZE},
    {"network": "mobilenet_v2", "weights": "untrained-seed0", "input_size": STIMULUS_SIZE},
]


@pytest.fixture(scope="module")
def done(tmp_path_factory, local_client):
    """Stimuli, then both stages run once; returns (catalog, activation results)."""
    from nets_helpers import make_catalog

    catalog = make_catalog(tmp_path_factory.mktemp("nets-stage"))
    write_stimuli(catalog)
    cfg = activations.Config(networks=SPECS, batch_size=4, exec={"unit_chunk": 4096})
    results = run_stage(activations, config=cfg, catalog=catalog, client=local_client)
    rdm_cfg = model_rdms.Config(networks=[{"network": s["network"], "weights": s["weights"]} for s in SPECS],
                                exec={"unit_chunk": 1000})
    run_stage(model_rdms, config=rdm_cfg, catalog=catalog, client=local_client)
    return catalog, cfg, rdm_cfg, results


def test_task_ran_on_the_gpu_worker(done, local_client) -> None:
    from mfrs.cluster import gpu_workers

    _, _, _, results = done
    gpu = gpu_workers(local_client)
    assert len(gpu) == 1
    assert set(results) == {"activations/mobilenet_v2/imagenet", "activations/mobilenet_v2/untrained-seed0"}
    for record in results.values():
        assert record["worker"] == gpu[0]
        assert record["device"] == "cpu"  # no CUDA here: the task chose the CPU itself
        assert record["written"] == ["stimulus=0:4", "stimulus=4:6"]


def test_store_coords_and_provenance(done) -> None:
    catalog, cfg, _, _ = done
    ds = catalog.open("activations/mobilenet_v2/imagenet")
    stim = catalog.open("stimuli")
    for name in ("stimulus", "category", "condition", "file"):
        assert ds[name].values.tolist() == stim[name].values.tolist()
    assert ds.sizes["layer"] == 140  # 52 conv + 52 batch-norm + 35 ReLU6 + 1 linear at 64 px
    assert set(ds["network"].values) == {"mobilenet_v2"} and set(ds["weights"].values) == {"imagenet"}
    assert ds["layer"].values[0] == "mobilenet_v2/imagenet/features.0.0"
    assert ds["depth"].values[0] == 0.0 and ds["depth"].values[-1] == 1.0
    assert np.all(np.diff(ds["depth"].values) > 0)
    assert ds["kind"].values.tolist()[:3] == ["conv", "batchnorm", "relu"]
    for name, units in zip(ds["name"].values, ds["units"].values):
        assert ds[str(name)].dims == ("stimulus", f"unit_{name}") and ds[str(name)].shape == (6, units)
        assert ds[str(name)].dtype == np.float32
    # chunked along units: never a 10^6-unit layer whole
    assert ds["features.0.0"].encoding["chunks"] == (4, 4096)
    prov = ds.attrs["provenance"]
    assert prov["stage"] == "activations"
    assert prov["inputs"] == {"stimuli": ZarrStore.open(catalog.path("stimuli")).provenance["fingerprint"],
                              "weights_mobilenet_v2_imagenet": MOBILENET_SHA256}
    assert prov["parameters"]["network"]["weights"] == "weights_mobilenet_v2_imagenet"
    assert prov["versions"]["torch"].startswith("2.")
    untrained = catalog.open("activations/mobilenet_v2/untrained-seed0")
    assert untrained.attrs["provenance"]["seed"] == 0


def test_stored_values_equal_an_independent_forward(done) -> None:
    """torchvision's MobileNetV2 with the file's kernels summed by hand, normalised by hand."""
    from torchvision.models import mobilenet_v2

    from mfrs.nets.weights import resolve_weights

    catalog, _, _, _ = done
    ds = catalog.open("activations/mobilenet_v2/imagenet")
    state = torch.load(resolve_weights({"network": "mobilenet_v2", "sha256": MOBILENET_SHA256},
                                       MOBILENET_LOCATION), weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"].sum(1, keepdim=True)
    net = mobilenet_v2()
    net.features[0][0] = torch.nn.Conv2d(1, 32, 3, 2, 1, bias=False)
    net.load_state_dict(state)
    net.eval()
    pixels = catalog.open("stimuli")["image"].values.astype(np.float64) / 255.0
    x = torch.from_numpy(((pixels - 0.3612) / 0.3056)[:, None].astype(np.float32))
    with torch.no_grad():
        logits = net(x).numpy()
        first = net.features[0][0](x).reshape(6, -1).numpy()
    np.testing.assert_allclose(ds["classifier.1"].values, logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ds["features.0.0"].values, first, rtol=1e-5, atol=1e-5)


def _hooked_forward(net: torch.nn.Module, names: list[str], x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every named module's output, by forward hooks registered here (not mfrs's LayerRecorder)."""
    out: dict[str, np.ndarray] = {}
    modules = dict(net.named_modules())

    def keep(name: str):
        def hook(module, args, output):  # cloned at once: later in-place ReLUs change the tensor
            out[name] = output.detach().flatten(1).to("cpu", torch.float64, copy=True).numpy()
        return hook

    handles = [modules[n].register_forward_hook(keep(n)) for n in names]
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return out


def _oracle_net() -> torch.nn.Module:
    """torchvision's MobileNetV2 with the weight file's kernels summed over colour by hand (not mfrs's loader)."""
    from torchvision.models import mobilenet_v2

    from mfrs.nets.weights import resolve_weights

    state = torch.load(resolve_weights({"network": "mobilenet_v2", "sha256": MOBILENET_SHA256},
                                       MOBILENET_LOCATION), weights_only=True)
    state["features.0.0.weight"] = state["features.0.0.weight"].sum(1, keepdim=True)
    net = mobilenet_v2()
    net.features[0][0] = torch.nn.Conv2d(1, 32, 3, 2, 1, bias=False)
    net.load_state_dict(state)
    return net.eval()


def _normalised(catalog) -> torch.Tensor:
    pixels = catalog.open("stimuli")["image"].values.astype(np.float64) / 255.0
    return torch.from_numpy(((pixels - 0.3612) / 0.3056)[:, None].astype(np.float32))


def test_every_stored_layer_equals_direct_forward_hooks(done) -> None:
    """The CPU path of the activations task (device auto, no CUDA here) against forward hooks on an
    independently built network: all 140 layers; tolerance 1e-4 relative to each layer's largest value."""
    catalog, _, _, results = done
    assert {r["device"] for r in results.values()} == {"cpu"}
    ds = catalog.open("activations/mobilenet_v2/imagenet")
    names = [str(n) for n in ds["name"].values]
    oracle = _hooked_forward(_oracle_net(), names, _normalised(catalog))
    assert len(oracle) == len(names) == 140
    for name in names:
        want = oracle[name]
        np.testing.assert_allclose(ds[name].values, want, rtol=1e-4, atol=1e-4 * np.abs(want).max(), err_msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs where a GPU worker exists)")
def test_cuda_activations_equal_the_cpu_forward(done) -> None:
    """The GPU path (LayerRecorder on CUDA, TF32 off) against the CPU oracle: 1e-3 of each layer's scale."""
    from mfrs.nets.hooks import LayerRecorder

    catalog, _, _, _ = done
    names = [str(n) for n in catalog.open("activations/mobilenet_v2/imagenet")["name"].values]
    x = _normalised(catalog)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with LayerRecorder(_oracle_net().cuda(), dict.fromkeys(names, "conv")) as rec:
        got = rec.run(x.cuda())
    want = _hooked_forward(_oracle_net(), names, x)
    for name in names:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-3 * np.abs(want[name]).max(),
                                   err_msg=name)


def test_layer_rdm_equals_scipy_on_stored_activations(done) -> None:
    catalog, _, _, _ = done
    rdms = catalog.open("model_rdms")
    assert rdms["rdm"].dims == ("layer", "pair")
    assert rdms.sizes["pair"] == 15
    assert rdms["stimulus"].values.tolist() == ["f001", "f002", "u001", "u002", "s001", "s002"]
    i, j = np.triu_indices(6, 1)  # pdist's pair order, labelled with both stimuli and their categories
    assert rdms["stimulus_a"].values.tolist() == rdms["stimulus"].values[i].tolist()
    assert rdms["stimulus_b"].values.tolist() == rdms["stimulus"].values[j].tolist()
    assert rdms["category_b"].values.tolist() == rdms["category"].values[j].tolist()
    assert rdms.sizes["layer"] == 2 * 140
    assert set(rdms["weights"].values) == {"imagenet", "untrained-seed0"}
    for store, layer in [("imagenet", "features.2.conv.0.0"),   # 96 x 16 x 16 units: 25 read chunks
                         ("imagenet", "classifier.1"),
                         ("untrained-seed0", "features.18.2")]:
        acts = catalog.open(f"activations/mobilenet_v2/{store}")[layer].values.astype(np.float64)
        stored = rdms["rdm"].sel(layer=f"mobilenet_v2/{store}/{layer}").values
        np.testing.assert_allclose(stored, pdist(acts, "correlation"), rtol=2e-6, atol=2e-6)
    square = to_square(rdms["rdm"].isel(layer=0))
    assert square.dims == ("stimulus_a", "stimulus_b")
    assert float(square.sel(stimulus_a="u001", stimulus_b="f002")) == float(rdms["rdm"].isel(layer=0, pair=5))
    assert (np.diag(square.values) == 0).all()
    assert rdms.attrs["provenance"]["stage"] == "model_rdms"


def test_rerun_skips_complete_units(done, local_client, caplog) -> None:
    catalog, cfg, rdm_cfg, _ = done
    with caplog.at_level(logging.INFO, logger="mfrs"):
        assert run_stage(activations, config=cfg, catalog=catalog, client=local_client) == {}
        run_stage(model_rdms, config=rdm_cfg, catalog=catalog, client=local_client)
    assert "activations/mobilenet_v2/imagenet stimulus=0:4 complete, skipping" in caplog.text
    assert "activations/mobilenet_v2/imagenet complete (2 batches), nothing to do" in caplog.text
    assert "model_rdms: all 280 layers" in caplog.text


def test_killed_task_resumes_missing_batch(tmp_path, local_client) -> None:
    """A batch without its completion mark is recomputed; the others are not touched."""
    from nets_helpers import make_catalog

    catalog = make_catalog(tmp_path)
    write_stimuli(catalog)
    cfg = activations.Config(networks=[SPECS[1]], batch_size=4, layer_kinds=["linear"])
    run_stage(activations, config=cfg, catalog=catalog, client=local_client)
    store = ZarrStore.open(catalog.path("activations/mobilenet_v2/untrained-seed0"))
    first = store.dataset()["classifier.1"].values
    (store.path / ".mfrs-complete" / store.units()[1].marker_name).unlink()
    result = run_stage(activations, config=cfg, catalog=catalog, client=local_client)
    assert result["activations/mobilenet_v2/untrained-seed0"]["written"] == ["stimulus=4:6"]
    np.testing.assert_array_equal(store.dataset()["classifier.1"].values, first)  # deterministic on CPU


def test_changed_settings_need_overwrite(done, local_client) -> None:
    catalog, cfg, _, _ = done
    changed = cfg.model_copy(update={"layer_kinds": ["conv"]})
    with pytest.raises(StoreError, match="exists with another layout.*--overwrite"):
        run_stage(activations, config=changed, catalog=catalog, client=local_client)


def test_config_errors(nets_catalog) -> None:
    with pytest.raises(ValueError, match="input_size 40 is below inception_v3's minimum 75"):
        activations.NetworkSpec(network="inception_v3", input_size=40)
    with pytest.raises(ValueError, match="mean has 2 values for in_channels=1"):
        activations.NetworkSpec(network="resnet50", mean=[0.1, 0.2])
    dup = activations.Config(networks=[SPECS[1], SPECS[1]])
    with pytest.raises(ConfigError, match=r"networks\[0\] and networks\[1\] both write"):
        activations.plan(config=dup, catalog=nets_catalog)
    with pytest.raises(ConfigError, match="'stimuli'.*not 'weights'"):
        activations.weights_label(activations.NetworkSpec(network="resnet50", weights="stimuli"), nets_catalog)
    with pytest.raises(StoreError, match="unfinished|does not exist"):
        run_stage(model_rdms, config=model_rdms.Config(), catalog=nets_catalog, client=None)


def test_plan_sizes(done) -> None:
    catalog, cfg, rdm_cfg, _ = done
    p = activations.plan(config=cfg, catalog=catalog)
    ds = catalog.open("activations/mobilenet_v2/imagenet")
    units = int(ds["units"].sum())
    assert p.writes["activations/mobilenet_v2/imagenet"] == 4 * 6 * units
    assert p.n_tasks == 2 and p.memory_per_task > 2 * 4 * 4 * units
    q = model_rdms.plan(config=rdm_cfg, catalog=catalog)
    assert q.n_units == 280 and q.writes["model_rdms"] == 4 * 280 * 15
