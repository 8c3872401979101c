"""The files `cxr-sr upscale` reads (files and folders), the names it writes, and the checks that
keep the two apart: an output never lands on, in or around an input.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.atomic import tmp_path_for
from data_prep.image_io import folder_skip_reason


@dataclass
class InputScan:
    """The files to read, and every file (or hidden folder) a folder input left out, with why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _scan_folder(folder: Path, scan: InputScan) -> None:
    def unreadable(exc: OSError) -> None:
        scan.skipped.append((Path(exc.filename or folder), f"cannot list: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        for name in sorted(d for d in dirnames if d.startswith(".")):
            scan.skipped.append((Path(dirpath) / name, "hidden folder"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            reason = folder_skip_reason(path)
            if reason is None:
                scan.files.append(path)
            else:
                scan.skipped.append((path, reason))


def scan_inputs(paths: Iterable[Path]) -> InputScan:
    """Named files as given (bad ones fail later, one by one); folders: their image files, sorted.

    Inside a folder a file is taken by data_prep.image_io.IMAGE_SUFFIXES (the list `prep shard`
    and the folder loader use), so a README next to the images is skipped, not an error, and is
    listed with the reason; files named explicitly are always attempted.
    """
    scan = InputScan()
    for path in map(Path, paths):
        if path.is_dir():
            _scan_folder(path, scan)
        else:
            scan.files.append(path)
    return scan


def collect_inputs(paths: Iterable[Path]) -> list[Path]:
    """The files of `scan_inputs`."""
    return scan_inputs(paths).files


class OutputPathError(ValueError):
    """An output folder or report path that is unusable or would touch an input; one line."""


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _writable_folder(folder: Path, what: str) -> None:
    """Creates `folder` if needed and proves a file can be made in it; OutputPathError otherwise."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "is a file" if ancestor == folder else f"lies below {ancestor}, which is a file"
                raise OutputPathError(f"{what} {folder} {where}, not a folder; choose a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tmp_path_for(folder / "write-check")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(f"{what} {folder} is not writable ({exc.strerror or exc}); "
                              "choose another folder") from None


def check_output_paths(inputs: Iterable[Path], out_dir: Path, report: Path) -> None:
    """Refuses, before any work, outputs that could replace or mix with inputs, and unusable paths.

    An output folder that is an input folder, lies inside one (a later run over it would take
    the outputs for inputs) or contains an input would write where originals live; so would a
    report inside an input folder or on an input file. Then the output folder and the report's
    folder are created and written to once, so a permission problem shows before the first image.
    """
    out, report_at = Path(out_dir).absolute().resolve(), Path(report).absolute().resolve()
    for given in map(Path, inputs):
        source = given.absolute().resolve()
        if source.is_dir():
            if out == source:
                raise OutputPathError(f"-o {out_dir} is the input folder {given}: the outputs would replace "
                                      "or mix with the originals; choose another output folder")
            if _within(out, source):
                raise OutputPathError(f"-o {out_dir} lies inside the input folder {given}: a later run over "
                                      f"{given} would take the outputs for inputs; choose a folder outside it")
            if _within(report_at, source):
                raise OutputPathError(f"--report {report} lies inside the input folder {given}; "
                                      "write it elsewhere")
        if source != out and _within(source, out):
            raise OutputPathError(f"-o {out_dir} contains the input {given}, which an output could replace; "
                                  "choose an output folder outside the inputs")
        if report_at == source:
            raise OutputPathError(f"--report {report} is an input file; write it elsewhere")
    if Path(report).suffix.lower() not in (".json", ".csv"):
        raise OutputPathError(f"--report {report} must end in .json or .csv (the format follows the name)")
    _writable_folder(Path(out_dir), "-o")
    if report_at.is_dir():
        raise OutputPathError(f"--report {report} is a folder; give a .json or .csv file name")
    _writable_folder(Path(report).parent, "--report's folder")


def output_path(source: Path, out_dir: Path, kind: str, taken: set[Path]) -> Path:
    """``out_dir/<stem>.png|.dcm``, with ``-1``, ``-2``... when two inputs share a stem."""
    suffix = ".dcm" if kind == "dicom" else ".png"
    candidate = out_dir / f"{source.stem}{suffix}"
    counter = 1
    while candidate in taken:
        candidate = out_dir / f"{source.stem}-{counter}{suffix}"
        counter += 1
    taken.add(candidate)
    return candidate
