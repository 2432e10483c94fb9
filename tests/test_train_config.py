"""Run configs and the trainer registry."""

import pytest

from sltdata.errors import ConfigError
from sltdata.train.config import load_config, parse_overrides
from sltdata.train import registry
from sltdata.train.registry import bundled_config, bundled_config_names, get_trainer, trainer_entry_points
from sltdata.train.runs import resolve_config
from trainers.islr import ISLRConfig, ISLRTrainer


def test_overrides_are_parsed_as_yaml_scalars_into_sections():
    assert parse_overrides(["train.lr=0.001", "model.arch=cnn", "data.val_fold=2", "train.compile=true"]) == {
        "train": {"lr": 0.001, "compile": True}, "model": {"arch": "cnn"}, "data": {"val_fold": 2}}


def test_override_beats_file_value(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 0.1, epochs: 3}\nmodel: {dim: 64, heads: 4}\n")
    cfg = load_config(path, ["train.lr=0.5", "model.dim=32"], model_class=ISLRConfig)
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.dim) == (0.5, 3, 32)


def test_integer_is_accepted_where_a_float_is_expected():
    assert load_config({"train": {"lr": 1}}, model_class=ISLRConfig).train.lr == 1.0


@pytest.mark.parametrize("override, message", [
    ("train.lr=fast", "run config: train.lr: expected a number, got 'fast'"),
    ("train.epochs=1.5", "run config: train.epochs: expected an integer, got 1.5"),
    ("train.optimizer=adam", "run config: train.optimizer: 'adam' is not one of 'adamw', 'radam-lookahead', 'sgd', "
                             "did you mean 'adamw'?"),
    ("model.arch=lstm", "run config: model.arch: 'lstm' is not one of"),
    ("model.depth=3", "run config: model.depth: unknown key"),
    ("optim.lr=3", "run config: optim: unknown key (known: trainer, train, data, transforms, model)"),
    ("model.dim=30", "run config: model.dim 30 must be divisible by model.heads"),
    ("transforms.preset=handz", "run config: transforms.preset: unknown point preset 'handz'"),
    ("transforms.max_lenght=3", "run config: transforms.max_lenght: unknown key, did you mean 'max_length'?"),
    ("train.lr", "--set train.lr: expected key=value"),
])
def test_bad_override_raises_config_error_naming_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config({}, [override], model_class=ISLRConfig)
    assert str(e.value).startswith(message)


def test_bad_value_in_a_file_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "islr-tiny.yaml"
    path.write_text("train: {lr: abc}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, model_class=ISLRConfig)
    assert str(e.value) == f"{path}: train.lr: expected a number, got 'abc'"


def test_transforms_section_is_a_typed_transform_config():
    from sltdata.transforms import TransformConfig, load_transform_config

    cfg = load_config({"transforms": {"preset": "hands", "augment": False}}, ["transforms.max_length=64"],
                      model_class=ISLRConfig)
    assert isinstance(cfg.transforms, TransformConfig)
    assert cfg.transforms == load_transform_config({"preset": "hands", "augment": False, "max_length": 64})
    assert load_config({}, model_class=ISLRConfig).transforms is None


def test_run_config_round_trips_through_its_dict():
    cfg = load_config({"transforms": {"preset": "hands", "augment": False}, "train": {"lr": 0.5}},
                      model_class=ISLRConfig)
    assert load_config(cfg.to_dict(), model_class=ISLRConfig) == cfg


def test_missing_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml", model_class=ISLRConfig)


def test_islr_is_registered_through_its_entry_point():
    assert trainer_entry_points()["islr"] == "trainers.islr:ISLRTrainer"
    assert isinstance(get_trainer("islr"), ISLRTrainer)


def test_unknown_trainer_lists_installed_ones():
    with pytest.raises(ConfigError, match=r"unknown trainer 'nope' \(installed: .*islr"):
        get_trainer("nope")


def test_config_without_model_class_finds_it_through_the_registry():
    cfg = load_config({"trainer": "islr", "model": {"arch": "cnn"}})
    assert isinstance(cfg.model, ISLRConfig) and cfg.model.arch == "cnn"


def test_bundled_recipes_are_found_through_the_trainers_that_ship_them():
    names = bundled_config_names()
    assert {"islr-tiny", "islr-default", "ctc-tiny", "seq2seq-tiny", "causal-lm-tiny"} <= set(names)
    assert ISLRTrainer.bundled_configs()["islr-tiny"] == bundled_config("islr-tiny")
    assert "ctc-tiny" not in ISLRTrainer.bundled_configs()      # a trainer lists only its own recipes
    assert resolve_config("islr-tiny") == bundled_config("islr-tiny")


def test_a_third_party_trainer_ships_recipes_through_the_registry(tmp_path, monkeypatch):
    (tmp_path / "mine-small.yaml").write_text("trainer: mine\n")
    (tmp_path / "other-small.yaml").write_text("trainer: other\n")

    class MineTrainer(ISLRTrainer):
        name = "mine"
        configs_dir = tmp_path

    monkeypatch.setattr(registry, "_extra", {})                    # registrations end with the test
    registry.register_trainer(MineTrainer)
    assert bundled_config("mine-small") == tmp_path / "mine-small.yaml"
    assert "other-small" not in bundled_config_names()


def test_unknown_recipe_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match=r"nope: no such config file or bundled recipe \(bundled: .*islr-tiny"):
        resolve_config("nope")


def test_exponent_without_dot_is_read_as_a_float():
    assert load_config({}, ["train.lr=3e-4"], model_class=ISLRConfig).train.lr == 3e-4
