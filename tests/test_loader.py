"""The training loader: padded batches equal to the store, each sample once per epoch across workers,
disjoint shards per rank, text targets, transforms, and damaged shards named in one error."""

import numpy as np
import pytest
import torch

from sltdata.loader import IGNORE_INDEX, ShardIndex, loader
from sltdata.errors import ConfigError
from sltdata.shards import ShardError, write_shards
from sltdata.store import Store


@pytest.fixture(scope="module")
def shards(islr_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("loader") / "sh"
    write_shards(islr_store, out, folds=3, test_fraction=0.2, seed=0, max_samples_per_shard=20)
    return out


@pytest.fixture(scope="module")
def text_shards(pose_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("loader-text") / "sh"
    write_shards(pose_store, out, folds=3, max_samples_per_shard=10)
    return out


def _keys(dl) -> list[str]:
    return [k for batch in dl for k in batch["key"]]


def test_raw_batches_are_the_store_padded_with_nan_as_zero(islr_store, shards):
    store = Store(islr_store)
    labels = store.labels
    sequences = {q.key: q for q in store}
    seen = 0
    for batch in loader(shards, folds=["fold0"], batch_size=8, train=False):
        x, mask, lengths = batch["landmarks"], batch["mask"], batch["lengths"]
        assert x.dtype == torch.float32 and x.shape[2:] == (543, 3) and mask.dtype == torch.bool
        assert lengths.tolist() == mask.sum(1).tolist()
        for i, key in enumerate(batch["key"]):
            seq = sequences[key]
            n = seq.frames
            assert lengths[i] == n and bool(mask[i, :n].all()) and not bool(mask[i, n:].any())
            assert np.array_equal(x[i, :n].numpy(), np.nan_to_num(seq.landmarks, nan=0.0))
            assert not x[i, n:].any()
            assert batch["target"][i] == labels[seq.label]
            seen += 1
    assert seen == ShardIndex.open(shards).splits["fold0"]["samples"]


def test_default_folds_are_every_fold_but_test(shards):
    idx = ShardIndex.open(shards)
    assert len(_keys(loader(shards, batch_size=32))) == idx.samples(["fold0", "fold1", "fold2"])


def test_two_workers_yield_each_sample_exactly_once_per_epoch(shards):
    keys = _keys(loader(shards, folds=["fold0", "fold1", "fold2", "test"], batch_size=16, num_workers=2))
    assert len(keys) == len(set(keys)) == 240


def test_ranks_read_disjoint_shards_that_cover_the_folds(shards):
    per_rank = [_keys(loader(shards, batch_size=16, rank=r, world_size=2, seed=4)) for r in range(2)]
    assert set(per_rank[0]).isdisjoint(per_rank[1])
    assert len(per_rank[0]) + len(per_rank[1]) == ShardIndex.open(shards).samples()
    assert per_rank[0] and per_rank[1]


def test_same_seed_same_order_and_epochs_differ(shards):
    a = _keys(loader(shards, batch_size=16, seed=1, epoch=0))
    assert a == _keys(loader(shards, batch_size=16, seed=1, epoch=0))
    b = _keys(loader(shards, batch_size=16, seed=1, epoch=1))
    assert a != b and sorted(a) == sorted(b)


def test_drop_last_gives_full_batches_only(shards):
    sizes = [len(b["key"]) for b in loader(shards, folds="fold0", batch_size=7, drop_last=True)]
    assert set(sizes) == {7}


def test_text_targets_are_character_ids_padded_with_ignore_index(text_shards):
    idx = ShardIndex.open(text_shards)
    inverse = {i: c for c, i in idx.characters.items()}
    batch = next(iter(loader(text_shards, batch_size=8, train=False)))
    y, lengths = batch["target"], batch["target_lengths"]
    assert y.dtype == torch.int64 and y.shape == (8, int(lengths.max()))
    for i, text in enumerate(batch["text"]):
        assert lengths[i] == len(text)
        assert "".join(inverse[int(c)] for c in y[i, :lengths[i]]) == text
        assert (y[i, lengths[i]:] == IGNORE_INDEX).all()


def test_target_label_without_label_map_is_a_config_error(text_shards):
    with pytest.raises(ConfigError, match="no label map"):
        loader(text_shards, target="label")


def test_transforms_give_features_of_the_pipeline(islr_store, shards):
    from sltdata.transforms import build_pipeline, load_transform_config

    pipe = build_pipeline(load_transform_config(None), layout="holistic-543")
    batch = next(iter(loader(shards, transforms={}, batch_size=4, train=False, folds="test")))
    assert batch["landmarks"].shape[0] == 4 and batch["landmarks"].shape[2] == pipe.feature_dim
    want, mask = pipe(Store(islr_store).get(batch["key"][0]).landmarks, rng=None, train=False)
    t = len(want)
    assert np.array_equal(batch["landmarks"][0, :t].numpy(), np.nan_to_num(want, nan=0.0))
    assert batch["mask"][0, :t].tolist() == np.asarray(mask).tolist()


def test_augmented_batches_are_reproducible_from_the_seed(shards):
    def first(seed):
        return next(iter(loader(shards, transforms={}, batch_size=4, seed=seed, folds="fold1")))["landmarks"]

    assert torch.equal(first(3), first(3))


def test_transformed_shards_refuse_a_second_transform(islr_store, tmp_path):
    write_shards(islr_store, tmp_path / "sh", folds=3, transform={})
    batch = next(iter(loader(tmp_path / "sh", batch_size=4)))
    assert batch["landmarks"].ndim == 3
    with pytest.raises(ConfigError, match="already hold transformed"):
        loader(tmp_path / "sh", transforms={})


def _damaged(shards, tmp_path, how):
    d = tmp_path / "sh"
    d.mkdir()
    for p in shards.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    name = ShardIndex.open(d).shards_for(["fold0"])[0].rsplit("/", 1)[1]
    data = bytearray((d / name).read_bytes())
    if how == "header":
        data[0:100] = b"\xff" * 100  # the first member's tar header
    elif how == "truncate-member":
        data = data[:len(data) // 2 + 7]
    elif how == "truncate-boundary":  # cut after the first sample: a valid but short tar
        import tarfile

        with tarfile.open(d / name) as tar:
            members = tar.getmembers()
        data = data[:members[2].offset] + b"\0" * 1024
    (d / name).write_bytes(bytes(data))
    return d, name


@pytest.mark.parametrize("how", ["header", "truncate-member", "truncate-boundary"])
def test_damaged_shard_raises_one_error_naming_it(shards, tmp_path, how):
    d, name = _damaged(shards, tmp_path, how)
    with pytest.raises(ShardError) as e:
        _keys(loader(d, folds="fold0", batch_size=8, train=False))
    assert name in str(e.value) and "\n" not in str(e.value) and "sltdata verify" in str(e.value)


def test_damaged_shard_in_a_worker_is_still_one_line(shards, tmp_path):
    d, name = _damaged(shards, tmp_path, "truncate-member")
    with pytest.raises(ShardError) as e:
        _keys(loader(d, folds="fold0", batch_size=8, num_workers=2, train=False))
    assert name in str(e.value) and "\n" not in str(e.value)


def test_npy_members_load_without_pickle(shards):
    import io
    import tarfile

    path = ShardIndex.open(shards).shards_for()[0]
    with tarfile.open(path) as tar:
        npys = [tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".npy")]
    assert all(np.load(io.BytesIO(b), allow_pickle=False).dtype == np.float32 for b in npys)


def test_object_npy_is_refused():
    import io

    from sltdata.shards.read import load_npy

    # An object-dtype npy: the header alone says its payload would need unpickling.
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    buf.write(b"payload that must never be unpickled")
    with pytest.raises(ValueError, match="pickle"):
        load_npy(buf.getvalue())
