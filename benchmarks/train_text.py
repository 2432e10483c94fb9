"""Training throughput of the text trainers, and which part is the bottleneck.

    python benchmarks/train_text.py [--device cpu|cuda] [--ctc-batch 256] [--s2s-batch 32]
                                    [--max-length 384] [--steps 2] [--sequences 600] [--workers 0]

One run, one data set (``sltdata synth kaggle-fingerspelling`` -> ingest -> shard, phrases as targets):

* feed: ``sltdata.loader.loader`` reading raw padded batches with text targets, then ``BatchAugment``
  (the ctc-default transforms: islr-1st points, --max-length frames, motion features, augmentations)
  on --device — what the loop does per batch;
* ``ctc`` model alone: the ctc-default model (islr Conv1D/transformer stack, dim 192, 3 stages) at
  --ctc-batch x --max-length frames: forward, CTC loss, backward, AdamW step on resident tensors;
* ``ctc`` end to end: ``sltdata.train.loop.fit`` for --steps steps (the loop's samples/s);
* ``ctc`` decoding: greedy vs prefix beam search with a 4-gram character LM (sequences/s, CPU Python);
* ``seq2seq`` model alone: a T5 of t5-small's size (d_model 512, 6+6 layers, 8 heads, vocabulary
  32128) built from a config (no download), linear projector with 2x frame subsampling, at
  --s2s-batch: teacher-forced loss, backward, AdamW; and beam-4 generation (sequences/s).

The baseline each figure is compared against is the feed measured in the same run: the bottleneck is
whichever of feed and model is slower.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(step, steps: int, device: torch.device) -> float:
    """Mean seconds per call of ``step`` over ``steps`` calls after one warm-up call."""
    times = []
    for _ in range(steps + 1):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / steps


def make_shards(work: Path, sequences: int) -> Path:
    from sltdata.testing import synth_store
    from sltdata.testing.text import text_shards

    store = synth_store("kaggle-fingerspelling", work, files=max(1, sequences // 100), sequences_per_file=100,
                        participants=8)
    return text_shards(store, work / "shards", folds=4, max_samples_per_shard=256)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--ctc-batch", type=int, default=256)
    ap.add_argument("--s2s-batch", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=384)
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--sequences", type=int, default=600)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--decode-sequences", type=int, default=32)
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end loop measurement")
    args = ap.parse_args()
    device = torch.device(args.device)

    from sltdata.loader import loader
    from sltdata.testing.text import bundled_config, split_texts
    from sltdata.train.config import load_config
    from sltdata.train.loop import autocast, fit
    from sltdata.train.optim import build_optimizer
    from sltdata.transforms import load_transform_config
    from sltdata.transforms.torch_ops import BatchAugment
    from trainers.ctc import CTCConfig, CTCModel, CTCTrainer
    from trainers.common.ctc_decode import CharNgramLM, greedy_decode, prefix_beam_search

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device {device} ({where}), max length {args.max_length}, torch {torch.__version__}")
    ctc_recipe = bundled_config("ctc-default", transforms={"max_length": args.max_length})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        shards = make_shards(Path(tmp), args.sequences)
        print(f"data: {args.sequences} synth fingerspelling sequences sharded in {time.perf_counter() - t0:.1f} s")

        # --- feed: loader (raw, text targets) then BatchAugment on the device ----------------------
        bs = args.ctc_batch
        t0, n, kept = time.perf_counter(), 0, []
        for b in loader(shards, transforms=None, batch_size=bs, num_workers=args.workers, target="text",
                        train=True, drop_last=True):
            n += len(b["key"])
            kept.append(b)
        load_rate = rate(n, time.perf_counter() - t0)
        print(f"loader alone (raw padded batches + char targets, {args.workers} workers): {load_rate:,.0f} samples/s")
        tcfg = load_transform_config(ctc_recipe["transforms"])
        aug = BatchAugment(tcfg, layout="holistic-543", device=device)
        g = torch.Generator(device=device).manual_seed(0)
        lm_, mk = kept[0]["landmarks"].to(device), kept[0]["mask"].to(device)
        aug_s = timed_steps(lambda: aug(lm_, mk, generator=g, train=True), args.steps, device)
        feats, fmask = aug(lm_, mk, generator=g, train=True)
        aug_rate = rate(len(kept[0]["key"]), aug_s)
        feed = 1 / (1 / load_rate + 1 / aug_rate)
        print(f"BatchAugment on {device}: {aug_rate:,.0f} samples/s -> {tuple(feats.shape)}; "
              f"feed (serial): {feed:,.0f} samples/s")

        # --- ctc model alone ---------------------------------------------------------------------
        chars = {c: i for i, c in enumerate(" !#$%&'()*+,-./0123456789:;=?@[_abcdefghijklmnopqrstuvwxyz~")}
        cfg = load_config(ctc_recipe, model_class=CTCConfig)
        model = CTCModel(cfg.model, feats.shape[-1], chars, None).to(device)
        opt = build_optimizer(model, cfg.train)
        trainer = CTCTrainer()
        x = torch.randn(bs, args.max_length, feats.shape[-1], device=device)
        batch = {"features": x, "mask": torch.ones(bs, args.max_length, dtype=torch.bool, device=device),
                 "target": torch.randint(0, 59, (bs, 20), device=device),
                 "target_lengths": torch.full((bs,), 20, device=device), "text": [""] * bs}

        def ctc_step():
            with autocast(device, "auto"):
                loss = trainer.loss(model, batch, cfg.model)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        ctc_s = timed_steps(ctc_step, args.steps, device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        ctc_rate = rate(bs, ctc_s)
        print(f"ctc model alone (dim {cfg.model.dim}, {cfg.model.stages} stages, {params:.2f} M params, "
              f"batch {bs} x {args.max_length} frames): {ctc_rate:,.0f} samples/s ({ctc_s:.2f} s/step)")
        print(f"ctc bottleneck: {'model' if ctc_rate < feed else 'feed'} "
              f"(model {ctc_rate:,.0f} vs feed {feed:,.0f} samples/s, ratio {feed / ctc_rate:.1f}x)")

        if not args.no_e2e:
            run = Path(tmp) / "ctc-run"
            rc = load_config(bundled_config("ctc-default", transforms={"max_length": args.max_length},
                                            train={"max_steps": args.steps + 1, "epochs": args.steps + 1, "log_every": 1,
                                                   "device": str(device), "awp_lambda": 0.0},
                                            data={"batch_size": bs, "num_workers": args.workers},
                                            model={"decoder": "greedy", "lm_order": 0}), model_class=CTCConfig)
            from sltdata.train.data import ShardData
            data = ShardData(shards, rc, "text")
            stamps = []
            fit(trainer, rc, data, run,
                progress=lambda e: stamps.append(time.perf_counter()) if e["kind"] == "step" else None)
            e2e = rate(bs * (len(stamps) - 1), stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
            print(f"ctc end to end (loop: loader -> BatchAugment -> model), {len(stamps)} steps: {e2e:,.0f} samples/s")

        # --- ctc decoding ------------------------------------------------------------------------
        model.eval()
        nd = min(args.decode_sequences, bs)
        with torch.no_grad():
            logits, m = model(feats[:nd].float(), fmask[:nd])
        logp = logits.float().log_softmax(-1).cpu().numpy()
        lengths = m.sum(1).cpu().numpy()
        lm = CharNgramLM(chars, 4)
        lm.observe(split_texts(shards, ["fold1", "fold2", "fold3"]))
        t0 = time.perf_counter()
        for i in range(nd):
            greedy_decode(logp[i].argmax(-1), int(lengths[i]), 59)
        greedy_rate = rate(nd, time.perf_counter() - t0)
        lm.log_probs(())   # fit the LM outside the timing
        t0 = time.perf_counter()
        for i in range(nd):
            prefix_beam_search(logp[i, :int(lengths[i])], 59, 10, lm, 0.4, 0.5)
        beam_rate = rate(nd, time.perf_counter() - t0)
        print(f"ctc decoding ({int(np.mean(lengths))} frames, untrained model): greedy {greedy_rate:,.0f} seq/s, "
              f"beam 10 + 4-gram char LM {beam_rate:,.1f} seq/s")

        # --- seq2seq model alone (t5-small size, from config) ------------------------------------
        from trainers.seq2seq import Seq2SeqConfig, Seq2SeqTrainer
        from sltdata.train.base import DatasetInfo

        sb = args.s2s_batch
        t5 = {"model_type": "t5", "vocab_size": 32128, "d_model": 512, "d_ff": 2048, "num_layers": 6,
              "num_decoder_layers": 6, "num_heads": 8, "d_kv": 64, "decoder_start_token_id": 0}
        scfg = load_config({"model": {"model_config": t5, "tokenizer": "byt5", "subsample": 2}},
                           model_class=Seq2SeqConfig)
        s2s_trainer = Seq2SeqTrainer()
        s2s = s2s_trainer.build(scfg.model, DatasetInfo(feature_dim=feats.shape[-1])).to(device)
        sparams = sum(p.numel() for p in s2s.parameters()) / 1e6
        sopt = build_optimizer(s2s, scfg.train)
        texts = kept[0]["text"][:sb]
        sbatch = {"features": torch.randn(sb, args.max_length, feats.shape[-1], device=device),
                  "mask": torch.ones(sb, args.max_length, dtype=torch.bool, device=device), "text": texts,
                  "key": kept[0]["key"][:sb]}

        def s2s_step():
            with autocast(device, "auto"):
                loss = s2s_trainer.loss(s2s, sbatch, scfg.model)
            loss.backward()
            sopt.step()
            sopt.zero_grad(set_to_none=True)

        s2s.train()
        s2s_s = timed_steps(s2s_step, args.steps, device)
        s2s_rate = rate(sb, s2s_s)
        print(f"seq2seq model alone (t5-small size from config, {sparams:.1f} M params, batch {sb}, "
              f"{args.max_length // 2} encoder positions, ~{np.mean([len(t) for t in texts]) + 1:.0f} target tokens): "
              f"{s2s_rate:,.1f} samples/s ({s2s_s:.2f} s/step)")
        s2s.eval()
        gb = min(sb, 8)
        gen = {k: (v[:gb] if not isinstance(v, list) else v[:gb]) for k, v in sbatch.items()}
        with autocast(device, "auto"):
            gen_s = timed_steps(lambda: s2s_trainer.predict(s2s, gen, scfg.model), 1, device)
        print(f"seq2seq generation (beam {scfg.model.num_beams}, up to {scfg.model.max_new_tokens} tokens, "
              f"batch {gb}): {rate(gb, gen_s):,.1f} seq/s")
        print(f"seq2seq bottleneck: {'model' if s2s_rate < feed else 'feed'} "
              f"(model {s2s_rate:,.1f} vs feed {feed:,.0f} samples/s, ratio {feed / s2s_rate:.0f}x)")
        print(json.dumps({"device": str(device), "feed": round(feed), "ctc_model": round(ctc_rate, 1),
                          "ctc_beam_lm_seq_s": round(beam_rate, 1), "seq2seq_model": round(s2s_rate, 1)}))


if __name__ == "__main__":
    main()
