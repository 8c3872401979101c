"""Helpers for the bad-input tests (no tests here): input hashes, the CLI in a subprocess under a
file-size limit or bound by folder modes even as root, and the one-line-error check."""
from __future__ import annotations

import ctypes
import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders), keyed by path: equal snapshots before
    and after a command mean it changed, added and removed nothing there."""
    digests = {}
    for root in map(Path, paths):
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def error_lines(stderr: str) -> list[str]:
    """The `error:` lines, after checking that nothing went out as a traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if "error:" in line]


def one_error(stderr: str, *fragments: str) -> str:
    """The single error line of `stderr`, which must contain every fragment."""
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


PR_CAPBSET_DROP = 24
# CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: what lets root write where modes say no
FILE_OVERRIDE_CAPS = (1, 2, 3)


def _limits(file_size_bytes: int | None, honour_modes: bool):
    def apply() -> None:
        if file_size_bytes is not None:
            # with SIGXFSZ ignored a write past the limit fails with EFBIG, as a full disk fails
            # with ENOSPC: an OSError at the write, which is what the command must survive
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_bytes, file_size_bytes))
        if honour_modes and os.geteuid() == 0:
            # dropped from the bounding set, they are gone after exec too
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in FILE_OVERRIDE_CAPS:
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
    return apply


def run_cli(args: list[str], *, file_size_bytes: int | None = None, honour_modes: bool = False,
            timeout_s: int = 300) -> subprocess.CompletedProcess:
    """`cxr-sr ARGS` in a fresh interpreter, optionally under RLIMIT_FSIZE, or (`honour_modes`)
    without root's power to write into folders whose mode forbids it."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", "import sys; from launch.cli import main; sys.exit(main())", *args],
                          capture_output=True, text=True, timeout=timeout_s, cwd=PROJECT_ROOT, env=env,
                          preexec_fn=_limits(file_size_bytes, honour_modes))
