"""`cxr-sr upscale` for launch/cli.py's COMMANDS table."""
from export.cli import register_upscale as register

__all__ = ["register"]
