"""The README's executable parts: its shell commands (run by ``tests/test_readme.py``) and its rank
table, which must be the generated ``tables/ranks.md``.

``python -m simbench.readme ranks [--generated results/benchmark/tables/ranks.md] [--check]`` copies
the generated rank table into README.md (or, with ``--check``, lists the rows that differ).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RANKS = ROOT / "results" / "benchmark" / "tables" / "ranks.md"
#: the header of the rank table (README and generated ranks.md start their table with it)
RANK_HEADER = "| measure | family | rank_score |"


def bash_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks, with comments and continuation lines joined, in order."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        pending = ""
        for line in block.splitlines():
            line = pending + line
            if line.rstrip().endswith("\\"):
                pending = line.rstrip()[:-1] + " "
                continue
            pending = ""
            lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
            lexer.whitespace_split, lexer.commenters = True, "#"
            words = list(lexer)
            if words:
                commands.append(normalise(" ".join(_quote(w) for w in words)))
    return commands


def inline_commands(text: str) -> list[str]:
    """Every inline code span that is a command (starts with ``uv run``), in order."""
    return [normalise(c) for c in re.findall(r"`(uv run [^`]+)`", text)]


def commands(text: str) -> list[str]:
    """Every command the README shows (bash blocks, then inline ``uv run`` spans), each once."""
    return list(dict.fromkeys([*bash_commands(text), *inline_commands(text)]))


def _quote(word: str) -> str:
    return shlex.quote(word) if re.search(r"[\s'\"()\[\]$]", word) else word


def normalise(command: str) -> str:
    """One spelling per command: words re-quoted the same way, single spaces."""
    return " ".join(_quote(w) for w in shlex.split(command))


def rank_table(text: str) -> list[str]:
    """The lines of the first Markdown table whose header starts with :data:`RANK_HEADER`."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(RANK_HEADER):
            end = i
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            return lines[i:end]
    raise ValueError(f"no rank table (a table starting {RANK_HEADER!r}) found")


def rank_table_differences(readme: Path = README, generated: Path = RANKS) -> list[str]:
    """The rows where README's rank table differs from the generated one (empty: they agree)."""
    ours, theirs = rank_table(Path(readme).read_text()), rank_table(Path(generated).read_text())
    if ours[0] != theirs[0]:
        return [f"header: README {ours[0]!r} vs generated {theirs[0]!r}"]
    diffs = [f"row {n}: README {a!r} vs generated {b!r}" for n, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if len(ours) != len(theirs):
        diffs.append(f"README has {len(ours) - 2} rows, the generated table {len(theirs) - 2}")
    return diffs


def write_rank_table(readme: Path = README, generated: Path = RANKS) -> None:
    """Replace README's rank table by the generated one."""
    text = Path(readme).read_text()
    old = "\n".join(rank_table(text))
    Path(readme).write_text(text.replace(old, "\n".join(rank_table(Path(generated).read_text())), 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simbench.readme", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ranks = sub.add_parser("ranks", help="copy the generated rank table into README.md")
    ranks.add_argument("--generated", type=Path, default=RANKS, help=f"generated ranks.md (default: {RANKS})")
    ranks.add_argument("--readme", type=Path, default=README)
    ranks.add_argument("--check", action="store_true", help="only list the rows that differ")
    args = parser.parse_args(argv)
    if not args.generated.exists():
        print(f"error: no generated table at {args.generated}; run the benchmark (or its analysis) first",
              file=sys.stderr)
        return 2
    diffs = rank_table_differences(args.readme, args.generated)
    if args.check:
        print("\n".join(diffs) or "README's rank table is the generated one")
        return 1 if diffs else 0
    write_rank_table(args.readme, args.generated)
    print(f"{args.readme}: rank table replaced ({len(diffs)} row(s) differed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
