"""The one shard reader (sltdata.shards.read): what it yields is what was written, value for value."""

import io

import numpy as np
import pytest

from sltdata.shards import ShardError, ShardIndex, iter_samples, iter_shard, load_npy, write_shards
from sltdata.shards.index import PROVENANCE_FIELDS
from sltdata.store import Store
from sltdata.testing import fake_sequence
from sltdata.testing.stores import store_from_sequences
from sltdata.transforms import build_pipeline, load_transform_config


def _sequences():
    return [fake_sequence(f"k/{i}.x" if i % 5 == 0 else f"k{i}", frames=3 + i % 4, seed=i, label=f"s{i % 3}",
                          text=f"t{i}" if i % 2 else None, participant=f"p{i % 6}", source="test", fps=25.0)
            for i in range(30)]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("read")
    store = store_from_sequences(_sequences(), d / "store")
    return store, write_shards(store, d / "sh", folds=3, test_fraction=0.2, seed=1, max_samples_per_shard=7)


def test_samples_read_back_equal_what_was_written(raw):
    store, idx = raw
    seqs = {s.key: s for s in _sequences()}
    got = list(iter_samples(ShardIndex.open(idx.path)))
    assert sorted(s.key for _, s in got) == sorted(seqs)
    for split, s in got:
        seq = seqs[s.key]
        assert s.meta == {"key": seq.key, "label": seq.label, "text": seq.text, "participant": seq.participant,
                          "layout": "holistic-543", "source": "test", "frames": seq.frames, "fps": 25.0,
                          "fold": split, **{f: None for f in PROVENANCE_FIELDS}}
        assert split == idx.participants[seq.participant]
        assert set(s.arrays) == {"landmarks"}
        assert s.arrays["landmarks"].dtype == np.float32
        assert s.arrays["landmarks"].tobytes() == seq.landmarks.tobytes()  # NaN included


def test_metadata_only_read_gives_the_same_records_and_no_arrays(raw):
    _, idx = raw
    full = [(split, s.meta) for split, s in iter_samples(idx)]
    light = list(iter_samples(idx, arrays=False))
    assert [(split, s.meta) for split, s in light] == full
    assert all(s.arrays == {} for _, s in light)


def test_one_split_reads_only_its_shards(raw):
    _, idx = raw
    got = list(iter_samples(idx, "test"))
    assert len(got) == idx.splits["test"]["samples"] and {split for split, _ in got} == {"test"}


def test_transformed_shards_read_back_features_and_mask(raw, tmp_path):
    store, _ = raw
    cfg = load_transform_config({"preset": "hands", "max_length": 8})
    idx = write_shards(store, tmp_path / "t", folds=3, seed=1, transform=cfg)
    pipe = build_pipeline(cfg, layout="holistic-543")
    seqs = {s.key: s for s in Store(store)}
    for _, s in iter_samples(idx, list(idx.splits)):
        features, mask = pipe(seqs[s.key].landmarks, rng=None, train=False)
        assert set(s.arrays) == {"landmarks", "mask"}
        np.testing.assert_array_equal(s.arrays["landmarks"], np.asarray(features, np.float32))
        np.testing.assert_array_equal(s.arrays["mask"], np.asarray(mask, bool))


def test_a_short_shard_is_one_error_naming_it(raw, tmp_path):
    _, idx = raw
    shard = idx.shards[0]
    n = shard["samples"]
    with pytest.raises(ShardError, match=rf"{shard['file']}: {n} samples read, index says {n + 1}.*verify"):
        list(iter_shard(idx.path / shard["file"], expected=n + 1, hint="; run `sltdata verify`"))
    cut = tmp_path / shard["file"]
    cut.write_bytes((idx.path / shard["file"]).read_bytes()[:1500])
    with pytest.raises(ShardError, match=rf"{shard['file']}: corrupted or truncated shard"):
        list(iter_shard(cut))


def test_a_member_outside_the_naming_contract_is_refused(tmp_path):
    from sltdata.shards.tar import end_of_archive, member_header, padding

    data = b"{}"
    body = member_header("bad name.json", len(data)) + data + b"\0" * padding(len(data))
    (tmp_path / "fold0-000000.tar").write_bytes(body + b"\0" * end_of_archive(len(body)))
    with pytest.raises(ShardError, match="unexpected member 'bad name.json'"):
        list(iter_shard(tmp_path / "fold0-000000.tar"))


def test_load_npy_is_a_read_only_view_equal_to_np_load():
    a = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    a[0, 1] = np.nan
    buf = io.BytesIO()
    np.save(buf, a)
    got = load_npy(buf.getvalue())
    assert got.tobytes() == a.tobytes() and got.shape == (2, 4, 3) and not got.flags.writeable
    np.save(buf := io.BytesIO(), np.asfortranarray(a))
    np.testing.assert_array_equal(load_npy(buf.getvalue()), a)
