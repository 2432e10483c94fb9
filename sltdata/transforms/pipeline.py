"""A transform pipeline: the config's steps composed, in one fixed order, over one sequence.

The order (documented because it changes results):

 0. units: x / width, y / height when ``normalize.units: normalized`` and the sample is in pixels
    (the caller passes the stored frame size: ``frame_size(meta)``)
 1. select the preset's points (plus any reference points normalization needs), drop z if asked
 2. drop frames (none / with no selected point detected / with no hand detected)
 3. fill short gaps of missing points by linear interpolation
 4. [train] temporal rescale: resample to round(frames x r) frames, r ~ U(range)
    [train] spatial mask: points inside a random square of the image -> NaN (image coordinates,
    so before normalization)
 5. normalize: subtract the sequence centre (nose / mean / shoulder midpoint), divide by the scale;
    with ``normalize.handedness`` a sequence whose other hand dominates is mirrored (as the flip does),
    in training and evaluation alike
 6. fit the length: keep the first max_length frames, or resize linearly to max_length;
    [train] a random max_length window instead of the first frames (when not resizing)
 7. [train] flip (true mirror), 8. [train] affine about the sequence centre, 9. [train] per-frame jitter
10. [train] hide frames: random frame masking, then one cutout block (points -> NaN, mask kept)
11. motion features (velocity, acceleration, lag2) concatenated after the positions
12. NaN -> 0, pad to max_length; the mask is True for real frames

Augmentations run only with ``train=True`` and a generator. ``sample_rng(seed, key, epoch)`` gives
each sample its own generator from a hash of its key, so the draws do not depend on which worker,
in which order, handles the sample.
"""

from __future__ import annotations

import hashlib

import numpy as np

from sltdata.errors import ConfigError
from sltdata.layouts import Layout, get_layout, mirror_indices, reference_indices
from sltdata.transforms import numpy_ops as ops
from sltdata.transforms.config import TransformConfig, load_transform_config, selection_indices, validate


def sample_rng(seed: int, key: str, epoch: int = 0) -> np.random.Generator:
    """A generator fixed by (seed, key, epoch) alone: same draws on any worker, in any order."""
    words = np.frombuffer(hashlib.blake2b(str(key).encode(), digest_size=16).digest(), dtype="<u4")
    seed = int(seed) % 2**64
    entropy = [seed & 0xFFFFFFFF, seed >> 32, int(epoch) % 2**32, *map(int, words)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def frame_size(meta: dict) -> dict:
    """``width``/``height`` keyword arguments for a pipeline call from a sample's metadata (a shard
    ``KEY.json`` or a store row): the stored size when the sample is in pixels, else nothing."""
    if meta.get("units") == "pixels" and meta.get("width") and meta.get("height"):
        return {"width": int(meta["width"]), "height": int(meta["height"])}
    return {}


class Pipeline:
    """``features, mask = pipe(landmarks, rng=None, train=False)`` for one (F, P, 3) sequence."""

    def __init__(self, cfg: TransformConfig, layout: Layout):
        self.cfg = cfg
        self.layout = layout
        self.selection = selection_indices(cfg, layout)
        n_sel = len(self.selection)
        norm = cfg.normalize
        # Reference points that normalization needs but the selection may lack travel along as extra
        # columns up to normalization, so resampling and frame dropping apply to them too.
        candidates = ([] if norm.center in ("mean", "none") else reference_indices(layout, norm.center))
        shoulders = reference_indices(layout, "shoulders")[0] if norm.scale == "shoulders" else None
        extra = np.concatenate([*candidates, *([shoulders] if shoulders is not None else [])]) \
            if candidates or shoulders is not None else np.zeros(0, np.int64)
        extra = np.setdiff1d(np.unique(extra), self.selection)
        self.work = np.concatenate([self.selection, extra]).astype(np.int64)
        where = {int(p): i for i, p in enumerate(self.work)}
        self.center_candidates = [np.array([where[int(p)] for p in c]) for c in candidates]
        self.shoulders = None if shoulders is None else np.array([where[int(p)] for p in shoulders])
        self.coords = 2 if norm.drop_z else 3
        self.hands = layout.hand_indices()
        self.flip_perm = None
        if cfg.augment.flip.p > 0 or norm.handedness != "keep":
            mirror = mirror_indices(layout)[self.selection]
            self.flip_perm = np.array([where[int(p)] for p in mirror])
        # x columns of each hand in a raw (frames, points * 3) view, for the handedness rule
        self._left_columns = self._right_columns = None
        if norm.handedness != "keep":
            self._left_columns = layout.indices("left_hand") * 3
            self._right_columns = layout.indices("right_hand") * 3
        self.n_selected = n_sel
        # Flat column indices into a (frames, points * 3) view, coordinate-major: one contiguous
        # gather instead of a strided one (3x faster, and this is the step every sample pays).
        self._columns = (self.work[None, :] * 3 + np.arange(self.coords)[:, None]).ravel()
        self._hand_columns = self.hands * 3

    @property
    def input_points(self) -> np.ndarray:
        """Every point index any step reads (sorted). A loader may send only these columns of the raw
        landmarks (``loader(points=...)``, ``BatchAugment(preselected=True)``): 119 of 543 for the ISLR
        default, so 4.6x fewer bytes cross from workers to the trainer."""
        return np.union1d(self.work, self.hands).astype(np.int64)  # hands: drop_frames and handedness

    @property
    def max_length(self) -> int | None:
        return self.cfg.max_length

    @property
    def feature_layout(self) -> ops.FeatureLayout:
        """What each feature column is (``split`` / ``join``); ask it rather than reshape by hand."""
        return ops.FeatureLayout(("position", *self.cfg.motion), self.coords, self.selection)

    @property
    def feature_dim(self) -> int:
        return self.feature_layout.dim

    def __call__(self, landmarks: np.ndarray, rng: np.random.Generator | None = None,
                 train: bool = False, width: int | None = None,
                 height: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        features, mask, _ = self.run(landmarks, rng, train, width=width, height=height)
        return features, mask

    def gather(self, landmarks: np.ndarray) -> np.ndarray:
        """The working points as a contiguous float32 (coords, frames, points) array."""
        f = landmarks.shape[0]
        flat = landmarks.reshape(f, landmarks.shape[1] * 3)[:, self._columns].astype(np.float32, copy=False)
        return flat.reshape(f, self.coords, len(self.work)).transpose(1, 0, 2).copy()

    def mirrored(self, landmarks: np.ndarray) -> bool:
        """Whether ``normalize.handedness`` mirrors this raw (F, P, 3) sequence (every input frame counts)."""
        if self._left_columns is None or not len(landmarks):
            return False
        flat = landmarks.reshape(landmarks.shape[0], -1)
        return ops.mirror_for_handedness(ops.hand_frames(flat, self._left_columns),
                                         ops.hand_frames(flat, self._right_columns), self.cfg.normalize.handedness)

    def frames_to_keep(self, landmarks: np.ndarray, x: np.ndarray) -> np.ndarray:
        mode = self.cfg.temporal.drop_frames
        if mode == "empty":
            return ~np.isnan(x[0, :, :self.n_selected]).all(1)
        if mode == "handless":
            return ~np.isnan(landmarks.reshape(landmarks.shape[0], -1)[:, self._hand_columns]).all(1) if landmarks.shape[0] else np.ones(0, bool)
        return np.ones(landmarks.shape[0], bool)

    def run(self, landmarks: np.ndarray, rng: np.random.Generator | None = None, train: bool = False,
            draw: ops.AugmentDraw | None = None, width: int | None = None,
            height: int | None = None) -> tuple[np.ndarray, np.ndarray, ops.AugmentDraw | None]:
        """Like ``__call__``, also returning the augmentation draw used (to replay it elsewhere).

        ``draw`` replays a given draw instead of drawing from ``rng``. ``width``/``height``: the frame
        size of a pixel-space sample (``frame_size(meta)``); with ``normalize.units: normalized`` x and
        y are divided by them first. Without them the coordinates are taken as already normalized.
        """
        cfg = self.cfg
        if landmarks.ndim != 3 or landmarks.shape[1] != self.layout.num_points:
            raise ConfigError(f"landmarks of shape {landmarks.shape} do not fit layout {self.layout.name} "
                              f"(frames, {self.layout.num_points}, 3)")
        landmarks = np.ascontiguousarray(landmarks)
        x = self.gather(landmarks)
        if cfg.normalize.units == "normalized" and width and height:
            x[0] /= np.float32(width)
            x[1] /= np.float32(height)
        x = ops.drop_frames(x, self.frames_to_keep(landmarks, x))
        x = ops.fill_gaps(x, cfg.temporal.fill_gaps)

        augment = draw is not None or (train and rng is not None and cfg.augment.any)
        fire = None
        if augment and draw is None:
            draw, fire = ops.draw_scalars(cfg.augment, rng)
        if augment and draw.rescale is not None:
            x = ops.interpolate_frames(x, ops.rescaled_length(x.shape[1], draw.rescale))
        if augment and draw.spatial_mask is not None:
            x = ops.spatial_mask(x, draw.spatial_mask)

        norm = cfg.normalize
        if norm.center == "none":
            center = np.zeros(self.coords)
        else:
            center = ops.sequence_center(x, self.center_candidates, self.n_selected)
        scale = ops.sequence_scale(x, center, norm.scale, self.n_selected, self.shoulders)
        x = ops.normalize(x[:, :, :self.n_selected], center, scale)
        if self.mirrored(landmarks):
            x = ops.flip(x, self.flip_perm)
        if augment and draw.crop is not None and not cfg.temporal.resize:
            x = ops.crop(x, cfg.max_length, draw.crop)
        x = ops.fit_length(x, cfg.max_length, cfg.temporal.resize)

        if augment:
            if fire is not None:
                draw = ops.draw_frames(cfg.augment, rng, draw, fire, x.shape[1])
            if draw.flip:
                x = ops.flip(x, self.flip_perm)
            if draw.affine is not None:
                x = ops.affine(x, draw.affine)
            if draw.jitter is not None:
                x = ops.jitter(x, draw.jitter)
            if draw.hidden is not None:
                x = ops.hide_frames(x, draw.hidden)
        features, mask = ops.to_features(x, cfg.motion, cfg.max_length if cfg.temporal.pad else None)
        return features, mask, draw if augment else None


def build_pipeline(cfg: TransformConfig | dict | str | None = None, layout: str | Layout | None = None) -> Pipeline:
    """A Pipeline for a config (anything ``load_transform_config`` takes) on a layout (default: the
    config's own, ``holistic-543``)."""
    if not isinstance(cfg, TransformConfig):
        cfg = load_transform_config(cfg)
    layout = layout if isinstance(layout, Layout) else get_layout(layout or cfg.layout)
    validate(cfg, layout)
    return Pipeline(cfg, layout)
