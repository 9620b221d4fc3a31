"""check_stimuli: the one check of model_rdms against the brain data's stimuli (similarity, sensor_rsa,
searchlight call it), on current stores, stores written before pair labels and unlabelled stores."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mfrs.errors import InputDataError
from mfrs.similarity.blocks import n_pairs
from mfrs.similarity.xarray import STORED_PAIR_COORDS, pair_coords
from mfrs.stages.model_rdms import check_stimuli

from .test_stage import _Catalog

N = 6


def _data(labels):
    return xr.Dataset(coords={"stimulus": list(labels), "category": ("stimulus", ["famous"] * len(labels))})


def _models(labels=None, *, old=False):
    """model_rdms as the stage writes it, as written before pair labels (``old``), or without labels (None)."""
    ds = xr.Dataset({"rdm": (("layer", "pair"), np.zeros((2, n_pairs(N)), np.float32))}, coords={"layer": ["a", "b"]})
    if labels is None:
        return ds
    stim = _data(labels)["stimulus"]
    if old:
        iu, ju = np.triu_indices(N, 1)
        return ds.assign_coords(stimulus=stim, pair_i=("pair", iu), pair_j=("pair", ju))
    return ds.assign_coords(stimulus=stim, **pair_coords(stim, with_coords=STORED_PAIR_COORDS))


LABELS = [f"s{i}" for i in range(N)]


@pytest.mark.parametrize("old", [False, True])
def test_same_stimuli_in_the_same_order_pass(tmp_path, old):
    check_stimuli(_models(LABELS, old=old), _data(LABELS), stage="t", data_entry="sources", catalog=_Catalog(tmp_path))


@pytest.mark.parametrize("old", [False, True])
def test_another_order_or_other_stimuli_are_refused(tmp_path, old):
    cat = _Catalog(tmp_path)
    moved = LABELS[:2] + [LABELS[3], LABELS[2]] + LABELS[4:]
    with pytest.raises(InputDataError, match=r"t: model_rdms \(.*\) pairs other stimuli than sources \(.*\): the same "
                       r"stimuli in another order; .* position 2: 's3' in model_rdms, 's2' in sources"):
        check_stimuli(_models(moved, old=old), _data(LABELS), stage="t", data_entry="sources", catalog=cat)
    with pytest.raises(InputDataError, match=r"it has 1 stimuli that epochs lacks \(e.g. 'new'\); .* position 5: "
                       r"'new' in model_rdms, 's5' in epochs"):
        check_stimuli(_models([*LABELS[:5], "new"], old=old), _data(LABELS), stage="t", data_entry="epochs",
                      catalog=cat)


def test_unlabelled_store_and_other_count_are_refused(tmp_path):
    cat = _Catalog(tmp_path)
    with pytest.raises(InputDataError, match=r"model_rdms \(.*model_rdms.zarr\) carries no stimulus labels"):
        check_stimuli(_models(), _data(LABELS), stage="t", data_entry="sources", catalog=cat)
    with pytest.raises(InputDataError, match=r"has 15 pairs but sources \(.*sources.zarr\) has 5 stimuli \(10 pairs\)"):
        check_stimuli(_models(LABELS), _data(LABELS[:5]), stage="t", data_entry="sources", catalog=cat)
