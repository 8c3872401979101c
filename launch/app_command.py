"""``cxr-sr app``: the Streamlit demo app (upload an X-ray, compare LR, bicubic and SR).

    cxr-sr app                                  # http://127.0.0.1:8501, the shipped default model
    cxr-sr app --model model.pt --port 8600

Runs ``streamlit run launch/app/streamlit_app.py`` on a loopback address by default, headless,
without usage statistics, with error details hidden from the page.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

APP_SCRIPT = Path(__file__).resolve().parent / "app" / "streamlit_app.py"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("app", help="the Streamlit demo app", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path,
                        help="TorchScript model to start with (default: the shipped default model, "
                             "export/models/cxr_sr_x4.pt)")
    parser.add_argument("--address", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8501)
    parser.set_defaults(run=run)
    return parser


def streamlit_command(address: str, port: int, model: Path | None) -> list[str]:
    """The ``streamlit run`` command line for the app."""
    from launch.app.processing import MAX_UPLOAD_BYTES

    command = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
               "--server.address", address, "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.showErrorDetails", "false",
               "--client.toolbarMode", "minimal", "--server.fileWatcherType", "none",
               "--server.maxUploadSize", str(MAX_UPLOAD_BYTES // 2**20 + 1), "--theme.base", "light"]
    if model is not None:
        command += ["--", "--model", str(model.resolve())]
    return command


def run(args: argparse.Namespace) -> int:
    try:
        import streamlit  # noqa: F401  (only to say how to install it)
    except ImportError:
        print("cxr-sr app: streamlit is not installed: pip install streamlit", file=sys.stderr)
        return 2
    from export.default_model import default_model_notice, default_model_path

    model = args.model
    if model is None:
        try:
            model = default_model_path()
        except FileNotFoundError as exc:
            print(f"cxr-sr app: {exc}", file=sys.stderr)
            return 2
        print(f"cxr-sr app: {default_model_notice()}", file=sys.stderr)
    print(f"cxr-sr app: http://{args.address}:{args.port}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        return subprocess.call(streamlit_command(args.address, args.port, model))
    except KeyboardInterrupt:
        return 0
