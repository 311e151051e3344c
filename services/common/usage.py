"""Command lines that report bad usage in one line, naming the flag, with exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_USAGE = 2
"""Exit status of every cfgclone command given a bad flag or setting."""


class OneLineParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line, not usage plus error.

    Sub-command parsers made by ``add_subparsers`` are of the same class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def usage_error(program: str, message: str) -> int:
    """Print a bad setting or usage as one line on standard error; return exit status 2."""
    print(f"{program}: {message}", file=sys.stderr)
    return EXIT_USAGE
