"""Figures of a dataset's statistics (the dict ``sltdata.stats.compute_stats`` returns), as PNGs.

Every figure is drawn from that dict alone, so plotting never re-reads the data. matplotlib runs on
the Agg backend (no display needed). Tick labels are limited and rotated so they never overlap:
datasets have hundreds of classes and participants, and a bar per name is only labelled when few.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

MAX_TICK_LABELS = 40  # name every bar only up to this many bars


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _name_ticks(ax, names: list[str]) -> None:
    """Label bars by name when few, else by position with at most ~20 ticks."""
    from matplotlib.ticker import MaxNLocator

    if len(names) <= MAX_TICK_LABELS:
        ax.set_xticks(range(len(names)))
        crowded = len(names) > 8 or max(map(len, names), default=0) > 8
        ax.set_xticklabels(names, rotation=60 if crowded else 0, ha="right" if crowded else "center",
                           fontsize=8 if len(names) > 15 else 9)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=20, integer=True))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_lengths(stats: dict, path: Path) -> Path | None:
    length = stats.get("length")
    if not length:
        return None
    plt = _pyplot()
    edges, counts = length["histogram"]["edges"], length["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
           color="tab:blue", edgecolor="white")
    for m, over in length["over"].items():
        if int(m) <= edges[-1]:
            ax.axvline(int(m), color="tab:red", linestyle="--", linewidth=1)
            ax.text(int(m), ax.get_ylim()[1] * 0.95, f" {m}: {over} longer", color="tab:red", fontsize=8, va="top")
    p = length["percentiles"]
    ax.set_title(f"Sequence length ({stats['sequences']} sequences; median {p['p50']:g}, p95 {p['p95']:g} frames)")
    ax.set_xlabel("frames per sequence")
    ax.set_ylabel("sequences")
    return _save(fig, path)


def plot_class_counts(stats: dict, path: Path) -> Path | None:
    per_class = stats.get("per_class")
    if not per_class:
        return None
    plt = _pyplot()
    items = sorted(per_class["counts"].items(), key=lambda kv: (-kv[1], kv[0]))
    names, counts = [k for k, _ in items], [v for _, v in items]
    fig, ax = plt.subplots(figsize=(max(8, min(16, len(names) * 0.3)), 4.5))
    ax.bar(range(len(names)), counts, color="tab:green", width=0.9 if len(names) <= 200 else 1.0)
    _name_ticks(ax, names)
    ax.set_title(f"Sequences per class, sorted ({len(names)} classes; min {per_class['min']}, "
                 f"median {per_class['median']:g}, max {per_class['max']})")
    ax.set_xlabel("class" if len(names) <= MAX_TICK_LABELS else "class rank (most to fewest sequences)")
    ax.set_ylabel("sequences")
    return _save(fig, path)


def plot_hand_detection(stats: dict, path: Path) -> Path | None:
    det = stats.get("detection")
    if not det or not det["per_participant"]:
        return None
    plt = _pyplot()
    import numpy as np

    names = list(det["per_participant"])
    series = [c for c in ("left_hand", "right_hand", "no_hand") if c in det["rates"]]
    series += [c for c in det["rates"] if "hand" in c and c not in series]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(max(8, min(16, len(names) * 0.5)), 4.5))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    for i, c in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, [det["per_participant"][p].get(c, 0.0) for p in names],
               width=width, label=c.replace("_", " "))
    _name_ticks(ax, names)
    ax.set_ylim(0, 1.2)  # headroom for the legend above the bars
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_title(f"Hand detection per participant (share of frames; {len(names)} participants)")
    ax.set_xlabel("participant")
    ax.set_ylabel("share of frames")
    ax.legend(loc="upper center", ncol=len(series), fontsize=8, frameon=False)
    return _save(fig, path)


def plot_folds(stats: dict, path: Path) -> Path | None:
    folds = stats.get("folds")
    if not folds or not folds["splits"]:
        return None
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    names = list(folds["splits"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    for ax, what, color in zip(axes, ("sequences", "participants", "classes"), ("tab:blue", "tab:orange", "tab:green")):
        ax.bar(range(len(names)), [folds["splits"][n][what] for n in names], color=color)
        _name_ticks(ax, names)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(what)
        ax.set_xlabel("fold / split")
        ax.set_ylabel(what)
    ok = "no participant in two splits" if folds["participant_disjoint"] else \
        f"{len(folds['participants_in_several'])} participant(s) in several splits!"
    fig.suptitle(f"Fold balance ({ok})")
    return _save(fig, path)


def plot_quality(stats: dict, path: Path) -> Path | None:
    """One histogram per quality score (the ``quality`` section of the stats), in a grid."""
    q = stats.get("quality")
    scores = {k: v for k, v in (q or {}).get("scores", {}).items() if v.get("sequences")}
    if not scores:
        return None
    plt = _pyplot()
    cols = 3
    rows = -(-len(scores) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.2 * rows), squeeze=False)
    for ax, (name, d) in zip(axes.flat, scores.items()):
        edges, counts = d["histogram"]["edges"], d["histogram"]["counts"]
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges[:-1], edges[1:])], align="edge",
               color="tab:purple", edgecolor="white")
        ax.set_title(f"{name.removeprefix('quality_').replace('_', ' ')} (median {d['percentiles']['p50']:.3g})",
                     fontsize=10)
        ax.set_ylabel("sequences")
    for ax in list(axes.flat)[len(scores):]:
        ax.axis("off")
    fig.suptitle(f"Quality scores ({stats['sequences']} sequences)")
    return _save(fig, path)


PLOTS = {"lengths.png": plot_lengths, "class_counts.png": plot_class_counts,
         "hand_detection.png": plot_hand_detection, "folds.png": plot_folds,
         "quality.png": plot_quality}


def write_plots(stats: dict, out_dir: str | Path) -> list[Path]:
    """Write every figure the statistics allow into ``out_dir``; returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in PLOTS.items():
        p = plot(stats, out_dir / name)
        if p is None:
            log.info("no data for %s; skipped", name)
        else:
            written.append(p)
    return written
