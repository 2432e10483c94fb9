"""`sltdata stats`: every figure checked against the same figure computed here with numpy."""

import io
import json
import tarfile
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from sltdata.cli import main
from sltdata.layouts import HOLISTIC_543
from sltdata.plots import write_plots
from sltdata.sequence import Sequence
from sltdata.stats import PERCENTILES, compute_stats
from sltdata.store import META_FILE, STORE_FORMAT, STORE_VERSION, part_name, write_json_atomic, write_part

COMPONENTS = [c.name for c in HOLISTIC_543.components]


def _make_sequences(n=37, seed=3, text=False):
    """Sequences with known imbalanced labels, participants, lengths and per-frame detections."""
    rng = np.random.default_rng(seed)
    labels = ["apple"] * 12 + ["bird"] * 9 + ["cat"] * 7 + ["dog"] * 5 + ["egg"] * 3 + ["fish"] * 1
    participants = ["p1", "p2", "p3", "p4"]
    phrases = ["hello world", "straße 12", "café-au-lait", "a"]
    out = []
    for i in range(n):
        frames = int(rng.integers(1, 45))
        lm = rng.uniform(0, 1, (frames, HOLISTIC_543.num_points, 3)).astype(np.float32)
        for c in HOLISTIC_543.components:
            idx = HOLISTIC_543.indices(c.name)
            gone = rng.uniform(size=frames) < {"face": 0.1, "left_hand": 0.6, "pose": 0.05, "right_hand": 0.3}[c.name]
            lm[np.ix_(gone, idx)] = np.nan
            # a partly detected component still counts as detected: drop a few single points too
            lm[np.ix_(~gone, idx[:2])] = np.nan
        out.append(Sequence(key=f"k{i:03d}", landmarks=lm, layout=HOLISTIC_543.name,
                            label=None if text else labels[i % len(labels)],
                            text=phrases[i % len(phrases)] if text else None,
                            participant=participants[int(rng.integers(0, len(participants)))], source="test"))
    return out


def _write_store(path, sequences, part_size=15):
    path.mkdir(parents=True)
    parts = []
    for j in range(0, len(sequences), part_size):
        chunk = sequences[j:j + part_size]
        write_part(path / part_name(len(parts)), chunk)
        parts.append({"file": part_name(len(parts)), "sequences": len(chunk), "frames": sum(s.frames for s in chunk)})
    labels = sorted({s.label for s in sequences if s.label})
    write_json_atomic(path / META_FILE, {
        "format": STORE_FORMAT, "version": STORE_VERSION, "complete": True, "recipe": None,
        "layouts": [HOLISTIC_543.to_dict()], "labels": {l: i for i, l in enumerate(labels)} if labels else None,
        "characters": None, "parts": parts,
        "counts": {"rows": len(sequences), "stored": len(sequences), "rejected": 0,
                   "frames": sum(s.frames for s in sequences)}})
    return path


@pytest.fixture(scope="module")
def hand_store(tmp_path_factory):
    seqs = _make_sequences()
    return _write_store(tmp_path_factory.mktemp("stats") / "store", seqs), seqs


@pytest.fixture(scope="module")
def hand_stats(hand_store):
    return compute_stats(hand_store[0], max_lengths=(10, 20, 30, 384), rarest=3)


def _summary(values):
    v = np.asarray(values)
    return {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max()), "mean": float(v.mean())}


def _detected(seqs):
    """component -> concatenated per-frame detection flags (any finite x among its points)."""
    return {c: np.concatenate([np.isfinite(s.landmarks[:, HOLISTIC_543.indices(c), 0]).any(axis=1) for s in seqs])
            for c in COMPONENTS}


def test_counts_match_the_sequences(hand_store, hand_stats):
    _, seqs = hand_store
    assert hand_stats["sequences"] == len(seqs)
    assert hand_stats["frames"] == sum(s.frames for s in seqs)
    assert hand_stats["participants"] == len({s.participant for s in seqs})
    assert hand_stats["classes"] == len({s.label for s in seqs})
    assert hand_stats["phrases"] is None and hand_stats["text"] is None
    assert hand_stats["folds"] is None
    assert hand_stats["source"]["kind"] == "store"


def test_sequences_per_class_and_rarest(hand_store, hand_stats):
    _, seqs = hand_store
    counts = Counter(s.label for s in seqs)
    pc = hand_stats["per_class"]
    assert pc["counts"] == dict(counts)
    assert {k: pc[k] for k in ("min", "median", "max", "mean")} == _summary(list(counts.values()))
    rarest = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))[:3]
    assert pc["rarest"] == [{"label": l, "sequences": n} for l, n in rarest]


def test_sequences_per_participant(hand_store, hand_stats):
    _, seqs = hand_store
    counts = Counter(s.participant for s in seqs)
    pp = hand_stats["per_participant"]
    assert pp["counts"] == dict(sorted(counts.items()))
    assert {k: pp[k] for k in ("min", "median", "max", "mean")} == _summary(list(counts.values()))


def test_length_percentiles_counts_over_and_histogram(hand_store, hand_stats):
    _, seqs = hand_store
    lengths = np.array([s.frames for s in seqs])
    ln = hand_stats["length"]
    assert (ln["min"], ln["max"]) == (lengths.min(), lengths.max())
    assert ln["mean"] == pytest.approx(lengths.mean())
    for p in PERCENTILES:
        assert ln["percentiles"][f"p{p}"] == pytest.approx(np.percentile(lengths, p)), p
    assert ln["over"] == {str(m): int((lengths > m).sum()) for m in (10, 20, 30, 384)}
    edges = np.asarray(ln["histogram"]["edges"])
    assert edges[0] == 0 and edges[-1] > lengths.max()
    assert ln["histogram"]["counts"] == np.histogram(lengths, bins=edges)[0].tolist()


def test_detection_rates_per_component_and_no_hand(hand_store, hand_stats):
    _, seqs = hand_store
    det = _detected(seqs)
    total = sum(s.frames for s in seqs)
    no_hand = ~(det["left_hand"] | det["right_hand"])
    d = hand_stats["detection"]
    assert d["frames"] == total
    assert d["frames_with"] == {**{c: int(det[c].sum()) for c in COMPONENTS}, "no_hand": int(no_hand.sum())}
    assert d["rates"] == pytest.approx({**{c: det[c].mean() for c in COMPONENTS}, "no_hand": no_hand.mean()})
    assert 0 < d["rates"]["left_hand"] < d["rates"]["right_hand"] < d["rates"]["face"] < 1


def test_detection_rates_per_participant(hand_store, hand_stats):
    _, seqs = hand_store
    per = hand_stats["detection"]["per_participant"]
    assert sorted(per) == sorted({s.participant for s in seqs})
    for p, got in per.items():
        mine = [s for s in seqs if s.participant == p]
        det = _detected(mine)
        assert got["frames"] == sum(s.frames for s in mine)
        want = {c: det[c].mean() for c in COMPONENTS}
        want["no_hand"] = (~(det["left_hand"] | det["right_hand"])).mean()
        assert {k: v for k, v in got.items() if k != "frames"} == pytest.approx(want), p


def test_metadata_only_skips_landmarks_and_keeps_every_other_figure(hand_store, hand_stats):
    fast = compute_stats(hand_store[0], landmarks=False, max_lengths=(10, 20, 30, 384), rarest=3)
    assert fast["detection"] is None
    assert {k: v for k, v in fast.items() if k != "detection"} == {k: v for k, v in hand_stats.items() if k != "detection"}


def test_text_phrase_lengths_and_character_set(tmp_path):
    seqs = _make_sequences(n=11, text=True)
    stats = compute_stats(_write_store(tmp_path / "store", seqs), landmarks=False)
    texts = [s.text for s in seqs]
    assert stats["classes"] is None and stats["per_class"] is None
    assert stats["phrases"] == len(set(texts))
    assert stats["text"]["phrase_chars"] == _summary([len(t) for t in texts])
    assert stats["text"]["characters"] == "".join(sorted(set("".join(texts))))
    assert stats["text"]["num_characters"] == len(set("".join(texts)))
    assert "ß" in stats["text"]["characters"] and "é" in stats["text"]["characters"]


def test_json_output_is_the_computed_dict(hand_store, capsys):
    assert main(["stats", str(hand_store[0]), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(compute_stats(hand_store[0])))


def test_tables_print_the_headline_figures(hand_store, capsys):
    assert main(["stats", str(hand_store[0])]) == 0
    out = capsys.readouterr().out
    assert "Sequence length" in out and "Sequences per class" in out and "no hand at all" in out
    assert "fish" in out  # the rarest class is named


def test_not_a_dataset_is_one_clear_error(tmp_path, capsys):
    assert main(["stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "neither a sequence store" in err and len(err.splitlines()) == 1


# --- shards --------------------------------------------------------------------------------------


def _read_shard_samples(shard_dir):
    """(split, sample json, landmarks) read straight from the tars with tarfile."""
    index = json.loads((shard_dir / "index.json").read_text())
    out = []
    for shard in index["shards"]:
        with tarfile.open(shard_dir / shard["file"]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name, m in members.items():
                if name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    arr = np.load(io.BytesIO(tar.extractfile(members[name[:-5] + ".landmarks.npy"]).read()))
                    out.append((shard["split"], meta, arr))
    return out


@pytest.fixture(scope="module")
def shard_dir(hand_store, tmp_path_factory):
    from sltdata.shards import write_shards

    out = tmp_path_factory.mktemp("shards") / "shards"
    write_shards(hand_store[0], out, folds=3, test_fraction=0.25, seed=1, max_samples_per_shard=7)
    return out


def test_shard_folds_counts_classes_participants(shard_dir):
    samples = _read_shard_samples(shard_dir)
    stats = compute_stats(shard_dir)
    assert stats["source"]["kind"] == "shards"
    assert stats["sequences"] == len(samples)
    want = {}
    for split in sorted({s for s, _, _ in samples}):
        mine = [m for s, m, _ in samples if s == split]
        want[split] = {"sequences": len(mine), "classes": len({m["label"] for m in mine}),
                       "participants": len({m["participant"] for m in mine})}
    assert stats["folds"]["splits"] == want
    assert stats["folds"]["participant_disjoint"] is True
    assert stats["folds"]["participants_in_several"] == {}
    assert stats["folds"]["index_participants"]["disagree"] == []


def test_shard_figures_equal_the_store_figures(shard_dir, hand_store):
    from_shards = compute_stats(shard_dir)
    from_store = compute_stats(hand_store[0])
    for k in ("sequences", "frames", "participants", "classes", "per_class", "per_participant", "length"):
        assert from_shards[k] == from_store[k], k
    assert from_shards["detection"]["frames_with"] == from_store["detection"]["frames_with"]
    assert from_shards["detection"]["rates"] == pytest.approx(from_store["detection"]["rates"])


def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_participant_in_two_folds_is_reported(tmp_path):
    """A hand-made shard dir (the contract in docs/interfaces.md) whose signer p2 is in two folds."""
    rows = {"fold0": [("a", "p1"), ("b", "p2")], "fold1": [("c", "p2"), ("d", "p3")], "fold2": [("e", "p4")]}
    shards = []
    for split, samples in rows.items():
        members = []
        for key, p in samples:
            lm = np.zeros((3, HOLISTIC_543.num_points, 3), np.float32)
            npy = io.BytesIO()
            np.save(npy, lm)
            meta = {"key": key, "label": "x", "text": None, "participant": p, "fold": split,
                    "layout": "holistic-543", "source": "test", "frames": 3}
            members += [(f"{key}.landmarks.npy", npy.getvalue()), (f"{key}.json", json.dumps(meta).encode())]
        name = f"{split}-000000.tar"
        (tmp_path / name).write_bytes(_tar_bytes(members))
        shards.append({"file": name, "split": split, "samples": len(samples)})
    (tmp_path / "index.json").write_text(json.dumps({
        "format": "sltdata-shards", "version": 1, "folds": 3, "shards": shards, "transform": None,
        "participants": {"p1": "fold0", "p2": "fold0", "p3": "fold1", "p4": "fold2"}, "layouts": ["holistic-543"]}))
    stats = compute_stats(tmp_path)
    assert stats["folds"]["participant_disjoint"] is False
    assert stats["folds"]["participants_in_several"] == {"p2": ["fold0", "fold1"]}
    assert stats["folds"]["index_participants"]["disagree"] == ["p2"]
    assert stats["detection"]["frames_with"]["right_hand"] == 15


# --- plots ---------------------------------------------------------------------------------------


def _assert_png(path):
    assert path.stat().st_size > 8000
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.size[0] >= 600 and im.size[1] >= 300


def test_plots_are_valid_pngs(shard_dir, tmp_path):
    written = write_plots(compute_stats(shard_dir), tmp_path / "plots")
    assert sorted(p.name for p in written) == ["class_counts.png", "folds.png", "hand_detection.png", "lengths.png"]
    for p in written:
        _assert_png(p)


def test_plots_with_many_classes_and_participants(tmp_path):
    """Hundreds of names: ticks are thinned, not overlapped (the figure still renders)."""
    stats = {"sequences": 500, "length": None, "folds": None, "detection": None,
             "per_class": {"min": 1, "median": 2.0, "max": 9, "mean": 2.5,
                           "counts": {f"sign-{i:03d}": 1 + i % 9 for i in range(300)}}}
    written = write_plots(stats, tmp_path)
    assert [p.name for p in written] == ["class_counts.png"]
    _assert_png(written[0])


def test_cli_plots_option_writes_figures(hand_store, tmp_path, capsys):
    assert main(["stats", str(hand_store[0]), "--json", "--plots", str(tmp_path / "figs")]) == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == ["class_counts.png", "hand_detection.png", "lengths.png"]  # no folds in a store


def test_cli_metadata_only_has_no_detection(hand_store, capsys):
    assert main(["stats", str(hand_store[0]), "--json", "--metadata-only"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["detection"] is None and printed["sequences"] == len(hand_store[1])
