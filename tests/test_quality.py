"""Quality scores: computed at ingest, stored, summarised by stats; old stores say "not computed"."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sltdata.layouts import HOLISTIC_543
from sltdata.quality import QUALITY_NAMES, sequence_quality
from sltdata.stats import compute_stats
from sltdata.store import QUALITY_COLUMNS, SCHEMA, Store
from sltdata.synth import make_gestures, make_signers, render
from sltdata.testing import realdata_dir, synth_store

HOUSE = (realdata_dir() or Path("/nonexistent")) / "pose/pose-evaluation/refined_landmarks/colin-HOUSE-needs-trim.pose"


def _clean(seed: int = 0, frames_: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return render(make_gestures(1, rng, frames=(frames_, frames_ + 1)), make_signers(1, rng)[0], rng)


def test_quality_names_are_the_store_columns():
    assert QUALITY_NAMES == QUALITY_COLUMNS
    assert all(SCHEMA.field(c).nullable for c in QUALITY_COLUMNS)


def test_injected_jitter_scores_higher_than_the_clean_sequence():
    clean = _clean()
    noisy = clean.copy()
    noisy[..., :2] += np.random.default_rng(1).normal(0, 0.01, noisy[..., :2].shape).astype(np.float32)
    q_clean = sequence_quality(clean, HOLISTIC_543, 30.0)["quality_jitter"]
    q_noisy = sequence_quality(noisy, HOLISTIC_543, 30.0)["quality_jitter"]
    assert q_noisy > 3 * q_clean


def test_hand_counts_and_longest_gap():
    lm = _clean(frames_=30)
    lm[:, HOLISTIC_543.hand_indices()] = 0.5  # both hands present everywhere
    lm[5:9, HOLISTIC_543.hand_indices()] = np.nan
    lm[20:22, HOLISTIC_543.hand_indices()] = np.nan
    q = sequence_quality(lm, HOLISTIC_543, 30.0)
    assert (q["quality_no_hand_frames"], q["quality_longest_no_hand"]) == (6, 4)
    assert q["quality_detection"]["face"] == 1.0
    assert q["quality_detection"]["left_hand"] == pytest.approx((len(lm) - 6) / len(lm))


def test_frozen_frames_outside_frame_and_fps_anomaly():
    lm = _clean(frames_=20)
    lm[7] = lm[6]
    lm[8] = lm[7]
    before = sequence_quality(lm, HOLISTIC_543, 5.0, units="normalized")["quality_outside_frame"]
    assert 0 <= lm[3, 0, 0] <= 1
    lm[3, 0, 0] = 1.5  # one more point (a face point) right of the frame
    q = sequence_quality(lm, HOLISTIC_543, 5.0, units="normalized")
    assert q["quality_frozen_frames"] == 2
    detected = np.isfinite(lm[..., :2]).all(-1).sum()
    assert q["quality_outside_frame"] == pytest.approx(before + 1 / detected)
    pixels = sequence_quality(lm * [640, 480, 1], HOLISTIC_543, 5.0, units="pixels", width=640, height=480)
    assert pixels["quality_outside_frame"] == pytest.approx(q["quality_outside_frame"])
    assert q["quality_fps_anomaly"] is True
    assert sequence_quality(lm, HOLISTIC_543, 30.0)["quality_outside_frame"] is None  # units unknown
    assert sequence_quality(lm, HOLISTIC_543, None)["quality_fps_anomaly"] is True
    assert sequence_quality(lm, HOLISTIC_543, 29.97)["quality_fps_anomaly"] is False


def test_still_hands_before_and_after_the_sign_are_idle():
    lm = np.repeat(_clean(frames_=20)[:1], 31, axis=0)
    right = HOLISTIC_543.indices("right_hand")
    steps = np.zeros(31, np.float32)
    steps[7:27] = 0.02  # the right hand moves 0.02 a frame from frame 6 to 26, then rests
    lm[:, right, 0] += np.cumsum(steps)[:, None]
    q = sequence_quality(lm, HOLISTIC_543, 30.0)
    assert (q["quality_idle_lead_in"], q["quality_idle_lead_out"]) == (6, 4)
    assert q["quality_frozen_frames"] == 10  # the still frames repeat the one before exactly
    still = sequence_quality(np.repeat(lm[:1], 5, axis=0), HOLISTIC_543, 30.0)
    assert (still["quality_idle_lead_in"], still["quality_idle_lead_out"]) == (5, 0)


@pytest.mark.skipif(not HOUSE.is_file(), reason="real data absent: ../shared/realdata/pose/pose-evaluation/"
                                                "refined_landmarks/colin-HOUSE-needs-trim.pose")
def test_real_file_with_idle_lead_in_and_out_gets_nonzero_counts():
    from sltdata.sources.pose import read_pose_file

    lm, layout, fps = read_pose_file(HOUSE)
    q = sequence_quality(lm, layout, fps)
    # the signer's hands rest out of view for the first ~77 and last ~63 of 172 frames
    assert q["quality_idle_lead_in"] == 77
    assert q["quality_idle_lead_out"] == 63
    assert q["quality_no_hand_frames"] == 140


def test_ingest_stores_quality_and_stats_summarises_it(tmp_path):
    store = Store(synth_store("kaggle-islr", tmp_path, sequences=24))
    assert store.has_quality
    table = pq.read_table(store.parts[0], columns=list(QUALITY_COLUMNS))
    first = next(iter(store))
    expected = sequence_quality(first.landmarks, store.layout(first.layout), first.fps)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["quality_no_hand_frames"] == expected["quality_no_hand_frames"]
    assert row["quality_jitter"] == pytest.approx(expected["quality_jitter"], rel=1e-6)
    assert dict(row["quality_detection"]) == pytest.approx(expected["quality_detection"])
    q = compute_stats(store, landmarks=False)["quality"]
    jit = np.asarray(table.column("quality_jitter").to_pylist())
    assert q["scores"]["quality_jitter"]["sequences"] == 24
    assert q["scores"]["quality_jitter"]["percentiles"]["p50"] == pytest.approx(np.median(jit), rel=1e-5)
    assert sum(q["scores"]["quality_jitter"]["histogram"]["counts"]) == 24
    # the Kaggle source records normalized units, so points outside the frame are counted
    assert first.units == "normalized" and q["scores"]["quality_outside_frame"]["sequences"] == 24
    with_units = sequence_quality(first.landmarks, store.layout(first.layout), first.fps, units=first.units,
                                  width=first.width, height=first.height)
    assert row["quality_outside_frame"] == pytest.approx(with_units["quality_outside_frame"])


def test_store_without_quality_columns_reads_and_stats_says_not_computed(tmp_path):
    store_path = synth_store("kaggle-islr", tmp_path, sequences=12)
    part = Store(store_path).parts[0]
    t = pq.read_table(part)
    pq.write_table(t.drop_columns(list(QUALITY_COLUMNS)), part)  # as ingest wrote it before quality scores
    old = Store(store_path)
    assert not old.has_quality
    assert len(list(old)) == 12
    stats = compute_stats(old, landmarks=False)
    assert stats["quality"] is None
    from rich.console import Console

    from sltdata.cli.stats import print_stats

    con = Console(record=True, width=200)
    print_stats(stats, con)
    assert "quality scores: not computed" in con.export_text()


def test_ingest_without_quality_leaves_nulls(tmp_path):
    from sltdata.ingest import ingest
    from sltdata.synth import synth

    raw = synth("kaggle-islr", tmp_path / "raw", sequences=8)
    ingest("kaggle-islr", raw, tmp_path / "store", quality=False)
    t = Store(tmp_path / "store").metadata(("key", "quality_jitter"))
    assert t.column("quality_jitter").null_count == 8


# ---------------------------------------------------------------------------------------------
# shard --where and --trim-idle


def _shard_records(shards: Path) -> dict[str, dict]:
    from sltdata.shards import ShardIndex, iter_samples

    return {s.key: {**s.meta, "array": s.arrays["landmarks"]} for _, s in iter_samples(ShardIndex.open(shards))}


def test_shard_where_filters_on_quality_and_metadata_and_records_the_count(tmp_path):
    import json

    from sltdata.cli import main

    store = synth_store("kaggle-islr", tmp_path, sequences=40)
    meta = Store(store).metadata(("key", "frames", "quality_no_hand_frames"))
    want = {k for k, f, n in zip(*(meta.column(c).to_pylist() for c in meta.column_names)) if n == 0 and f >= 20}
    assert 0 < len(want) < 40
    rc = main(["shard", str(store), "--out", str(tmp_path / "shards"), "--folds", "2", "--test-fraction", "0",
               "--where", "quality_no_hand_frames = 0 AND frames >= 20"])
    assert rc == 0
    assert set(_shard_records(tmp_path / "shards")) == want
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["where"] == {"predicate": "quality_no_hand_frames = 0 AND frames >= 20", "sequences": 40,
                              "kept": len(want), "filtered_out": 40 - len(want)}


def test_shard_where_with_a_bad_predicate_is_one_error_line(tmp_path, capsys):
    from sltdata.cli import main

    store = synth_store("kaggle-islr", tmp_path, sequences=12)
    assert main(["shard", str(store), "--out", str(tmp_path / "s"), "--folds", "2", "--where", "no_such > 1"]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("error: --where 'no_such > 1':") and len(err.strip().splitlines()) == 1
    assert main(["shard", str(store), "--out", str(tmp_path / "s"), "--folds", "2",
                 "--where", "key IN (SELECT * FROM read_csv('/etc/passwd'))"]) == 2  # no file access


def test_trim_idle_cuts_the_stored_lead_in_and_out(tmp_path):
    from sltdata.shards import write_shards

    store = Store(synth_store("kaggle-islr", tmp_path, sequences=40))
    write_shards(store, tmp_path / "shards", folds=2, test_fraction=0, trim_idle=True)
    records = _shard_records(tmp_path / "shards")
    trimmed = 0
    for seq in store:
        q = sequence_quality(seq.landmarks, store.layout(seq.layout), seq.fps)
        a, b = q["quality_idle_lead_in"], q["quality_idle_lead_out"]
        a, b = (a, b) if a + b < seq.frames else (0, 0)
        r = records[seq.key]
        assert r["trimmed"] == [a, b]
        assert r["frames"] == seq.frames - a - b
        np.testing.assert_array_equal(r["array"], seq.landmarks[a:seq.frames - b])
        trimmed += a + b > 0
    assert trimmed > 0
