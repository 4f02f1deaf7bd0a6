"""``VideoError`` (:mod:`mmcls.data.video_error`): one short line of reason, and it survives pickling."""

from __future__ import annotations

import pickle

from mmcls.data.video_error import MAX_REASON_CHARS, VideoError


def test_video_error_reasons_are_one_short_line():
    err = VideoError("v1", "first line\n  second line\twith tabs " + "x" * 1000, "decode")
    assert "\n" not in err.reason and "\t" not in err.reason and len(err.reason) <= MAX_REASON_CHARS
    assert err.reason.startswith("first line second line") and err.reason.endswith("x")  # the middle is elided
    assert VideoError("v2", "short").reason == "short"


def test_video_error_pickles():
    err = pickle.loads(pickle.dumps(VideoError("v9", "gone", "missing")))
    assert (err.video_id, err.reason, err.kind) == ("v9", "gone", "missing")
    assert str(err) == "video v9: missing: gone"
