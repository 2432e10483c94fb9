"""Draw one sequence as an animation (GIF, or MP4 when ffmpeg is installed) with matplotlib.

One animation frame per sequence frame: the skeleton edges of the layout (MediaPipe hand and pose
connections) plus the face contour, both from ``sltdata.layouts``, undetected (NaN) points and any
edge touching one left out. The title holds the label or phrase and a frame counter; the counter also
keeps consecutive frames distinct, which matters because Pillow merges identical GIF frames.

With a transform config the sequence is drawn twice, side by side: raw, and after the transform
pipeline (``sltdata.transforms``), so a user can see what normalization or an augmentation does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sltdata.errors import ConfigError
from sltdata.layouts import Layout, face_contour_edges, get_layout
from sltdata.sequence import Sequence

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # the Kaggle ISLR / fingerspelling recordings are ~30 fps and carry no fps field

COMPONENT_COLORS = {"face": "0.55", "left_hand": "tab:red", "right_hand": "tab:blue", "pose": "tab:green"}


@dataclass(frozen=True)
class Panel:
    """One side of the animation: x/y per frame and the edges between its points."""

    name: str
    xy: np.ndarray  # float32 (frames, points, 2); NaN = not drawn
    edges: np.ndarray  # int (E, 2), indices into the points axis
    colors: np.ndarray  # (points,) matplotlib colour strings


def layout_edges(layout: Layout) -> np.ndarray:
    """Skeleton edges of a layout plus the MediaPipe face contour when it has a 468-point face."""
    return np.concatenate([layout.edges(), face_contour_edges(layout)]).reshape(-1, 2)


def layout_colors(layout: Layout) -> np.ndarray:
    return np.concatenate([np.full(len(c.points), COMPONENT_COLORS.get(c.name, "k"), dtype=object)
                           for c in layout.components])


def raw_panel(seq: Sequence, layout: Layout | None = None) -> Panel:
    """``layout``: the sequence's layout as its store defines it (default: the built-in of that name)."""
    layout = layout or get_layout(seq.layout)
    return Panel("raw", seq.landmarks[:, :, :2], layout_edges(layout), layout_colors(layout))


def subset_panel(name: str, xy: np.ndarray, points: np.ndarray, layout: Layout) -> Panel:
    """A panel of a subset of a layout's points (``points`` = their global indices, in order)."""
    points = np.asarray(points, dtype=np.int64)
    pos = np.full(layout.num_points, -1, dtype=np.int64)
    pos[points] = np.arange(len(points))
    edges = layout_edges(layout)
    edges = pos[edges]
    edges = edges[(edges >= 0).all(axis=1)]
    return Panel(name, xy, edges, layout_colors(layout)[points])


def _limits(xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    finite = xy[np.isfinite(xy).all(axis=-1)]
    if finite.size == 0:
        return (0.0, 1.0), (0.0, 1.0)
    lo, hi = finite.min(axis=0), finite.max(axis=0)
    pad = np.maximum((hi - lo) * 0.05, 1e-3)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0])), (float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _frame_artists(panel: Panel, i: int) -> tuple[np.ndarray, list, np.ndarray]:
    """Points, edge segments and colours of frame i (the last frame held when a panel is shorter)."""
    xy = panel.xy[min(i, len(panel.xy) - 1)] if len(panel.xy) else np.zeros((0, 2), np.float32)
    ok = np.isfinite(xy).all(axis=1)
    e = panel.edges[ok[panel.edges].all(axis=1)] if len(panel.edges) else panel.edges
    segments = np.stack([xy[e[:, 0]], xy[e[:, 1]]], axis=1) if len(e) else np.zeros((0, 2, 2))
    return xy[ok], list(segments), panel.colors[ok]


def animate(panels: list[Panel], out: str | Path, title: str, fps: float = DEFAULT_FPS) -> Path:
    """Write panels side by side as an animation with max(frames) animation frames."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib import animation
    from matplotlib.collections import LineCollection

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".gif":
        writer = animation.PillowWriter(fps=fps)
    elif suffix == ".mp4":
        if not animation.FFMpegWriter.isAvailable():
            raise ConfigError(f"{out}: writing .mp4 needs ffmpeg on PATH (not found); write a .gif instead")
        writer = animation.FFMpegWriter(fps=fps)
    else:
        raise ConfigError(f"{out}: unknown animation format {out.suffix!r} (use .gif or .mp4)")
    n = max(len(p.xy) for p in panels)
    if n == 0:
        raise ConfigError(f"{title}: the sequence has no frames to draw")

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.8), squeeze=False)
    artists = []
    for ax, panel in zip(axes[0], panels):
        (x0, x1), (y0, y1) = _limits(panel.xy)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)  # image coordinates: y grows downwards
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(panel.name, fontsize=10)
        lines = LineCollection([], linewidths=1.0, colors="0.3")
        ax.add_collection(lines)
        dots = ax.scatter([], [], s=4)
        artists.append((lines, dots))
    suptitle = fig.suptitle("", fontsize=9)

    def draw(i: int):
        for panel, (lines, dots) in zip(panels, artists):
            pts, segs, colors = _frame_artists(panel, i)
            lines.set_segments(segs)
            dots.set_offsets(pts if len(pts) else np.zeros((0, 2)))
            dots.set_color(list(colors) if len(colors) else "k")
        suptitle.set_text(f"{title}  —  frame {i + 1}/{n}")
        return [a for pair in artists for a in pair] + [suptitle]

    anim = animation.FuncAnimation(fig, draw, frames=n, blit=False, repeat=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        anim.save(tmp, writer=writer, dpi=80)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out


def sequence_title(seq: Sequence) -> str:
    what = seq.label if seq.label is not None else (repr(seq.text) if seq.text is not None else "")
    who = f"participant {seq.participant}" if seq.participant else ""
    return "  ".join(s for s in (seq.key, what, who) if s)


def transformed_panel(seq: Sequence, config, seed: int = 0, layout: Layout | None = None) -> Panel:
    """The sequence after a transform pipeline, drawn as points of the layout again.

    The positions are read back through ``Pipeline.feature_layout`` (the transforms package owns the
    column order); only real frames (mask) are drawn. When the config has an ``augment`` section the
    pipeline runs in training mode with ``sample_rng(seed, key)``, so the picture shows one draw of
    the augmentation, the same one a loader with that seed would make. The pipeline writes
    undetected points as 0, so a point at exactly (0, 0[, 0]) is left out.
    """
    from sltdata.transforms import build_pipeline, load_transform_config, sample_rng
    from sltdata.transforms.pipeline import frame_size

    cfg = load_transform_config(config)
    layout = layout or get_layout(seq.layout)
    pipe = build_pipeline(cfg, layout=layout)
    augmented = bool(getattr(getattr(cfg, "augment", None), "any", False))
    rng = sample_rng(seed, seq.key) if augmented else None
    size = frame_size({"units": seq.units, "width": seq.width, "height": seq.height})
    features, mask = pipe(seq.landmarks, rng=rng, train=augmented, **size)
    layout = pipe.feature_layout
    pos = layout.split(np.asarray(features, dtype=np.float32)[np.asarray(mask, dtype=bool)])["position"]
    xy = pos[:, :, :2].copy()
    xy[(pos == 0).all(axis=-1)] = np.nan
    name = f"transformed (augmented, seed {seed})" if augmented else "transformed"
    return subset_panel(name, xy, layout.points, pipe.layout)


def view_sequence(store: str | Path, key: str, out: str | Path, transform=None, fps: float | None = None,
                  seed: int = 0) -> Path:
    """Draw the sequence ``key`` of a store into ``out`` (.gif / .mp4); raw, or raw beside transformed.

    ``transform``: a transform config (YAML path, dict or TransformConfig); ``seed`` picks the
    augmentation draw when that config augments.
    """
    from sltdata.store import Store

    store = Store(store)
    seq = store.get(key)
    layout = store.layout(seq.layout)
    panels = [raw_panel(seq, layout)]
    if transform is not None:
        panels.append(transformed_panel(seq, transform, seed=seed, layout=layout))
    return animate(panels, out, sequence_title(seq), fps=fps or seq.fps or DEFAULT_FPS)
