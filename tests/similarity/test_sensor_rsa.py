"""The sensor RSA stage on a small synthetic ``epochs`` store (real Zarr, real LocalCluster), against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr
from tests_support import write_complete_store

from mfrs.errors import InputDataError
from mfrs.pipeline import run_stage
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
from mfrs.stages import sensor_rsa as stage

from .reference import REFERENCE

N_STIM, N_SUB, N_TIME = 12, 3, 8


def _catalog(root):
    from tests_support import REPO

    from mfrs.catalog import load_catalog

    return load_catalog(REPO / "data_catalog.yaml", root=root)


def _adjacency():
    import mne

    return {t: mne.channels.read_ch_adjacency(name) for t, name in (("mag", "neuromag306mag"),
                                                                    ("grad", "neuromag306planar"))}


def _write_inputs(root):
    rng = np.random.default_rng(1)
    adj = _adjacency()
    mags, grads = [str(n) for n in adj["mag"][1][:8]], [str(n) for n in adj["grad"][1][:16]]
    channels, types = mags + grads, ["mag"] * 8 + ["grad"] * 16
    scale = np.where(np.array(types) == "mag", 1e-13, 1e-11)[:, None]
    data = rng.standard_normal((N_SUB, 1, N_STIM, len(channels), N_TIME)) * scale
    data[1, :, :, 3] = np.nan  # sub-02 lost a magnetometer: left out for everyone
    cats = np.repeat(["famous", "unfamiliar", "scrambled"], N_STIM // 3)
    epochs = xr.Dataset({"data": (("subject", "signal", "stimulus", "channel", "time"), data.astype(np.float32))},
                        coords={"subject": [f"sub-{i + 1:02d}" for i in range(N_SUB)], "signal": ["broadband"],
                                "stimulus": [f"s{i:02d}" for i in range(N_STIM)], "category": ("stimulus", cats),
                                "channel": channels, "ch_type": ("channel", types),
                                "time": np.arange(N_TIME) * 0.01 - 0.02})
    write_complete_store(epochs, root / "epochs.zarr", "subject")
    models = xr.Dataset({"rdm": (("layer", "pair"), rng.random((3, n_pairs(N_STIM))).astype(np.float32))},
                        coords={"layer": ["l0", "l1", "l2"], "network": ("layer", ["net"] * 3)})
    models = models.assign_coords(pair_coords(epochs["stimulus"], with_coords=STORED_PAIR_COORDS))
    write_complete_store(models, root / "model_rdms.zarr", "layer")
    return epochs, models, adj


@pytest.mark.parametrize("settings, units", [
    (dict(set_block=7, cluster=True), 4),  # 23 neighbourhoods + 2 channel types, 7 per task, every time
    (dict(set_block=30, time_block=3, fwe_dims=["layer"]), 2),  # all sets, 4 times in blocks of 3
])
def test_sensor_rsa_equals_scipy_on_random_cells(tmp_path, local_client, settings, units):
    from mfrs.similarity.nulls import draw_stimulus_permutations
    from mfrs.similarity.seeds import unit_rng

    epochs, models, adj = _write_inputs(tmp_path)
    cfg = stage.Config(categories=["all", "famous"], time_step=2, n_permutations=19, **settings)
    plan = stage.plan(config=cfg, catalog=_catalog(tmp_path))
    assert plan.n_units == units and plan.memory_per_task > 0
    run_stage(stage, config=cfg, catalog=_catalog(tmp_path), client=local_client)
    out = xr.open_zarr(tmp_path / "rsa_sensors.zarr").load()
    assert out.r.dims == ("subject", "signal", "category", "channel", "time", "layer")
    assert "MEG0141" not in out.channel.values.tolist()  # the channel sub-02 lost
    np.testing.assert_allclose(out.time, epochs.time[::2])
    kept = [c for c in epochs.channel.values.tolist() if c != "MEG0141"]
    neighbours = {}
    for a, names in adj.values():  # brute force over MNE's adjacency: the channel and every linked one
        a = a.toarray()
        names = [str(n) for n in names]
        for c in kept:
            if c in names:
                row = names.index(c)
                neighbours[c] = [k for k in kept if k in names and (a[row, names.index(k)] or k == c)]
    neighbours["mag"] = [c for c in kept if c.endswith("1")]
    neighbours["grad"] = [c for c in kept if not c.endswith("1")]
    assert sorted(out.channel.values.tolist()) == sorted(neighbours)
    assert out.n_channels.sel(channel="mag") == 7 and out.set_kind.sel(channel="grad") == "channel_type"
    rng = np.random.default_rng(0)
    for _ in range(6):
        ch = str(rng.choice(out.channel.values))
        t = int(rng.integers(out.sizes["time"]))
        layer = str(rng.choice(out.layer.values))
        cat = str(rng.choice(["all", "famous"]))
        stim = np.flatnonzero(epochs.category.values == cat) if cat != "all" else np.arange(N_STIM)
        x = epochs.data.sel(signal="broadband", channel=neighbours[ch]).isel(time=2 * t, stimulus=stim).values
        rdms = np.stack([pdist(x[s].astype(float), "correlation") for s in range(N_SUB)])
        iu, ju = np.triu_indices(N_STIM, 1)
        keep = np.isin(iu, stim) & np.isin(ju, stim)
        model = models.rdm.sel(layer=layer).values[keep]
        cell = dict(signal="broadband", category=cat, channel=ch, layer=layer)
        for s, subject in enumerate(out.subject.values[:-1]):
            expect = spearmanr(rdms[s], model)[0]
            assert float(out.r.sel(subject=subject, **cell).isel(time=t)) == pytest.approx(expect, abs=1e-4)
        group = spearmanr(rdms.mean(axis=0), model)[0]
        assert float(out.r.sel(subject="group", **cell).isel(time=t)) == pytest.approx(group, abs=1e-4)
        lo, up = REFERENCE["noise_ceiling:rsatoolbox"](rdms, "spearman")
        sel = dict(signal="broadband", category=cat, channel=ch)
        assert float(out.noise_ceiling_lower.sel(**sel).isel(time=t)) == pytest.approx(lo, abs=2e-4)
        assert float(out.noise_ceiling_upper.sel(**sel).isel(time=t)) == pytest.approx(up, abs=2e-4)
        # permutation p: the same relabellings of the group RDM, compared by scipy
        perms = draw_stimulus_permutations(unit_rng(cfg.seed, "permutation", "broadband", cat), stim.size, 19)
        square = np.zeros((stim.size, stim.size))
        square[np.triu_indices(stim.size, 1)] = rdms.mean(axis=0)
        square += square.T
        null = [spearmanr(square[np.ix_(q, q)][np.triu_indices(stim.size, 1)], model)[0] for q in perms]
        p = (1 + sum(n >= group - 1e-6 for n in null)) / 20
        assert float(out.p.sel(**cell).isel(time=t)) == pytest.approx(p, abs=1e-6)
    assert (out.p_fwe >= out.p - 1e-7).all()
    assert out.p_fwe.attrs["family"].startswith(" x ".join(cfg.fwe_dims) + " (")
    assert ("p_cluster" in out) == cfg.cluster


def test_time_blocks_refuse_families_over_time():
    with pytest.raises(ValueError, match="every time in one task"):
        stage.Config(time_block=8, n_permutations=10)


def test_sensor_rsa_refuses_model_rdms_of_other_stimuli(tmp_path, local_client):
    """Layer RDMs of a stimulus list with one stimulus swapped (same count) are refused, naming both stores."""
    epochs, models, _ = _write_inputs(tmp_path)
    other = epochs["stimulus"].copy(data=[*epochs["stimulus"].values[:4], "x99", *epochs["stimulus"].values[5:]])
    swapped = models.drop_vars([c for c in models.coords if models[c].dims == ("pair",)])
    write_complete_store(swapped.assign_coords(pair_coords(other, with_coords=STORED_PAIR_COORDS)),
                         tmp_path / "model_rdms.zarr", "layer")
    with pytest.raises(InputDataError, match=r"sensor_rsa: model_rdms \(.*model_rdms.zarr\) pairs other stimuli "
                       r"than epochs \(.*epochs.zarr\): it has 1 stimuli that epochs lacks \(e.g. 'x99'\); .* "
                       r"position 4: 'x99' in model_rdms, 's04' in epochs\. rerun model_rdms"):
        run_stage(stage, config=stage.Config(categories=["all"]), catalog=_catalog(tmp_path), client=local_client)
    assert not (tmp_path / "rsa_sensors.zarr").exists()
