"""The Ray engine on a local 2-CPU cluster gives the local engine's bytes, and a killed driver's
re-run resumes to them (ingest, shard, extract)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sltdata.engine import LocalEngine, RayEngine, get_engine  # noqa: E402
from sltdata.ingest import ingest  # noqa: E402
from sltdata.shards import write_shards  # noqa: E402
from sltdata.synth import synth  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARD = dict(folds=3, test_fraction=0.2, seed=4, max_samples_per_shard=12)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayEngine()
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return synth("kaggle-islr", tmp_path_factory.mktemp("raw") / "raw", sequences=120, classes=5, participants=6,
                 seed=3)


@pytest.fixture(scope="module")
def local_store(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "store"
    ingest("kaggle-islr", raw, out, part_size=4)
    return out


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_engines_yield_results_in_the_order_of_their_units(cluster):
    args = [(i, 3) for i in range(7)]
    assert list(cluster.map(pow, args)) == list(LocalEngine(2).map(pow, args)) == [i ** 3 for i in range(7)]


def test_ray_address_without_ray_engine_is_refused():
    from sltdata.errors import ConfigError

    with pytest.raises(ConfigError, match="--ray-address needs --engine ray"):
        get_engine("local", ray_address="127.0.0.1:6379")


def test_ingest_on_ray_writes_the_local_bytes(cluster, raw, local_store, tmp_path):
    result = ingest("kaggle-islr", raw, tmp_path / "store", part_size=4, engine=cluster)
    assert result.stored == 120 - result.rejected
    assert len(list(local_store.glob("part-*.parquet"))) == 30
    assert _files(tmp_path / "store") == _files(local_store)


def test_shard_on_ray_writes_the_local_bytes(cluster, local_store, tmp_path):
    write_shards(local_store, tmp_path / "local", **SHARD)
    index = write_shards(local_store, tmp_path / "ray", engine=cluster, **SHARD)
    assert index.samples(list(index.splits)) == 120 and len(index.splits) == 4
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _idle(timeout: float = 60.0) -> None:
    """Wait until the killed driver's tasks are gone from the cluster (its CPUs are free again)."""
    deadline = time.monotonic() + timeout
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
        assert time.monotonic() < deadline, "the killed driver's tasks never left the cluster"
        time.sleep(0.05)


def test_killed_ray_ingest_driver_reruns_to_the_same_bytes(cluster, raw, local_store, tmp_path):
    out = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    address = ray.get_runtime_context().gcs_address
    cmd = [sys.executable, "-c", "import sys; from sltdata.cli import main; sys.exit(main())", "ingest",
           "kaggle-islr", str(raw), "--out", str(out), "--part-size", "4", "--engine", "ray", "--ray-address", address]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")):  # the first units are done: kill the driver now
            assert proc.poll() is None, "the driver exited before any part was written"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(list(out.glob("part-*.parquet")))
    assert not (out / "store.json").exists() and 0 < done < 30  # killed mid-run
    _idle()
    ingest("kaggle-islr", raw, out, part_size=4, engine=cluster)
    assert _files(out) == _files(local_store)


def test_extract_on_ray_writes_the_local_bytes(cluster, tmp_path):
    pytest.importorskip("mediapipe")
    import cv2

    from sltdata.extract import HolisticConfig, extract
    from sltdata.testing.video import astronaut, write_clip

    videos = tmp_path / "videos"
    videos.mkdir()
    rgb = cv2.resize(astronaut(), (192, 192))
    for i in range(3):
        write_clip(videos / f"clip{i}.avi", rgb, frames=3 + i)
    config = HolisticConfig()
    local = extract(videos, tmp_path / "local", config, workers=1)
    on_ray = extract(videos, tmp_path / "ray", config, engine=cluster)
    assert [o.status for o in local.outcomes] == [o.status for o in on_ray.outcomes] == ["written"] * 3
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def test_ingest_of_an_s3_root_on_ray_fetches_each_file_in_the_task_that_reads_it(cluster, raw, local_store, tmp_path):
    """The README's cluster command on one node: the driver downloads the manifest and the label map,
    and each Ray task (another process, given the endpoint and keys as storage options, not by its
    environment) fetches the landmark files of its part."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from sltdata import fs
    from sltdata.testing.s3 import FAKE_KEYS, moto_bucket

    with moto_bucket("ray-input") as bucket:
        fs.upload_dir(raw, f"{bucket}/raw")
        fs.set_storage_options([f"client_kwargs.endpoint_url={os.environ['AWS_ENDPOINT_URL']}",
                                f"key={FAKE_KEYS['AWS_ACCESS_KEY_ID']}",
                                f"secret={FAKE_KEYS['AWS_SECRET_ACCESS_KEY']}"])
        try:
            result = ingest("kaggle-islr", f"{bucket}/raw", tmp_path / "store", part_size=4, engine=cluster)
        finally:
            fs.set_storage_options([])
    assert result.stored == 120 - result.rejected
    assert _files(tmp_path / "store") == _files(local_store)
