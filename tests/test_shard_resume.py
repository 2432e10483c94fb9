"""`shard` re-run after a kill keeps the finished shards (same inode, same mtime) and ends byte-identical."""

import json
from pathlib import Path

import pytest

import sltdata.shards.write as shards_mod
from sltdata.shards import write_shards
from sltdata.testing import fake_sequence
from sltdata.testing.stores import store_from_sequences

PARAMS = dict(folds=3, test_fraction=0.2, seed=3, max_samples_per_shard=25)


def _dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def _kill_after(monkeypatch, closes: int):
    """The writer raises as it would close shard number ``closes + 1``: ``closes`` shards are finished."""
    real = shards_mod._SplitWriter.close
    n = {"closed": 0}

    def dying(self):
        if self.f is not None:
            if n["closed"] == closes:
                raise KeyboardInterrupt
            n["closed"] += 1
        return real(self)

    monkeypatch.setattr(shards_mod._SplitWriter, "close", dying)
    return real


@pytest.fixture(scope="module")
def clean_run(islr_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "sh"
    write_shards(islr_store, out, **PARAMS)
    return out


def test_rerun_after_a_kill_keeps_finished_shards_and_ends_byte_identical(islr_store, clean_run, tmp_path, monkeypatch):
    out = tmp_path / "sh"
    real = _kill_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        write_shards(islr_store, out, **PARAMS)
    finished = sorted(p.name for p in out.iterdir() if p.name.endswith(".tar"))
    assert len(finished) == 4
    assert (out / shards_mod.PLAN_FILE).is_file() and not (out / "index.json").exists()
    before = {n: (out / n).stat() for n in finished}
    for n in finished:  # each shard is exactly the clean run's
        assert (out / n).read_bytes() == (clean_run / n).read_bytes()

    monkeypatch.setattr(shards_mod._SplitWriter, "close", real)
    written = []
    real_open = shards_mod._SplitWriter._open

    def recording_open(self):
        real_open(self)
        written.append(self.name)

    monkeypatch.setattr(shards_mod._SplitWriter, "_open", recording_open)
    write_shards(islr_store, out, **PARAMS)
    assert _dir_bytes(out) == _dir_bytes(clean_run)  # the plan file is gone, the index identical
    for n, st in before.items():  # not rewritten: same file, same modification time
        after = (out / n).stat()
        assert (after.st_ino, after.st_mtime_ns, after.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)
    assert not set(written) & set(finished)
    all_shards = sorted(p.name for p in clean_run.iterdir() if p.name.endswith(".tar"))
    assert sorted(written) == sorted(set(all_shards) - set(finished))


def test_resumed_run_reads_covered_parts_by_metadata_only(tmp_path, monkeypatch):
    """Parts of the store whose every sample a finished shard holds are read without landmarks."""
    seqs = [fake_sequence(f"s{i:03d}", frames=3 + i % 4, seed=i, label="ab"[i % 2], participant=f"p{i % 4}")
            for i in range(60)]
    store = store_from_sequences(seqs, tmp_path / "store", part_size=10)
    params = dict(folds=2, test_fraction=0.0, seed=0, max_samples_per_shard=4)
    write_shards(store, tmp_path / "clean", **params)
    real = _kill_after(monkeypatch, 10)
    with pytest.raises(KeyboardInterrupt):
        write_shards(store, tmp_path / "sh", **params)
    monkeypatch.setattr(shards_mod._SplitWriter, "close", real)
    kept = {line.split("  ")[1].removesuffix(".json") for p in (tmp_path / "sh").glob("*.members.xxh128")
            for line in p.read_text().splitlines() if line.endswith(".json")}
    assert len(kept) == 40  # 10 shards of 4
    covered = sum(10 for i in range(6) if {s.key for s in seqs[10 * i:10 * i + 10]} <= kept)
    decoded = []
    real_landmarks = shards_mod.table_landmarks
    monkeypatch.setattr(shards_mod, "table_landmarks", lambda b: decoded.append(b.num_rows) or real_landmarks(b))
    write_shards(store, tmp_path / "sh", **params)
    assert _dir_bytes(tmp_path / "sh") == _dir_bytes(tmp_path / "clean")
    assert covered >= 20 and sum(decoded) == 60 - covered


def test_a_different_plan_starts_over(islr_store, tmp_path, monkeypatch):
    out = tmp_path / "sh"
    real = _kill_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        write_shards(islr_store, out, **PARAMS)
    monkeypatch.setattr(shards_mod._SplitWriter, "close", real)
    other = dict(PARAMS, seed=4)
    write_shards(islr_store, out, **other)
    write_shards(islr_store, tmp_path / "clean", **other)
    assert _dir_bytes(out) == _dir_bytes(tmp_path / "clean")


@pytest.mark.parametrize("engine", [None, "local-per-split"])
def test_resume_with_where_and_trim_idle_ends_byte_identical(islr_store, tmp_path, monkeypatch, engine):
    # the filter and the trim decide the bytes too: a resumed run writes what a clean run writes, whether
    # one pass writes every split or a unit per split does (the engines' path)
    from sltdata.engine import LocalEngine

    params = {**PARAMS, "where": "frames >= 20", "trim_idle": True,
              "engine": None if engine is None else LocalEngine(workers=1)}
    write_shards(islr_store, tmp_path / "clean", **params)
    index = json.loads((tmp_path / "clean" / "index.json").read_text())
    assert index["where"]["filtered_out"] > 0 and index["trim_idle"] is True
    real = _kill_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        write_shards(islr_store, tmp_path / "sh", **params)
    monkeypatch.setattr(shards_mod._SplitWriter, "close", real)
    write_shards(islr_store, tmp_path / "sh", **params)
    assert _dir_bytes(tmp_path / "sh") == _dir_bytes(tmp_path / "clean")
