"""Atomic file output: write under a temporary name in the target folder, then `os.replace`.

A reader (or a resumed run) therefore sees either no file or a complete one, never a torn one.
Temporary names are `.NAME.PID.tmp` (or `.NAME.PID.tmp.EXT` for writers that insist on a
suffix), so a later run can recognise the ones a killed process left and delete them.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"
TMP_NAME = re.compile(r"^\..+\.(\d+)\.tmp(\.[A-Za-z0-9]+)?$")


def tmp_path_for(path: Path, keep_suffix: bool = False) -> Path:
    """The temporary name under which `path` is written (same folder, so the rename is atomic).

    `keep_suffix` appends `path`'s suffix again, for writers that pick a format by the name.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}{path.suffix if keep_suffix else ''}")


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb", *, durable: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces `path` only if the block finishes without error.

    A killed process cannot leave a torn `path` either way; `durable` adds an fsync so that a
    power loss cannot either (worth it for shards and manifests, not for thousands of PNGs).
    """
    path = Path(path)
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_folder(path.parent)  # the rename itself is an entry in the folder
    finally:
        if tmp.exists():
            tmp.unlink()


def fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries (a rename into it) to disk, on systems that allow it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder; its renames are journalled anyway
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(data)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write `obj` as indented, key-sorted JSON (so equal objects give equal bytes)."""
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"), durable=True)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is only starting: whatever it left is from an earlier life
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete the temporary files of `tmp_path_for` in `folder` whose writing process is gone
    (a killed run); those of a live process (another run writing there now) stay. Returns what
    was removed."""
    removed = []
    for path in sorted(Path(folder).glob(".*")):
        match = TMP_NAME.match(path.name)
        if match and path.is_file() and not _process_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
