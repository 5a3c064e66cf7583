"""The ``ltag`` console script (and ``python -m landmark_tagger``): a thin guard around :func:`landmark_tagger.cli.main`.

Only the standard library is imported here, so that a Ctrl-C while the CLI's own modules are still importing (typer,
numpy, ...: the first ~0.2 s) ends like one during a command, with exit code 130 and no traceback. Once the command
has finished and reported, a Ctrl-C during the interpreter's shutdown (thread joins, weakref callbacks, the decoding
workers' exit) is ignored: the work is done, and a traceback over a finished run would only alarm.
"""

from __future__ import annotations

import os
import signal
import sys

_console = False  # running as the console script (never set in a library caller's process)


def finishing() -> None:
    """A command calls this once its work is done and recorded: from then on (closing, its report, the interpreter's
    shutdown, where a KeyboardInterrupt would surface as an "Exception ignored" traceback in some finaliser) a
    Ctrl-C is ignored -- only when running as the console script."""
    if _console:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _single_threaded_math() -> None:
    """Let numpy's OpenBLAS and faiss's OpenMP run in the calling thread, unless the user says otherwise.

    Both libraries start one worker thread per core, and those threads spin-wait for work after every call. ltag's
    own matrix work is small: a few hundred vectors against a gallery of a few thousand. So on a 2-core machine,
    importing numpy alone burned ~0.12 s of CPU in OpenBLAS's idle thread, and faiss's threads spun after each
    batch's search. In ``ltag scan`` both ran on the cores the decoding workers need. The variables must be set
    before numpy is imported, and the decoders' fork server inherits them. onnxruntime has its own thread pool
    and does not read them."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def main() -> None:
    global _console
    _console = True
    _single_threaded_math()
    try:
        from landmark_tagger.forkserver import start_for_argv

        # ltag scan: the decoders' fork server imports its modules on another core while the CLI's import here
        start_for_argv(sys.argv[1:])
        from landmark_tagger.cli import main as cli_main
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    try:
        cli_main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
