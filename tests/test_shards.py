"""Shards: bit-for-bit round trip, exact coverage, deterministic bytes, resumable, verified."""

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

import sltdata.shards.write as shards_mod
from sltdata.shards import MEMBER_RE, ShardError, ShardIndex, sanitize_key, verify_shards, write_shards
from sltdata.store import Store
from sltdata.testing import fake_sequence
from sltdata.testing.stores import store_from_sequences

PARAMS = dict(folds=3, test_fraction=0.2, seed=3, max_samples_per_shard=25)


@pytest.fixture(scope="module")
def islr_shards(islr_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "sh"
    write_shards(islr_store, out, **PARAMS)
    return out


def _read_tar(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers()]


def _samples(shard_dir: Path) -> dict[str, dict]:
    """Sanitized key -> {"landmarks": array, "json": dict, "shard": file} over every shard."""
    out = {}
    for s in ShardIndex.open(shard_dir).shards:
        for m, data in _read_tar(shard_dir / s["file"]):
            key, ext = m.name.split(".", 1)
            entry = out.setdefault(key, {"shard": set()})
            entry["shard"].add(s["file"])
            if ext == "landmarks.npy":
                entry["landmarks"] = np.load(io.BytesIO(data), allow_pickle=False)
            elif ext == "json":
                entry["json"] = json.loads(data)
    return out


def _dir_bytes(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_every_sample_round_trips_bit_for_bit(islr_store, islr_shards):
    samples = {v["json"]["key"]: v for v in _samples(islr_shards).values()}
    store = Store(islr_store)
    assert len(samples) == len(store)
    for seq in store:
        got = samples[seq.key]
        assert got["landmarks"].dtype == np.float32
        assert got["landmarks"].shape == seq.landmarks.shape
        assert got["landmarks"].tobytes() == seq.landmarks.tobytes()  # NaN included
        assert {k: got["json"][k] for k in ("label", "text", "participant", "layout", "source", "frames")} == \
            {"label": seq.label, "text": seq.text, "participant": seq.participant, "layout": seq.layout,
             "source": seq.source, "frames": seq.frames}


def test_every_stored_sequence_is_in_exactly_one_shard(islr_store, islr_shards):
    counts = {}
    for s in ShardIndex.open(islr_shards).shards:
        for m, _ in _read_tar(islr_shards / s["file"]):
            if m.name.endswith(".json"):
                counts[m.name] = counts.get(m.name, 0) + 1
    assert sorted(counts.values()) == [1] * len(Store(islr_store))


def test_sample_fold_matches_its_shard_and_participant(islr_shards):
    idx = ShardIndex.open(islr_shards)
    for v in _samples(islr_shards).values():
        (shard,) = v["shard"]
        assert shard.startswith(v["json"]["fold"] + "-")
        assert idx.participants[v["json"]["participant"]] == v["json"]["fold"]


def test_tar_members_are_deterministic_and_sanitized(islr_shards):
    members, _ = zip(*_read_tar(islr_shards / ShardIndex.open(islr_shards).shards[0]["file"]))
    assert all(MEMBER_RE.match(m.name) for m in members)
    assert [m.name.split(".", 1)[1] for m in members[:2]] == ["landmarks.npy", "json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o444)}


def test_index_lists_every_shard_with_true_counts_bytes_and_sha256(islr_store, islr_shards):
    idx = ShardIndex.open(islr_shards)
    assert sorted(s["file"] for s in idx.shards) == sorted(p.name for p in islr_shards.glob("*.tar"))
    for s in idx.shards:
        data = (islr_shards / s["file"]).read_bytes()
        assert s["bytes"] == len(data)
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
        assert s["samples"] == sum(m.name.endswith(".json") for m, _ in _read_tar(islr_shards / s["file"]))
        assert s["samples"] <= 25
    assert idx.folds == 3 and set(idx.splits) == {"fold0", "fold1", "fold2", "test"}
    assert idx.labels == Store(islr_store).labels
    assert sum(v["samples"] for v in idx.splits.values()) == 240


def test_same_store_and_seed_give_byte_identical_shards(islr_store, islr_shards, tmp_path):
    write_shards(islr_store, tmp_path / "again", **PARAMS)
    assert _dir_bytes(tmp_path / "again") == _dir_bytes(islr_shards)


def test_killed_run_rerun_gives_the_same_result(islr_store, islr_shards, tmp_path, monkeypatch):
    real = shards_mod._SplitWriter.write
    calls = {"n": 0}

    def dying(self, members):
        calls["n"] += 1
        if calls["n"] > 120:
            raise KeyboardInterrupt
        return real(self, members)

    monkeypatch.setattr(shards_mod._SplitWriter, "write", dying)
    with pytest.raises(KeyboardInterrupt):
        write_shards(islr_store, tmp_path / "sh", **PARAMS)
    left = {p.name for p in (tmp_path / "sh").iterdir()}
    assert "index.json" not in left and any(n.endswith(".tar.tmp") for n in left) and any(n.endswith(".tar") for n in left)
    with pytest.raises(ShardError, match="no shard index"):
        ShardIndex.open(tmp_path / "sh")
    monkeypatch.setattr(shards_mod._SplitWriter, "write", real)
    write_shards(islr_store, tmp_path / "sh", **PARAMS)
    assert _dir_bytes(tmp_path / "sh") == _dir_bytes(islr_shards)


def test_existing_shards_need_overwrite(islr_store, islr_shards):
    with pytest.raises(ShardError, match="--overwrite"):
        write_shards(islr_store, islr_shards, **PARAMS)


def test_shards_roll_over_by_size(islr_store, tmp_path):
    idx = write_shards(islr_store, tmp_path / "sh", folds=3, max_shard_bytes=2_000_000)
    assert all(s["bytes"] <= 2_000_000 or s["samples"] == 1 for s in idx.shards)
    assert sum(s["samples"] for s in idx.shards) == 240
    assert max(int(s["file"][-10:-4]) for s in idx.shards) > 3


def test_sanitized_keys_are_dot_free_unique_and_stable():
    assert sanitize_key("12345") == "12345"
    assert sanitize_key("abc_DEF-9") == "abc_DEF-9"
    odd = ["a.b", "a/b", "a_b.", "a b", "ä.b", ""]
    safe = [sanitize_key(k) for k in odd]
    assert len(set(safe)) == len(odd)
    assert all(MEMBER_RE.match(s + ".json") for s in safe)
    assert sanitize_key("a.b") == sanitize_key("a.b")


def test_keys_with_dots_and_slashes_round_trip(tmp_path):
    import webdataset as wds

    seqs = [fake_sequence(f"clip.{i}/v1.2", frames=3 + i % 3, seed=i, label="ab"[i % 2], participant=f"p{i % 4}")
            for i in range(16)]
    store = store_from_sequences(seqs, tmp_path / "store")
    idx = write_shards(store, tmp_path / "sh", folds=2)
    got = {}
    for s in wds.WebDataset(idx.shards_for(["fold0", "fold1"]), shardshuffle=False):
        meta = json.loads(s["json"])
        assert "." not in s["__key__"] and s["__key__"] == sanitize_key(meta["key"])
        got[meta["key"]] = np.load(io.BytesIO(s["landmarks.npy"]), allow_pickle=False)
    assert sorted(got) == sorted(q.key for q in seqs)
    assert all(got[q.key].tobytes() == q.landmarks.tobytes() for q in seqs)


def test_character_map_is_built_from_phrases_when_the_store_has_none(pose_store, tmp_path):
    idx = write_shards(pose_store, tmp_path / "sh", folds=3)
    texts = Store(pose_store).metadata(("text",)).column("text").to_pylist()
    assert idx.characters == {c: i for i, c in enumerate(sorted(set("".join(texts))))}
    assert idx.labels is None and idx.participants == {} and idx.data["ungrouped_sequences"] == 60


def test_publisher_character_map_is_kept(fingerspelling_store, tmp_path):
    idx = write_shards(fingerspelling_store, tmp_path / "sh", folds=3)
    assert idx.characters == Store(fingerspelling_store).characters


def test_verify_passes_on_good_shards(islr_shards):
    report = verify_shards(islr_shards)
    assert report.ok and report.samples == 240 and report.shards == len(ShardIndex.open(islr_shards).shards)


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_verify_reports_a_corrupted_shard(islr_shards, tmp_path):
    d = _copy(islr_shards, tmp_path / "c")
    name = ShardIndex.open(d).shards[1]["file"]
    data = bytearray((d / name).read_bytes())
    data[5000] ^= 0xFF
    (d / name).write_bytes(bytes(data))
    assert verify_shards(d).problems == [f"{name}: sha256 mismatch (corrupted)"]


def test_verify_reports_a_truncated_shard(islr_shards, tmp_path):
    d = _copy(islr_shards, tmp_path / "t")
    name = ShardIndex.open(d).shards[0]["file"]
    (d / name).write_bytes((d / name).read_bytes()[:300_000])
    problems = verify_shards(d).problems
    assert any(p.startswith(f"{name}: ") and "truncated" in p for p in problems)
    assert any("sha256 mismatch" in p for p in problems)


def test_transform_at_shard_time_stores_features_and_config(islr_store, tmp_path):
    from sltdata.transforms import build_pipeline, load_transform_config

    idx = write_shards(islr_store, tmp_path / "sh", folds=3, transform={})
    cfg = load_transform_config({})
    assert idx.transform == cfg.to_dict()
    assert load_transform_config(idx.transform) == cfg
    pipe = build_pipeline(cfg, layout="holistic-543")
    assert idx.data["feature_dim"] == {"holistic-543": pipe.feature_dim}
    store = Store(islr_store)
    members = dict((m.name, data) for m, data in _read_tar(tmp_path / "sh" / idx.shards[0]["file"]))
    key = next(n.split(".")[0] for n in members if n.endswith(".json"))
    meta = json.loads(members[f"{key}.json"])
    features = np.load(io.BytesIO(members[f"{key}.landmarks.npy"]), allow_pickle=False)
    mask = np.load(io.BytesIO(members[f"{key}.mask.npy"]), allow_pickle=False)
    want, want_mask = pipe(store.get(meta["key"]).landmarks, rng=None, train=False)
    assert features.tobytes() == np.asarray(want, np.float32).tobytes()
    assert mask.tolist() == np.asarray(want_mask).tolist()
