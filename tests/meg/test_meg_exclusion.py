"""A stimulus missing in any subject is excluded for all, with the reason recorded."""

from __future__ import annotations

from mfrs.meg.subject import Prepared
from mfrs.stages.meg import exclude_missing


def _prep(sub, kept, rejected=()):
    return Prepared(sub, list(kept), ["MEG 0113"], ["grad"], [0.0], {"rejected": list(rejected)})


def test_intersection_keeps_store_order_and_names_reasons():
    ids = ["f001", "f002", "u001", "s001", "s002"]
    prepared = {"01": _prep("01", ["s002", "f001", "u001", "s001"], rejected=[]),
                "02": _prep("02", ["f001", "f002", "u001", "s002"], rejected=["s001"])}
    kept, excluded = exclude_missing(ids, prepared)
    assert kept == ["f001", "u001", "s002"]
    assert excluded == {"f002": "sub-01: not presented",
                        "s001": "sub-02: every epoch dropped (autoreject threshold or recording edge)"}


def test_nothing_excluded_when_all_subjects_have_all():
    ids = ["f001", "u001"]
    kept, excluded = exclude_missing(ids, {"01": _prep("01", ids), "02": _prep("02", ids[::-1])})
    assert kept == ids and excluded == {}
