"""Category space: ordering, level-1 by prefix or hierarchy file, counts, save/load."""

from __future__ import annotations

import pytest

from mmcls.data.categories import CategorySpace, read_category_file, read_hierarchy
from mmcls.errors import DataError


def test_from_labels_sorted_with_prefix_levels_and_counts():
    space = CategorySpace.from_labels(["0203", "0101", "0203", "0102"])
    assert space.lv2_ids == ["0101", "0102", "0203"]
    assert space.lv1_ids == ["01", "02"]
    assert [space.lv1_index(c) for c in space.lv2_ids] == [0, 0, 1]
    assert space.lv1_index_of_lv2() == [0, 0, 1]
    assert space.count_list() == [1, 1, 2]


def test_category_file_fixes_order_and_rejects_unknown_labels(tmp_path):
    path = tmp_path / "category_ids.txt"
    path.write_text("# ids\n0203\n0101\n\n0999\n", encoding="utf-8")
    space = CategorySpace.from_labels(["0101", "0203"], category_file=path)
    assert space.lv2_ids == ["0203", "0101", "0999"] and space.count_list() == [1, 1, 0]
    with pytest.raises(DataError, match=r"category_ids\.txt: label '0555' is not in the category file"):
        CategorySpace.from_labels(["0555"], category_file=path)
    path.write_text("0101\n0101\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2: duplicate category id '0101' \(first on line 1\)"):
        read_category_file(path)


def test_hierarchy_file(tmp_path):
    path = tmp_path / "h.txt"
    path.write_text("0101 sports\n0203,food\n", encoding="utf-8")
    space = CategorySpace.from_labels(["0101", "0203"], hierarchy=read_hierarchy(path))
    assert space.lv1_ids == ["food", "sports"] and space.lv1_of["0101"] == "sports"
    with pytest.raises(DataError, match="'0999' has no level-1 parent"):
        CategorySpace.from_labels(["0999"], hierarchy=read_hierarchy(path))
    path.write_text("0101 a b\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"h\.txt: line 1: expected two columns"):
        read_hierarchy(path)


def test_save_load_round_trip(tmp_path):
    space = CategorySpace.from_labels(["0203", "0101", "0101"], lv1_prefix_len=3)
    space.save(tmp_path)
    again = CategorySpace.load(tmp_path)
    assert again.lv2_ids == space.lv2_ids and again.lv1_of == space.lv1_of and again.counts == space.counts
    (tmp_path / "categories.json").write_text("{}", encoding="utf-8")
    with pytest.raises(DataError, match="not a valid categories file"):
        CategorySpace.load(tmp_path)


def test_bom_is_ignored_and_save_creates_the_folder(tmp_path):
    path = tmp_path / "category_ids.txt"
    path.write_bytes("\ufeff0101\n0102\n".encode())
    assert read_category_file(path) == ["0101", "0102"]
    space = CategorySpace.from_labels(["0101"])
    space.save(tmp_path / "run" / "best")
    assert (tmp_path / "run" / "best" / "categories.json").is_file()
    assert CategorySpace.load(tmp_path / "run" / "best" / "categories.json").lv2_ids == ["0101"]
