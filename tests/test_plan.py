"""Issue 14: the DuckDB planner gives the row loop's rejects, byte for byte."""

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sltdata import plan as plan_module
from sltdata.ingest import _load_map, _plan_bytes, plan_rows
from sltdata.plan import plan_ingest
from sltdata.recipes import load_recipe
from sltdata.sources import get_source
from sltdata.sources.kaggle_islr import write_islr_parquet
from sltdata.testing import fake_landmarks

REPO = Path(__file__).resolve().parents[1]
HEADER = ["path", "participant_id", "sequence_id", "sign"]
LM = fake_landmarks(frames=3)


def islr(tmp_path: Path, rows: list[list[str]], files=("a/1.parquet", "a/2.parquet", "a/3.parquet")) -> Path:
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    for f in files:
        write_islr_parquet(root / f, LM)
    (root / "sign_to_prediction_index_map.json").write_text(json.dumps({"hello": 0, "bye": 1}))
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER, *rows])
    return root


def both(root: Path, recipe_name: str = "kaggle-islr", manifest=None):
    """(reference bytes, DuckDB bytes, DuckDB plan) for one corpus."""
    recipe = load_recipe(recipe_name)
    source = get_source(recipe.source)(root, recipe)
    labels, _ = _load_map(root, recipe, "label", False)
    chars, _ = _load_map(root, recipe, "text", False)
    ref = plan_rows(root, recipe, source, manifest, labels, chars)
    with plan_ingest(root, recipe, source, manifest, labels, chars) as got:
        return _plan_bytes(ref), _plan_bytes(got), Planned(got.rows, list(got.groups()), got.rejects)


@dataclass
class Planned:
    rows: int
    groups: list
    rejects: list


BAD_ROWS = [
    ["a/1.parquet", "7", "1", "hello"],
    ["a/2.parquet", "7", "", "hello"],  # empty key
    ["a/2.parquet", "7", "2", ""],  # empty label
    ["a/2.parquet", "7", "1", "bye"],  # duplicate of row 1
    ["a/2.parquet", "7", "3", "hullo"],  # not in the label map
    ["../x.parquet", "7", "4", "hello"],  # escapes the root
    ["a/9.parquet", "7", "5", "hello"],  # missing
    ["", "7", "6", "hello"],  # empty path
    ["a/./3.parquet", "7", "7", "hello"],  # not normal: resolved, grouped with row 9
    ["  a/2.parquet ", "7", " 8 ", "bye"],  # padded: stripped as the row loop does
    ["a/3.parquet", "7", "9", "hello"],
    ["a/2.parquet", "7", "8", "hello"],  # duplicate of the stripped key
]


def test_bad_rows_give_the_row_loops_rejects_with_their_reasons(tmp_path):
    ref, got, plan = both(islr(tmp_path, BAD_ROWS))
    assert got == ref
    assert sorted((r.row, r.reason) for r in plan.rejects) == [
        (2, "empty sequence_id"), (3, "empty sign"), (4, "duplicate sequence_id 1 (first at train.csv row 1)"),
        (5, "sign 'hullo' is not in sign_to_prediction_index_map.json"), (6, "../x.parquet escapes the dataset root"),
        (7, "a/9.parquet not found"), (8, "empty landmark path"),
        (12, "duplicate sequence_id 8 (first at train.csv row 10)")]
    assert [(g.file, [r.row for r in g.rows]) for g in plan.groups] == [
        ("a/1.parquet", [1]), ("a/3.parquet", [9, 11]), ("a/2.parquet", [10])]


def test_clean_csv_is_read_by_duckdb_not_the_row_loop(tmp_path, monkeypatch):
    root = islr(tmp_path, [["a/1.parquet", "7", "1", "hello"], ["a/2.parquet", "7", "2", 'he said "hi"']])

    def refuse(*a, **k):
        raise AssertionError("the reference loop read a clean manifest")
    monkeypatch.setattr(plan_module, "_read_one", refuse)
    ref, got, plan = both(root)
    assert got == ref
    assert [r.reason for r in plan.rejects] == ['sign \'he said "hi"\' is not in sign_to_prediction_index_map.json']


@pytest.mark.parametrize("body", [
    b'1\n\n2\n',  # a blank line: csv counts it, DuckDB skips it
    b'1\r2\n',  # a lone carriage return ends a record for csv
    b'1\n2,"x\n3\n4\n',  # a runaway quote
    b'1\n2,"x\ny"\n',  # a legitimate multi-line field
    b'1\n2,\xff\n',  # not UTF-8
    b'1\n2,"ab"c\n',  # a stray quote DuckDB refuses
    b'1,extra,field,s,t\n2\n',  # a record with more fields than the header
])
def test_files_duckdb_reads_differently_go_through_the_row_loop(tmp_path, body):
    root = islr(tmp_path, [])
    lines = body.split(b"\n")
    # each numbered line becomes a row "a/N.parquet,7,N,hello" with the rest of the line appended to it
    out = [b"sequence_id,path,sign"]
    for line in lines:
        if line[:1].isdigit():
            n, _, rest = line.partition(b",")
            out.append(b"%s,a/%s.parquet,hello%s" % (n, n, b"," + rest if rest else b""))
        else:
            out.append(line)
    (root / "train.csv").write_bytes(b"\n".join(out))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: kaggle-islr\nmanifest: train.csv\ncolumns: {key: sequence_id, path: path, "
                      "label: sign}\n")
    ref, got, _ = both(root, str(recipe))
    assert got == ref


def test_bom_crlf_and_trailing_line_without_newline_read_as_the_row_loop_reads_them(tmp_path):
    root = islr(tmp_path, [])
    (root / "train.csv").write_bytes(b"\xef\xbb\xbfpath,participant_id,sequence_id,sign\r\n"
                                     b"a/1.parquet,7,1,hello\r\na/2.parquet,7,2,\xc3\xa9t\xc3\xa9\r\na/3.parquet,7,3,bye")
    ref, got, plan = both(root)
    assert got == ref
    assert [r.reason for r in plan.rejects] == ["sign 'été' is not in sign_to_prediction_index_map.json"]


def test_characters_outside_the_map_are_named_as_the_row_loop_names_them(tmp_path):
    root = tmp_path / "fs"
    (root / "t").mkdir(parents=True)
    (root / "t" / "5.parquet").write_bytes(b"")
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(" ab'")}))
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["path", "file_id", "sequence_id", "participant_id", "phrase"],
                                 ["t/5.parquet", "5", "1", "3", "ab ba"], ["t/5.parquet", "5", "2", "3", "a\\b\x00c"],
                                 ["t/5.parquet", "5", "3", "3", "  "], ["t/5.parquet", "5", "4", "3", "a'b\u00a0"]])
    ref, got, plan = both(root, "kaggle-fingerspelling")
    assert got == ref
    assert [(r.row, r.reason) for r in plan.rejects] == [
        (3, "empty phrase"),
        (2, "phrase has character(s) '\\x00\\\\c' not in character_to_prediction_index.json"),
        (4, "phrase has character(s) '\\xa0' not in character_to_prediction_index.json")]


def test_two_manifests_number_rows_each_and_duplicates_point_at_the_first(tmp_path):
    root = tmp_path / "fs"
    (root / "t").mkdir(parents=True)
    (root / "t" / "5.parquet").write_bytes(b"")
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(" ab")}))
    head = ["path", "file_id", "sequence_id", "participant_id", "phrase"]
    for name, keys in (("train.csv", ["1", "2"]), ("supplemental_metadata.csv", ["3", "1"])):
        with open(root / name, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([head, *[["t/5.parquet", "5", k, "3", "ab"] for k in keys]])
    ref, got, plan = both(root, "kaggle-fingerspelling")
    assert got == ref
    assert [str(r) for r in plan.rejects] == [
        "supplemental_metadata.csv row 2: duplicate sequence_id 1 (first at train.csv row 1)"]


def test_parquet_manifest_plans_as_the_same_csv_does(tmp_path):
    root = islr(tmp_path, BAD_ROWS)
    csv_plan = both(root)[2]
    (root / "train.csv").rename(root / "train.csv.bak")
    table = pa.table({h: [r[i] for r in BAD_ROWS] for i, h in enumerate(HEADER)})
    pq.write_table(table, root / "train.parquet", row_group_size=3)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("source: kaggle-islr\nmanifest: train.parquet\nlabel_map: sign_to_prediction_index_map.json\n"
                      "columns: {key: sequence_id, path: path, label: sign, participant: participant_id}\n")
    with plan_ingest(root, load_recipe(str(recipe)), get_source("kaggle-islr")(root, load_recipe(str(recipe))),
                     None, {"hello": 0, "bye": 1}, None) as plan:
        got = Planned(plan.rows, list(plan.groups()), plan.rejects)
    assert [(r.row, r.reason) for r in got.rejects] == \
        [(r.row, r.reason.replace("train.csv", "train.parquet")) for r in csv_plan.rejects]
    assert [(g.file, [r.key for r in g.rows]) for g in got.groups] == \
        [(g.file, [r.key for r in g.rows]) for g in csv_plan.groups]


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_a_symlink_under_the_root_resolves_every_path_as_the_row_loop_does(tmp_path):
    root = islr(tmp_path, [["a/1.parquet", "7", "1", "hello"], ["b/2.parquet", "7", "2", "hello"],
                           ["out/x.parquet", "7", "3", "hello"]])
    os.symlink(root / "a", root / "b")
    os.symlink(tmp_path, root / "out")
    ref, got, plan = both(root)
    assert got == ref
    assert [(g.file, [r.key for r in g.rows]) for g in plan.groups] == [("a/1.parquet", ["1"]), ("a/2.parquet", ["2"])]
    assert [r.reason for r in plan.rejects] == ["out/x.parquet escapes the dataset root"]


def test_compare_mode_refuses_a_planner_that_drops_a_reject(tmp_path, monkeypatch):
    from sltdata import ingest as ingest_module

    def lossy(*args):
        plan = plan_ingest(*args)
        plan.rejects.pop()
        return plan
    monkeypatch.setattr(ingest_module, "plan_ingest", lossy)
    monkeypatch.setenv("SLTDATA_PLANNER", "compare")
    with pytest.raises(RuntimeError, match="the DuckDB planner and the row loop disagree"):
        ingest_module.ingest("kaggle-islr", islr(tmp_path, BAD_ROWS), tmp_path / "s")


def test_every_ingest_corpus_of_the_tests_plans_identically_with_both_planners():
    """The ingest tests re-run with SLTDATA_PLANNER=compare: every ingest plans with both planners
    and fails when their rows-in, groups or rejects.jsonl bytes differ."""
    env = {**os.environ, "SLTDATA_PLANNER": "compare", "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-x",
                          "tests/test_ingest.py", "tests/test_faults_input.py"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
    assert re.search(r"\b[1-9]\d+ passed", run.stdout)


def fingerspelling_root(tmp_path: Path, files: dict[str, int]) -> Path:
    """A kaggle-fingerspelling root whose manifest points ``n`` rows at each file, files interleaved."""
    root = tmp_path / "fs"
    (root / "t").mkdir(parents=True)
    (root / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(" ab")}))
    rows, key = [], 0
    for name, n in files.items():
        (root / "t" / name).write_bytes(b"")
        rows += [[f"t/{name}", "5", str(key + i), "3", "ab"] for i in range(n)]
        key += n
    rows.insert(1, ["t/gone.parquet", "5", "999", "3", "ab"])  # a missing file between a file's rows
    with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["path", "file_id", "sequence_id", "participant_id", "phrase"], *rows])
    return root


def test_parts_from_duckdb_are_the_row_loops_parts_with_files_cut_into_half_parts(tmp_path):
    root = fingerspelling_root(tmp_path, {"z.parquet": 1, "a.parquet": 7, "b.parquet": 2, "c.parquet": 2})
    recipe = load_recipe("kaggle-fingerspelling")
    source = get_source(recipe.source)(root, recipe)
    chars, _ = _load_map(root, recipe, "text", False)
    ref = plan_rows(root, recipe, source, None, None, chars, part_size=4)
    with plan_ingest(root, recipe, source, None, None, chars, part_size=4) as got:
        parts = [[(g.file, [r.key for r in g.rows]) for g in p] for p in got.parts()]
        assert _plan_bytes(got) == _plan_bytes(ref)
        assert got.sizes == ref.sizes == [1, 2, 2, 2, 1, 4]
    assert parts == [[("t/z.parquet", ["0"])], [("t/a.parquet", ["1", "2"])], [("t/a.parquet", ["3", "4"])],
                     [("t/a.parquet", ["5", "6"])], [("t/a.parquet", ["7"])],
                     [("t/b.parquet", ["8", "9"]), ("t/c.parquet", ["10", "11"])]]
    assert [r.reason for r in got.rejects] == ["t/gone.parquet not found"]


def test_parts_stream_out_of_duckdb_a_batch_at_a_time(tmp_path, monkeypatch):
    """The first part is out after one batch of rows, not after the whole plan became Python objects."""
    root = fingerspelling_root(tmp_path, {f"{i}.parquet": 3 for i in range(20)})
    monkeypatch.setattr(plan_module, "_BATCH", 5)
    pulled = []
    batches = plan_module._batches

    def counted(con, query):
        for b in batches(con, query):
            pulled.append(b.num_rows)
            yield b
    monkeypatch.setattr(plan_module, "_batches", counted)
    recipe = load_recipe("kaggle-fingerspelling")
    chars, _ = _load_map(root, recipe, "text", False)
    with plan_ingest(root, recipe, get_source(recipe.source)(root, recipe), None, None, chars, part_size=6) as plan:
        parts = plan.parts()
        first = next(parts)
        assert [(g.file, len(g.rows)) for g in first] == [("t/0.parquet", 3), ("t/1.parquet", 3)]
        assert sum(pulled) <= 10  # two batches of 5 rows: the 6 rows of the first part and the next one
        rest = list(parts)
    assert sum(pulled) == 60 and len(rest) == 9 and all(sum(len(g.rows) for g in p) == 6 for p in rest)


def test_the_plan_database_is_removed_when_the_plan_closes(tmp_path):
    root = fingerspelling_root(tmp_path, {"a.parquet": 2})
    recipe = load_recipe("kaggle-fingerspelling")
    chars, _ = _load_map(root, recipe, "text", False)
    with plan_ingest(root, recipe, get_source(recipe.source)(root, recipe), None, None, chars) as plan:
        tmp = Path(plan._tmp)
        assert (tmp / "plan.duckdb").is_file()
    assert not tmp.exists()
