"""HF export and push: bit-for-bit DatasetDict, same folds as the shards, the webdataset builder reads
the tars as they are, a dataset card, and a push path tested at the huggingface_hub boundary."""


import numpy as np
import pytest
import yaml

from sltdata.hf import HubError, dataset_card, export_hf, push
from sltdata.shards import ShardIndex, write_shards
from sltdata.store import Store

PARAMS = dict(folds=3, test_fraction=0.2, seed=5)
SECRET = "hf_sltdataTestTokenDoNotLeak123"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """60 sequences: the webdataset builder turns every array into Python lists, so keep it small."""
    from sltdata.testing import synth_store

    return synth_store("kaggle-islr", tmp_path_factory.mktemp("small"), sequences=60, classes=5, participants=6)


@pytest.fixture(scope="module")
def exported(small_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    export_hf(small_store, root / "hf", **PARAMS)
    write_shards(small_store, root / "sh", max_samples_per_shard=10, **PARAMS)
    return root


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_export_round_trips_bit_for_bit(small_store, exported):
    from datasets import load_from_disk

    dd = load_from_disk(str(exported / "hf")).with_format("numpy")
    rows = {r["key"]: r for split in dd.values() for r in split}
    store = Store(small_store)
    assert len(rows) == len(store)
    names = dd["fold0"].features["label"].names
    for seq in store:
        r = rows[seq.key]
        assert r["landmarks"].dtype == np.float32 and r["landmarks"].tobytes() == seq.landmarks.tobytes()
        assert names[r["label"]] == seq.label and r["participant"] == seq.participant and r["frames"] == seq.frames


def test_export_features_are_array3d_and_classlabel(small_store, exported):
    from datasets import Array3D, ClassLabel, load_from_disk

    features = load_from_disk(str(exported / "hf"))["fold0"].features
    assert features["landmarks"] == Array3D(shape=(None, 543, 3), dtype="float32")
    labels = Store(small_store).labels
    assert features["label"] == ClassLabel(names=sorted(labels, key=labels.get))


def test_export_folds_equal_shard_folds(exported):
    from datasets import load_from_disk

    dd = load_from_disk(str(exported / "hf"))
    idx = ShardIndex.open(exported / "sh")
    assert set(dd) == set(idx.splits) == {"fold0", "fold1", "fold2", "test"}
    for split, ds in dd.items():
        assert len(ds) == idx.splits[split]["samples"]
        assert set(ds["fold"]) == {split}
        assert all(idx.participants[p] == split for p in ds["participant"])


def test_webdataset_builder_reads_the_tars_like_load_from_disk(exported, tmp_path):
    from datasets import load_dataset, load_from_disk

    idx = ShardIndex.open(exported / "sh")
    files = {s: [str(exported / "sh" / x["file"]) for x in idx.shards if x["split"] == s] for s in idx.splits}
    wds = load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "cache"))
    disk = load_from_disk(str(exported / "hf")).with_format("numpy")
    for split in idx.splits:
        a = {r["json"]["key"]: r for r in wds[split].with_format("numpy")}
        b = {r["key"]: r for r in disk[split]}
        assert sorted(a) == sorted(b)
        for key, r in a.items():
            assert np.asarray(r["landmarks.npy"], np.float32).tobytes() == b[key]["landmarks"].tobytes()
            assert r["json"]["participant"] == b[key]["participant"] and r["json"]["fold"] == split


def test_text_store_exports_string_labels_and_text(pose_store, tmp_path):
    from datasets import Value

    dd = export_hf(pose_store, tmp_path / "hf", folds=3)
    assert dd["fold0"].features["label"] == Value("string")
    assert sum(len(d) for d in dd.values()) == 60
    assert all(t for d in dd.values() for t in d["text"])


def test_export_refuses_to_replace_without_overwrite(small_store, exported):
    from sltdata.errors import SltdataError

    with pytest.raises(SltdataError, match="--overwrite"):
        export_hf(small_store, exported / "hf", **PARAMS)


def test_card_front_matter_has_configs_splits_counts_and_license(exported):
    card = dataset_card(exported / "sh", "someone/islr-landmarks", license="cc-by-4.0")
    front = _front_matter(card)
    idx = ShardIndex.open(exported / "sh")
    assert front["license"] == "cc-by-4.0"
    assert front["configs"] == [{"config_name": "default",
                                 "data_files": [{"split": s, "path": f"{s}-*.tar"} for s in idx.splits]}]
    assert {s["name"]: s["num_examples"] for s in front["dataset_info"]["splits"]} == \
        {s: v["samples"] for s, v in idx.splits.items()}
    assert "grouped by participant" in card and "`KEY.landmarks.npy`" in card


def test_card_of_an_export_lists_its_features(exported):
    front = _front_matter(dataset_card(exported / "hf", "someone/islr"))
    names = [f["name"] for f in front["dataset_info"]["features"]]
    assert names[:3] == ["key", "landmarks", "label"]
    assert front["configs"][0]["data_files"][0] == {"split": "fold0", "path": "fold0/*.arrow"}


def test_card_configs_load_locally(exported, tmp_path):
    from datasets import load_dataset

    d = tmp_path / "sh"
    d.mkdir()
    for p in (exported / "sh").iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    (d / "README.md").write_text(dataset_card(d, "someone/islr"), encoding="utf-8")
    ds = load_dataset(str(d), cache_dir=str(tmp_path / "cache"))
    assert {s: len(v) for s, v in ds.items()} == {s: v["samples"] for s, v in ShardIndex.open(d).splits.items()}


@pytest.fixture
def hub(monkeypatch):
    """huggingface_hub's upload boundary, recorded instead of called."""
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("create_repo", repo_id, kw)))

    def upload_folder(self, **kw):
        calls.append(("upload_folder", kw["repo_id"], kw))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/datasets/{kw['repo_id']}/commit/0"})()

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_push_creates_the_repo_and_uploads_shards_with_a_card(exported, tmp_path, hub, capsys):
    from sltdata.cli import main

    d = tmp_path / "sh"
    d.mkdir()
    for p in (exported / "sh").iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    assert main(["push", str(d), "someone/islr", "--private"]) == 0
    assert [(c[0], c[1]) for c in hub] == [("create_repo", "someone/islr"), ("upload_folder", "someone/islr")]
    assert hub[0][2] == {"repo_type": "dataset", "private": True, "exist_ok": True}
    assert hub[1][2]["folder_path"] == str(d) and hub[1][2]["repo_type"] == "dataset"
    assert set(hub[1][2]["allow_patterns"]) == {"*.tar", "*.members.xxh128", "index.json", "README.md"}
    assert _front_matter((d / "README.md").read_text())["configs"][0]["config_name"] == "default"
    out = capsys.readouterr()
    assert "someone/islr" in out.out
    assert SECRET not in out.out + out.err + repr(hub)
    assert not any(SECRET.encode() in p.read_bytes() for p in d.iterdir())


def test_push_offline_is_one_clear_line(exported, tmp_path, monkeypatch, capsys):
    import httpx2
    from huggingface_hub import HfApi

    from sltdata.cli import main

    monkeypatch.setenv("HF_TOKEN", SECRET)

    def offline(self, *a, **kw):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(HfApi, "create_repo", offline)
    d = tmp_path / "sh"
    d.mkdir()
    for p in (exported / "sh").iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    assert main(["push", str(d), "someone/islr"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: push: cannot reach the Hugging Face Hub (ConnectError); nothing was uploaded"]
    assert SECRET not in err


def test_push_refused_by_the_hub_names_the_status(exported, monkeypatch):
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    monkeypatch.setenv("HF_TOKEN", SECRET)
    response = httpx2.Response(403, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))

    def refused(self, *a, **kw):
        raise HfHubHTTPError("403 Forbidden", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refused)
    with pytest.raises(HubError, match=r"refused someone/islr \(HTTP 403\)"):
        push(exported / "sh", "someone/islr")


def test_push_without_a_token_says_how_to_log_in(exported, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(HubError, match="HF_TOKEN"):
        push(exported / "sh", "someone/islr")
