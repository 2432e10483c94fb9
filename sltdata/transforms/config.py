"""The transform config: one frozen dataclass holding every default, validated when it is loaded.

A config is a YAML file or a dict with the same keys as the dataclasses below (nested sections
``normalize``, ``temporal``, ``augment``). Everything a pipeline could trip over mid-epoch (an unknown
preset, a probability of 1.5, a point index past the layout, a flip on a selection that has no mirror
image, a misspelt key) is caught here, as one ``ConfigError`` naming the key.

The defaults reproduce the preprocessing of the ISLR 1st-place solution (hoyso48, Kaggle asl-signs
2023, https://www.kaggle.com/competitions/asl-signs/discussion/406684) as far as it is sound: its 118
points (``islr-1st``), max length 384, frames with no selected point dropped, x/y only (MediaPipe's z is
a noisy monocular depth estimate; seed 001 drops it too), centred on the nose and scaled by the std of
all points, velocity and acceleration concatenated (seed 001's first and second differences; the
solution used lags 1 and 2, available as ``motion: [velocity, lag2]``). "Nose" here is face-mesh
point 1, the nose tip; the solution's reference "landmark 17" is face-mesh point 17, on the lower
lip, and ``normalize.center: face:17`` reproduces it exactly. Its augmentation probabilities (resample 0.8,
flip 0.5, affine 0.75, temporal block mask 0.5, spatial mask 0.5, random temporal crop to max_length
in training) and ranges are the augment defaults. Two deliberate differences, both documented: the scale is one scalar std over x and y (the solution's per-axis std
distorts the aspect ratio, which rotation augmentation then sees), and augmentations run after
normalization (the solution augmented raw coordinates, so its shift and scale were undone by
normalization). The spatial mask is the one augmentation that runs before normalization: its square
(side 0.2-0.4, corner uniform in [0, 1)^2) is a region of the camera image, so it needs the source's
image coordinates (MediaPipe's 0..1); on pixel-unit sources set ``augment.spatial_mask.p: 0``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from sltdata.config import FieldError, build, read_source, reported_as
from sltdata.errors import ConfigError
from sltdata.layouts import get_layout, mirror_indices, preset_indices, reference_indices

CENTERS = ("nose", "mean", "shoulders", "none")  # or "component:point", e.g. "face:17"
Scale = Literal["std", "shoulders", "none"]
DropFrames = Literal["none", "empty", "handless"]
Handedness = Literal["keep", "right", "left"]
SCALES = get_args(Scale)
DROP_FRAMES = get_args(DropFrames)
MOTIONS = ("velocity", "acceleration", "lag2")


Units = Literal["as-stored", "normalized"]
UNITS = get_args(Units)


@dataclass(frozen=True)
class NormalizeConfig:
    # "normalized": a pixel-space sequence (units: pixels, e.g. pose-format holistic) gets x / width and
    # y / height of its stored frame size first, so it lands in Kaggle's [0, 1] space; z is left alone
    # (pose-format keeps MediaPipe's z unscaled). "as-stored": coordinates as the store holds them.
    units: Units = "as-stored"
    center: str = "nose"  # sequence-level reference subtracted from every point (see CENTERS)
    scale: Scale = "std"  # divide by the std of all valid x/y around the centre, or shoulder width
    drop_z: bool = True  # keep x, y only
    # "right": a sequence whose left hand is detected in more frames than its right is mirrored (as
    # augment.flip mirrors), so every signer signs with the same hand; "left" the other way round.
    handedness: Handedness = "keep"


@dataclass(frozen=True)
class TemporalConfig:
    drop_frames: DropFrames = "empty"  # none | empty (no selected point detected) | handless (no hand detected)
    fill_gaps: int = 0  # interpolate a point's missing runs up to this many frames long (0 = off)
    resize: bool = False  # longer than max_length: resize linearly (True) or keep the first frames
    pad: bool = True  # pad to max_length (mask False on padding)


@dataclass(frozen=True)
class RescaleAugment:
    p: float = 0.8
    range: tuple[float, float] = (0.5, 1.5)  # length multiplier (speed x 1/r), linear interpolation


@dataclass(frozen=True)
class FlipAugment:
    p: float = 0.5  # x -> -x around the centre AND left/right points swapped (a true mirror)


@dataclass(frozen=True)
class AffineAugment:
    p: float = 0.75
    rotate: float = 30.0  # degrees, uniform in [-rotate, rotate]
    scale: tuple[float, float] = (0.8, 1.2)
    shear: float = 0.15  # x and y shear, each uniform in [-shear, shear]
    translate: float = 0.1  # normalized units, each axis uniform in [-translate, translate]


@dataclass(frozen=True)
class JitterAugment:
    p: float = 0.5
    sigma: float = 0.01  # per-frame x/y offset ~ N(0, sigma), normalized units


@dataclass(frozen=True)
class FrameMaskAugment:
    p: float = 0.25
    fraction: tuple[float, float] = (0.0, 0.1)  # each frame hidden with a probability drawn from this


@dataclass(frozen=True)
class CutoutAugment:
    p: float = 0.5
    length: tuple[float, float] = (0.2, 0.4)  # one contiguous block of this fraction of the frames hidden


@dataclass(frozen=True)
class SpatialMaskAugment:
    p: float = 0.5
    size: tuple[float, float] = (0.2, 0.4)  # side of the square, in the source's image coordinates (0..1)


@dataclass(frozen=True)
class CropAugment:
    p: float = 1.0  # longer than max_length (and not resized): a random window instead of the first frames


@dataclass(frozen=True)
class AugmentConfig:
    rescale: RescaleAugment = field(default_factory=RescaleAugment)
    flip: FlipAugment = field(default_factory=FlipAugment)
    affine: AffineAugment = field(default_factory=AffineAugment)
    jitter: JitterAugment = field(default_factory=JitterAugment)
    frame_mask: FrameMaskAugment = field(default_factory=FrameMaskAugment)
    cutout: CutoutAugment = field(default_factory=CutoutAugment)
    spatial_mask: SpatialMaskAugment = field(default_factory=SpatialMaskAugment)
    crop: CropAugment = field(default_factory=CropAugment)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name).p > 0 for f in fields(self))


def _points(component, value) -> str | list:
    if value in ("all", None):
        return "all"
    if isinstance(value, (list, tuple)):
        return list(value)
    raise FieldError(f"points.{component}", f"expected a list of point indices or names, or 'all', got {value!r}")


def no_augment() -> AugmentConfig:
    """Every augmentation off (``augment: false`` in a config)."""
    return AugmentConfig(*(type(getattr(AugmentConfig(), f.name))(p=0.0) for f in fields(AugmentConfig)))


@dataclass(frozen=True)
class TransformConfig:
    layout: str = "holistic-543"
    preset: str | None = "islr-1st"  # point-selection preset(s), joined with '+'
    points: dict[str, Any] | None = None  # custom selection {component: [index|name, ...] | "all"}, after preset
    max_length: int | None = 384
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    motion: tuple[str, ...] = ("velocity", "acceleration")
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def prepare(cls, data: dict) -> dict:
        """Shorthands: ``augment: false`` (all off), ``motion: velocity`` (one), ``points: {c: all}``."""
        if "augment" in data and data["augment"] in (False, None):
            data["augment"] = no_augment()
        if "motion" in data:
            motion = data["motion"]
            data["motion"] = [] if motion is None else [motion] if isinstance(motion, str) else motion
        points = data.get("points")
        if isinstance(points, dict):
            data["points"] = {str(k): _points(k, v) for k, v in points.items()}
        elif points is not None:
            raise FieldError("points", f"expected a mapping {{component: [points] or all}}, got {points!r}")
        return data

    def validate(self) -> None:
        _check(self)

    def to_dict(self) -> dict:
        """JSON-able; ``load_transform_config(cfg.to_dict()) == cfg``."""
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v
        return plain(dataclasses.asdict(self))


# --- loading -----------------------------------------------------------------------------------

ORIGIN = "transform config"  # how messages name a config given as a dict


def selection_indices(cfg: TransformConfig, layout=None) -> np.ndarray:
    """Global point indices the config selects, in feature order (preset first, then ``points``)."""
    with reported_as(ORIGIN):
        return _selection(cfg, layout)


def _selection(cfg: TransformConfig, layout=None) -> np.ndarray:
    layout = get_layout(layout or cfg.layout) if not hasattr(layout, "components") else layout
    parts = []
    if cfg.preset:
        try:
            parts.append(preset_indices(layout, cfg.preset))
        except ConfigError as e:
            raise FieldError("preset", str(e)) from None
    for component, points in (cfg.points or {}).items():
        try:
            parts.append(layout.indices(component, None if points == "all" else list(points)))
        except ConfigError as e:
            raise FieldError(f"points.{component}", str(e)) from None
    if not parts:
        raise FieldError("preset", "no points selected (set a preset or points)")
    idx = np.concatenate(parts)
    _, first = np.unique(idx, return_index=True)
    return idx[np.sort(first)]


def validate(cfg: TransformConfig, layout=None) -> TransformConfig:
    """Check everything that depends on values (ranges, names, the layout); return cfg or raise."""
    with reported_as(ORIGIN):
        _check(cfg, layout)
    return cfg


def _check(cfg: TransformConfig, layout=None) -> None:
    """The value rules, raising FieldError (the loader names the origin: a file, or a run config section)."""
    try:
        layout = get_layout(layout or cfg.layout) if not hasattr(layout, "components") else layout
    except ConfigError as e:
        raise FieldError("layout", str(e)) from None
    sel = _selection(cfg, layout)
    if cfg.max_length is not None and cfg.max_length < 1:
        raise FieldError("max_length", f"must be at least 1 or null, got {cfg.max_length}")
    n = cfg.normalize
    if n.center not in CENTERS:
        try:
            reference_indices(layout, n.center)
        except ConfigError as e:
            raise FieldError("normalize.center", f"{e} (or one of {', '.join(CENTERS)})") from None
    elif n.center in ("nose", "shoulders"):
        try:
            reference_indices(layout, n.center)
        except ConfigError as e:
            raise FieldError("normalize.center", str(e)) from None
    if n.scale == "shoulders":
        try:
            reference_indices(layout, "shoulders")
        except ConfigError as e:
            raise FieldError("normalize.scale", str(e)) from None
    t = cfg.temporal
    if t.drop_frames == "handless" and not layout.hand_indices().size:
        raise FieldError("temporal.drop_frames", f"layout {layout.name} has no hand components")
    if t.fill_gaps < 0:
        raise FieldError("temporal.fill_gaps", f"must be >= 0, got {t.fill_gaps}")
    for m in cfg.motion:
        if m not in MOTIONS:
            raise FieldError("motion", f"unknown motion feature {m!r} (known: {', '.join(MOTIONS)})")
    if len(set(cfg.motion)) != len(cfg.motion):
        raise FieldError("motion", f"a feature is named twice in {list(cfg.motion)}")
    a = cfg.augment
    for f in fields(a):
        p = getattr(a, f.name).p
        if not 0.0 <= p <= 1.0:
            raise FieldError(f"augment.{f.name}.p", f"{p} is not a probability in [0, 1]")
    for key, (lo, hi) in (("rescale.range", a.rescale.range), ("affine.scale", a.affine.scale),
                          ("frame_mask.fraction", a.frame_mask.fraction), ("cutout.length", a.cutout.length),
                          ("spatial_mask.size", a.spatial_mask.size)):
        if lo > hi:
            raise FieldError(f"augment.{key}", f"range [{lo}, {hi}] has low > high")
    if a.rescale.range[0] <= 0:
        raise FieldError("augment.rescale.range", f"must be > 0, got {list(a.rescale.range)}")
    if a.affine.scale[0] <= 0:
        raise FieldError("augment.affine.scale", f"must be > 0, got {list(a.affine.scale)}")
    for name in ("rotate", "shear", "translate"):
        if getattr(a.affine, name) < 0:
            raise FieldError(f"augment.affine.{name}", f"must be >= 0, got {getattr(a.affine, name)}")
    if a.jitter.sigma < 0:
        raise FieldError("augment.jitter.sigma", f"must be >= 0, got {a.jitter.sigma}")
    for key, (lo, hi) in (("frame_mask.fraction", a.frame_mask.fraction), ("cutout.length", a.cutout.length),
                          ("spatial_mask.size", a.spatial_mask.size)):
        if lo < 0 or hi > 1:
            raise FieldError(f"augment.{key}", f"fractions must lie in [0, 1], got {[lo, hi]}")
    if n.handedness != "keep":
        names = {c.name for c in layout.components}
        if not {"left_hand", "right_hand"} <= names:
            raise FieldError("normalize.handedness", f"layout {layout.name} has no left_hand and right_hand "
                             "components to compare (set normalize.handedness: keep)")
    for key, on, off in (("augment.flip", a.flip.p > 0, "set augment.flip.p: 0"),
                         ("normalize.handedness", n.handedness != "keep", "set normalize.handedness: keep")):
        if not on:
            continue
        mirror = mirror_indices(layout)[sel]
        missing = np.setdiff1d(mirror, sel)
        if missing.size:
            raise FieldError(key, f"the selection is not mirror-symmetric: {_point_name(layout, int(missing[0]))}, "
                             f"the mirror of a selected point, is not selected (select it, or {off})")


def _point_name(layout, index: int) -> str:
    for c in layout.components:
        start = layout.offsets[c.name]
        if start <= index < start + len(c.points):
            return f"{c.name} point {c.points[index - start]}"
    return f"point {index}"


def load_transform_config(source: str | Path | dict | TransformConfig | None = None) -> TransformConfig:
    """A validated TransformConfig from a YAML path, a dict, a TransformConfig, or None (defaults).

    A YAML file may hold the config itself or, alone under a ``transform:`` key, wrapped in it.
    """
    if isinstance(source, TransformConfig):
        return validate(source)
    data, origin = read_source(source, ORIGIN)
    if isinstance(source, (str, Path)) and set(data) == {"transform"} and isinstance(data["transform"], dict):
        data = data["transform"]
    return build(TransformConfig, data, origin)
