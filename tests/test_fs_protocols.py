"""Paths are fsspec URLs, not S3 special cases: the same ingest -> shard -> loader run on fsspec's
in-memory filesystem (``memory://``, one more protocol besides moto's S3 in ``test_s3.py``) gives
the local bytes. ``gs://`` and ``hf://`` go through these same calls (gcsfs, huggingface_hub's
HfFileSystem); their services are not reachable from the tests."""

from pathlib import Path

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
