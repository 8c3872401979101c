"""`cxr-sr export` for launch/cli.py's COMMANDS table."""
from export.cli import register_export as register

__all__ = ["register"]
