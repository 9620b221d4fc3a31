"""A tiny generated ds000117-like set, made once per session, and one run of the MEG stage on it.

Three subjects x two runs, 10 stimuli per category at 275 Hz, ico-4 grid. The
last subject's second run is truncated before the stage runs, so the run shows
both the normal path and the per-subject failure path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from tests_support import driver_weights

REPO = Path(__file__).resolve().parents[2]

#: Settings of the MEG stage used by the tests (fast, still every step).
MEG_TEST_CONFIG = {
    "ica": {"method": "picard", "n_components": 20, "decim": 3, "fit_duration": 60.0},
    "covariance": {"method": "empirical"},
    "source": {"spacing": "oct5", "grid": "ico4", "method": "dSPM"},
    "filter": {"notch_freqs": [50.0]},
    "envelopes": ["alpha"],
    "exec": {"chunk_mb": 0.25, "time_chunk": 64},
}


def _write_catalog(folder: Path, *, inputs_from: Path | None = None) -> Path:
    """A catalog file like the repository's, rooted in ``folder``.

    With ``inputs_from``, the input entries (stimuli, ds000117, anatomy) point at
    another catalog root, so that a second run writes fresh outputs from the same inputs.
    """
    spec = yaml.safe_load((REPO / "data_catalog.yaml").read_text())
    spec["root"] = str(folder)
    if inputs_from is not None:
        for name in ("stimuli", "ds000117", "anatomy"):
            spec["entries"][name]["location"] = str(inputs_from / spec["entries"][name]["location"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "data_catalog.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="session")
def meg_test_config() -> dict:
    """:data:`MEG_TEST_CONFIG`, for test modules (they cannot import conftest)."""
    return dict(MEG_TEST_CONFIG)


@pytest.fixture(scope="session")
def write_catalog():
    """``write_catalog(folder, *, inputs_from=None) -> Path`` (see :func:`_write_catalog`)."""
    return _write_catalog


@pytest.fixture(scope="session")
def demo_config():
    from mfrs.demo.config import DemoDataConfig

    return DemoDataConfig(n_subjects=3, n_runs=2, max_stimuli_per_category=10, grid="ico4",
                          region_size=20, seed=3)


@pytest.fixture(scope="session")
def meg_inputs(tmp_path_factory: pytest.TempPathFactory, local_client, demo_config):
    """Catalog with stimuli, template anatomy and the generated BIDS set."""
    from mfrs.catalog import load_catalog
    from mfrs.demo.anatomy import build_template_subjects_dir
    from mfrs.demo.simulate import generate_bids
    from mfrs.pipeline import run_stage
    from mfrs.stages import stimuli

    root = tmp_path_factory.mktemp("meg-data")
    catalog = load_catalog(_write_catalog(root))
    run_stage(stimuli, config=stimuli.Config(size=32, n_per_category=10), catalog=catalog, client=local_client)
    subjects_dir = build_template_subjects_dir(catalog.path("anatomy"), grid="ico4", region_size=20)
    generate_bids(catalog.path("ds000117"), subjects_dir=subjects_dir, stimuli=catalog.open("stimuli"),
                  config=demo_config, weights=driver_weights(demo_config))
    return catalog


def truncate(path: Path) -> None:
    """Cut a FIF file to 60 % of its size, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])


@pytest.fixture(scope="session")
def meg_run(meg_inputs, local_client):
    """The MEG stage run once on the generated set with sub-03's run 2 truncated.

    Returns the catalog, the config and the StageFailures the run raised.
    """
    from mfrs.errors import StageFailures
    from mfrs.pipeline import run_stage
    from mfrs.stages import meg as stage

    catalog = meg_inputs
    broken = catalog.path("ds000117") / "sub-03/ses-meg/meg/sub-03_ses-meg_task-facerecognition_run-02_meg.fif"
    truncate(broken)
    config = stage.Config.model_validate(MEG_TEST_CONFIG)
    with pytest.raises(StageFailures) as info:
        run_stage(stage, config=config, catalog=catalog, client=local_client)
    return {"catalog": catalog, "config": config, "failure": info.value, "broken": broken}
