"""`cxr-sr app`: the Streamlit command line it builds.

Why: the app must listen on the loopback address unless told otherwise, never phone home, hide
error details from the page, and accept uploads as large as the page's own limit says.
"""
from __future__ import annotations

from pathlib import Path

from launch.app.processing import MAX_UPLOAD_BYTES
from launch.app_command import APP_SCRIPT, streamlit_command
from launch.cli import build_parser


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_defaults_are_loopback_private_and_quiet():
    """Default address 127.0.0.1, no usage statistics, no error details, upload limit above ours."""
    args = build_parser(only="app").parse_args(["app"])
    command = streamlit_command(args.address, args.port, args.model)
    assert command[3:5] == ["run", str(APP_SCRIPT)] and APP_SCRIPT.is_file()
    assert _option(command, "--server.address") == "127.0.0.1"
    assert _option(command, "--browser.gatherUsageStats") == "false"
    assert _option(command, "--client.showErrorDetails") == "false"
    assert int(_option(command, "--server.maxUploadSize")) * 2**20 >= MAX_UPLOAD_BYTES
    assert "--" not in command  # no model: the page lists what it finds


def test_model_is_passed_to_the_script_as_an_absolute_path(tmp_path):
    """The page shows the model by its path and lists it beside those under ./runs: one absolute path."""
    command = streamlit_command("127.0.0.1", 8600, Path("model.pt"))
    assert command[-3:] == ["--", "--model", str(Path("model.pt").resolve())]


def test_without_model_the_app_starts_on_the_shipped_default_model(monkeypatch, capsys):
    """A fresh install has no demo run: the app must start on the packaged model and say so."""
    from export.default_model import DEFAULT_MODEL
    from launch import app_command

    started = []
    monkeypatch.setattr(app_command.subprocess, "call", lambda command: started.append(command) or 0)
    args = build_parser(only="app").parse_args(["app"])
    assert app_command.run(args) == 0
    assert started[0][-3:] == ["--", "--model", str(DEFAULT_MODEL)]
    notice = [line for line in capsys.readouterr().err.splitlines() if "shipped default model" in line]
    assert len(notice) == 1 and DEFAULT_MODEL.name in notice[0]
