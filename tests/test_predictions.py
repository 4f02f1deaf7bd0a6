"""The one place scores become categories (mmcls.logits.predicted_indices / predicted_classes)."""

from __future__ import annotations

import numpy as np
import pytest

from mmcls.data.categories import CategorySpace
from mmcls.logits import predicted_classes, predicted_indices, softmax


def test_level_two_by_argmax_and_level_one_through_the_hierarchy():
    space = CategorySpace.build(["0101", "0102", "0201", "0301"], 2)
    logits = np.array([[0.0, 3.0, 1.0, 2.0], [5.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])
    lv2, lv1 = predicted_indices(logits, space.lv1_index_of_lv2())
    assert lv2.tolist() == [1, 0, 3]  # a tie goes to the lowest index
    assert lv1.tolist() == [space.lv1_index("0102"), space.lv1_index("0101"), space.lv1_index("0301")]
    assert predicted_indices(logits)[1] is None
    # probabilities and log-probabilities predict the same as the logits
    assert predicted_indices(softmax(logits))[0].tolist() == lv2.tolist()
    assert predicted_classes(np.log(softmax(logits)), space.lv2_ids) == ["0102", "0101", "0301"]
    assert int(predicted_indices(logits[0])[0]) == 1  # one row


def test_shapes_must_match():
    with pytest.raises(ValueError, match="do not match 3 classes"):
        predicted_classes(np.zeros((2, 4)), ["a", "b", "c"])
    with pytest.raises(ValueError, match="3 entries for 4 classes"):
        predicted_indices(np.zeros((2, 4)), [0, 0, 1])
