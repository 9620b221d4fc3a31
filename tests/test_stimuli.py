"""The stimuli stage on a real local cluster: the embedded LFW set and a ds000117-style BMP folder."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mfrs.pipeline import run_stage
from mfrs.stages import stimuli
from mfrs.stages.stimuli import Config, phase_scramble


def _run(catalog, client, **cfg):
    run_stage(stimuli, config=Config(**cfg), catalog=catalog, client=client)
    return catalog.open("stimuli")


def test_embedded_set_has_the_ds000117_labels(catalog, local_client):
    ds = _run(catalog, local_client, size=32, exec={"chunk_size": 40})
    assert ds.image.dims == ("stimulus", "y", "x") and ds.image.dtype == np.uint8
    assert ds.sizes["stimulus"] == 150 and ds.sizes["y"] == ds.sizes["x"] == 32
    ids = list(ds.stimulus.values)
    assert ids[0] == "f001" and ids[50] == "u001" and ids[100] == "s001" and ids[-1] == "s050"
    assert list(ds.category.values[[0, 50, 100]]) == ["famous", "unfamiliar", "scrambled"]
    assert list(ds.condition.values[[0, 49, 50, 100]]) == [1, 50, 151, 301]
    assert ds.file.values[0] == "meg/f001.bmp"
    prov = ds.attrs["provenance"]
    assert prov["stage"] == "stimuli" and prov["parameters"]["size"] == 32 and "stimulus_images" in prov["inputs"]


def test_faces_are_the_lfw_crops(catalog, local_client):
    """Oracle: the stored faces, shrunk back to 25 px, match scikit-image's LFW crops."""
    from skimage.data import lfw_subset
    from skimage.transform import resize

    ds = _run(catalog, local_client, size=50, n_per_category=10, exec={"chunk_size": 10})
    faces = lfw_subset()
    for sid, index in (("f003", 2), ("u007", 56)):
        stored = ds.image.sel(stimulus=sid).values / 255.0
        back = resize(stored, (25, 25), anti_aliasing=True)
        assert np.corrcoef(back.ravel(), faces[index].ravel())[0, 1] > 0.97


def test_scrambled_faces_keep_amplitude_and_lose_the_face(catalog, local_client):
    from skimage.data import lfw_subset

    ds = _run(catalog, local_client, size=25, n_per_category=4, exec={"chunk_size": 4})
    face = lfw_subset()[0]
    scrambled = ds.image.sel(stimulus="s001").values / 255.0
    amp_face = np.abs(np.fft.fft2(face - face.mean())).ravel()
    amp_scr = np.abs(np.fft.fft2(scrambled - scrambled.mean())).ravel()
    assert np.corrcoef(amp_face, amp_scr)[0, 1] > 0.9
    assert abs(np.corrcoef(face.ravel(), scrambled.ravel())[0, 1]) < 0.5


def test_phase_scramble_preserves_the_amplitude_spectrum_exactly():
    rng = np.random.default_rng(3)
    image = rng.random((16, 16))
    out = phase_scramble(image, np.random.default_rng(5))
    a_in = np.abs(np.fft.fft2(image - image.mean()))
    a_out = np.abs(np.fft.fft2(out - out.mean()))
    np.testing.assert_allclose(a_out / a_out.sum(), a_in / a_in.sum(), atol=1e-10)
    assert np.isclose(out.mean(), image.mean()) and np.isclose(out.std(), image.std())


def test_chunking_does_not_change_the_result(tmp_path, local_client):
    from tests_support import REPO

    from mfrs.catalog import load_catalog

    a = _run(load_catalog(REPO / "data_catalog.yaml", root=tmp_path / "a"), local_client,
             size=24, n_per_category=6, exec={"chunk_size": 18})
    b = _run(load_catalog(REPO / "data_catalog.yaml", root=tmp_path / "b"), local_client,
             size=24, n_per_category=6, exec={"chunk_size": 5})
    np.testing.assert_array_equal(a.image.values, b.image.values)


def _bmp_catalog(tmp_path, names):
    from mfrs.catalog import load_catalog

    folder = tmp_path / "ds000117" / "stimuli" / "meg"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / name)
    text = (f"root: {tmp_path}/data\nentries:\n"
            f"  stimulus_images: {{kind: images, location: {folder}}}\n"
            f"  stimuli: {{kind: zarr, location: stimuli.zarr}}\n")
    (tmp_path / "cat.yaml").write_text(text)
    return load_catalog(tmp_path / "cat.yaml"), folder


def test_reads_a_ds000117_bmp_folder(tmp_path, local_client):
    names = ["f002.bmp", "f001.bmp", "u150.bmp", "s017.bmp"]
    catalog, folder = _bmp_catalog(tmp_path, names)
    ds = _run(catalog, local_client, size=20, exec={"chunk_size": 2})
    assert list(ds.stimulus.values) == ["f001", "f002", "u150", "s017"]
    assert list(ds.condition.values) == [1, 2, 300, 317]
    # Oracle: PIL's own grayscale conversion and resize of the file.
    with Image.open(folder / "u150.bmp") as img:
        expected = np.asarray(img.convert("L").resize((20, 20), Image.Resampling.BICUBIC))
    np.testing.assert_allclose(ds.image.sel(stimulus="u150").values.astype(int), expected.astype(int), atol=1)


def test_a_corrupt_bmp_fails_its_unit_and_the_rest_completes(tmp_path, local_client):
    from mfrs.errors import StageFailures
    from mfrs.store import ZarrStore

    catalog, folder = _bmp_catalog(tmp_path, ["f001.bmp", "f002.bmp", "u001.bmp", "u002.bmp"])
    (folder / "u002.bmp").write_bytes(b"BM\x00\x01 truncated")
    with pytest.raises(StageFailures, match=r"stimulus=2:4: .*u002\.bmp is not a readable image"):
        run_stage(stimuli, config=Config(size=16, exec={"chunk_size": 2}), catalog=catalog, client=local_client)
    store = ZarrStore.open(catalog.path("stimuli"))
    assert [u.key for u in store.missing_units()] == ["stimulus=2:4"]
    with Image.open(folder / "f001.bmp") as img:  # the good unit is written and marked
        assert img.size == (40, 30)
    assert store.dataset(warn_incomplete=False).image.sel(stimulus="f002").values.std() > 0
