"""Dataset recipes: which source reader, which manifest column means what, which label map.

A recipe is a small YAML file in ``manifests/``; a dataset with the same shape as a known one needs a
new recipe, not new code. ``sltdata ingest NAME_OR_YAML ROOT`` takes a bundled recipe's name (the
file stem) or a path to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sltdata.config import FieldError, build, read_yaml, unknown_key
from sltdata.errors import ConfigError
from sltdata.layouts import layout_mapping

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
    label_map: Optional[str] = None  # JSON {label: index} relative to the root
    character_map: Optional[str] = None  # JSON {character: index} relative to the root
    layout: str = "holistic-543"  # the layout sequences are stored in; the source must be able to write it
    pose_dir: str = "."  # `pose` source: where .pose files are, relative to the root
    fps: Optional[float] = None  # frames per second when the source does not say
    # Largest plausible |coordinate|, in frame sizes: 1 for normalized sources (Kaggle), the .pose header's
    # larger side for pixel sources. Beyond it a sequence is rejected (bit-rot gives ~1e22). None: the
    # source's default (10000 normalized, 100 pixel frames).
    max_abs_coordinate: Optional[float] = None
    # Registered layouts converted at ingest, source -> destination (``{coco-wholebody-133: holistic-543}``,
    # or "SRC:DST" strings): points the two share are copied, the rest are NaN (sltdata.layouts.map_layout).
    layout_map: Optional[dict[str, str]] = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def prepare(cls, data: dict) -> dict:
        """``manifest: train.csv`` is a list of one; column names YAML reads as numbers are names."""
        if isinstance(data.get("manifest"), str):
            data["manifest"] = [data["manifest"]]
        if isinstance(data.get("layout_map"), (str, list)):
            data["layout_map"] = parse_layout_map(data["layout_map"])
        if isinstance(data.get("columns"), dict):
            data["columns"] = {k: v if isinstance(v, str) else str(v) for k, v in data["columns"].items()}
        return data

    def validate(self) -> None:
        for role in self.columns:
            if role not in ROLES:
                raise FieldError(f"columns.{role}", unknown_key(role, ROLES, "role"))
        if "key" not in self.columns:
            raise FieldError("columns.key", "required, but missing (the column that names each sequence)")

        for src, dst in (self.layout_map or {}).items():
            try:
                layout_mapping(src, dst)
            except ConfigError as e:
                raise FieldError(f"layout_map.{src}", str(e)) from None

    def column(self, role: str) -> str | None:
        return self.columns.get(role)


def parse_layout_map(value) -> dict[str, str]:
    """``"SRC:DST"`` or a list of them as a dict (what ``--layout-map`` and a recipe may give)."""
    items = [value] if isinstance(value, str) else list(value)
    out = {}
    for item in items:
        src, sep, dst = str(item).partition(":")
        if not sep or not src.strip() or not dst.strip():
            raise FieldError("layout_map", f"expected SRC:DST (e.g. coco-wholebody-133:holistic-543), got {item!r}")
        out[src.strip()] = dst.strip()
    return out


def load_recipe(name_or_path: str) -> Recipe:
    """A bundled recipe by name (the file stem), or a recipe .yaml by path; the name defaults to the stem."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = manifests_dir() / f"{name_or_path}.yaml"
        if not p.is_file():
            raise ConfigError(f"unknown dataset recipe {name_or_path!r} (known: {', '.join(list_recipes())}; "
                              "or give a path to a recipe .yaml)")
    data = read_yaml(p)
    data.setdefault("name", p.stem)
    return build(Recipe, data, str(p))


def list_recipes() -> list[str]:
    return sorted(p.stem for p in manifests_dir().glob("*.yaml"))
