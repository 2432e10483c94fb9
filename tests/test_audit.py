"""The leakage audit: participants in two splits, near-duplicates (copied, mirrored, stretched, cut) across splits."""

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from sltdata.audit import THRESHOLD, audit_shards, sequence_signatures
from sltdata.layouts import HOLISTIC_543, mirror_indices
from sltdata.sequence import Sequence
from sltdata.shards import ShardIndex, iter_shard, write_shards
from sltdata.synth import make_gestures, make_signers, render
from sltdata.testing.stores import store_from_sequences

N_DISTINCT = 48


def _distinct(seed: int = 0) -> list[Sequence]:
    """Synthetic sequences each with its own gesture, by 8 signers (participants p0..p7)."""
    rng = np.random.default_rng(seed)
    gestures, signers = make_gestures(N_DISTINCT, rng), make_signers(8, rng)
    return [Sequence(key=f"s{i:03d}", landmarks=render([g], signers[i % 8], rng), layout=HOLISTIC_543.name,
                     participant=f"p{i % 8}", fps=30.0) for i, g in enumerate(gestures)]


def _mirror(lm: np.ndarray) -> np.ndarray:
    out = lm[:, mirror_indices(HOLISTIC_543)].copy()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def _stretch(lm: np.ndarray, factor: float) -> np.ndarray:
    f = len(lm)
    t = np.linspace(0, f - 1, int(round(f * factor)))
    lo = np.floor(t).astype(int)
    hi = np.minimum(lo + 1, f - 1)
    w = (t - lo)[:, None, None]
    return (lm[lo] * (1 - w) + lm[hi] * w).astype(np.float32)


def _reencode(lm: np.ndarray, seed: int) -> np.ndarray:
    return (lm + np.random.default_rng(seed).normal(0, 0.002, lm.shape)).astype(np.float32)


def _shards(tmp_path, sequences) -> ShardIndex:
    store = store_from_sequences(sequences, tmp_path / "store")
    return write_shards(store, tmp_path / "shards", folds=2, test_fraction=0.0, seed=0)


def _copies(base: list[Sequence], sources: tuple[str, str, str]) -> list[Sequence]:
    """The first source re-encoded, the second mirrored, the third stretched x1.1, into participant
    'copier'. Keys and participants do not depend on the sources, so neither does the fold plan."""
    by = {s.key: s.landmarks for s in base}
    a, b, c = sources
    made = (_reencode(by[a], 1), _mirror(by[b]), _stretch(by[c], 1.1))
    return [Sequence(key=k, landmarks=lm, layout=HOLISTIC_543.name, participant="copier", fps=30.0)
            for k, lm in zip(("copy", "mirrored", "stretched"), made)]


def _across(tmp_path, base: list[Sequence], n: int) -> list[str]:
    """Keys of ``n`` base sequences whose participant's split differs from the copier's."""
    plan = _shards(tmp_path / "plan", base + _copies(base, ("s000",) * 3)).participants
    return [s.key for s in base if plan[s.participant] != plan["copier"]][:n]


def test_copied_mirrored_and_stretched_sequences_are_found_and_nothing_else(tmp_path):
    base = _distinct()
    sources = tuple(_across(tmp_path, base, 3))
    index = _shards(tmp_path, base + _copies(base, sources))
    report = audit_shards(index.path)
    assert report.participant_overlap == []
    found = {(d["a"], d["b"]): d for d in report.near_duplicates}
    assert set(found) == {tuple(sorted(p)) for p in zip(("copy", "mirrored", "stretched"), sources)}
    participant = {s.key: s.participant for s in base}
    for (a, b), d in found.items():
        assert d["distance"] < THRESHOLD
        original = a if a.startswith("s0") else b
        assert sorted(d["splits"]) == sorted([index.participants["copier"], index.participants[participant[original]]])


def test_clean_synthetic_data_has_no_near_duplicates(tmp_path):
    index = _shards(tmp_path, _distinct(seed=3))
    report = audit_shards(index.path)
    assert report.clean


def test_one_clip_cut_in_two_is_contained_in_the_whole(tmp_path):
    base = _distinct()
    plan = _shards(tmp_path / "plan", base + _pieces(base[0].landmarks)).participants
    whole = next(s for s in base if plan[s.participant] != plan["copier"])
    index = _shards(tmp_path, base + _pieces(whole.landmarks))
    pairs = {(d["a"], d["b"]) for d in audit_shards(index.path).near_duplicates}
    assert pairs == {("piece0", whole.key), ("piece1", whole.key)}


def _pieces(whole: np.ndarray) -> list[Sequence]:
    k = int(round(len(whole) * 0.45))
    return [Sequence(key=f"piece{i}", landmarks=_reencode(lm, i), layout=HOLISTIC_543.name, participant="copier")
            for i, lm in enumerate((whole[:k], whole[k:]))]


def test_participant_in_two_splits_is_reported_with_exit_code_1(tmp_path, capsys):
    from sltdata.cli import main

    index = _shards(tmp_path, _distinct())
    data = json.loads((index.path / "index.json").read_text())
    # rewrite one sample's participant the way another tool's shards might: p0's key json says p1
    moved = next(s for s in data["shards"] if s["split"] != index.participants["p1"])

    src = index.path / moved["file"]
    samples = list(iter_shard(src))
    victim = next(s for s in samples if s.meta["participant"] != "p1")
    with tarfile.open(src) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    with tarfile.open(src, "w", format=tarfile.USTAR_FORMAT) as tf:
        for m, payload in members:
            if m.name == f"{victim.key}.json":
                payload = json.dumps({**victim.meta, "participant": "p1"}).encode()
                m.size = len(payload)
            tf.addfile(m, io.BytesIO(payload))
    # that tool writes an index of our format without per-member checksums: the shard's sha256 only
    (index.path / moved.pop("member_sums")).unlink()
    moved.pop("member_sums_sha256"), moved.pop("member_digest")
    moved["sha256"], moved["bytes"] = hashlib.sha256(src.read_bytes()).hexdigest(), src.stat().st_size
    (index.path / "index.json").write_text(json.dumps(data))
    assert main(["audit", str(index.path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {"participant_overlap": [{"participant": "p1", "splits": sorted(
        {index.participants["p1"], moved["split"]})}], "near_duplicates": []}


def test_clean_audit_exits_0_and_says_so(tmp_path, capsys):
    from sltdata.cli import main

    index = _shards(tmp_path, _distinct(seed=3))
    assert main(["audit", str(index.path)]) == 0
    assert "0 participant(s) in several splits, 0 near-duplicate pair(s)" in capsys.readouterr().out


def test_signature_of_a_mirrored_copy_equals_the_mirrored_signature():
    lm = _distinct()[7].landmarks
    a, b = sequence_signatures(lm, HOLISTIC_543), sequence_signatures(_mirror(lm), HOLISTIC_543)
    np.testing.assert_allclose(b[0], a[1], atol=1e-5)
    np.testing.assert_allclose(b[1], a[0], atol=1e-5)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_time_stretch_barely_moves_the_signature(factor):
    lm = _distinct()[9].landmarks
    d = np.linalg.norm(sequence_signatures(_stretch(lm, factor), HOLISTIC_543)[0] - sequence_signatures(lm, HOLISTIC_543)[0])
    assert d < THRESHOLD / 5
