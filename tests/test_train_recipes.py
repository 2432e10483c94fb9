"""The ISLR first-place recipe complete: its schedule, training on every fold, seed ensembles
(averaged logits, evaluated and exported like a run), and seed 001's sixth architecture."""

import pytest
import torch

from sltdata.train.config import load_config
from sltdata.train.optim import build_scheduler
from sltdata.train.registry import bundled_config
from trainers.islr import ISLRConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name, epochs", [("islr-default", 120), ("islr-1st-300", 300)])
def test_islr_recipes_start_at_the_published_peak_lr_with_no_warmup_or_clipping(name, epochs):
    cfg = load_config(bundled_config(name), model_class=ISLRConfig)
    assert (cfg.train.lr, cfg.data.batch_size, cfg.train.epochs, cfg.train.clip_grad) == (4e-3, 512, epochs, None)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    sched = build_scheduler(opt, cfg.train, total_steps=100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(4e-3) and all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[50] == pytest.approx(4e-3 * (0.01 + 0.99 * 0.5), rel=1e-6)  # cosine half-way
    assert cfg.transforms.augment.spatial_mask.p == 0.5 and cfg.transforms.augment.crop.p == 1.0
