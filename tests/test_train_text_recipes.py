"""The text trainers' recipes (issue 13): no frame a phrase needs is cut, what cannot fit is counted,
the conformer sees positions, causal-lm-tiny learns, the Fingerspelling 2nd-place options."""

import numpy as np
import pytest
import torch

from sltdata.errors import ConfigError
from sltdata.testing.text import bundled_config
from sltdata.train.base import DatasetInfo
from sltdata.train.config import load_config
from sltdata.transforms import build_pipeline, load_transform_config
from sltdata.transforms.numpy_ops import AugmentDraw
from trainers.causal_lm import CausalLMTrainer
from trainers.common.target_fit import ctc_frames_needed, pose_vector_counts, target_token_counts
from trainers.ctc import CTCConfig, CTCModel, CTCTrainer
from trainers.seq2seq import Seq2SeqTrainer

TEXT_RECIPES = ["ctc-tiny", "ctc-default", "ctc-conformer", "seq2seq-tiny", "seq2seq-t5-small",
                "causal-lm-tiny", "causal-lm-qwen-lora"]
CHARS = {c: i for i, c in enumerate("abc")}      # blank = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- no silent damage: frames are resampled, not cut; what cannot fit is counted ----------------------

@pytest.mark.parametrize("name", TEXT_RECIPES)
def test_sped_up_sequence_keeps_its_last_frames_in_every_text_recipe(name):
    # max_length frames slowed x1.5 (the speed augmentation's top) no longer fit; the last eighth of the
    # signing is shifted right by 1 (cutting to the first max_length frames would drop all of it), so
    # the last output frame shows whether the end survived.
    tcfg = load_transform_config(bundled_config(name)["transforms"])
    pipe = build_pipeline(tcfg)
    n = tcfg.max_length
    rng = np.random.default_rng(0)
    pose = rng.uniform(0.3, 0.6, (1, 543, 3)).astype(np.float32)
    landmarks = np.repeat(pose, n, 0)
    landmarks[-n // 8:, :, 0] += 1.0
    features, mask, _ = pipe.run(landmarks, draw=AugmentDraw(rescale=1.5))
    assert mask.sum() == n
    positions = features[:, :pipe.n_selected * pipe.coords]
    shift = np.sort(positions[n - 1] - positions[0])           # x of every point moved, y not
    half = pipe.n_selected
    assert shift[-1] > 0.1 and np.allclose(shift[half:], shift[-1], atol=1e-4)
    assert np.allclose(shift[:half], 0, atol=1e-4)


@pytest.mark.parametrize("trainer, recipe, info", [
    (CTCTrainer(), "ctc-tiny", {"characters": CHARS}), (Seq2SeqTrainer(), "seq2seq-tiny", {}),
    (CausalLMTrainer(), "causal-lm-tiny", {})])
def test_text_trainers_refuse_transforms_that_cut_frames(trainer, recipe, info):
    cut = {"max_length": 64, "temporal": {"resize": False}}
    cfg = load_config(bundled_config(recipe), model_class=trainer.config_class).model
    with pytest.raises(ConfigError, match="transforms.temporal.resize: true"):
        trainer.build(cfg, DatasetInfo(feature_dim=6, transform=cut, **info))


def test_ctc_needs_a_frame_per_character_and_a_blank_between_repeats():
    target = torch.tensor([[0, 0, 1], [0, 1, 2], [2, -100, -100], [1, 1, 1]])
    lengths = torch.tensor([3, 3, 1, 3])
    assert ctc_frames_needed(target, lengths).tolist() == [4, 3, 1, 5]


def ctc_batch():
    """Three sequences of 3, 3 and 1 frames for "aab" (needs 4), "abc" (3) and "c" (1)."""
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for i, n in enumerate([3, 3, 1]):
        mask[i, :n] = True
    return {"features": torch.randn(3, 5, 6), "mask": mask, "text": ["aab", "abc", "c"],
            "target": torch.tensor([[0, 0, 1], [0, 1, 2], [2, -100, -100]]),
            "target_lengths": torch.tensor([3, 3, 1]), "key": ["x", "y", "z"]}


def test_ctc_counts_each_too_short_training_sample_once_and_evaluation_reports_it():
    torch.manual_seed(0)
    cfg = CTCConfig(dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2)
    model, trainer, batch = CTCModel(cfg, 6, CHARS, None).train(), CTCTrainer(), ctc_batch()
    loss = trainer.loss(model, batch, cfg)
    trainer.loss(model, batch, cfg)                            # AWP's second pass on the same batch
    assert torch.isfinite(loss)
    assert model.fit_counter.pop_train_stats() == {"too_short": 1, "samples": 3}
    assert model.fit_counter.pop_train_stats() == {"too_short": 0, "samples": 0}
    model.eval()
    with torch.no_grad():
        out = trainer.predict(model, batch, cfg)
    assert out["too_short"] == [True, False, False]
    assert trainer.metrics(out, DatasetInfo(feature_dim=6, characters=CHARS))["too_short"] == 1.0
    assert model.fit_counter.pop_train_stats()["samples"] == 0   # evaluation is not training


def test_translation_fit_compares_pose_vectors_after_subsampling_with_target_tokens():
    from transformers import ByT5Tokenizer

    mask = torch.zeros(3, 12, dtype=torch.bool)
    for i, n in enumerate([12, 5, 8]):
        mask[i, :n] = True
    assert pose_vector_counts(mask, 2).tolist() == [6, 3, 4]
    assert pose_vector_counts(mask, 5).tolist() == [3, 1, 2]
    assert target_token_counts(ByT5Tokenizer(), ["hello", "", "é"], 64).tolist() == [6, 1, 3]
    assert target_token_counts(ByT5Tokenizer(), ["hello"], 4).tolist() == [4]


# --- conformer: positions reach the first attention block ---------------------------------------------

def first_attention_output(arch: str, x: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(0)
    cfg = CTCConfig(arch=arch, dim=16, stages=1, conv_per_stage=1, kernel_size=3, heads=2, drop=0.0,
                    attn_drop=0.0, head_drop=0.0)
    model = CTCModel(cfg, 6, CHARS, None).eval()
    attention = next(b for b in model.blocks if type(b).__name__ == "TransformerBlock")
    seen = []
    attention.register_forward_hook(lambda mod, args, out: seen.append(out))
    with torch.no_grad():
        model(x, torch.ones(x.shape[:2], dtype=torch.bool))
    return seen[0]


def test_conformer_first_attention_block_knows_frame_order():
    # Without position information, feed-forward + attention is permutation-equivariant: reversing the
    # frames would only reverse block 1's output. With it, the same frame at another place differs.
    x = torch.randn(1, 10, 6)
    reverse = torch.arange(9, -1, -1)
    out, out_reversed = first_attention_output("conformer", x), first_attention_output("conformer", x[:, reverse])
    gap = (out_reversed - out[:, reverse]).abs().max()
    assert gap > 0.1 * out.abs().max()
    # the position encoding itself: frame t's, added to a zero input, is sin/cos of t / 10000^(2i/d)
    from trainers.ctc import SinusoidalPosition
    pe = SinusoidalPosition(4)(torch.zeros(1, 3, 4))[0]
    t = torch.arange(3.0)[:, None]
    assert torch.allclose(pe, torch.cat([torch.sin(t / torch.tensor([1.0, 100.0])),
                                         torch.cos(t / torch.tensor([1.0, 100.0]))], 1), atol=1e-6)


# --- Fingerspelling 2nd place: AWP leaves biases and norms alone ----------------------------------------

def test_awp_with_bias_norm_exclusion_moves_only_weight_matrices():
    from sltdata.train.optim import awp_perturb, awp_restore, bias_or_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    x = torch.randn(5, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moved = awp_perturb(model, lambda: model(x).pow(2).sum(), lam=0.5, exclude=bias_or_norm)
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed == {"0.weight", "2.weight"}
    g = after["0.weight"] - before["0.weight"]
    assert torch.allclose(g.norm(), torch.tensor(0.5), atol=1e-3)       # lam * g / ||g||, per tensor
    awp_restore(moved)
    assert all(torch.allclose(model.state_dict()[k], before[k]) for k in before)
    assert load_config(bundled_config("ctc-default"), model_class=CTCConfig).train.awp_exclude == "bias-norm"
