"""The ``simbench`` command: one name for every entry point of the project.

``simbench sweep [overrides]`` is ``python -m runners.sweep``, ``simbench measures list`` is
``python -m measures list``, and so on. A subcommand is one line of :data:`COMMANDS` (module, function,
help): the function takes the argument list and returns an exit status (or None for 0).

Installed as a console script, ``simbench`` runs with the environment's own ``sys.path``, without the
current directory on it: a ``tasks.py`` or ``measures.py`` of the user's in the working directory does
not shadow the project's packages (``python -m runners.sweep`` puts the working directory first).
"""

from __future__ import annotations

import importlib
import sys

from measures._cli import closed_output_status
from measures._suggest import suggest

#: subcommand -> (module, function taking argv and returning an exit status, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sweep": ("runners.sweep", "cli", "run a sweep: Hydra overrides, e.g. sweep=smoke (default: the benchmark)"),
    "measures": ("measures.__main__", "main", "the measure catalogue: list [--json] | info NAME | docs | catalogue"),
    "collect": ("runners.collect", "main", "collect a sweep's shards into scores.parquet: --sweep NAME"),
    "analyze": ("runners.analyze", "main", "run every analysis on a collected sweep: --sweep NAME"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: simbench COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`simbench COMMAND --help` describes each command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"simbench: unknown command {command!r}{suggest(command, COMMANDS, 'commands')}\n\n{usage()}",
              file=sys.stderr)
        return 2
    module, function, _ = COMMANDS[command]
    # Hydra (sweep) reads sys.argv itself: it must see the subcommand's arguments only
    sys.argv = [f"simbench {command}", *rest]
    try:
        status = getattr(importlib.import_module(module), function)(rest)
    except BrokenPipeError:  # the reader of our output went away (`simbench ... | head`): no traceback
        if command == "sweep":
            from runners.sweep import stop_on_broken_pipe

            stop_on_broken_pipe()  # stops the sweep's workers too
        return closed_output_status()
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())
