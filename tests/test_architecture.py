"""The import structure issue 11 asks for, measured with ``ast`` over every module of ``sltdata`` and
``trainers`` (imports inside functions count: a function-local import is still a dependency, it only
hides from a reader of the module's head).

- nothing under ``sltdata/`` imports ``trainers`` (the library never depends on its plugins);
- no trainer plugin (an entry point in pyproject.toml) imports another; they share ``trainers.common``;
- the module import graph has no cycle;
- exactly one module reads the members of a tar (the shard format has one reader).
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sltdata", "trainers")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """Every dotted name ``path`` imports, anywhere in it, relative imports resolved against ``name``;
    ``from a import b`` gives ``a.b`` when that is one of the ``known`` modules, else ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the project modules it imports}: each import resolved to the deepest module it names,
    plus the packages above that module (importing ``a.b.c`` runs ``a/b/__init__.py`` too), except the
    importing module's own packages, which are already running."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for imp in imported_names(name, path, set(mods)):
            parts = imp.split(".")
            deepest = next((n for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in mods), 0)
            targets.update(".".join(parts[:n]) for n in range(1, deepest + 1)
                           if ".".join(parts[:n]) in mods and not name.startswith(".".join(parts[:n]) + "."))
        graph[name] = targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def plugin_modules() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    eps = project["project"]["entry-points"]["sltdata.trainers"]
    return {value.split(":")[0] for value in eps.values()}


def reads_tar_members(source: str) -> bool:
    """Opens a tar for reading (``tarfile.open`` in an ``r`` mode, the default), extracts or lists
    its members, or iterates them with webdataset's tar iterators."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("webdataset") and (
                node.module == "webdataset.tariterators"
                or any(a.name in ("tar_file_iterator", "tariterators") for a in node.names)):
            return True
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in ("extractfile", "getmembers", "getnames"):
            return True
        if node.func.attr == "open" and isinstance(node.func.value, ast.Name) and node.func.value.id == "tarfile":
            mode = next((k.value for k in node.keywords if k.arg == "mode"), node.args[1] if len(node.args) > 1 else None)
            if not isinstance(mode, ast.Constant) or str(mode.value).startswith("r"):
                return True
    return False


# --- the measures ---------------------------------------------------------------------------------

def test_the_graph_sees_function_local_imports():
    # runs.train imports the loop inside the function: the graph must still have the edge
    assert "sltdata.train.loop" in import_graph()["sltdata.train.runs"]


def test_from_imports_resolve_to_the_module_or_the_package_they_name():
    graph = import_graph()
    assert "sltdata.train.checkpoint" in graph["sltdata.train.loop"]      # from sltdata.train import checkpoint
    assert "trainers.common.blocks" in graph["trainers.islr"]
    assert "trainers.common" in graph["trainers.islr"]                    # from trainers.common import CONFIGS_DIR
    assert "sltdata.train" in graph["trainers.islr"]                      # the package above sltdata.train.base
    assert "sltdata.train" not in graph["sltdata.train.loop"]             # its own package is already running


def test_relative_imports_resolve_against_the_importing_module(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("from . import loop\nfrom ..errors import ConfigError\n")
    known = {"sltdata.train.loop", "sltdata.errors"}
    assert imported_names("sltdata.train.x", path, known) == {"sltdata.train.loop", "sltdata.errors"}


def test_tar_readers_are_told_from_tar_writers():
    assert reads_tar_members("import tarfile\nwith tarfile.open(p) as t:\n    t.extractfile(m)\n")
    assert reads_tar_members("import tarfile\ntarfile.open(fileobj=f, mode='r|')\n")
    assert reads_tar_members("from webdataset.tariterators import group_by_keys, tar_file_iterator\n")
    assert not reads_tar_members("import tarfile\ntarfile.open(p, 'w')\nti = tarfile.TarInfo('a')\n")


def test_nothing_in_sltdata_imports_trainers():
    mods = modules()
    offenders = {name: sorted(i for i in imported_names(name, path, set(mods)) if i.split(".")[0] == "trainers")
                 for name, path in mods.items() if name.split(".")[0] == "sltdata"}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_trainer_entry_point_is_a_module_here():
    assert plugin_modules() == {"trainers.islr", "trainers.ctc", "trainers.seq2seq", "trainers.causal_lm"}
    assert plugin_modules() <= set(modules())


def test_no_trainer_plugin_imports_another_trainer_module():
    # a plugin imports sltdata and trainers.common only; trainers.common imports no plugin
    graph, plugins = import_graph(), plugin_modules()
    wrong = {m: sorted(t for t in graph[m] if t.startswith("trainers") and not t.startswith("trainers.common"))
             for m in plugins}
    assert {k: v for k, v in wrong.items() if v} == {}
    common = {m: sorted(graph[m] & plugins) for m in graph if m.startswith("trainers.common")}
    assert {k: v for k, v in common.items() if v} == {}


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_exactly_one_module_reads_tar_members():
    # sltdata.shards.tar owns the tar format (headers for the writer, member iteration for the reader)
    readers = sorted(name for name, path in modules().items() if reads_tar_members(path.read_text()))
    assert readers == ["sltdata.shards.tar"]
