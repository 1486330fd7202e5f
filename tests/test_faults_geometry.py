"""Pixel sizes as recorded facts (pipelines/geometry.py), every expectation written out by hand: which key of a
per-image table matches, how table rows are read and refused, and what the notes say."""

from __future__ import annotations

import pytest

from pipelines.geometry import REGISTRY, TABLE, UNKNOWN, PixelSizes, PixelTableError, read_pixel_table


def test_constant_size_wins_over_a_table():
    sizes = PixelSizes(constant_mm=0.004, by_id={"a.png": 0.5}, table="t.csv")
    assert sizes.lookup("dir/a.png") == ([0.004, 0.004], REGISTRY)
    assert sizes.unmatched == []


@pytest.mark.parametrize("path,name", [("sub/x.png", ""), ("other/x.png", ""), ("other/y.png", ""),
                                       ("zzz/q.png", "case7")])
def test_table_matches_path_then_file_name_then_stem_then_name(path, name):
    by_id = {"sub/x.png": 0.1, "x.png": 0.2, "y": 0.3, "case7": 0.4}
    want = {"sub/x.png": 0.1, "other/x.png": 0.2, "other/y.png": 0.3, "zzz/q.png": 0.4}[path]
    sizes = PixelSizes(by_id=by_id, table="t.csv")
    assert sizes.lookup(path, name) == ([want, want], TABLE)
    assert sizes.unmatched == []


def test_extension_alone_never_matches_and_unmatched_images_are_remembered():
    sizes = PixelSizes(by_id={".png": 9.0, "": 8.0}, table="t.csv")
    assert sizes.lookup("a/b.png") == ([], UNKNOWN)
    assert sizes.unmatched == ["a/b.png"]
    assert PixelSizes().lookup("a/b.png") == ([], UNKNOWN)  # no table at all: nothing to remember
    assert PixelSizes().unmatched == [] and PixelSizes().notes() == []


def test_notes_name_at_most_five_images():
    sizes = PixelSizes(table="px.csv", problems=["row 3 bad"], unmatched=[f"i{k}.png" for k in range(5)])
    assert sizes.notes() == ["row 3 bad", "5 image(s) have no row in the pixel-size table px.csv (their size is "
                                          "unknown; no physical-unit question is asked about them): i0.png, i1.png, "
                                          "i2.png, i3.png, i4.png"]
    sizes.unmatched.append("i5.png")
    assert sizes.notes()[1].endswith("about them): i0.png, i1.png, i2.png, i3.png, i4.png ...")
    assert sizes.notes()[1].startswith("6 image(s)")
    assert sizes.problems == ["row 3 bad"]  # notes() copies, never grows, the problems


def test_missing_table_and_missing_columns_are_errors_naming_the_fix(tmp_path):
    with pytest.raises(PixelTableError) as err:
        read_pixel_table(tmp_path / "none.csv", "id", "mm", "mm")
    assert str(err.value) == (f"pixel-size table {tmp_path / 'none.csv'} does not exist; fix 'pixel_size.table' "
                              "(relative paths are relative to the registry file)")
    (tmp_path / "t.csv").write_text("id,size\na,1\n")
    with pytest.raises(PixelTableError) as err:
        read_pixel_table(tmp_path / "t.csv", "id", "mm", "mm")
    assert str(err.value) == ("pixel-size table t.csv lacks column(s) ['mm']; it has ['id', 'size']; fix "
                              "'pixel_size.id_column' / 'pixel_size.value_column'")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(PixelTableError, match=r"lacks column\(s\) \['id', 'mm'\]; it has \[\]"):
        read_pixel_table(tmp_path / "empty.csv", "id", "mm", "mm")


def test_undecodable_table_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "t.csv").write_bytes("id,mm\né,1\n".encode("utf-8"))
    with pytest.raises(PixelTableError) as err:
        read_pixel_table(tmp_path / "t.csv", "id", "mm", "mm", encoding="ascii")
    assert str(err.value).startswith("'t.csv' cannot be read as ascii:")
    latin = read_pixel_table(tmp_path / "t.csv", "id", "mm", "mm", encoding="latin-1")
    assert latin.by_id == {"Ã©": 1.0}  # the encoding given is the one used


@pytest.mark.parametrize("suffix", [".tsv", ".TSV", ".tab", ".Tab"])
def test_tab_separated_tables_by_suffix(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    path.write_text("id\tmm\na.png\t0.25\nb,c.png\t0.5\n")
    assert read_pixel_table(path, "id", "mm", "mm").by_id == {"a.png": 0.25, "b,c.png": 0.5}


def test_csv_rows_units_blank_lines_and_quoted_newlines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('name,um, id\n\n"x\ny",1,a.png\n,,\n7,250,b.png\n', newline="")
    sizes = read_pixel_table(path, "id", "um", "um")
    assert sizes.by_id == {"a.png": 0.001, "b.png": 0.25}  # micrometres to millimetres: x 1e-3
    assert sizes.problems == [] and sizes.table == "t.csv"
    assert read_pixel_table(path, "id", "um", "cm").by_id == {"a.png": 10.0, "b.png": 2500.0}


def test_bad_rows_are_named_with_their_line_and_left_out(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,mm\na.png,0.1\nb.png,zero\n\nc.png\nd.png,0\ne.png,-1\nf.png,inf\ng.png,0.5\n")
    sizes = read_pixel_table(path, "id", "mm", "mm")
    assert sizes.by_id == {"a.png": 0.1, "g.png": 0.5}
    assert sizes.problems == ["t.csv line 3: pixel size 'zero' of 'b.png' is not a positive number",
                              "t.csv line 5: 1 field(s), fewer than the header's",
                              "t.csv line 6: pixel size '0' of 'd.png' is not a positive number",
                              "t.csv line 7: pixel size '-1' of 'e.png' is not a positive number",
                              "t.csv line 8: pixel size 'inf' of 'f.png' is not a positive number"]


def test_an_id_listed_with_two_sizes_is_left_unknown(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,mm\nc.png,0.2\nc.png,0.3\nc.png,0.2\ne.png,0.5\ne.png,0.5\nf.png,0.1\nf.png,0.1000000000001\n")
    sizes = read_pixel_table(path, "id", "mm", "mm")
    assert sizes.by_id == {"e.png": 0.5, "f.png": 0.1}  # equal (to 1e-9) repeats are fine, the first value kept
    assert sizes.problems == ["t.csv: 'c.png' is listed with different pixel sizes; its size is left unknown"]


def test_two_conflicting_ids_are_both_named_in_order(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,mm\nz.png,1\nz.png,2\nz.png,3\ny.png,1\ny.png,2\n")
    sizes = read_pixel_table(path, "id", "mm", "mm")
    assert sizes.by_id == {}
    assert [p.split("'")[1] for p in sizes.problems] == ["y.png", "z.png"]
