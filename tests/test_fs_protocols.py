"""Paths are fsspec URLs, not S3 special cases: the same ingest -> shard -> loader run on fsspec's
in-memory filesystem (``memory://``, one more protocol besides moto's S3 in ``test_s3.py``) gives
the local bytes. ``gs://`` and ``hf://`` go through these same calls (gcsfs, huggingface_hub's
HfFileSystem); their services are not reachable from the tests."""

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import fsspec
import numpy as np
import pytest

from sltdata import fs
from sltdata.cli import main
from sltdata.ingest import ingest
from sltdata.shards import ShardIndex, write_shards
from sltdata.shards.read import iter_samples
from sltdata.synth import synth

SHARD = ["--folds", "3", "--test-fraction", "0.2", "--seed", "5", "--max-samples-per-shard", "10"]


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def memory_root():
    url = "memory://sltdata-test"
    yield url
    mem = fsspec.filesystem("memory")
    if mem.exists("/sltdata-test"):
        mem.rm("/sltdata-test", recursive=True)


def test_ingest_and_shard_on_an_in_memory_filesystem_give_the_local_bytes(memory_root, tmp_path):
    raw = synth("kaggle-islr", tmp_path / "raw", sequences=30, classes=4, participants=6, seed=2)
    ingest("kaggle-islr", raw, tmp_path / "store", part_size=16)
    write_shards(tmp_path / "store", tmp_path / "shards", folds=3, test_fraction=0.2, seed=5, max_samples_per_shard=10)

    fs.upload_dir(raw, f"{memory_root}/raw")
    assert main(["ingest", "kaggle-islr", f"{memory_root}/raw", "--out", f"{memory_root}/store",
                 "--part-size", "16"]) == 0
    assert main(["shard", f"{memory_root}/store", "--out", f"{memory_root}/shards", *SHARD]) == 0
    for name in ("store", "shards"):
        fs.download_dir(f"{memory_root}/{name}", tmp_path / f"back-{name}")
        assert _files(tmp_path / f"back-{name}") == _files(tmp_path / name)
    remote = [(s.key, s.arrays["landmarks"]) for _, s in iter_samples(ShardIndex.open(f"{memory_root}/shards"))]
    here = [(s.key, s.arrays["landmarks"]) for _, s in iter_samples(ShardIndex.open(tmp_path / "shards"))]
    assert [k for k, _ in remote] == [k for k, _ in here] and len(remote) == 30
    assert all(np.array_equal(a, b, equal_nan=True) for (_, a), (_, b) in zip(remote, here))


class OtherNode:
    """An engine whose units run where the driver's download of the input is absent, as on a Ray worker
    of another node: the input staging directory is moved away while each unit runs (and put back
    after), and the unit gets the driver's state as a Ray task does."""

    name = "other-node"

    def __init__(self):
        self.units = 0

    def map(self, fn, args):
        for a in args:
            state = fs.mirrors()
            (staging,) = state["inputs"]
            os.rename(staging, staging + ".driver")
            try:
                fs.install(state)
                result = fn(*a)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                os.rename(staging + ".driver", staging)
            self.units += 1
            yield result


def test_units_on_another_node_fetch_their_input_files_from_the_remote(memory_root, tmp_path, monkeypatch):
    raw = synth("kaggle-islr", tmp_path / "raw", sequences=20, classes=4, participants=5, seed=3)
    ingest("kaggle-islr", raw, tmp_path / "store", part_size=8)
    fs.upload_dir(raw, f"{memory_root}/raw")
    engine = OtherNode()
    ingest("kaggle-islr", f"{memory_root}/raw", f"{memory_root}/store", part_size=8, engine=engine)
    assert engine.units == 3
    fs.download_dir(f"{memory_root}/store", tmp_path / "back")
    assert _files(tmp_path / "back") == _files(tmp_path / "store")

    # the control: a unit that does not fetch finds nothing where the driver's download was
    monkeypatch.setattr(fs, "local_input", lambda path: Path(path))
    monkeypatch.setattr(fs, "local_inputs", lambda paths: None)
    result = ingest("kaggle-islr", f"{memory_root}/raw", f"{memory_root}/store2", part_size=8, engine=OtherNode())
    assert result.stored == 0 and result.rejected == 20


def test_local_input_fetches_a_file_or_a_folder_of_frames_only_inside_a_remote_input(memory_root, tmp_path):
    (tmp_path / "in" / "frames").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_text("hello")
    for i in range(3):
        (tmp_path / "in" / "frames" / f"{i:04d}.png").write_bytes(bytes([i]) * 10)
    fs.upload_dir(tmp_path / "in", f"{memory_root}/in")
    with fs.input_dir(f"{memory_root}/in") as staging:
        shutil.rmtree(staging)  # as on a node the driver's download never reached
        fs.install(fs.mirrors())
        assert fs.local_input(staging / "a.txt").read_text() == "hello"
        assert _files(fs.local_input(staging / "frames")) == _files(tmp_path / "in" / "frames")
        assert not fs.local_input(staging / "missing.txt").exists()
        assert not [p for p in staging.iterdir() if p.name.endswith(".part")]  # no temporary left behind
    elsewhere = tmp_path / "not-an-input.txt"
    assert fs.local_input(elsewhere) == elsewhere and not elsewhere.exists()
    assert fs.mirrors()["inputs"] == {}  # the input is forgotten once its run ends


def remote_dir(url: str, tmp_path: Path, files: dict[str, bytes]) -> str:
    """``files`` (relative path -> bytes) put under ``url``."""
    for rel, data in files.items():
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / rel).write_bytes(data)
    fs.upload_dir(tmp_path / "in", url)
    return url


def recorded(monkeypatch, method: str, delay: float = 0.0) -> list:
    """The remote paths the in-memory filesystem's ``method`` (``get``, ``get_file``) is asked for,
    each call taking ``delay`` seconds (long enough for other threads to be waiting on it)."""
    calls: list = []
    memory = type(fsspec.filesystem("memory"))
    real = getattr(memory, method)

    def wrapper(self, rpath, lpath, *a, **k):
        calls.append(rpath)
        time.sleep(delay)
        return real(self, rpath, lpath, *a, **k)
    monkeypatch.setattr(memory, method, wrapper)
    return calls


def test_a_lazy_input_downloads_what_the_driver_reads_and_leaves_placeholders_for_the_rest(memory_root, tmp_path):
    url = remote_dir(f"{memory_root}/in", tmp_path, {"train.csv": b"path\nlm/1.parquet\n",
                                                     "lm/1.parquet": b"landmarks", "lm/empty.parquet": b""})
    with fs.input_dir(url, lazy=lambda rel: rel != "train.csv") as staging:
        assert (staging / "train.csv").read_text() == "path\nlm/1.parquet\n"
        assert [(p.name, p.stat().st_size) for p in sorted((staging / "lm").iterdir())] == \
            [("1.parquet", 0), ("empty.parquet", 0)]  # listed, not downloaded
        assert fs.local_input(staging / "lm" / "1.parquet").read_bytes() == b"landmarks"
        assert fs.local_input(staging / "lm" / "empty.parquet").read_bytes() == b""  # empty on the remote too


def test_threads_that_want_the_same_input_file_download_it_once(memory_root, tmp_path, monkeypatch):
    url = remote_dir(f"{memory_root}/in", tmp_path, {"lm/1.parquet": b"x" * 1000})
    calls = recorded(monkeypatch, "get_file", delay=0.2)
    with fs.input_dir(url, lazy=lambda rel: True) as staging:
        target = staging / "lm" / "1.parquet"
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda _: fs.local_input(target).read_bytes(), range(4)))
    assert got == [b"x" * 1000] * 4
    assert len(calls) == 1


def test_a_parts_files_are_fetched_in_one_batch_and_a_missing_one_is_left_to_the_reader(memory_root, tmp_path,
                                                                                          monkeypatch):
    url = remote_dir(f"{memory_root}/in", tmp_path, {f"lm/{i}.parquet": bytes([65 + i]) * 10 for i in range(3)})
    batches = recorded(monkeypatch, "get")
    with fs.input_dir(url, lazy=lambda rel: True) as staging:
        wanted = [staging / "lm" / f"{i}.parquet" for i in range(3)] + [staging / "lm" / "gone.parquet"]
        fs.local_inputs(wanted)
        assert [p.read_bytes() for p in wanted[:3]] == [b"A" * 10, b"B" * 10, b"C" * 10]
        assert not wanted[3].exists()
        assert len(batches) == 1 and len(batches[0]) == 4  # one batch of requests, not one per file
        assert not [p for p in (staging / "lm").iterdir() if p.name.endswith(".part")]


def test_two_parts_of_one_file_fetching_at_once_download_it_once(memory_root, tmp_path, monkeypatch):
    url = remote_dir(f"{memory_root}/in", tmp_path, {"lm/big.parquet": b"y" * 1000, "lm/other.parquet": b"z" * 10})
    batches = recorded(monkeypatch, "get", delay=0.2)
    with fs.input_dir(url, lazy=lambda rel: True) as staging:
        big, other = staging / "lm" / "big.parquet", staging / "lm" / "other.parquet"
        with ThreadPoolExecutor(2) as pool:  # the parts' batches: [big, other] and [other, big]
            list(pool.map(fs.local_inputs, [[big, other], [other, big]]))
        assert big.read_bytes() == b"y" * 1000 and other.read_bytes() == b"z" * 10
    assert sorted(PurePosixPath(r).name for batch in batches for r in batch) == ["big.parquet", "other.parquet"]
