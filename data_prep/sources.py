"""Where images come from: a folder or a zip, read in place (a zip is never extracted to disk).

A source lists its files with their sizes and reads one file's bytes. Sources are picklable (they
hold only a path), so each worker process reopens the zip itself. Names are relative posix paths;
a zip member whose name would escape the output folder (absolute, `..`, drive letters) is listed
among the refused entries instead of the files.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Entry:
    """One file of a source: its relative posix name and its size in bytes."""

    name: str
    size: int


def is_unsafe_name(name: str) -> bool:
    """True for names that would escape a folder they were extracted into (zip slip)."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return True
    return ".." in PurePosixPath(posix).parts


@dataclass
class FolderSource:
    """Every regular file under `root` (hidden files and folders excluded)."""

    root: Path
    kind: str = "folder"

    def entries(self) -> tuple[list[Entry], list[tuple[str, str]]]:
        """(files sorted by name, refused (name, reason) pairs)."""
        root = Path(self.root).resolve()
        files, refused = [], []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(f for f in filenames if not f.startswith(".")):
                path = Path(dirpath) / filename
                name = path.relative_to(root).as_posix()
                if path.is_symlink() and not path.resolve().is_relative_to(root):
                    refused.append((name, "symlink pointing outside the source folder"))
                    continue
                if path.is_file():
                    files.append(Entry(name, path.stat().st_size))
        return sorted(files, key=lambda e: e.name), refused

    def read(self, name: str) -> bytes:
        """The bytes of file `name`."""
        return (Path(self.root) / name).read_bytes()

    def describe(self) -> dict:
        """json-ready description for the manifest."""
        return {"kind": self.kind, "path": str(self.root)}


@dataclass
class ZipSource:
    """The members of a zip archive, read directly from it."""

    path: Path
    kind: str = "zip"
    _zip: zipfile.ZipFile | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_zip"] = None  # an open archive cannot cross a process boundary
        return state

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ValueError(f"{self.path}: not a readable zip ({exc})") from exc
        return self._zip

    def entries(self) -> tuple[list[Entry], list[tuple[str, str]]]:
        """(members sorted by name, refused (name, reason) pairs)."""
        files, refused = [], []
        for info in self._archive().infolist():
            if info.is_dir():
                continue
            if is_unsafe_name(info.filename):
                refused.append((info.filename, "unsafe member name (would escape the output folder)"))
                continue
            base = PurePosixPath(info.filename).name
            if base.startswith(".") or info.filename.startswith("__MACOSX/"):
                continue
            files.append(Entry(info.filename, info.file_size))
        return sorted(files, key=lambda e: e.name), refused

    def read(self, name: str) -> bytes:
        """The bytes of member `name` (CRC-checked by zipfile)."""
        return self._archive().read(name)

    def describe(self) -> dict:
        """json-ready description for the manifest."""
        return {"kind": self.kind, "path": str(self.path)}


def open_source(path: Path) -> FolderSource | ZipSource:
    """A folder or a zip file; anything else is a one-line error."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if path.is_file() and zipfile.is_zipfile(path):
        return ZipSource(path)
    if not path.exists():
        raise ValueError(f"{path}: source does not exist")
    if path.is_file() and _starts_like_a_zip(path):
        raise ValueError(f"{path}: truncated zip (its table of contents at the end is missing), as a "
                         "partial download leaves it; resume it with `cxr-sr prep download`")
    raise ValueError(f"{path}: source must be a folder or a zip file")


def _starts_like_a_zip(path: Path) -> bool:
    """A zip's first local header is at the start; its central directory, which a cut-off
    download lacks, at the end."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    except OSError:
        return False
