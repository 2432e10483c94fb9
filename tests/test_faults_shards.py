"""Issue 12, shards: damaged content never reaches a batch, and a shard directory references only its
own files. Each test damages shards the test wrote and asserts the exact error line."""

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from sltdata.cli import main
from sltdata.loader import loader
from sltdata.shards import ShardError, ShardIndex, iter_samples, iter_shard, verify_shards, write_shards
from sltdata.shards.tar import end_of_archive, member_header, padding
from sltdata.testing import fake_sequence
from sltdata.testing.stores import store_from_sequences
from sltdata.testing.train import islr_shards, tiny_islr_config
from sltdata.train.runs import train

OUTSIDE = "is not a file name inside the shard directory (an index may only reference its own files)"


def tree_digest(root: Path) -> str:
    """One sha256 over every file's relative path and bytes: equal before and after = untouched."""
    sha = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            sha.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return sha.hexdigest()


def damage(path: Path, old: bytes, new: bytes) -> None:
    """Replace the one occurrence of ``old`` in the file by ``new`` (same length: a bit-rot, not a cut)."""
    raw = path.read_bytes()
    assert raw.count(old) == 1 and len(old) == len(new)
    path.write_bytes(raw.replace(old, new))


def edit_index(shards: Path, change) -> None:
    data = json.loads((shards / "index.json").read_text())
    change(data)
    (shards / "index.json").write_text(json.dumps(data))


@pytest.fixture
def shards(tmp_path):
    """Two folds of 3-sample shards of 12 short sequences (labels a/b/c), under tmp/a/sh."""
    seqs = [fake_sequence(f"k{i}", frames=4, seed=i, label="abc"[i % 3], participant=f"p{i % 6}", source="test")
            for i in range(12)]
    store = store_from_sequences(seqs, tmp_path / "store")
    return write_shards(store, tmp_path / "a" / "sh", folds=2, seed=0, max_samples_per_shard=3).path


def first_shard(shards: Path) -> Path:
    return shards / ShardIndex.open(shards).shards[0]["file"]


def read_keys_until_error(shards: Path, **kw) -> tuple[list[str], ShardError]:
    seen = []
    with pytest.raises(ShardError) as e:
        for batch in loader(shards, batch_size=1, train=False, **kw):
            seen += batch["key"]
    return seen, e.value


# --- 1. damaged content never reaches a batch --------------------------------------------------------

def test_flipped_landmark_bytes_stop_the_loader_before_the_sample_is_batched(shards):
    path = first_shard(shards)
    samples = list(iter_shard(path))  # no index entry: nothing checked, the values as stored
    last = samples[-1]
    rotten = np.array(last.arrays["landmarks"])
    rotten.flat[7] = 1e22  # a flipped exponent bit turns a coordinate into ~1e22
    damage(path, last.arrays["landmarks"].tobytes(), rotten.tobytes())

    seen, err = read_keys_until_error(shards, folds=[ShardIndex.open(shards).shards[0]["split"]])
    assert str(err) == (f"{path}: member {last.key}.landmarks.npy: checksum mismatch (damaged content, not loaded); "
                        f"run `sltdata verify {shards}`")
    # the shard's earlier samples went on (as many as the batcher's look-ahead let out), never the damaged one
    assert last.key not in seen and seen == [s.key for s in samples[:len(seen)]]
    read = []  # the reader itself lets out every sample before the damaged one
    with pytest.raises(ShardError):
        for sample in iter_shard(path, entry=ShardIndex.open(shards).shards[0]):
            read.append(sample.key)
    assert read == [s.key for s in samples[:-1]]


def test_a_label_swapped_in_the_json_is_refused_by_every_reader(shards):
    path = first_shard(shards)
    second = list(iter_shard(path, arrays=False))[1]
    other = "a" if second.meta["label"] != "a" else "b"
    damage(path, f'"key": "{second.key}", "label": "{second.meta["label"]}"'.encode(),
           f'"key": "{second.key}", "label": "{other}"'.encode())

    line = f"{path}: member {second.key}.json: checksum mismatch (damaged content, not loaded)"
    with pytest.raises(ShardError) as e:
        list(iter_samples(ShardIndex.open(shards)))
    assert str(e.value) == line
    with pytest.raises(ShardError) as e:  # the metadata-only read (stats, keys) checks the JSON it reads
        list(iter_samples(ShardIndex.open(shards), arrays=False))
    assert str(e.value) == line


def test_damaged_member_checksums_are_named_by_the_loader_and_verify(shards):
    sums = shards / ShardIndex.open(shards).shards[0]["member_sums"]
    text = sums.read_bytes()
    sums.write_bytes(text[:3] + (b"0" if text[3:4] != b"0" else b"1") + text[4:])

    _, err = read_keys_until_error(shards, folds=["fold0", "fold1"])
    assert str(err) == f"{sums}: sha256 mismatch (corrupted member checksums)"
    assert verify_shards(shards).problems == [f"{sums.name}: sha256 mismatch (corrupted member checksums)"]


def test_shards_without_member_checksums_still_read_and_fail_on_the_whole_sha256(shards):
    """An index written before member checksums: read as before, damage found at the shard's end."""
    def drop_sums(data):
        for s in data["shards"]:
            (shards / s.pop("member_sums")).unlink()
            del s["member_sums_sha256"]

    edit_index(shards, drop_sums)
    expected = [s.key for _, s in iter_samples(ShardIndex.open(shards), None)]
    assert len(expected) == 12 and verify_shards(shards).ok

    path = first_shard(shards)
    sample = next(iter_shard(path))
    rotten = np.array(sample.arrays["landmarks"])
    rotten.flat[0] = 1e22
    damage(path, sample.arrays["landmarks"].tobytes(), rotten.tobytes())
    with pytest.raises(ShardError) as e:
        list(iter_samples(ShardIndex.open(shards)))
    assert str(e.value) == (f"{path}: sha256 mismatch (corrupted; this shard has no member checksums, so its "
                            "samples were read before the check: re-shard)")


def test_train_on_a_damaged_shard_is_one_line_and_trains_nothing(islr_store, tmp_path, capsys):
    sh = islr_shards(islr_store, tmp_path / "sh", folds=4)
    entry = next(s for s in ShardIndex.open(sh).shards if s["split"] == "fold1")
    path = sh / entry["file"]
    sample = next(iter_shard(path))
    rotten = np.array(sample.arrays["landmarks"])
    rotten.flat[11] = np.inf
    damage(path, sample.arrays["landmarks"].tobytes(), rotten.tobytes())
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_islr_config(train={"epochs": 1})))
    before = tree_digest(sh)

    code = main(["train", "--trainer", "islr", "--data", str(sh), "--config", str(config),
                 "--val-fold", "0", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (f"error: {path}: member {sample.key}.landmarks.npy: checksum mismatch (damaged content, "
                   f"not loaded); run `sltdata verify {sh}`")
    assert not (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
    assert tree_digest(sh) == before


def test_resume_on_shards_with_another_label_map_is_refused(islr_store, tmp_path):
    sh = islr_shards(islr_store, tmp_path / "sh", folds=4)
    run = tmp_path / "run"
    train("islr", sh, run, tiny_islr_config(train={"epochs": 1}), val_fold=0)
    other = tmp_path / "other"
    shutil.copytree(sh, other)
    edit_index(other, lambda d: d.update(labels={k: len(d["labels"]) - 1 - v for k, v in d["labels"].items()}))
    before = tree_digest(run)

    with pytest.raises(ShardError) as e:
        train("islr", other, run, None, resume=True)
    assert str(e.value) == (f"{other}: labels not the same as the run's ({run / 'dataset.json'}); "
                            "these shards were not made for this run")
    assert tree_digest(run) == before


def test_train_refuses_a_label_map_that_cannot_index_the_classes(shards, tmp_path):
    edit_index(shards, lambda d: d.update(labels={"a": 0, "b": 2, "c": 3}))
    with pytest.raises(ShardError) as e:
        train("islr", shards, tmp_path / "run", tiny_islr_config(train={"epochs": 1}))
    assert str(e.value) == f"{shards}: index.json labels: ids are not 0..2, each once"
    assert not (tmp_path / "run").exists()
    assert verify_shards(shards).problems == ["index.json labels: ids are not 0..2, each once"]


# --- 4. a shard directory references only its own files ----------------------------------------------

@pytest.mark.parametrize("file", ["../../outside.tar", "/etc/passwd", "sub/fold0-000000.tar", ".."])
def test_a_shard_file_outside_the_directory_is_refused_and_flagged(shards, file, capsys):
    outside = shards.parent.parent / "outside.tar"
    shutil.copy(first_shard(shards), outside)  # a readable tar there: the old loader trained on it
    edit_index(shards, lambda d: d["shards"][0].update(file=file))
    line = f"shard file {file!r} {OUTSIDE}"

    with pytest.raises(ShardError) as e:
        ShardIndex.open(shards)
    assert str(e.value) == f"{shards / 'index.json'}: {line}"
    with pytest.raises(ShardError) as e:
        loader(shards)
    assert str(e.value) == f"{shards / 'index.json'}: {line}"
    assert verify_shards(shards).problems == [line, "fold0-000000.tar: shard not in index.json"]
    assert main(["verify", str(shards)]) == 1
    assert f"bad {line}\n" in capsys.readouterr().err


def test_member_checksums_outside_the_directory_are_refused(shards):
    edit_index(shards, lambda d: d["shards"][1].update(member_sums="../../x.members.sha256"))
    with pytest.raises(ShardError) as e:
        ShardIndex.open(shards)
    assert str(e.value) == f"{shards / 'index.json'}: member checksums '../../x.members.sha256' {OUTSIDE}"


@pytest.mark.parametrize("name", ["../k1.json", "/abs/k1.json", "d/k1.json", "k1.json/"])
def test_a_tar_member_with_a_path_never_becomes_a_sample(tmp_path, name):
    record = json.dumps({"key": "k0", "label": "a"}).encode()
    body = b""
    for member in ("k0.json", name):
        body += member_header(member, len(record)) + record + b"\0" * padding(len(record))
    path = tmp_path / "fold0-000000.tar"
    path.write_bytes(body + b"\0" * end_of_archive(len(body)))

    seen = []
    with pytest.raises(ShardError) as e:
        for sample in iter_shard(path, arrays=False):
            seen.append(sample.key)
    assert str(e.value) == (f"{path}: unexpected member {name!r} (a sample member is a regular file "
                            "KEY.landmarks.npy, KEY.mask.npy or KEY.json, in no directory)")
    assert seen == []  # not even k0: the member after it is read before k0's sample is complete


def test_a_member_digest_this_sltdata_does_not_know_is_one_line(shards):
    edit_index(shards, lambda d: [s.update(member_digest="md4") for s in d["shards"]])
    with pytest.raises(ShardError) as e:
        list(iter_samples(ShardIndex.open(shards)))
    assert str(e.value) == (f"{first_shard(shards)}: unknown member digest 'md4' "
                            "(this sltdata knows xxh3_128 and sha256; upgrade it)")
