"""`python -m export {export,upscale} ...`: the two deployment commands without the launcher."""
from __future__ import annotations

import argparse
import sys

from export.cli import register_export, register_upscale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    register_export(subparsers)
    register_upscale(subparsers)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
