"""`prep download`: the Kaggle dataset zip, resumable, checked, never exposing credentials.

Kaggle serves `nih-chest-xrays/data` as one zip (about 45 GB) that `prep shard` reads in place,
so nothing is extracted. The kaggle package authenticates and resolves the download; the bytes
are streamed here into `<name>.zip.part` with a progress bar, continued by an HTTP Range request
after an interruption (only when the server's ETag/size still match what the partial was started
from), checked against the size and, when the server sends one, the MD5 (`x-goog-hash` or
`Content-MD5`), and renamed to `<name>.zip` when complete. A `<name>.zip.done.json` record lets a
re-run skip a finished file without asking the server.

The kaggle package prints a long banner to stdout and calls `exit(1)` when credentials are
missing, and authenticates as a side effect of `import kaggle`; all of that is contained in
`_kaggle_response`, the one function that touches the network (tests replace only it).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

from data_prep.atomic import write_json_atomic

CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A download problem; `str()` is one line and never contains a credential."""


@dataclass
class RemoteFile:
    """An open HTTP response: status, headers and a byte-chunk iterator (the network stand-in's shape)."""

    status: int
    headers: dict[str, str]
    chunks: Iterator[bytes]
    close: Callable[[], None] = lambda: None


def kaggle_config_dir() -> Path:
    """Where the kaggle package looks for kaggle.json (same rule as the package)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured)
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def credential_source() -> str | None:
    """Which kind of Kaggle credential is available (a description, never the value), or None."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY environment variables"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN environment variable"
    folder = kaggle_config_dir()
    for name in ("kaggle.json", "access_token", "access_token.txt", "credentials.json"):
        if (folder / name).is_file():
            return str(folder / name)
    if (Path.home() / ".kaggle" / "credentials.json").is_file():
        return "~/.kaggle/credentials.json"
    return None


def require_credentials() -> str:
    """The credential source, or a one-line `DownloadError` saying how to provide one."""
    source = credential_source()
    if source is None:
        raise DownloadError(f"no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), "
                            f"or put kaggle.json in {kaggle_config_dir()}")
    return source


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """Swallow the kaggle package's stdout/stderr chatter (banners, URLs, retry notes)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _kaggle_response(dataset: str, start_byte: int, validator: str | None) -> RemoteFile:
    """The one network call: authenticate with the kaggle package and open the dataset zip,
    from `start_byte` on (HTTP Range, If-Range `validator`) when resuming."""
    try:
        with _silenced():
            import requests
            from kaggle.api.kaggle_api_extended import KaggleApi
            from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

            api = KaggleApi()
            api.authenticate()
            owner, slug, version = api.split_dataset_string(dataset)
            request = ApiDownloadDatasetRequest()
            request.owner_slug, request.dataset_slug = owner, slug
            request.dataset_version_number = int(version) if version else None
            with api.build_kaggle_client() as client:
                response = client.datasets.dataset_api_client.download_dataset(request)
            if start_byte:
                headers = dict(getattr(response.request, "headers", {}) or {})
                headers["Range"] = f"bytes={start_byte}-"
                if validator:
                    headers["If-Range"] = validator
                response.close()
                response = requests.get(response.url, headers=headers, stream=True, timeout=300)
    except SystemExit:
        raise DownloadError("Kaggle rejected or could not find the credentials") from None
    except Exception as exc:  # network, HTTP and SDK errors all end the same way for the user
        raise DownloadError(f"Kaggle request for {dataset} failed: {type(exc).__name__}: "
                            f"{_redacted(str(exc))}") from None
    return RemoteFile(response.status_code, dict(response.headers),
                      response.iter_content(CHUNK_BYTES), response.close)


def _redacted(message: str) -> str:
    """First line of an error, without URL query strings (signed download URLs carry tokens)."""
    first = message.splitlines()[0] if message else ""
    return re.sub(r"\?[^\s'\")]*", "?<redacted>", first)


def expected_md5(headers: dict[str, str]) -> str | None:
    """The hex MD5 the server vouches for (`x-goog-hash: md5=<b64>` or `Content-MD5`), or None."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for part in lowered.get("x-goog-hash", "").split(","):
        if part.strip().startswith("md5="):
            return base64.b64decode(part.strip()[4:]).hex()
    if "content-md5" in lowered:
        return base64.b64decode(lowered["content-md5"]).hex()
    return None


def _total_size(remote: RemoteFile, start_byte: int) -> int | None:
    headers = {k.lower(): v for k, v in remote.headers.items()}
    if remote.status == 206 and "/" in headers.get("content-range", ""):
        total = headers["content-range"].rsplit("/", 1)[1]
        return int(total) if total.isdigit() else None
    length = headers.get("content-length")
    return int(length) if length and length.isdigit() else None


@dataclass(frozen=True)
class DownloadPaths:
    """The files of one dataset download in `out`."""

    final: Path
    part: Path
    part_state: Path
    done: Path

    @classmethod
    def for_dataset(cls, out: Path, dataset: str) -> "DownloadPaths":
        """`<slug>.zip` and its companions (`nih-chest-xrays/data` -> data.zip)."""
        parts = dataset.strip("/").split("/")
        if len(parts) < 2 or not all(parts[:2]):
            raise DownloadError(f"dataset must look like owner/name, got {dataset!r}")
        name = f"{parts[1]}.zip"
        return cls(out / name, out / f"{name}.part", out / f"{name}.part.json", out / f"{name}.done.json")


def _already_done(paths: DownloadPaths) -> bool:
    try:
        record = json.loads(paths.done.read_text())
    except (OSError, ValueError):
        return False
    return paths.final.is_file() and paths.final.stat().st_size == record.get("bytes")


def _md5_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def _resume_point(paths: DownloadPaths) -> tuple[int, dict[str, Any]]:
    """(bytes already downloaded, the state they were started with); (0, {}) for a fresh start."""
    if not paths.part.is_file():
        return 0, {}
    try:
        return paths.part.stat().st_size, json.loads(paths.part_state.read_text())
    except (OSError, ValueError):
        return 0, {}  # a partial without its state cannot be proven to match the server's file


def _stream(remote: RemoteFile, paths: DownloadPaths, start: int, total: int | None, progress: bool) -> None:
    """Append the response body to the partial file, with a progress bar."""
    with open(paths.part, "ab" if start else "wb") as handle, \
            tqdm(total=total, initial=start, unit="B", unit_scale=True, disable=not progress,
                 desc=paths.final.name) as bar:
        try:
            for chunk in remote.chunks:
                handle.write(chunk)
                bar.update(len(chunk))
        except OSError as exc:  # requests' errors are OSErrors
            handle.flush()
            raise DownloadError(f"{paths.final.name}: interrupted after {handle.tell()} bytes "
                                f"({type(exc).__name__}); re-run to resume") from None
        finally:
            remote.close()


def _request(opener: Callable[..., RemoteFile], dataset: str, start: int, validator: str | None) -> RemoteFile:
    remote = opener(dataset, start, validator)
    if remote.status not in (200, 206):
        remote.close()
        raise DownloadError(f"{dataset}: the server answered HTTP {remote.status}")
    return remote


def _open(opener: Callable[..., RemoteFile], dataset: str, paths: DownloadPaths) -> tuple[RemoteFile, int, dict]:
    """Open the response, resuming when the partial still matches the server; returns
    (response, start byte, state to record)."""
    start, state = _resume_point(paths)
    if start and not state.get("validator"):
        start = 0  # without an ETag/Last-Modified, If-Range cannot prove the partial is the server's file
    remote = _request(opener, dataset, start, state.get("validator") if start else None)
    total = _total_size(remote, start)
    if remote.status == 206 and (not start or total != state.get("total")):
        # A ranged body of another file: appending it would corrupt the partial and writing it
        # at offset 0 would store the file's tail as its head, so start over without Range.
        remote.close()
        paths.part.unlink(missing_ok=True)
        start = 0
        remote = _request(opener, dataset, 0, None)
        if remote.status != 200:
            remote.close()
            raise DownloadError(f"{dataset}: the server answered HTTP {remote.status} to a whole-file request")
        total = _total_size(remote, 0)
    if remote.status == 200:
        start = 0  # the server sent the whole file (object changed or no Range support)
        headers = {k.lower(): v for k, v in remote.headers.items()}
        state = {"dataset": dataset, "total": total, "md5": expected_md5(remote.headers),
                 "validator": headers.get("etag") or headers.get("last-modified")}
    return remote, start, state


def download_dataset(out: Path, dataset: str = "nih-chest-xrays/data", *, progress: bool = True,
                     force: bool = False, opener: Callable[..., RemoteFile] | None = None) -> Path:
    """Download Kaggle `dataset`'s zip into `out` (see module docstring); return the zip's path.

    `opener(dataset, start_byte, validator) -> RemoteFile` performs the network request; the
    default uses the kaggle package.
    """
    out = Path(out)
    paths = DownloadPaths.for_dataset(out, dataset)
    if not force and _already_done(paths):
        return paths.final
    require_credentials()
    out.mkdir(parents=True, exist_ok=True)
    remote, start, state = _open(opener or _kaggle_response, dataset, paths)
    write_json_atomic(paths.part_state, state)
    _stream(remote, paths, start, state["total"], progress)
    size = paths.part.stat().st_size
    if state["total"] is not None and size != state["total"]:
        raise DownloadError(f"{paths.final.name}: got {size} of {state['total']} bytes; re-run to resume")
    if state["md5"] and _md5_of(paths.part) != state["md5"]:
        paths.part.unlink()
        paths.part_state.unlink()
        raise DownloadError(f"{paths.final.name}: MD5 differs from the server's; partial removed, re-run to download again")
    os.replace(paths.part, paths.final)
    write_json_atomic(paths.done, {"dataset": dataset, "bytes": size, "md5": state["md5"],
                                   "validator": state["validator"]})
    paths.part_state.unlink(missing_ok=True)
    return paths.final
