"""`sltdata synth`: small datasets in each publisher's exact layout, with structure a model can learn.

Two levels of realism (``realism=``):

* ``easy``: a deliberately simple motion model (signers who differ in position, size and speed; signs
  that differ in hand path and handshape; a mostly undetected non-dominant hand; dominant-hand
  dropout stretches). Classes are far apart, so a tiny model reaches ~100%: for fast unit tests.
* ``real``: calibrated against real files (``shared/realdata``; ``benchmarks/synth_realism.py`` prints
  the statistics side by side): a phone-camera close-up (legs far below the image, y up to ~2.7, x
  below 0), Kaggle-like lengths (median ~18 frames, 2..272), idle lead-in/lead-out with the hands
  out of frame, left-handed signers (a true mirror), per-signer style in every element, jitter, and
  classes built from shared elements (handshape, location, movement) so that many pairs differ in
  one element only: a good model lands clearly below 100%. Implemented in ``sltdata.synth_real``.

Everything is drawn from one seeded ``numpy.random.Generator``, so the same arguments write the same files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sltdata.errors import ConfigError
from sltdata.layouts import HOLISTIC_543
from sltdata.synth_real import TEMPLATE, hand_points  # noqa: F401  (hand_points: part of this module's API)

FORMATS = ("kaggle-islr", "kaggle-fingerspelling", "pose")

# asl-fingerspelling's character_to_prediction_index.json: 59 characters.
FINGERSPELLING_CHARACTERS = " !#$%&'()*+,-./0123456789:;=?@[_abcdefghijklmnopqrstuvwxyz~"
SIGN_WORDS = ("book", "drink", "computer", "before", "chair", "go", "clothes", "who", "candy", "cousin",
              "deaf", "fine", "help", "no", "thin", "walk", "year", "yes", "all", "black", "cool",
              "finish", "hot", "like", "many", "mother", "now", "orange", "table", "thanksgiving",
              "apple", "bed", "bird", "blue", "brother", "car", "cat", "cloud", "cow", "cry", "dad", "dance",
              "dog", "down", "eat", "face", "fish", "flower", "food", "friend", "girl", "give", "grandma",
              "green", "hair", "happy", "hat", "hello", "home", "horse", "house", "jump", "kiss", "listen",
              "look", "milk", "moon", "night", "open", "out", "pizza", "please", "rain", "read", "red", "sad",
              "say", "school", "see", "shoe", "sleep", "snow", "sun", "thankyou", "tree", "up", "water",
              "where", "white", "why", "yellow", "zebra")
REALISM = ("real", "easy")

_OFF = HOLISTIC_543.offsets
_TEMPLATE = TEMPLATE


@dataclass(frozen=True)
class Gesture:
    """One sign, character or word: a dominant-hand path and handshape, maybe a second hand."""

    center: np.ndarray  # (2,) wrist path centre relative to the body
    radius: np.ndarray  # (2,) path radii
    cycles: float  # loops of the path over the gesture
    phase: float
    curl: np.ndarray  # (5,) finger curls at start
    curl_end: np.ndarray  # (5,) finger curls at end
    rotation: float
    two_handed: bool
    frames: int  # typical length at normal speed


def make_gestures(n: int, rng: np.random.Generator, frames: tuple[int, int] = (16, 40),
                  two_handed: float = 0.3) -> list[Gesture]:
    return [Gesture(center=rng.uniform([-0.12, -0.3], [0.12, -0.02]), radius=rng.uniform(0.01, 0.07, 2),
                    cycles=float(rng.uniform(0.3, 2.0)), phase=float(rng.uniform(0, 2 * np.pi)),
                    curl=rng.uniform(0, 1, 5), curl_end=rng.uniform(0, 1, 5),
                    rotation=float(rng.uniform(-0.6, 0.6)), two_handed=bool(rng.uniform() < two_handed),
                    frames=int(rng.integers(*frames))) for _ in range(n)]


@dataclass(frozen=True)
class Signer:
    shift: np.ndarray  # (2,)
    scale: float
    speed: float
    dropout: float  # chance of a dominant-hand dropout stretch in a sequence


def make_signers(n: int, rng: np.random.Generator) -> list[Signer]:
    return [Signer(shift=rng.uniform(-0.06, 0.06, 2), scale=float(rng.uniform(0.85, 1.15)),
                   speed=float(rng.uniform(0.8, 1.25)), dropout=float(rng.uniform(0.1, 0.5))) for _ in range(n)]


def render(gestures: list[Gesture], signer: Signer, rng: np.random.Generator) -> np.ndarray:
    """A sequence performing ``gestures`` one after another: float32 (frames, 543, 3), NaN = undetected."""
    wrists, curls, rots, second = [], [], [], []
    for g in gestures:
        n = max(3, int(round(g.frames / signer.speed * rng.uniform(0.85, 1.15))))
        t = np.linspace(0, 1, n)
        ang = 2 * np.pi * g.cycles * t + g.phase
        wrists.append(g.center + g.radius * np.stack([np.cos(ang), np.sin(ang)], axis=1))
        curls.append(g.curl[None] + (g.curl_end - g.curl)[None] * t[:, None])
        rots.append(np.full(n, g.rotation))
        second.append(np.full(n, g.two_handed))
    wrist = np.concatenate(wrists)
    n = len(wrist)
    body = np.array([0.5, 0.62])
    frames = np.repeat(_TEMPLATE[None], n, axis=0)
    right = hand_points(body + [-0.1, 0] + wrist, np.concatenate(curls), np.concatenate(rots), mirror=False)
    left = hand_points(body + [0.1, 0] + wrist * [-1, 1], np.concatenate(curls), -np.concatenate(rots), mirror=True)
    frames[:, _OFF["right_hand"]:_OFF["right_hand"] + 21] = right
    frames[:, _OFF["left_hand"]:_OFF["left_hand"] + 21] = left
    # The pose model's wrists follow the hands.
    frames[:, _OFF["pose"] + 16, :2] = right[:, 0, :2]
    frames[:, _OFF["pose"] + 15, :2] = left[:, 0, :2]
    center = np.array([0.5, 0.5, 0.0])
    frames = center + (frames - center) * [signer.scale, signer.scale, 1.0]
    frames[..., :2] += signer.shift
    frames[..., :2] += rng.normal(0, 0.002, (n, frames.shape[1], 2))
    out = frames.astype(np.float32)
    out[~np.concatenate(second), _OFF["left_hand"]:_OFF["left_hand"] + 21] = np.nan
    if rng.uniform() < signer.dropout and n > 8:
        start, length = int(rng.integers(0, n - 3)), int(rng.integers(2, max(3, n // 4)))
        out[start:start + length, _OFF["right_hand"]:_OFF["right_hand"] + 21] = np.nan
    return out


def _participants(n: int, rng: np.random.Generator) -> list[str]:
    return [str(v) for v in 10000 + rng.choice(89999, size=n, replace=False)]


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def synth_islr(out: Path, sequences: int = 400, classes: int = 10, participants: int = 8, seed: int = 0,
               realism: str = "easy", left_handed: float = 0.3) -> Path:
    """asl-signs layout: train.csv, train_landmark_files/<participant>/<sequence>.parquet, label map."""
    if classes > len(SIGN_WORDS):
        raise ConfigError(f"synth kaggle-islr: at most {len(SIGN_WORDS)} classes")
    if realism == "real":
        return _synth_islr_real(out, sequences, classes, participants, seed, left_handed)
    rng = np.random.default_rng(seed)
    signs = SIGN_WORDS[:classes]
    gestures = make_gestures(classes, rng)
    signers = make_signers(participants, rng)
    pids = _participants(participants, rng)
    seq_ids = 10**8 + rng.choice(9 * 10**8, size=sequences, replace=False)

    def sequence(c, p):
        return render([gestures[c]], signers[p], rng), int(rng.integers(0, 40))
    return _write_islr(out, signs, pids, seq_ids, rng, sequence)


def _phrase(rng: np.random.Generator) -> str:
    kind = rng.integers(3)
    letters = "abcdefghijklmnopqrstuvwxyz"
    word = lambda a, b: "".join(rng.choice(list(letters), size=int(rng.integers(a, b))))
    if kind == 0:  # street address
        return f"{rng.integers(1, 9999)} {word(4, 9)} {rng.choice(['road', 'street', 'lane'])}"
    if kind == 1:  # url
        return f"www.{word(3, 8)}.{rng.choice(['com', 'org', 'net'])}"
    return f"+{rng.integers(1, 99)}-{rng.integers(100, 999)}-{rng.integers(100, 999)}-{rng.integers(1000, 9999)}"


def synth_fingerspelling(out: Path, files: int = 4, sequences_per_file: int = 50, participants: int = 8,
                         seed: int = 0, supplemental_files: int = 1, realism: str = "easy",
                         left_handed: float = 0.3) -> Path:
    """asl-fingerspelling layout: train.csv (+ supplemental_metadata.csv), train_landmarks/<file_id>.parquet
    with many sequences each, character_to_prediction_index.json."""
    from sltdata.sources.kaggle_fingerspelling import write_fingerspelling_parquet

    rng = np.random.default_rng(seed)
    chars = FINGERSPELLING_CHARACTERS
    if realism == "real":
        from sltdata.synth_real import make_real_signs, make_styles, render_real

        shapes = make_real_signs(len(chars), rng, spread=0.3, two_handed=0.0)
        styles = make_styles(participants, rng, left_handed)
        make_phrase = real_phrase
        perform = lambda signs, p: render_real(signs, styles[p], rng, frames_per_sign=7.0)  # noqa: E731
    else:
        shapes = make_gestures(len(chars), rng, frames=(3, 7), two_handed=0.0)
        signers = make_signers(participants, rng)
        make_phrase = _phrase
        perform = lambda signs, p: render(signs, signers[p], rng)  # noqa: E731
    pids = _participants(participants, rng)
    train, supplemental = [], []
    (out / "train_landmarks").mkdir(parents=True, exist_ok=True)
    for f in range(files):
        file_id = int(rng.integers(10**6, 10**7))
        rel = f"train_landmarks/{file_id}.parquet"
        seqs = {}
        for _ in range(sequences_per_file):
            sid = str(int(rng.integers(10**8, 2 * 10**9)))
            phrase, p = make_phrase(rng), int(rng.integers(participants))
            seqs[sid] = perform([shapes[chars.index(ch)] for ch in phrase], p)
            (supplemental if f >= files - supplemental_files else train).append(
                [rel, str(file_id), sid, pids[p], phrase])
        write_fingerspelling_parquet(out / rel, seqs)
    header = ["path", "file_id", "sequence_id", "participant_id", "phrase"]
    _write_csv(out / "train.csv", header, train)
    if supplemental:
        _write_csv(out / "supplemental_metadata.csv", header, supplemental)
    (out / "character_to_prediction_index.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    return out


def synth_pose(out: Path, sequences: int = 200, words: int = 20, participants: int = 6, seed: int = 0,
               realism: str = "easy", left_handed: float = 0.3) -> Path:
    """iSign-style layout: data.csv (uid,text) and poses/<uid>.pose (pose-format, MediaPipe Holistic)."""
    from sltdata.sources.pose import write_holistic_pose

    if realism == "real":
        return _synth_pose_real(out, sequences, words, participants, seed, left_handed)
    rng = np.random.default_rng(seed)
    vocab = SIGN_WORDS[:words]
    gestures = make_gestures(len(vocab), rng, frames=(8, 16))
    signers = make_signers(participants, rng)
    (out / "poses").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(sequences):
        uid = f"{i:05d}-{int(rng.integers(10**5, 10**6))}"
        idx = rng.integers(len(vocab), size=int(rng.integers(2, 6)))
        lm = render([gestures[j] for j in idx], signers[int(rng.integers(participants))], rng)
        px = lm.copy()
        px[..., 0] *= 640
        px[..., 1] *= 480
        px[..., 2] *= 640
        write_holistic_pose(out / "poses" / f"{uid}.pose", px, fps=25.0)
        rows.append([uid, " ".join(vocab[j] for j in idx)])
    _write_csv(out / "data.csv", ["uid", "text"], rows)
    return out


def synth(fmt: str, out: str | Path, seed: int = 0, realism: str = "easy", **sizes) -> Path:
    """Write a ``fmt`` dataset into ``out``. ``realism="real"`` calibrates it against real captures
    (see ``sltdata.synth_real``); ``"easy"`` (the library default, for unit tests) keeps classes far apart."""
    if realism not in REALISM:
        raise ConfigError(f"unknown synth realism {realism!r} (known: {', '.join(REALISM)})")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writers = {"kaggle-islr": synth_islr, "kaggle-fingerspelling": synth_fingerspelling, "pose": synth_pose}
    if fmt not in writers:
        raise ConfigError(f"unknown synth format {fmt!r} (known: {', '.join(FORMATS)})")
    return writers[fmt](out, seed=seed, realism=realism, **{k: v for k, v in sizes.items() if v is not None})


# --- realism "real" (the motion model is sltdata.synth_real) ------------------------------------------------

def _synth_islr_real(out: Path, sequences: int, classes: int, participants: int, seed: int,
                     left_handed: float) -> Path:
    from sltdata.synth_real import islr_length, make_real_signs, make_styles, render_real

    rng = np.random.default_rng(seed)
    names = SIGN_WORDS[:classes]
    signs = make_real_signs(classes, rng)
    styles = make_styles(participants, rng, left_handed)
    pids = _participants(participants, rng)
    seq_ids = 10**8 + rng.choice(9 * 10**8, size=sequences, replace=False)

    def sequence(c, p):
        lm = render_real([signs[c]], styles[p], rng, frames=islr_length(signs[c], styles[p], rng))
        return lm, 0 if rng.uniform() < 0.2 else int(rng.integers(1, 45))  # most real files do not start at 0
    return _write_islr(out, names, pids, seq_ids, rng, sequence)


def _write_islr(out: Path, names: list[str], pids: list[str], seq_ids, rng: np.random.Generator, sequence) -> Path:
    """The asl-signs files: one parquet per sequence (class ``i % classes``, a random participant),
    train.csv and the label map; ``sequence(c, p)`` draws the landmarks and first frame number of
    one sequence of class ``c`` by participant ``p``."""
    from sltdata.sources.kaggle_islr import write_islr_parquet

    rows = []
    for i, sid in enumerate(seq_ids):
        c, p = i % len(names), int(rng.integers(len(pids)))
        rel = f"train_landmark_files/{pids[p]}/{sid}.parquet"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        lm, start = sequence(c, p)
        write_islr_parquet(out / rel, lm, frame_start=start)
        rows.append([rel, pids[p], str(sid), names[c]])
    _write_csv(out / "train.csv", ["path", "participant_id", "sequence_id", "sign"], rows)
    (out / "sign_to_prediction_index_map.json").write_text(json.dumps({s: i for i, s in enumerate(names)}))
    return out


# Word lists behind realistic fingerspelling phrases: the Kaggle asl-fingerspelling phrases are
# addresses, phone numbers and URLs typed by the signers (mean ~18 characters, many digits, '-', '.', '/').
_FIRST = ("james", "maria", "david", "linda", "kevin", "sarah", "omar", "julia", "tyler", "nina", "carlos", "emma")
_LAST = ("smith", "garcia", "nguyen", "brown", "walker", "patel", "rivera", "cohen", "hughes", "kim", "lopez")
_STREET = ("main", "oak", "lake", "hill", "maple", "cedar", "park", "river", "sunset", "church", "elm", "pine",
           "washington", "lincoln", "highland", "meadow", "spring", "valley", "forest", "harbor")
_SUFFIX = ("street", "road", "avenue", "lane", "drive", "court", "way", "boulevard", "st", "rd", "ave")
_DIR = ("north", "south", "east", "west", "n", "s", "e", "w")
_SITE = ("news", "shop", "travel", "music", "health", "study", "photo", "games", "home", "food", "art", "tech")
_TLD = ("com", "org", "net", "edu", "io", "co.uk", "info")


def real_phrase(rng: np.random.Generator) -> str:
    """One phrase like the Kaggle asl-fingerspelling set: an address, a phone number, a URL or a name."""
    pick = lambda words: str(words[int(rng.integers(len(words)))])  # noqa: E731
    kind = int(rng.choice(4, p=[0.4, 0.25, 0.25, 0.1]))
    if kind == 0:
        direction = pick(_DIR) + " " if rng.uniform() < 0.3 else ""
        return f"{rng.integers(1, 9999)} {direction}{pick(_STREET)} {pick(_SUFFIX)}"
    if kind == 1:
        area = f"+{rng.integers(1, 99)}-" if rng.uniform() < 0.4 else ""
        return f"{area}{rng.integers(100, 999)}-{rng.integers(100, 999)}-{rng.integers(1000, 9999)}"
    if kind == 2:
        head = pick(("www.", "https://", "http://www.", ""))
        tail = f"/{pick(_SITE)}" if rng.uniform() < 0.3 else ""
        return f"{head}{pick(_SITE)}{pick(_LAST)}.{pick(_TLD)}{tail}"
    return f"{pick(_FIRST)} {pick(_LAST)}"


# Camera frames of real .pose files (shared/realdata: 320x240, 640x480, 640x360, 1280x720, 512x512).
_FRAME_SIZES = ((640, 480), (1280, 720), (640, 360), (320, 240), (512, 512))


def _synth_pose_real(out: Path, sequences: int, words: int, participants: int, seed: int, left_handed: float) -> Path:
    """Sentences of signs in pixels, each signer filmed by one camera of a real frame size and fps."""
    from sltdata.sources.pose import write_holistic_pose
    from sltdata.synth_real import make_real_signs, make_styles, render_real

    rng = np.random.default_rng(seed)
    vocab = SIGN_WORDS[:words]
    signs = make_real_signs(len(vocab), rng)
    styles = make_styles(participants, rng, left_handed)
    cameras = [(_FRAME_SIZES[int(rng.integers(len(_FRAME_SIZES)))], float(rng.choice([24.0, 25.0, 29.97, 30.0])))
               for _ in range(participants)]
    (out / "poses").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(sequences):
        uid = f"{i:05d}-{int(rng.integers(10**5, 10**6))}"
        idx = rng.integers(len(vocab), size=int(rng.integers(2, 6)))
        p = int(rng.integers(participants))
        (w, h), fps = cameras[p]
        lm = render_real([signs[j] for j in idx], styles[p], rng, frames_per_sign=14.0 * fps / 30)
        px = lm * np.array([w, h, w], dtype=np.float32)  # MediaPipe z is on the x scale
        write_holistic_pose(out / "poses" / f"{uid}.pose", px, fps=fps, width=w, height=h)
        rows.append([uid, " ".join(vocab[j] for j in idx)])
    _write_csv(out / "data.csv", ["uid", "text"], rows)
    return out
