"""The circular TSV is written a chunk at a time: the same bytes whatever the chunk, and memory that does not
grow with the images it copies."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.export.circular import OFFSET, write_circular_tsv


def _tsv(folder: Path, rows: int, image_bytes: int) -> Path:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({
        "index": range(rows), "question": [f"Which organ? ({i})" for i in range(rows)],
        "A": "liver", "B": "spleen", "C": ["kidney" if i % 2 else "" for i in range(rows)], "D": "", "E": "",
        "answer": ["A" if i % 3 else "B" for i in range(rows)],
        "image": [base64.b64encode(rng.bytes(image_bytes)).decode() for _ in range(rows)]})
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bench_TEST.tsv"
    frame.to_csv(path, sep="\t", index=False, lineterminator="\n")
    return path


def test_chunks_do_not_change_the_bytes_and_rotations_follow_the_originals(tmp_path):
    outs = []
    for chunk in (1, 7, 1000):
        src = _tsv(tmp_path / str(chunk), 20, 300)
        write_circular_tsv(src.parent, "bench", chunk_rows=chunk)
        outs.append((src.parent / "bench_CIRCULAR_TEST.tsv").read_bytes())
    assert outs[0] == outs[1] == outs[2]
    circ = pd.read_csv(tmp_path / "1" / "bench_CIRCULAR_TEST.tsv", sep="\t", dtype=str, keep_default_na=False)
    # 10 two-option items (2 rows each) and 10 three-option items (3 rows each): 50 rows, originals first
    assert len(circ) == 50 and circ["index"].astype(int).is_monotonic_increasing
    first = circ[circ["index"].astype(int) < OFFSET]
    src = pd.read_csv(tmp_path / "1" / "bench_TEST.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert first["image"].tolist() == src["image"].tolist()  # rotation 0 carries the images, as written
    rotated = circ[circ["index"].astype(int) >= OFFSET]
    assert (rotated["image"] == rotated["g_index"]).all()  # later rotations point at rotation 0's image


def test_memory_does_not_grow_with_the_images(tmp_path):
    """200 rows of 400 kB images (a 107 MB TSV): the writer's peak grows by far less than the file."""
    src = _tsv(tmp_path, 200, 400_000)
    size_mb = src.stat().st_size / 2**20
    code = textwrap.dedent(f"""
        import resource
        from pathlib import Path
        import pandas  # imported before the baseline, like the export step
        from pipelines.export.circular import write_circular_tsv
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        write_circular_tsv(Path({str(src.parent)!r}), "bench")
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
    """)
    grew = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parent.parent).stdout.strip())
    assert size_mb > 100 and grew < 0.25 * size_mb, (grew, size_mb)


def test_rotation_zero_keeps_quoted_fields_with_line_breaks_and_quotes(tmp_path):
    """Rotation 0 copies the source's records without parsing them: a question holding a quoted line break, a tab
    and doubled quotes must still give one record per row, read back by pandas as the source's own row plus its
    g_index."""
    src = _tsv(tmp_path, 6, 40)
    frame = pd.read_csv(src, sep="\t", dtype=str, keep_default_na=False)
    frame.loc[2, "question"] = 'Which "organ"\nis marked?\tLook closely.'
    frame.loc[4, "question"] = '"quoted" start and a line\r\nbreak'
    frame.to_csv(src, sep="\t", index=False, lineterminator="\n")
    write_circular_tsv(src.parent, "bench")
    circ = pd.read_csv(tmp_path / "bench_CIRCULAR_TEST.tsv", sep="\t", dtype=str, keep_default_na=False)
    first = circ[circ["index"].astype(int) < OFFSET].reset_index(drop=True)
    assert first.drop(columns="g_index").equals(frame)
    assert first["g_index"].tolist() == frame["index"].tolist()
    rotated = circ[circ["index"].astype(int) >= OFFSET]
    assert set(rotated["question"]) == set(frame["question"])  # rotations repeat the stem, line break included


def test_text_handed_over_by_the_writer_gives_the_same_bytes(tmp_path):
    """The export hands write_circular_tsv the text columns it has just written instead of letting it parse them
    out of the file: the same circular TSV byte for byte, over quoted tabs, line breaks, quotes and missing
    options, and the facts it returns are the file's."""
    import hashlib

    from pipelines.export.tsv import stream_tsv, tsv_frame
    pngs = []
    for i in range(9):
        pngs.append(f"p{i}.png")
        (tmp_path / pngs[-1]).write_bytes(bytes(range(i, 120 + i)))
    rows = pd.DataFrame({
        "index": range(9), "image_path": pngs,
        "question": ['Which "organ"\nis marked?\tLook.', "plain", "two\r\nlines", *["q"] * 6],
        "A": ["liver"] * 9, "B": ["spleen", "A", "kidney", *["aorta"] * 6], "C": ["kidney", None, "", *["x"] * 6],
        "D": [None] * 9, "E": [None] * 9, "answer": list("ABAABABAA"), "clinical_vqa_task": "Organ",
        "department": "d", "perceptual_granularity": "Mask level", "modality": "CT", "original_task": "SEG_3D",
        "split": "val"})
    outs = []
    for handed in (False, True):
        folder = tmp_path / str(handed) / "tsv"
        written = {folder / "bench_VAL.tsv": stream_tsv(folder / "bench_VAL.tsv",
                                                        tsv_frame(rows, tmp_path, with_answer=True), tmp_path)}
        facts = write_circular_tsv(folder, "bench", written=written if handed else None)
        path = folder / "bench_CIRCULAR_VAL.tsv"
        data = path.read_bytes()
        assert facts == {path: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}
        outs.append(data)
    assert outs[0] == outs[1]


def test_one_pass_writes_the_files_the_tsv_writer_and_the_circular_writer_write_one_after_the_other(tmp_path):
    """The export writes each single-answer TSV and its circular TSV in one pass (rotation 0 as the rows go, the
    rotated rows after). The reference: `write_tsv`, then `write_circular_tsv` reading that TSV back from disk
    (its own parser, no text handed over). Both splits, a multi-answer item (no circular file), quoted tabs, line
    breaks, quotes, missing and letter-like options; the facts returned are the files'."""
    import hashlib

    from pipelines.export.circular import write_with_circular
    from pipelines.export.tsv import write_tsv
    pngs = []
    for i in range(12):
        pngs.append(f"p{i}.png")
        (tmp_path / pngs[-1]).write_bytes(bytes(range(i, 150 + i)) * (i + 1))
    rows = pd.DataFrame({
        "index": [5, 1, 9, 3, 0, 2, 4, 6, 7, 8, 10, 11], "image_path": pngs,
        "question": ['Which "organ"\nis marked?\tLook.', "plain", "two\r\nlines", *["q"] * 9],
        "A": ["liver"] * 12, "B": ["spleen", "A", "kidney", *["aorta"] * 9],
        "C": ["kidney", None, "", "B and C", *["x"] * 8], "D": [None, None, None, "heart", *[None] * 8],
        "E": [None] * 12, "answer": list("ABAABABAACBA"), "multi_answer": [False] * 10 + [True, False],
        "clinical_vqa_task": "Organ", "department": "d", "perceptual_granularity": "Mask level", "modality": "CT",
        "original_task": "SEG_3D", "split": ["val", "test"] * 6})
    one = tmp_path / "one"
    written, circular = write_with_circular(rows, tmp_path, one, "bench")
    two = tmp_path / "two"
    reference = write_tsv(rows, tmp_path, two, "bench")
    write_circular_tsv(two / "tsv", "bench")
    names = sorted(p.name for p in (two / "tsv").iterdir())
    assert names == ["bench_CIRCULAR_TEST.tsv", "bench_CIRCULAR_VAL.tsv", "bench_MULTI_VAL.tsv", "bench_TEST.tsv",
                     "bench_VAL.tsv"]
    assert sorted(p.name for p in (one / "tsv").iterdir()) == names
    for name in names:
        assert (one / "tsv" / name).read_bytes() == (two / "tsv" / name).read_bytes(), name
    assert {p.name for p in written} == {p.name for p in reference}
    assert all(written[p].text.equals(reference[two / "tsv" / p.name].text) for p in written)
    for path, facts in circular.items():
        data = path.read_bytes()
        assert facts == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert sorted(p.name for p in circular) == ["bench_CIRCULAR_TEST.tsv", "bench_CIRCULAR_VAL.tsv"]


def test_an_index_that_would_collide_with_a_rotation_is_refused_before_any_file_is_written(tmp_path):
    """Rotation k's index is index + k * 1,000,000: an item index of 1,000,000 would share rotation 1's index of
    item 0. The one-pass writer refuses it before writing a byte of either TSV."""
    import pytest

    from pipelines.export.circular import write_with_circular
    (tmp_path / "p.png").write_bytes(b"png")
    rows = pd.DataFrame({
        "index": [0, 1_000_000], "image_path": ["p.png", "p.png"], "question": ["q", "q"], "A": ["liver"] * 2,
        "B": ["spleen"] * 2, "C": [None] * 2, "D": [None] * 2, "E": [None] * 2, "answer": ["A", "B"],
        "multi_answer": [False, False], "clinical_vqa_task": "Organ", "department": "d",
        "perceptual_granularity": "Mask level", "modality": "CT", "original_task": "SEG_3D", "split": "test"})
    with pytest.raises(ValueError, match="1000000 does not fit under the circular offset"):
        write_with_circular(rows, tmp_path, tmp_path / "out", "bench")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tsv"))
