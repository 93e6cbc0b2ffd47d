"""What the command-line entry points (``python -m measures``, ``simbench``) share. Torch-free."""

from __future__ import annotations

import os
import signal
import sys


def closed_output_status() -> int:
    """After a ``BrokenPipeError`` (the reader of stdout went away: ``... | head``): point stdout at
    /dev/null, so that the interpreter's final flush does not raise again, and return 141, the status of
    a command killed by SIGPIPE. Python ignores SIGPIPE and raises from the next print instead."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE
