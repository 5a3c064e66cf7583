"""The ``ltag`` command line: a thin typer layer over the library API.

Each command group lives in ``landmark_tagger/commands/<name>.py`` and exposes
``register(app)``; this module only wires them together and maps :class:`LtagError` to a red
message and exit code 1 (tracebacks with ``--debug``). Command modules import heavy libraries
(onnxruntime, faiss, numpy) inside their functions so that ``ltag --help`` and a rescan of
unchanged files start fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import typer

from landmark_tagger import __version__
from landmark_tagger.errors import LtagError

# Registration order is the order of ``ltag --help``.
COMMAND_MODULES = ["scan", "search", "rename", "learn", "review", "model"]

app = typer.Typer(
    name="ltag",
    help="Recognise landmarks in your photos, write them as keywords, search and rename your archive. Offline.",
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_state = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ltag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logging."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """ltag: a landmark tagger for photographers."""
    _state["debug"] = debug or bool(os.environ.get("LTAG_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if _state["debug"] else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"landmark_tagger.commands.{_name}")
    except ModuleNotFoundError as _e:  # a command group not built yet in this checkout
        if _e.name != f"landmark_tagger.commands.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        rc = app(standalone_mode=False)  # click returns a command's typer.Exit code instead of raising it
        if rc == 130:  # typer turns Ctrl-C into Exit(130)
            raise KeyboardInterrupt
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except LtagError as e:
        if _state["debug"]:
            raise
        from landmark_tagger.console import error

        error(str(e))
        sys.exit(1)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        from landmark_tagger.console import error

        error("Aborted.")
        sys.exit(1)
    except BrokenPipeError:
        # stdout closed early (`ltag search --paths | head -1`): stop quietly, like any Unix filter
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        sys.exit(141)
    except KeyboardInterrupt:
        from landmark_tagger.console import error

        error("Interrupted. Finished work is saved; run the same command again to continue.")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        import click

        # typer >= 0.20 raises its own vendored click's exceptions (typer._click), not click's: match by class
        if isinstance(e, click.ClickException) or any(c.__name__ == "ClickException" for c in type(e).__mro__):
            e.show()
            sys.exit(e.exit_code)
        if _state["debug"]:
            raise
        from landmark_tagger.console import error

        error(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        sys.exit(1)
