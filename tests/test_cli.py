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
