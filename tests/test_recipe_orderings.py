"""The small version of benchmarks/recipe.py: only orderings that hold with a wide margin.

One `--realism real` ISLR set (10 signs, 10 signers, half of them left-handed), islr-tiny with the
mirror (flip) as its only augmentation and without it, scored on fold 0's unseen signers.
"""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")
pytest.importorskip("torch")

_OFF = "{rescale: {p: 0}, affine: {p: 0}, jitter: {p: 0}, frame_mask: {p: 0}, cutout: {p: 0}, flip: {p: %s}}"


def _recipe_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe.py"
    spec = importlib.util.spec_from_file_location("recipe_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    recipe = _recipe_module()
    work = tmp_path_factory.mktemp("recipe")
    shards = recipe.make_data(work, sequences=240, classes=10, participants=10, left_handed=0.5, seed=0)
    variants = {"mirror": [f"transforms.augment={_OFF % 0.5}"], "no mirror": [f"transforms.augment={_OFF % 0}"]}
    runs = recipe.run_variants(shards, work, variants, [0], "islr-tiny", [], log=lambda line: None)
    majority, chance = recipe.majority_accuracy(shards)
    return {name: recipe.accuracy(*r[0]) for name, r in runs.items()}, majority, chance


def test_a_trained_model_beats_the_majority_class_by_a_wide_margin(results):
    acc, majority, chance = results
    assert chance == pytest.approx(0.1) and majority <= 0.2
    assert acc["no mirror"] > majority + 0.25


def test_the_mirror_helps_when_half_the_signers_are_left_handed(results):
    acc, _, _ = results
    assert acc["mirror"] > acc["no mirror"] + 0.05
