"""Sending only the points a transform reads: the loader's ``points`` and BatchAugment(preselected=True)
give exactly what the full raw batch gives."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sltdata.loader import loader  # noqa: E402
from sltdata.shards import write_shards  # noqa: E402
from sltdata.testing import fake_landmarks  # noqa: E402
from sltdata.transforms import build_pipeline  # noqa: E402
from sltdata.transforms.torch_ops import BatchAugment  # noqa: E402


@pytest.mark.parametrize("preset", ["islr-1st", "hands+lips+pose-upper"])
def test_preselected_batch_equals_full_batch(preset):
    cfg = {"preset": preset, "max_length": 32}
    seqs = [fake_landmarks(n, seed=i) for i, n in enumerate((12, 30, 7))]
    t = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), t, 543, 3)
    mask = torch.zeros(len(seqs), t, dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, :len(s)] = torch.from_numpy(np.nan_to_num(s))
        mask[i, :len(s)] = True
    points = torch.from_numpy(build_pipeline(cfg).input_points)
    full, full_mask = BatchAugment(cfg)(x, mask, torch.Generator().manual_seed(3), train=True)
    pre, pre_mask = BatchAugment(cfg, preselected=True)(x[:, :, points], mask, torch.Generator().manual_seed(3),
                                                        train=True)
    assert torch.equal(full_mask, pre_mask)
    assert torch.equal(full, pre)


def test_loader_points_keeps_those_columns(islr_store, tmp_path):
    write_shards(islr_store, tmp_path / "shards", folds=2)
    points = np.array([522, 0, 468, 500])
    full = {k: v for b in loader(tmp_path / "shards", train=False, batch_size=16)
            for k, v in zip(b["key"], b["landmarks"])}
    n = 0
    for b in loader(tmp_path / "shards", train=False, batch_size=16, points=points):
        assert b["landmarks"].shape[2] == 4
        for k, v in zip(b["key"], b["landmarks"]):
            assert torch.equal(v, full[k][:, points])
            n += 1
    assert n == len(full) == 240


def test_loader_points_refuse_transformed_features(islr_store, tmp_path):
    from sltdata.errors import ConfigError

    write_shards(islr_store, tmp_path / "shards", folds=2)
    with pytest.raises(ConfigError, match="points selects raw landmarks"):
        loader(tmp_path / "shards", transforms={"preset": "hands"}, points=[0, 1])


def test_trainer_data_sends_only_input_points_when_augmenting_on_device(islr_store, tmp_path):
    from sltdata.testing.train import tiny_islr_config
    from sltdata.train.config import load_config
    from sltdata.train.data import ShardData

    write_shards(islr_store, tmp_path / "shards", folds=2)
    cfg = load_config(tiny_islr_config(), ["data.augment_on=device", "data.val_fold=0"])
    data = ShardData(tmp_path / "shards", cfg, "label")
    pre = next(iter(data.batches("val", epoch=0, train=False, batch_size=8)))
    raw = next(iter(loader(tmp_path / "shards", folds=["fold0"], train=False, batch_size=8)))
    assert pre["key"] == raw["key"]
    assert pre["landmarks"].shape[2] == len(data.points) < 543
    got = data.to_device(pre, torch.device("cpu"), torch.Generator().manual_seed(1), train=True)
    want, _ = BatchAugment(data.tcfg)(raw["landmarks"], raw["mask"], torch.Generator().manual_seed(1), train=True)
    assert torch.equal(got["features"], want)


def test_unit_conversion_keeps_the_augmentations_in_the_loader(islr_store, tmp_path):
    # the batched path has no per-sample frame size, so normalize.units runs in the loader's NumPy path
    from sltdata.errors import ConfigError
    from sltdata.testing.train import tiny_islr_config
    from sltdata.train.config import load_config
    from sltdata.train.data import ShardData

    write_shards(islr_store, tmp_path / "shards", folds=2)
    units = ["data.val_fold=0", "transforms.normalize.units=normalized"]
    with pytest.raises(ConfigError, match="augment_on: device cannot convert units"):
        ShardData(tmp_path / "shards", load_config(tiny_islr_config(), ["data.augment_on=device", *units]), "label")
    auto = ShardData(tmp_path / "shards", load_config(tiny_islr_config(), ["data.augment_on=auto", *units]), "label")
    assert not auto.device_aug and auto.loader_transforms is auto.tcfg and auto.points is None
