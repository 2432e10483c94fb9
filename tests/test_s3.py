"""Paths are URLs: ingest, shard and the loader on a real S3-protocol server give the local bytes.

The server is moto's (``ThreadedMotoServer``) on 127.0.0.1, spoken to over HTTP by s3fs/botocore
exactly as a real bucket would be; endpoint and (fake) keys come from the standard environment.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from sltdata import fs  # noqa: E402
from sltdata.cli import main  # noqa: E402
from sltdata.testing.s3 import moto_bucket  # noqa: E402
from sltdata.ingest import ingest  # noqa: E402
from sltdata.shards import ShardIndex, write_shards  # noqa: E402
from sltdata.shards.read import iter_samples  # noqa: E402
from sltdata.synth import synth  # noqa: E402

SHARD = dict(folds=3, test_fraction=0.2, seed=5, max_samples_per_shard=10)


@pytest.fixture(scope="module")
def bucket():
    with moto_bucket("sltdata-test") as url:
        yield url


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same work done on local paths: what the S3 run must reproduce byte for byte."""
    base = tmp_path_factory.mktemp("local")
    raw = synth("kaggle-islr", base / "raw", sequences=40, classes=5, participants=6, seed=2)
    ingest("kaggle-islr", raw, base / "store", part_size=16)
    write_shards(base / "store", base / "shards", **SHARD)
    return base


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def s3_run(bucket, local_run):
    fs.upload_dir(local_run / "raw", f"{bucket}/raw")
    args = ["--storage-option", "use_ssl=false"]
    assert main([*args, "ingest", "kaggle-islr", f"{bucket}/raw", "--out", f"{bucket}/store",
                 "--part-size", "16"]) == 0
    assert main([*args, "shard", f"{bucket}/store", "--out", f"{bucket}/shards", "--folds", "3",
                 "--test-fraction", "0.2", "--seed", "5", "--max-samples-per-shard", "10"]) == 0
    return bucket


def test_store_on_s3_is_byte_identical_to_a_local_store(s3_run, local_run, tmp_path):
    fs.download_dir(f"{s3_run}/store", tmp_path / "store")
    local = _files(local_run / "store")
    assert len([n for n in local if n.endswith(".parquet")]) == 3  # 40 rows, parts of 16
    assert _files(tmp_path / "store") == local


def test_shards_on_s3_are_byte_identical_to_local_shards(s3_run, local_run, tmp_path):
    fs.download_dir(f"{s3_run}/shards", tmp_path / "shards")
    local = _files(local_run / "shards")
    assert sum(n.endswith(".tar") for n in local) >= 4
    assert _files(tmp_path / "shards") == local


def test_shards_are_read_in_place_from_s3(s3_run, local_run):
    remote = [(split, s.key, s.arrays["landmarks"]) for split, s in iter_samples(ShardIndex.open(f"{s3_run}/shards"))]
    here = [(split, s.key, s.arrays["landmarks"]) for split, s in iter_samples(ShardIndex.open(local_run / "shards"))]
    assert [r[:2] for r in remote] == [h[:2] for h in here] and len(remote) == 40
    assert all(np.array_equal(r[2], h[2], equal_nan=True) for r, h in zip(remote, here))


def test_loader_workers_stream_their_own_shards_from_s3(s3_run, local_run):
    pytest.importorskip("torch")
    from sltdata.loader import loader

    def batches(where):
        dl = loader(where, folds=None, batch_size=4, num_workers=2, train=False)
        return sorted((k, b["landmarks"][i].sum().item()) for b in dl for i, k in enumerate(b["key"]))

    remote = batches(f"{s3_run}/shards")
    assert len(remote) == ShardIndex.open(local_run / "shards").samples() and remote == batches(local_run / "shards")


def test_rerun_into_a_finished_s3_store_resumes_without_rewriting(s3_run, local_run, tmp_path):
    result = ingest("kaggle-islr", f"{s3_run}/raw", f"{s3_run}/store", part_size=16)
    assert (result.rows, result.stored, str(result.store)) == (40, 40 - result.rejected, f"{s3_run}/store")
    fs.download_dir(f"{s3_run}/store", tmp_path / "store")
    assert _files(tmp_path / "store") == _files(local_run / "store")


def test_messages_never_show_credentials():
    assert fs.display("s3://user:secret@bucket/key?X-Amz-Signature=abc") == "s3://bucket/key"


def test_training_reads_its_shards_from_s3(s3_run, tmp_path):
    pytest.importorskip("torch")
    from sltdata.testing.train import tiny_islr_config
    from sltdata.train.runs import train

    summary = train("islr", f"{s3_run}/shards", tmp_path / "run", tiny_islr_config(train={"epochs": 1}, data={"batch_size": 4}), val_fold=0)
    dataset = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert dataset["labels"] == ShardIndex.open(f"{s3_run}/shards").labels and len(dataset["labels"]) == 5
    assert summary is not None


def test_an_interrupted_s3_ingest_resumes_from_the_parts_on_s3(s3_run, local_run, tmp_path):
    s3, root = fs.url_to_fs(f"{s3_run}/store")
    for name in ("store.json", "rejects.jsonl", "part-000001.parquet", "part-000002.parquet", "part-000002.json"):
        s3.rm_file(f"{root}/{name}")  # what a kill after the first part leaves (plan.json and part 0 stay)
    ingest("kaggle-islr", f"{s3_run}/raw", f"{s3_run}/store", part_size=16)
    fs.download_dir(f"{s3_run}/store", tmp_path / "store")
    assert _files(tmp_path / "store") == _files(local_run / "store")


def test_an_s3_output_inside_its_s3_input_is_refused_before_writing(s3_run):
    from sltdata.outputs import OutputError

    with pytest.raises(OutputError, match="lies inside the input s3://sltdata-test/raw"):
        ingest("kaggle-islr", f"{s3_run}/raw", f"{s3_run}/raw/store")
    with pytest.raises(OutputError, match="input s3://sltdata-test/store"):
        write_shards(f"{s3_run}/store", f"{s3_run}/store", **SHARD)
    assert not fs.exists(f"{s3_run}/raw/store")


def test_extract_from_s3_fetches_each_video_in_the_worker_process_that_reads_it(bucket, tmp_path):
    pytest.importorskip("mediapipe")
    pytest.importorskip("cv2")
    pytest.importorskip("skimage")
    from sltdata.extract import backends, extract
    from sltdata.testing.video import astronaut, write_clip

    if not backends.legacy_available():
        pytest.skip("the proof runs on the legacy Holistic (mediapipe==0.10.21)")
    src = tmp_path / "v"
    src.mkdir()
    for name in ("p", "q"):
        write_clip(src / f"{name}.mp4", astronaut(), frames=2)
    extract(src, tmp_path / "local", workers=1)
    fs.upload_dir(src, f"{bucket}/videos")
    result = extract(f"{bucket}/videos", tmp_path / "remote", workers=2)  # two spawned processes
    assert result.count("written") == 2
    assert _files(tmp_path / "remote") == _files(tmp_path / "local")
