"""The `sltdata` command line. Modules here parse arguments and call the library; nothing more.

Each command group lives in its own module and registers on ``app``; ``main`` turns every
``SltdataError`` (a user mistake) into one line on stderr and exit code 2, an ``OSError`` on a path
(permission denied, not a directory, no space) into one line naming the path, and a missing optional
dependency into one line naming the extra that installs it (read from the package's own metadata,
so the hint cannot drift from pyproject.toml). An ``OSError`` that names no path is left as a
traceback: it is a bug to see, not a user's mistake.
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys

import typer
import typer.main
from rich.console import Console
from rich.markup import escape

from sltdata.errors import SltdataError

app = typer.Typer(
    name="sltdata",
    help="Sign-language pose datasets: ingest publisher formats, validate, shard, and train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES = ("sltdata.cli.quickstart", "sltdata.cli.data", "sltdata.cli.extract", "sltdata.cli.shard",
                   "sltdata.cli.stats", "sltdata.cli.keys", "sltdata.cli.audit", "sltdata.cli.merge",
                   "sltdata.cli.train", "sltdata.cli.predict")

# Import names whose distribution is named differently; every other module is looked up by its own
# name ('_' and '-' alike), e.g. rouge_score -> rouge-score.
DISTRIBUTIONS = {"cv2": "opencv-contrib-python"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _optional_distributions() -> dict[str, str]:
    """Distribution -> the extra that installs it, for distributions only extras bring (not core ones).

    Read from ``importlib.metadata.requires("sltdata")``: the extras as pyproject.toml declares them.
    """
    from importlib.metadata import PackageNotFoundError, requires

    try:
        reqs = requires("sltdata") or []
    except PackageNotFoundError:  # run from a checkout that was never installed: no hints
        return {}
    core, extras = set(), {}
    for req in reqs:
        name = _canonical(re.match(r"[A-Za-z0-9._-]+", req).group())
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", req)
        if extra is None:
            core.add(name)
        elif extra.group(1) != "dev" or name not in extras:  # a user-facing extra beats dev
            extras[name] = extra.group(1)
    return {name: extra for name, extra in extras.items() if name not in core}


def extra_for(module: str) -> str | None:
    """The extra (``train``, ``viz``, ``extract``) whose install provides ``module``; None for core modules."""
    top = module.split(".")[0]
    return _optional_distributions().get(_canonical(DISTRIBUTIONS.get(top, top)))


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sltdata")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        from sltdata import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sltdata {package_version()}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
    storage_option: list[str] = typer.Option([], "--storage-option", metavar="KEY=VALUE",
                                             help="fsspec storage option for s3:// gs:// hf:// paths (repeatable); "
                                                  "credentials also come from the environment (AWS_ENDPOINT_URL...)."),
) -> None:
    # No docstring: the app's help= is the group's help.
    from sltdata import fs

    fs.set_storage_options(storage_option)


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def _hide_flag_types(command) -> None:
    """Typer's rich help prints a ``<bool>`` type beside every flag (``--help`` too) although a flag
    takes no value; an empty metavar leaves the type column blank. Applied to every command.

    Duck-typed: typer vendors its own click, so ``click.Option`` is not the class these are."""
    ctx = typer.Context(command, info_name=command.name)
    for param in [*command.params, command.get_help_option(ctx)]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_types(sub)


def build_command():
    """The click command tree of ``app`` with every command registered."""
    _register()
    command = typer.main.get_command(app)
    _hide_flag_types(command)
    return command


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    command = build_command()
    try:
        command.main(args=argv, prog_name="sltdata")  # click handles usage errors and --help, then exits
    except SltdataError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        return 2
    except ModuleNotFoundError as e:
        name = e.name or ""
        extra = extra_for(name) if name else None
        if extra is None:
            raise
        console.print(f"[bold red]error:[/] this needs {escape(name)}, which is not installed: "
                      f"pip install {escape(repr(f'sltdata[{extra}]'))}", highlight=False, soft_wrap=True)
        return 2
    except OSError as e:
        if e.filename is None or not e.strerror:  # not about a path: a bug, shown in full
            raise
        where = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
        console.print(f"[bold red]error:[/] {escape(str(where))}: {escape(e.strerror)}", highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
