"""``python -m pyodejl``: the command line (see :mod:`pyodejl.experiments.cli`)."""

from __future__ import annotations

import sys


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from pyodejl.experiments.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
