"""export-hf reads the store once for all splits and saves the DatasetDict the per-split
``from_generator`` export saved (kept below as the reference): same features, same rows, same order."""

from pathlib import Path

import numpy as np
import pytest

import sltdata.hf as hf_mod
from sltdata.folds import assign_store_folds
from sltdata.hf import export_hf, hf_features
from sltdata.shards import sample_record
from sltdata.store import METADATA_COLUMNS, Store, table_landmarks

PARAMS = dict(folds=3, test_fraction=0.2, seed=5)


def _reference_rows(store_path: str, keys: tuple[str, ...], split: str):
    """The export's generator before the one-pass change: the whole store per split."""
    wanted = set(keys)
    for batch in Store(store_path).iter_batches():
        meta = batch.select(list(METADATA_COLUMNS)).to_pylist()
        for m, lm in zip(meta, table_landmarks(batch)):
            if m["key"] in wanted:
                yield {**sample_record(m, split), "landmarks": lm}


def _reference_export(store_path: Path, cache: Path, folds: int, test_fraction: float, seed: int):
    from datasets import Dataset, DatasetDict

    store = Store(store_path)
    plan = assign_store_folds(store, folds=folds, test_fraction=test_fraction, seed=seed)
    points = store.metadata(("points",)).column("points").unique().to_pylist()
    features = hf_features(store.labels, points[0] if len(points) == 1 else None)
    by_split = {s: [] for s in plan.splits}
    for k, s in plan.split_of_key.items():
        by_split[s].append(k)
    return DatasetDict({s: Dataset.from_generator(_reference_rows, features=features, cache_dir=str(cache), split=s,
                                                  gen_kwargs={"store_path": str(store.path), "keys": tuple(by_split[s]),
                                                              "split": s})
                        for s in plan.splits})


def _assert_same(dd, ref):
    assert list(dd) == list(ref)
    for s in ref:
        assert dd[s].features == ref[s].features
        assert len(dd[s]) == len(ref[s]) > 0
        ours, theirs = dd[s].with_format("numpy"), ref[s].with_format("numpy")
        for name in ref[s].column_names:
            if name == "landmarks":
                for a, b in zip(ours[name], theirs[name]):
                    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
                    assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True)
            else:
                assert ref[s][name] == dd[s][name], (s, name)


@pytest.mark.parametrize("which", ["islr_store", "pose_store"])
def test_one_pass_export_equals_the_per_split_export(which, request, tmp_path):
    store = request.getfixturevalue(which)
    dd = export_hf(store, tmp_path / "hf", **PARAMS)
    _assert_same(dd, _reference_export(store, tmp_path / "ref-cache", **PARAMS))


def test_export_reads_the_store_once(islr_store, tmp_path, monkeypatch):
    passes = []
    real = Store.iter_batches

    def counting(self, *a, **k):
        passes.append(self.path)
        return real(self, *a, **k)

    monkeypatch.setattr(Store, "iter_batches", counting)
    dd = export_hf(islr_store, tmp_path / "hf", **PARAMS)
    assert len(dd) == 4 and passes == [Path(islr_store)]
    assert not (tmp_path / "hf.tmp").exists() and hf_mod.SLTDATA_FILE in {p.name for p in (tmp_path / "hf").iterdir()}
