"""The `sltdata` command line. Modules here parse arguments and call the library; nothing more.

Each command group lives in its own module and registers on ``app``; ``main`` turns every
``SltdataError`` (a user mistake) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
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
                   "sltdata.cli.stats", "sltdata.cli.train")


# Modules of the optional extras (pyproject.toml), so a missing one is an install hint, not a traceback.
OPTIONAL_MODULES = {
    **dict.fromkeys(("torch", "safetensors", "tensorboard", "rapidfuzz", "sacrebleu", "transformers", "peft",
                     "rouge_score", "onnx", "onnxscript", "onnxruntime"), "train"),
    "matplotlib": "viz",
    **dict.fromkeys(("mediapipe", "cv2"), "extract"),
}


def _register() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    _register()
    try:
        app(args=argv, prog_name="sltdata")  # click handles usage errors and --help, then exits
    except SltdataError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        return 2
    except ModuleNotFoundError as e:
        extra = OPTIONAL_MODULES.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        console.print(f"[bold red]error:[/] this needs {escape(e.name)}, which is not installed: "
                      f"pip install {escape(repr(f'sltdata[{extra}]'))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
