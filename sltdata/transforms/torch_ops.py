"""The transform pipeline on a whole padded batch in torch (GPU or CPU), same semantics as NumPy.

``BatchAugment(cfg, layout, device)(landmarks (B, T, P, 3), mask (B, T), generator, train)`` returns
``features (B, T', D) float32, mask (B, T') bool``, equal to running ``build_pipeline(cfg)`` on each
sample (tests check 1e-5). Every step of ``pipeline.Pipeline.run`` has its batched twin here, in the
same order and with the same arithmetic (float64 statistics, float32 point arithmetic), so the two
paths agree to rounding. Variable lengths (frame dropping, temporal rescale) are handled with
per-sample lengths and gathers, never a Python loop over samples.

Random numbers: with ``params=None`` the batch draws its own from ``generator`` (torch), in the same
distribution as the NumPy path. To reproduce NumPy results exactly, run the NumPy pipeline with
``Pipeline.run`` (which returns its ``AugmentDraw``), and pass ``stack_draws(draws)`` as ``params``.

Input: raw landmarks padded along T, NaN where a point was not detected. The loader's raw batches
fill NaN with 0; with ``zeros_are_missing=True`` (default) a point whose three coordinates are exactly
0 is taken as undetected, which MediaPipe never outputs for a real detection.
"""

from __future__ import annotations


import numpy as np
import torch

from sltdata.layouts import Layout
from sltdata.transforms.config import TransformConfig
from sltdata.transforms.numpy_ops import AugmentDraw
from sltdata.transforms.pipeline import build_pipeline

NAN = float("nan")


def stack_draws(draws: list[AugmentDraw | None], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Per-sample NumPy draws as the batch parameter tensors ``BatchAugment`` takes as ``params``."""
    b = len(draws)
    frames = max([0] + [len(a) for d in draws if d is not None for a in (d.jitter, d.hidden) if a is not None])
    out = {"rescale": torch.ones(b, dtype=torch.float64), "flip": torch.zeros(b, dtype=torch.bool),
           "affine": torch.zeros(b, 2, 3, dtype=torch.float64), "affine_on": torch.zeros(b, dtype=torch.bool),
           "jitter": torch.zeros(b, frames, 2), "hidden": torch.zeros(b, frames, dtype=torch.bool),
           "spatial": torch.zeros(b, 3, dtype=torch.float64), "spatial_on": torch.zeros(b, dtype=torch.bool),
           "crop": torch.zeros(b, dtype=torch.float64), "crop_on": torch.zeros(b, dtype=torch.bool)}
    out["affine"][:, 0, 0] = out["affine"][:, 1, 1] = 1.0
    for i, d in enumerate(draws):
        if d is None:
            continue
        if d.rescale is not None:
            out["rescale"][i] = d.rescale
        out["flip"][i] = d.flip
        if d.affine is not None:
            out["affine"][i] = torch.from_numpy(d.affine)
            out["affine_on"][i] = True
        if d.jitter is not None:
            out["jitter"][i, :len(d.jitter)] = torch.from_numpy(d.jitter)
        if d.hidden is not None:
            out["hidden"][i, :len(d.hidden)] = torch.from_numpy(d.hidden)
        if d.spatial_mask is not None:
            out["spatial"][i] = torch.from_numpy(d.spatial_mask)
            out["spatial_on"][i] = True
        if d.crop is not None:
            out["crop"][i] = d.crop
            out["crop_on"][i] = True
    return {k: v.to(device) for k, v in out.items()}


def _fit_frames(t: torch.Tensor, frames: int, fill=0) -> torch.Tensor:
    """Crop or pad a (B, T, ...) per-frame tensor along T to ``frames``."""
    if t.shape[1] >= frames:
        return t[:, :frames]
    pad = torch.full((t.shape[0], frames - t.shape[1], *t.shape[2:]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], 1)


def _gather_frames(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, C, T, K) gathered along T by idx (B, T')."""
    b, c, _, k = x.shape
    return x.gather(2, idx[:, None, :, None].expand(b, c, idx.shape[1], k))


def _masked_mean(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 mean per sample and coordinate of the valid points of v (B, C, T, k), and the counts."""
    valid = ~torch.isnan(v[:, 0])
    count = valid.sum((1, 2))
    sums = torch.where(valid[:, None], v, 0).double().sum((2, 3))
    return sums / count.clamp(min=1)[:, None], count


def _interpolate(x: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor,
                 out_t: int | None = None) -> torch.Tensor:
    """Per-sample linear resampling along T from ``lengths`` to ``targets`` frames (align corners);
    frames past a sample's target are NaN. Mirrors numpy_ops.interpolate_frames. ``out_t`` fixes the
    output width (an exported graph cannot read it from the data); frames from a target on are NaN."""
    if out_t is None:
        out_t = int(targets.max()) if targets.numel() else 0
    j = torch.arange(out_t, device=x.device, dtype=torch.float64)[None, :]
    n = lengths.to(torch.float64)[:, None]
    pos = j * (n - 1) / (targets.to(torch.float64)[:, None] - 1).clamp(min=1)
    last = (lengths - 1).clamp(min=0)[:, None]
    i0 = torch.minimum(pos.floor().long(), last).clamp(min=0)
    i1 = torch.minimum(i0 + 1, last)
    w = (pos - i0).float()[:, None, :, None]
    a, b = _gather_frames(x, i0), _gather_frames(x, i1)
    out = torch.where(w > 0, a + w * (b - a), a)
    beyond = j >= targets[:, None]
    return out.masked_fill(beyond[:, None, :, None], NAN)


def _spatial_mask(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mirrors numpy_ops.spatial_mask: bounds summed in float64, rounded once to float32."""
    on = params.get("spatial_on")
    if on is None or not bool(on.any()):
        return x
    sq = params["spatial"].to(x.device)
    x0, y0 = sq[:, 0], sq[:, 1]
    x1, y1 = x0 + sq[:, 2], y0 + sq[:, 2]
    b = [v.float()[:, None, None] for v in (x0, x1, y0, y1)]
    inside = (b[0] < x[:, 0]) & (x[:, 0] < b[1]) & (b[2] < x[:, 1]) & (x[:, 1] < b[3])
    return x.masked_fill((inside & on.to(x.device)[:, None, None])[:, None], NAN)


def _crop(x: torch.Tensor, lengths: torch.Tensor, m: int, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mirrors numpy_ops.crop: each too-long sample's window of m frames starts at
    floor(position x (length - m + 1)); the others keep their first m frames."""
    on = params.get("crop_on")
    if on is None or not bool(on.any()):
        return x[:, :, :m]
    n = lengths.to(torch.float64)
    start = (params["crop"].to(x.device) * (n - m + 1)).floor().long()
    start = torch.where(on.to(x.device) & (lengths > m), start, 0)
    idx = start[:, None] + torch.arange(m, device=x.device)[None, :]
    return _gather_frames(x, idx)


def _kept_first(keep: torch.Tensor) -> torch.Tensor:
    """Frame order (B, T, ...) putting the kept frames first, in their order, along dim 1: a stable
    argsort of ``~keep``, written as a sort of distinct keys so that any sort (ONNX TopK) gives the same."""
    t = keep.shape[1]
    frame = torch.arange(t, device=keep.device).reshape(1, t, *([1] * (keep.dim() - 2)))
    key = (~keep).long() * t + frame
    return torch.argsort(key, dim=1)


class BatchAugment:
    """Normalization, temporal steps, augmentations and features of a TransformConfig, batched."""

    def __init__(self, cfg: TransformConfig | dict | str | None = None, layout: str | Layout | None = None,
                 device: str | torch.device = "cpu", zeros_are_missing: bool = True, cpu_chunk: int = 8,
                 preselected: bool = False):
        """``preselected``: batches hold only ``self.pipe.input_points`` of the layout, in that order
        (as ``sltdata.loader.loader(points=...)`` sends them), not every point."""
        self.pipe = build_pipeline(cfg, layout)
        self.cfg = self.pipe.cfg
        self.device = torch.device(device)
        self.zeros_are_missing = zeros_are_missing
        self.cpu_chunk = cpu_chunk
        p = self.pipe
        as_t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)  # noqa: E731
        work, hands = p.work, p.hands
        sides = [] if p._left_columns is None else [p._left_columns // 3, p._right_columns // 3]
        if preselected:
            work, hands = np.searchsorted(p.input_points, work), np.searchsorted(p.input_points, hands)
            sides = [np.searchsorted(p.input_points, s) for s in sides]
        self._work = as_t(work)
        self._hands = as_t(hands)
        self._sides = [as_t(s) for s in sides]  # left hand, right hand: the handedness rule's inputs
        self._candidates = [as_t(c) for c in p.center_candidates]
        self._shoulders = None if p.shoulders is None else as_t(p.shoulders)
        self._flip = None if p.flip_perm is None else as_t(p.flip_perm)

    @property
    def feature_dim(self) -> int:
        return self.pipe.feature_dim

    @property
    def max_length(self) -> int | None:
        return self.cfg.max_length

    # --- random draws (torch generator), same distributions as numpy_ops.draw_* ----------------

    def draw_scalars(self, batch: int, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        aug = self.cfg.augment
        g, dev = generator, generator.device
        u = torch.rand(batch, 6, generator=g, device=dev, dtype=torch.float64)
        lo, hi = aug.rescale.range
        rescale = lo + torch.rand(batch, generator=g, device=dev, dtype=torch.float64) * (hi - lo)
        r = torch.rand(batch, 6, generator=g, device=dev, dtype=torch.float64)
        a = aug.affine
        rot = torch.deg2rad((2 * r[:, 0] - 1) * a.rotate)
        scale = a.scale[0] + r[:, 1] * (a.scale[1] - a.scale[0])
        shx, shy = (2 * r[:, 2] - 1) * a.shear, (2 * r[:, 3] - 1) * a.shear
        cos, sin = torch.cos(rot), torch.sin(rot)
        matrix = torch.stack([torch.stack([(cos - sin * shy) * scale, (cos * shx - sin) * scale,
                                           (2 * r[:, 4] - 1) * a.translate], -1),
                              torch.stack([(sin + cos * shy) * scale, (sin * shx + cos) * scale,
                                           (2 * r[:, 5] - 1) * a.translate], -1)], 1)
        v = torch.rand(batch, 2, generator=g, device=dev, dtype=torch.float64)
        sq = torch.rand(batch, 3, generator=g, device=dev, dtype=torch.float64)
        lo, hi = aug.spatial_mask.size
        spatial = torch.stack([sq[:, 0], sq[:, 1], lo + sq[:, 2] * (hi - lo)], -1)
        crop = torch.rand(batch, generator=g, device=dev, dtype=torch.float64)
        params = {"rescale": torch.where(u[:, 0] < aug.rescale.p, rescale, 1.0),
                  "flip": u[:, 1] < aug.flip.p, "affine": matrix, "affine_on": u[:, 2] < aug.affine.p,
                  "spatial": spatial, "spatial_on": v[:, 0] < aug.spatial_mask.p,
                  "crop": crop, "crop_on": v[:, 1] < aug.crop.p}
        return {k: v.to(self.device) for k, v in params.items()}, u[:, 3:]

    def draw_frames(self, lengths: torch.Tensor, frames: int, fire: torch.Tensor,
                    generator: torch.Generator) -> dict[str, torch.Tensor]:
        aug = self.cfg.augment
        g, dev = generator, generator.device
        b = lengths.shape[0]
        n = lengths.to(dev)
        jitter = torch.randn(b, frames, 2, generator=g, device=dev) * aug.jitter.sigma
        jitter = jitter * (fire[:, 0] < aug.jitter.p)[:, None, None]
        lo, hi = aug.frame_mask.fraction
        frac = lo + torch.rand(b, generator=g, device=dev, dtype=torch.float64) * (hi - lo)
        hidden = (torch.rand(b, frames, generator=g, device=dev, dtype=torch.float64) < frac[:, None])
        hidden &= (fire[:, 1] < aug.frame_mask.p)[:, None]
        lo, hi = aug.cutout.length
        size = ((lo + torch.rand(b, generator=g, device=dev, dtype=torch.float64) * (hi - lo)) * n).floor()
        start = (torch.rand(b, generator=g, device=dev, dtype=torch.float64) * (n - size + 1)).floor()
        t = torch.arange(frames, device=dev)[None, :]
        block = (t >= start[:, None]) & (t < (start + size)[:, None]) & (fire[:, 2] < aug.cutout.p)[:, None]
        return {"jitter": jitter.to(self.device), "hidden": (hidden | block).to(self.device)}

    # --- the pipeline ------------------------------------------------------------------------

    def __call__(self, landmarks: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                 train: bool = True, params: dict[str, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        lm = torch.as_tensor(landmarks, device=self.device)
        mask = torch.as_tensor(mask, device=self.device, dtype=torch.bool)
        b = lm.shape[0]
        chunk = self.cpu_chunk if self.device.type == "cpu" else b
        if b <= chunk:
            return self._run(lm, mask, generator, train, params)
        # On the CPU, chunks of samples keep every intermediate tensor small enough for malloc to
        # reuse memory; whole-batch intermediates of hundreds of MB are page-faulted afresh by each
        # operation and run several times slower. Draws come from the generator chunk after chunk.
        m = self.cfg.max_length
        if m is not None and self.cfg.temporal.pad:  # known width: chunks write straight into the output
            parts = 1 + len(self.cfg.motion)
            out = torch.zeros(b, m, parts, self.pipe.coords, self.pipe.n_selected, device=self.device)
            out_mask = torch.zeros(b, m, dtype=torch.bool, device=self.device)
            for i in range(0, b, chunk):
                sub = None if params is None else {k: v[i:i + chunk] for k, v in params.items()}
                _, out_mask[i:i + chunk] = self._run(lm[i:i + chunk], mask[i:i + chunk], generator, train, sub,
                                                     out=out[i:i + chunk])
            return out.reshape(b, m, -1), out_mask
        outs = []
        for i in range(0, b, chunk):
            sub = None if params is None else {k: v[i:i + chunk] for k, v in params.items()}
            outs.append(self._run(lm[i:i + chunk], mask[i:i + chunk], generator, train, sub))
        width = max(f.shape[1] for f, _ in outs)
        feats = outs[0][0].new_zeros(b, width, self.feature_dim)
        out_mask = torch.zeros(b, width, dtype=torch.bool, device=self.device)
        for i, (f, mk) in zip(range(0, b, chunk), outs):
            feats[i:i + len(f), :f.shape[1]] = f
            out_mask[i:i + len(f), :f.shape[1]] = mk
        return feats, out_mask

    def _run(self, lm: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None, train: bool,
             params: dict[str, torch.Tensor] | None, out: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, p = self.cfg, self.pipe
        dev = self.device
        if params is not None:
            params = {k: v.to(dev) for k, v in params.items()}
        real = mask.any(0).nonzero()
        t = int(real.max()) + 1 if real.numel() else 0
        lm, mask = lm[:, :t], mask[:, :t]  # no work on padding every sample has
        b = lm.shape[0]
        invalid = ~mask[:, :, None]

        def points(idx: torch.Tensor, coords: int) -> torch.Tensor:
            """Only the needed points are copied: the raw batch is 4x bigger than the selection."""
            v = lm.index_select(2, idx)
            if self.zeros_are_missing:
                v = v.masked_fill((v == 0).all(-1, keepdim=True), NAN)
            return v[..., :coords].float().masked_fill(invalid[..., None], NAN)

        # 1. select the working points, coordinate-major (B, C, T, K)
        x = points(self._work, p.coords).permute(0, 3, 1, 2).contiguous()
        n_sel = p.n_selected
        # 2. drop frames: stable compaction of the kept frames to the front
        mode = cfg.temporal.drop_frames
        if mode == "empty":
            ok = ~torch.isnan(x[:, 0, :, :n_sel]).all(-1)
        elif mode == "handless":
            ok = ~torch.isnan(points(self._hands, 1)[..., 0]).all(-1)
        else:
            ok = torch.ones_like(mask)
        keep = mask & ok
        keep = torch.where(keep.any(1, keepdim=True), keep, mask)
        lengths = keep.sum(1)
        order = _kept_first(keep)
        x = _gather_frames(x, order)
        x = x.masked_fill((torch.arange(t, device=dev)[None, :] >= lengths[:, None])[:, None, :, None], NAN)
        # 3. fill short gaps
        if cfg.temporal.fill_gaps > 0 and t >= 3:
            x = self._fill_gaps(x, cfg.temporal.fill_gaps)
        augment = params is not None or (train and generator is not None and cfg.augment.any)
        fire = None
        if augment and params is None:
            params, fire = self.draw_scalars(b, generator)
        # 4. temporal rescale
        if augment:
            n = lengths.to(torch.float64)
            targets = torch.where(lengths > 0, torch.round(n * params["rescale"]).long().clamp(min=1), 0)
            x = _interpolate(x, lengths, targets)
            lengths = targets
            x = _spatial_mask(x, params)
        # 5. normalize, then mirror the samples whose other hand dominates
        x = self._normalize(x)[..., :n_sel]
        if self._sides:
            seen = [(~torch.isnan(points(idx, 1)[..., 0])).any(-1).sum(1) for idx in self._sides]
            hand = cfg.normalize.handedness
            x = self._mirror(x, seen[0] > seen[1] if hand == "right" else seen[1] > seen[0])
        # 6. fit the length
        m = cfg.max_length
        if m is not None and x.shape[2] > m:
            if cfg.temporal.resize:
                targets = lengths.clamp(max=m)
                x = _interpolate(x, lengths, targets)[:, :, :m]
                lengths = targets
            else:
                x = _crop(x, lengths, m, params) if augment else x[:, :, :m]
                lengths = lengths.clamp(max=m)
        frames = x.shape[2]
        if augment:
            if fire is not None:
                params.update(self.draw_frames(lengths, frames, fire, generator))
            x = self._augment(x, params, frames)
        return self._features(x, lengths, out)

    def _fill_gaps(self, x: torch.Tensor, max_gap: int) -> torch.Tensor:
        b, c, t, k = x.shape
        valid = ~torch.isnan(x[:, 0])  # (B, T, K)
        idx = torch.arange(t, device=x.device)[None, :, None].expand(b, t, k)
        # The nearest valid frame at or before / at or after each frame, for every point: the valid
        # frames in order (a sort, not cummax, which ONNX lacks), indexed by running counts.
        ordered = _kept_first(valid)                  # per point: its valid frames first, in order
        seen = valid.long().cumsum(1)                 # valid frames up to and including t
        total = seen[:, -1:]
        prev = torch.where(seen > 0, ordered.gather(1, (seen - 1).clamp(min=0)), -1)
        before = seen - valid.long()                  # valid frames strictly before t
        nxt = torch.where(before < total, ordered.gather(1, before.clamp(max=t - 1)), t)
        fill = ~valid & (prev >= 0) & (nxt < t) & (nxt - prev - 1 <= max_gap)
        pi, qi = prev.clamp(0, t - 1), nxt.clamp(0, t - 1)
        w = ((idx - prev).double() / (nxt - prev).clamp(min=1).double()).float()[:, None]
        xp = x.gather(2, pi[:, None].expand(b, c, t, k))
        xq = x.gather(2, qi[:, None].expand(b, c, t, k))
        return torch.where(fill[:, None], xp + w * (xq - xp), x)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        p, norm = self.pipe, self.cfg.normalize
        b = x.shape[0]
        n_sel = p.n_selected
        center = torch.zeros(b, p.coords, dtype=torch.float64, device=x.device)
        if norm.center != "none":
            found = torch.zeros(b, dtype=torch.bool, device=x.device)
            for idx in self._candidates:
                c, count = _masked_mean(x[..., idx])
                center = torch.where(found[:, None], center, c)
                found |= count > 0
            c, _ = _masked_mean(x[..., :n_sel])
            center = torch.where(found[:, None], center, c)
        c32 = center.float()
        scale = torch.ones(b, dtype=torch.float64, device=x.device)
        if norm.scale != "none":
            d = x[:, :2, :, :n_sel] - c32[:, :2, None, None]
            valid = ~torch.isnan(d[:, 0])
            count = valid.sum((1, 2))
            sq = torch.where(valid[:, None], d * d, 0).double().sum((1, 2, 3))
            std = torch.sqrt(sq / (2 * count.clamp(min=1)))
            good = (count > 0) & (std > 0) & torch.isfinite(std)
            scale = torch.where(good, std, 1.0)
            if norm.scale == "shoulders" and self._shoulders is not None:
                s = x[:, :2, :, self._shoulders].double()  # (B, 2, T, 2)
                ok = ~torch.isnan(s[:, 0]).any(-1)
                dd = s[..., 0] - s[..., 1]
                dist = torch.sqrt((dd * dd).sum(1))
                n_ok = ok.sum(1)
                width = torch.where(ok, dist, 0).sum(1) / n_ok.clamp(min=1)
                use = (n_ok > 0) & (width > 0) & torch.isfinite(width)
                scale = torch.where(use, width, scale)
        return (x - c32[:, :, None, None]) / scale.float()[:, None, None, None]

    def _mirror(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """x -> -x with left/right points swapped, for the samples where ``which`` (B,) is True."""
        if not bool(which.any()):
            return x
        return self._mirror_where(x, which)

    def _mirror_where(self, x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """``_mirror`` without the data-dependent shortcut, so it traces into a graph (ONNX export)."""
        xf = x[..., self._flip].clone()
        xf[:, 0] = -xf[:, 0]
        return torch.where(which[:, None, None, None], xf, x)

    def _augment(self, x: torch.Tensor, params: dict[str, torch.Tensor], frames: int) -> torch.Tensor:
        params = {k: v.to(x.device) for k, v in params.items()}
        # 7. flip: mirror x and swap left/right points
        if self._flip is not None:
            x = self._mirror(x, params["flip"])
        # 8. affine about each sample's centre
        on = params["affine_on"]
        if bool(on.any()):
            c, _ = _masked_mean(x[:, :2])
            mat = params["affine"]
            a00, a01, tx = mat[:, 0, 0], mat[:, 0, 1], mat[:, 0, 2]
            a10, a11, ty = mat[:, 1, 0], mat[:, 1, 1], mat[:, 1, 2]
            cx, cy = c[:, 0], c[:, 1]
            b0 = (cx - (a00 * cx + a01 * cy) + tx).float()[:, None, None]
            b1 = (cy - (a10 * cx + a11 * cy) + ty).float()[:, None, None]
            a = mat[:, :, :2].float()
            px, py = x[:, 0], x[:, 1]
            nx = a[:, 0, 0, None, None] * px + a[:, 0, 1, None, None] * py + b0
            ny = a[:, 1, 0, None, None] * px + a[:, 1, 1, None, None] * py + b1
            moved = torch.cat([torch.stack([nx, ny], 1), x[:, 2:]], 1)
            x = torch.where(on[:, None, None, None], moved, x)
        # 9. jitter, 10. hidden frames
        jit = _fit_frames(params["jitter"].float(), frames)  # (B, T, 2)
        x = torch.cat([x[:, :2] + jit.permute(0, 2, 1)[..., None], x[:, 2:]], 1)
        hidden = _fit_frames(params["hidden"], frames, False)
        return x.masked_fill(hidden[:, None, :, None], NAN)

    def _features(self, x: torch.Tensor, lengths: torch.Tensor, out: torch.Tensor | None = None,
                  all_frames: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (B, T', D) and mask; ``out`` is a zeroed (B, max_length, parts, C, K) buffer to fill.
        ``all_frames``: T' is x's own T (frames past a length are zero and masked), not read from
        the data, as a graph with a dynamic frame axis needs."""
        cfg = self.cfg
        b, c, t, k = x.shape
        tt = torch.arange(t, device=x.device)[None, :]
        m = cfg.max_length
        kinds = cfg.motion
        if all_frames:
            out_t = t
            out = x.new_zeros(b, t, 1 + len(kinds), c, k)
        else:
            out_t = m if (m is not None and cfg.temporal.pad) else (int(lengths.max()) if b else 0)
        # One output buffer written in place: (B, T, parts, C, K) is (B, T, D) in the NumPy order.
        if out is None:
            out = x.new_zeros(b, max(out_t, t), 1 + len(kinds), c, k)
        out[:, :t, 0] = x.transpose(1, 2)
        diff = x[:, :, 1:] - x[:, :, :-1]
        for i, kind in enumerate(kinds, start=1):
            if kind == "velocity" and t > 1:
                out[:, :t - 1, i] = diff.transpose(1, 2)
                last = 1
            elif kind == "acceleration" and t > 2:
                out[:, :t - 2, i] = (diff[:, :, 1:] - diff[:, :, :-1]).transpose(1, 2)
                last = 2
            elif kind == "lag2" and t > 2:
                out[:, :t - 2, i] = (x[:, :, 2:] - x[:, :, :-2]).transpose(1, 2)
                last = 2
            else:
                continue
            # zero where the later frame is past the sample's length
            late = tt + last >= lengths[:, None]
            out[:, :t, i].masked_fill_(late[:, :, None, None], 0.0)
        # frames from t on are still zero; only the first t need cleaning
        body = out[:, :t]
        body.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
        body.masked_fill_((tt >= lengths[:, None])[:, :, None, None, None], 0.0)
        out_mask = torch.arange(out.shape[1], device=x.device)[None, :] < lengths[:, None]
        return out[:, :out_t].reshape(b, out_t, -1), out_mask[:, :out_t].contiguous()


class RawPreprocess(torch.nn.Module):
    """Eval-mode preprocessing of one raw sequence, written for a graph with a dynamic frame axis
    (ONNX export): ``landmarks (frames, P, 3)`` float32, NaN = undetected, as Kaggle's evaluation
    API gives them -> ``features (1, T, D), mask (1, T)``.

    It runs BatchAugment's own steps (no copy of the arithmetic) with every width fixed by the config
    rather than read from the data: frame dropping moves the kept frames first and masks the rest;
    the length step always resamples to ``max_length`` output frames, which is the identity (weight
    0) for a sequence that fits and a linear resize or a crop for a longer one; without a
    ``max_length``, T is ``frames + 2`` (two masked frames keep the motion steps free of branches on
    the frame count). So T differs from the NumPy pipeline's only in masked, zero padding, which the
    trainers' models ignore by construction. Zeros are data here (the raw input has NaN), as in NumPy.
    """

    def __init__(self, cfg: TransformConfig | dict | str | None = None, layout: str | Layout | None = None):
        super().__init__()
        self.aug = BatchAugment(cfg, layout, zeros_are_missing=False)
        self.cfg, self.pipe = self.aug.cfg, self.aug.pipe

    def forward(self, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aug, cfg, p = self.aug, self.cfg, self.pipe
        lm = landmarks[None].float()                                  # (1, F, P, 3)
        t = lm.shape[1]
        # 1. the working points, coordinate-major (1, C, F, K)
        x = lm.index_select(2, aug._work)[..., :p.coords].permute(0, 3, 1, 2).contiguous()
        n_sel = p.n_selected
        # 2. drop frames (none dropped when none would be kept, as in NumPy)
        mode = cfg.temporal.drop_frames
        if mode == "empty":
            ok = ~torch.isnan(x[:, 0, :, :n_sel]).all(-1)
        elif mode == "handless":
            ok = ~torch.isnan(lm.index_select(2, aug._hands)[..., 0]).all(-1)
        else:
            ok = torch.ones_like(x[:, 0, :, 0], dtype=torch.bool)
        keep = ok | ~ok.any(1, keepdim=True)
        lengths = keep.sum(1)
        x = _gather_frames(x, _kept_first(keep))
        x = x.masked_fill((torch.arange(t)[None, :] >= lengths[:, None])[:, None, :, None], NAN)
        # 3. fill short gaps (a gap needs frames on both sides: nothing to do below 3 frames)
        if cfg.temporal.fill_gaps > 0:
            x = aug._fill_gaps(x, cfg.temporal.fill_gaps)
        # 5. normalize (no augmentation in eval mode, so no step 4), then mirror a sequence whose other
        # hand dominates (normalize.handedness; counted on the input frames, as in NumPy)
        x = aug._normalize(x)[..., :n_sel]
        if aug._sides:
            seen = [(~torch.isnan(lm.index_select(2, idx)[..., 0])).any(-1).sum(1) for idx in aug._sides]
            x = aug._mirror_where(x, seen[0] > seen[1] if cfg.normalize.handedness == "right" else seen[1] > seen[0])
        # 6. fit the length to max_length output frames: resize, crop, or the identity
        m = cfg.max_length
        if m is None:
            x = torch.cat([x, x.new_full((*x.shape[:2], 2, x.shape[3]), NAN)], 2)
        else:
            targets = lengths.clamp(max=m)
            x = _interpolate(x, lengths if cfg.temporal.resize else targets, targets, out_t=m)
            lengths = targets
        # 11-12. motion features, NaN -> 0, mask
        return aug._features(x, lengths, all_frames=True)


__all__ = ["BatchAugment", "RawPreprocess", "stack_draws"]
