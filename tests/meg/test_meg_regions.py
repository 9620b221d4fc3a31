"""The vertex coordinate: regions read from the .annot agree with nibabel's reading of it."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from mfrs.meg.regions import vertex_table


def test_vertex_table_matches_annot(meg_inputs):
    template_subjects_dir = meg_inputs.path("anatomy")
    vt = vertex_table(template_subjects_dir, "aparc_sub", "ico4")
    n = 2562
    assert vt.sizes["vertex"] == len(np.unique(vt["vertex"].values))
    for hemi, offset in (("lh", 0), ("rh", n)):
        labels, _, names = nib.freesurfer.read_annot(
            template_subjects_dir / "fsaverage" / "label" / f"{hemi}.aparc_sub.annot")
        names = [x.decode() for x in names]
        sel = vt.where(vt.hemi == hemi, drop=True)
        fs_v = sel["fs_vertex"].values.astype(int)
        assert (fs_v < n).all()
        np.testing.assert_array_equal(sel["vertex"].values.astype(int), fs_v + offset)
        expected = [f"{names[labels[v]]}-{hemi}" for v in fs_v]
        assert sel["region"].values.tolist() == expected
        kept = {v for v in range(n) if labels[v] >= 0 and not names[labels[v]].startswith("unknown")}
        assert set(fs_v.tolist()) == kept
    # each region is one contiguous block (chunks of vertices sorted by region)
    regions = vt["region"].values
    starts = np.flatnonzero(np.r_[True, regions[1:] != regions[:-1]])
    assert len(starts) == len(set(regions))
    assert {"V1-lh", "FFA-lh", "OFA-rh", "STS-rh"} <= set(regions)
