"""The CLI as a whole: a missing optional extra is an install hint, not a traceback."""

import sys

import pytest

from sltdata.cli import main


def test_missing_extra_is_one_line_naming_the_extra(islr_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails as if absent
    assert main(["stats", str(islr_store), "--plots", str(tmp_path / "figs")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: this needs matplotlib, which is not installed: pip install 'sltdata[viz]'"


def test_missing_core_module_is_not_hidden(monkeypatch):
    def broken(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'polars'", name="polars")

    monkeypatch.setattr("sltdata.synth.synth", broken)
    with pytest.raises(ModuleNotFoundError):
        main(["synth", "kaggle-islr", "/tmp/unused"])


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    import sltdata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"sltdata {version('sltdata')}\n"
    assert version("sltdata") == sltdata.__version__  # pyproject.toml and the package say the same


def test_no_option_help_shows_a_bool_type(capsys):
    from sltdata.cli import build_command

    root = build_command()
    commands = [[]] + [[name] for name in root.commands]
    assert ["view"] in commands and ["keys"] in commands
    for args in commands:
        assert main([*args, "--help"]) == 0
        out = capsys.readouterr().out
        assert "--help" in out
        assert "<bool>" not in out, args
    assert main(["view", "--help"]) == 0
    assert "<path>" in capsys.readouterr().out  # options that take a value keep their type


def test_install_hints_name_the_extra_declared_in_the_package_metadata():
    from sltdata.cli import extra_for

    assert [extra_for(m) for m in ("torch", "rouge_score", "onnxruntime", "matplotlib", "mediapipe", "cv2")] == \
        ["train", "train", "train", "viz", "extract", "extract"]
    assert extra_for("cv2.aruco") == "extract"
    # core dependencies are never hinted as an extra, even when an extra pins them too (numpy<2, pyarrow<26)
    assert [extra_for(m) for m in ("numpy", "pyarrow", "polars", "no_such_module")] == [None] * 4


def test_keys_lists_a_store_in_order_and_stops_at_the_limit(islr_store, capsys):
    from sltdata.store import Store

    want = Store(islr_store).metadata(("key",)).column("key").to_pylist()
    assert main(["keys", str(islr_store)]) == 0
    assert capsys.readouterr().out.splitlines() == want
    assert main(["keys", str(islr_store), "--limit", "3"]) == 0
    assert capsys.readouterr().out.splitlines() == want[:3]


def test_keys_lists_every_sample_of_a_shard_directory(islr_store, tmp_path, capsys):
    from sltdata.shards import write_shards
    from sltdata.store import Store

    write_shards(islr_store, tmp_path / "shards", folds=3, max_samples_per_shard=50)
    assert main(["keys", str(tmp_path / "shards")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert sorted(listed) == sorted(Store(islr_store).metadata(("key",)).column("key").to_pylist())


def test_keys_of_something_else_is_one_error_line(tmp_path, capsys):
    assert main(["keys", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path}: neither a sequence store (no store.json) nor a shard directory (no index.json)"
