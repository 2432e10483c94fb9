"""Dataset recipes: which source reader, which manifest column means what, which label map.

A recipe is a small YAML file in ``manifests/``; a dataset with the same shape as a known one needs a
new recipe, not new code. ``sltdata ingest NAME_OR_YAML ROOT`` takes a bundled recipe's name (the
file stem) or a path to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from sltdata.errors import ConfigError

ROLES = ("key", "path", "label", "text", "participant")


def manifests_dir() -> Path:
    """Bundled recipes: ``sltdata/_manifests`` in a wheel, the repo's ``manifests/`` when editable."""
    here = Path(__file__).resolve().parent
    for d in (here / "_manifests", here.parent / "manifests"):
        if d.is_dir():
            return d
    return here.parent / "manifests"


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # registered source reader, e.g. "kaggle-islr"
    manifest: tuple[str, ...]  # manifest CSVs relative to the root; every one that exists is read
    columns: dict[str, str]  # role (key/path/label/text/participant) -> manifest column
    description: str = ""
    label_map: str | None = None  # JSON {label: index} relative to the root
    character_map: str | None = None  # JSON {character: index} relative to the root
    layout: str = "holistic-543"
    pose_dir: str = "."  # `pose` source: where .pose files are, relative to the root
    fps: float | None = None  # frames per second when the source does not say
    # Largest plausible |coordinate|, in frame sizes: 1 for normalized sources (Kaggle), the .pose header's
    # larger side for pixel sources. Beyond it a sequence is rejected (bit-rot gives ~1e22). None: the
    # source's default (10000 normalized, 100 pixel frames).
    max_abs_coordinate: float | None = None
    extra: dict = field(default_factory=dict)

    def column(self, role: str) -> str | None:
        return self.columns.get(role)


def load_recipe(name_or_path: str) -> Recipe:
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = manifests_dir() / f"{name_or_path}.yaml"
        if not p.is_file():
            raise ConfigError(f"unknown dataset recipe {name_or_path!r} (known: {', '.join(list_recipes())}; "
                              "or give a path to a recipe .yaml)")
    if not p.is_file():
        raise ConfigError(f"{p}: recipe file not found")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: a recipe is a mapping of fields")
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{p}: unknown recipe field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for required in ("source", "manifest", "columns"):
        if required not in raw:
            raise ConfigError(f"{p}: recipe needs a {required!r} field")
    columns = raw["columns"]
    if not isinstance(columns, dict) or not set(columns) <= set(ROLES) or "key" not in columns:
        raise ConfigError(f"{p}: 'columns' maps roles ({', '.join(ROLES)}) to manifest columns and needs 'key'")
    manifest = raw["manifest"]
    manifest = (manifest,) if isinstance(manifest, str) else tuple(manifest)
    return Recipe(**{**raw, "name": raw.get("name", p.stem), "manifest": manifest,
                     "columns": {k: str(v) for k, v in columns.items()}})


def list_recipes() -> list[str]:
    return sorted(p.stem for p in manifests_dir().glob("*.yaml"))
