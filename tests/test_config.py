"""The one config loader: types checked from annotations, one ConfigError style from every entry point."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from sltdata.config import FieldError, build, load, merge, parse_overrides
from sltdata.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    span: tuple[float, float] = (0.0, 1.0)

    def validate(self) -> None:
        if not 0 <= self.rate <= 1:
            raise FieldError("rate", f"{self.rate} is not in [0, 1]")


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = 3
    mode: Literal["fast", "slow"] = "fast"
    limit: Optional[int] = None
    tags: tuple[str, ...] = ()
    on: bool = True
    inner: Inner = field(default_factory=Inner)

    @classmethod
    def prepare(cls, data: dict) -> dict:
        if isinstance(data.get("tags"), str):  # one tag needs no list
            data["tags"] = [data["tags"]]
        return data


def error(cls, data, origin="test config") -> str:
    with pytest.raises(ConfigError) as e:
        build(cls, data, origin)
    return str(e.value)


def test_values_are_converted_to_their_annotations():
    got = build(Outer, {"name": "a", "steps": 4, "limit": 7, "tags": ["x", "y"], "inner": {"rate": 1, "span": [1, 2]}},
                "t")
    assert got == Outer(name="a", steps=4, limit=7, tags=("x", "y"), inner=Inner(rate=1.0, span=(1.0, 2.0)))
    assert isinstance(got.inner.rate, float)


def test_prepare_hook_rewrites_a_shorthand_before_the_type_checks():
    assert build(Outer, {"name": "a", "tags": "solo"}, "t").tags == ("solo",)


def test_unknown_key_suggests_the_closest_name():
    assert error(Outer, {"name": "a", "stesp": 1}) == (
        "test config: stesp: unknown key, did you mean 'steps'? (known: name, steps, mode, limit, tags, on, inner)")


def test_unknown_key_in_a_nested_section_names_its_path():
    assert error(Outer, {"name": "a", "inner": {"rat": 0.1}}) == (
        "test config: inner.rat: unknown key, did you mean 'rate'? (known: rate, span)")


@pytest.mark.parametrize("data, message", [
    ({"name": "a", "steps": "many"}, "test config: steps: expected an integer, got 'many'"),
    ({"name": "a", "steps": True}, "test config: steps: expected an integer, got True"),
    ({"name": "a", "on": 1}, "test config: on: expected true or false, got 1"),
    ({"name": 3}, "test config: name: expected a string, got 3"),
    ({"name": "a", "limit": 1.5}, "test config: limit: expected an integer, got 1.5"),
    ({"name": "a", "mode": "slwo"}, "test config: mode: 'slwo' is not one of 'fast', 'slow', did you mean 'slow'?"),
    ({"name": "a", "tags": {"x": 1}}, "test config: tags: expected a list, got {'x': 1}"),
    ({"name": "a", "inner": {"span": [1]}}, "test config: inner.span: expected a list of 2 values, got [1]"),
    ({"name": "a", "inner": {"rate": "half"}}, "test config: inner.rate: expected a number, got 'half'"),
    ({"name": "a", "inner": [1]}, "test config: inner: expected a mapping, got [1]"),
    ({}, "test config: name: required, but missing"),
])
def test_wrong_type_is_one_error_naming_the_key(data, message):
    assert error(Outer, data) == message


def test_validate_hook_error_gets_the_section_path_and_the_origin():
    assert error(Outer, {"name": "a", "inner": {"rate": 2}}, "c.yaml") == "c.yaml: inner.rate: 2.0 is not in [0, 1]"


def test_number_yaml_reads_as_a_string_is_a_float():
    assert build(Inner, {"rate": "1e-1"}, "t").rate == 0.1


def test_empty_section_means_the_defaults():
    assert build(Outer, {"name": "a", "inner": None}, "t").inner == Inner()


def test_overrides_are_yaml_values_in_nested_sections():
    assert parse_overrides(["inner.rate=1e-2", "tags=[a, b]", "on=false", "name=x"]) == {
        "inner": {"rate": "1e-2"}, "tags": ["a", "b"], "on": False, "name": "x"}


@pytest.mark.parametrize("item, message", [
    ("steps", "--set steps: expected key=value"),
    ("a..b=1", "--set a..b=1: bad key 'a..b'"),
    ("name=[", "--set name=[: not valid YAML"),
])
def test_bad_override_is_one_config_error(item, message):
    with pytest.raises(ConfigError) as e:
        parse_overrides([item])
    assert str(e.value).startswith(message)


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError, match=r"--set name\.x=1: name is a value, not a section"):
        parse_overrides(["name=a", "name.x=1"])


def test_merge_keeps_sibling_keys_of_a_section():
    assert merge({"inner": {"rate": 0.1, "span": [0, 1]}, "name": "a"}, {"inner": {"rate": 0.2}}) == {
        "inner": {"rate": 0.2, "span": [0, 1]}, "name": "a"}


def test_load_applies_overrides_to_a_file_and_names_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\ninner: {rate: 0.1}\n")
    assert load(Outer, path, ["inner.rate=0.3"], origin="unused").inner.rate == 0.3
    with pytest.raises(ConfigError) as e:
        load(Outer, path, ["inner.rate=abc"], origin="unused")
    assert str(e.value) == f"{path}: inner.rate: expected a number, got 'abc'"


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "expected a mapping at the top level, got list"),
    ("name: [\n", "not valid YAML"),
])
def test_bad_yaml_file_is_one_config_error_naming_the_file(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load(Outer, path, origin="unused")
    assert str(e.value).startswith(f"{path}: {message}")


def test_all_three_entry_points_speak_the_same_style(tmp_path):
    """A wrong type reads ``FILE: KEY: expected ..., got ...`` from a transform, run and recipe file."""
    from sltdata.recipes import load_recipe
    from sltdata.train.config import load_config
    from sltdata.transforms import load_transform_config
    from trainers.islr import ISLRConfig

    transform, run, recipe = tmp_path / "t.yaml", tmp_path / "r.yaml", tmp_path / "d.yaml"
    transform.write_text("max_length: long\n")
    run.write_text("transforms: {max_length: long}\n")
    recipe.write_text("source: kaggle-islr\nmanifest: a.csv\ncolumns: {key: id}\nfps: long\n")
    messages = []
    for call in (lambda: load_transform_config(transform), lambda: load_config(run, model_class=ISLRConfig),
                 lambda: load_recipe(str(recipe))):
        with pytest.raises(ConfigError) as e:
            call()
        messages.append(str(e.value))
    assert messages == [f"{transform}: max_length: expected an integer, got 'long'",
                        f"{run}: transforms.max_length: expected an integer, got 'long'",
                        f"{recipe}: fps: expected a number, got 'long'"]


def test_an_override_of_one_augmentation_keeps_augment_false_for_the_others():
    # `augment: false` then `--set transforms.augment.flip.p=0.5`: only the flip comes on (the shorthand
    # is spelled out before the override is merged, not replaced by it)
    from sltdata.train.config import load_config
    from sltdata.testing.train import tiny_islr_config

    base = tiny_islr_config()
    assert base["transforms"]["augment"] is False
    run = load_config(base, ["transforms.augment.flip.p=0.5"]).transforms.augment
    ps = {f: getattr(run, f).p for f in ("flip", "affine", "rescale", "jitter", "frame_mask", "cutout",
                                          "spatial_mask", "crop")}
    assert ps == {"flip": 0.5, **{f: 0.0 for f in ps if f != "flip"}}
