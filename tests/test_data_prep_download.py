"""`prep download` up to the one network call, which a local stand-in serves.

Kaggle is unreachable in CI, so the stand-in answers like Kaggle's storage does (Content-Length,
ETag, x-goog-hash, HTTP Range); credential handling, resume, size and hash checks are real.
"""
from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from data_prep import download as dl
from data_prep.cli import main as prep_main

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB stands in for the 45 GB zip
SECRET = "kaggle-key-7f3a9c"


class StandIn:
    """A fake Kaggle storage endpoint; `fail_after` bytes cuts the connection once;
    `if_range=False` answers every Range with 206, as a server ignoring If-Range does."""

    def __init__(self, payload: bytes = PAYLOAD, fail_after: int | None = None, md5: bytes | None = None,
                 if_range: bool = True):
        self.payload, self.fail_after, self.calls, self.if_range = payload, fail_after, [], if_range
        self.md5 = md5 or hashlib.md5(payload).digest()

    def __call__(self, dataset: str, start_byte: int, validator: str | None) -> dl.RemoteFile:
        self.calls.append((dataset, start_byte, validator))
        headers = {"ETag": '"v1"', "x-goog-hash": f"crc32c=AAAA==,md5={base64.b64encode(self.md5).decode()}"}
        if start_byte and (validator == '"v1"' or not self.if_range):
            body, status = self.payload[start_byte:], 206
            headers.update({"Content-Length": str(len(body)),
                            "Content-Range": f"bytes {start_byte}-{len(self.payload) - 1}/{len(self.payload)}"})
        else:
            body, status = self.payload, 200
            headers["Content-Length"] = str(len(body))
        return dl.RemoteFile(status, headers, self._chunks(body))

    def _chunks(self, body: bytes):
        cut, self.fail_after = self.fail_after, None
        for offset in range(0, len(body), 65536):
            if cut is not None and offset >= cut:
                raise ConnectionResetError("connection reset by peer")
            yield body[offset:offset + 65536]


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Kaggle credential anywhere: environment cleared, HOME an empty folder."""
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def credentials(no_credentials, monkeypatch: pytest.MonkeyPatch) -> None:
    """Legacy username/key credentials in the environment (the key is SECRET)."""
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    monkeypatch.setenv("KAGGLE_KEY", SECRET)


def test_missing_credentials_is_one_clear_line_and_no_banner(no_credentials, tmp_path: Path, capsys) -> None:
    """The kaggle package prints a long banner and exits; the user must get one line instead,
    and the network must not even be tried."""
    stand_in = StandIn()
    with pytest.raises(dl.DownloadError) as caught:
        dl.download_dataset(tmp_path / "out", opener=stand_in, progress=False)
    assert "no Kaggle credentials" in str(caught.value) and "\n" not in str(caught.value)
    assert stand_in.calls == []
    assert prep_main(["download", "--out", str(tmp_path / "out"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and "KAGGLE_KEY" in captured.err


def test_credentials_file_in_kaggle_dir_is_found(no_credentials, tmp_path: Path) -> None:
    """~/.kaggle/kaggle.json is the usual place; it counts as credentials without being read out."""
    folder = tmp_path / "home" / ".kaggle"
    folder.mkdir(parents=True)
    (folder / "kaggle.json").write_text(json.dumps({"username": "alice", "key": SECRET}))
    assert dl.credential_source() == str(folder / "kaggle.json")


def test_download_completes_with_size_and_md5_checked_and_no_secret_printed(credentials, tmp_path: Path,
                                                                            capsys) -> None:
    """The happy path: the zip lands under its final name only when complete and verified."""
    path = dl.download_dataset(tmp_path / "out", opener=StandIn(), progress=True)
    assert path == tmp_path / "out" / "data.zip" and path.read_bytes() == PAYLOAD
    assert not list((tmp_path / "out").glob("*.part*"))
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err


def test_interrupted_download_resumes_from_where_it_stopped(credentials, tmp_path: Path) -> None:
    """45 GB will be interrupted: the re-run must ask only for the missing bytes (Range with the
    ETag it started from) and end with the exact file."""
    stand_in = StandIn(fail_after=300_000)
    with pytest.raises(dl.DownloadError, match="interrupted after .* re-run to resume"):
        dl.download_dataset(tmp_path, opener=stand_in, progress=False)
    partial = tmp_path / "data.zip.part"
    assert partial.is_file() and not (tmp_path / "data.zip").exists()
    done_bytes = partial.stat().st_size
    assert 0 < done_bytes < len(PAYLOAD)
    dl.download_dataset(tmp_path, opener=stand_in, progress=False)
    assert stand_in.calls[-1] == ("nih-chest-xrays/data", done_bytes, '"v1"')
    assert (tmp_path / "data.zip").read_bytes() == PAYLOAD


def test_finished_file_is_skipped_without_asking_the_server(credentials, tmp_path: Path) -> None:
    """A re-run after success must not download 45 GB again."""
    dl.download_dataset(tmp_path, opener=StandIn(), progress=False)
    stand_in = StandIn()
    dl.download_dataset(tmp_path, opener=stand_in, progress=False)
    assert stand_in.calls == []


def test_md5_mismatch_discards_the_partial(credentials, tmp_path: Path) -> None:
    """Corrupt bytes must never be renamed to data.zip (shard would read garbage)."""
    with pytest.raises(dl.DownloadError, match="MD5 differs"):
        dl.download_dataset(tmp_path, opener=StandIn(md5=b"\x00" * 16), progress=False)
    assert not list(tmp_path.glob("data.zip*"))


def test_partial_of_another_version_restarts(credentials, tmp_path: Path) -> None:
    """A partial whose ETag the server no longer has must not be appended to (the server answers
    200 with the whole new file to If-Range) and the result is the new file alone."""
    (tmp_path / "data.zip.part").write_bytes(b"old bytes" * 1000)
    (tmp_path / "data.zip.part.json").write_text(json.dumps({"validator": '"v0"', "total": 9000, "md5": None}))
    dl.download_dataset(tmp_path, opener=StandIn(), progress=False)
    assert (tmp_path / "data.zip").read_bytes() == PAYLOAD


def test_ranged_reply_for_another_size_restarts_from_zero(credentials, tmp_path: Path) -> None:
    """A 206 whose total differs from the partial's is the tail of another file; appended, it
    would become the new file's head. It must be dropped and the whole file
    asked for without Range."""
    (tmp_path / "data.zip.part").write_bytes(b"old bytes" * 1000)
    (tmp_path / "data.zip.part.json").write_text(json.dumps({"validator": '"v1"', "total": 9000, "md5": None}))
    stand_in = StandIn()
    dl.download_dataset(tmp_path, opener=stand_in, progress=False)
    assert stand_in.calls == [("nih-chest-xrays/data", 9000, '"v1"'), ("nih-chest-xrays/data", 0, None)]
    assert (tmp_path / "data.zip").read_bytes() == PAYLOAD


def test_partial_without_validator_is_not_resumed(credentials, tmp_path: Path) -> None:
    """Without an ETag/Last-Modified nothing proves the partial is the server's current file, and a
    server ignoring If-Range would send a tail to append to stale bytes: start over instead."""
    (tmp_path / "data.zip.part").write_bytes(b"old bytes" * 1000)
    (tmp_path / "data.zip.part.json").write_text(json.dumps({"validator": None, "total": len(PAYLOAD),
                                                             "md5": None}))
    stand_in = StandIn(if_range=False)
    dl.download_dataset(tmp_path, opener=stand_in, progress=False)
    assert stand_in.calls == [("nih-chest-xrays/data", 0, None)]
    assert (tmp_path / "data.zip").read_bytes() == PAYLOAD


def test_kaggle_banner_and_exit_are_contained(credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys) -> None:
    """When Kaggle rejects the credentials the package prints its banner to stdout and calls
    exit(1); the user must see one line on stderr and the run must not die with SystemExit.
    Only the package's authenticate is replaced (it would go to the network)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api import kaggle_api_extended as extended

    def banner_and_exit(self) -> None:
        extended.print_auth_help()
        exit(1)

    monkeypatch.setattr(extended.KaggleApi, "authenticate", banner_and_exit)
    assert prep_main(["download", "--out", str(tmp_path), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "Kaggle rejected or could not find the credentials" in captured.err and SECRET not in captured.err


def test_error_messages_drop_signed_url_queries() -> None:
    """A failed resume request names the signed storage URL; its query string is a credential."""
    message = dl._redacted("Max retries exceeded with url: /data.zip?X-Goog-Signature=abc123&x=1 (Caused by X)")
    assert "abc123" not in message and "/data.zip?<redacted>" in message


class _FakeResponse:
    """The parts of requests.Response that `_kaggle_response` uses."""

    def __init__(self, status: int, headers: dict, body: bytes, url: str = "https://storage.example/data.zip?sig=s"):
        self.status_code, self.headers, self._body, self.url = status, headers, body, url
        self.request = type("Request", (), {"headers": {"Authorization": "Bearer t"}})()

    def iter_content(self, size: int):
        for offset in range(0, len(self._body), size):
            yield self._body[offset:offset + size]

    def close(self) -> None:
        pass


def test_real_opener_with_the_network_replaced(credentials, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default opener (kaggle package + requests) on a resumed download: the SDK call and the
    Range request are the network, replaced here; headers, If-Range and resume are the real code."""
    import contextlib
    import io

    import requests

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        from kaggle.api import kaggle_api_extended as extended
    md5 = base64.b64encode(hashlib.md5(PAYLOAD).digest()).decode()
    full_headers = {"Content-Length": str(len(PAYLOAD)), "ETag": '"v1"', "x-goog-hash": f"md5={md5}"}
    requested = []

    class Client:
        class datasets:
            class dataset_api_client:
                @staticmethod
                def download_dataset(request):
                    requested.append((request.owner_slug, request.dataset_slug))
                    return _FakeResponse(200, full_headers, PAYLOAD)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            pass

    def ranged_get(url: str, headers: dict, stream: bool, timeout: int) -> _FakeResponse:
        start = int(headers["Range"].split("=")[1].rstrip("-"))
        assert headers["If-Range"] == '"v1"' and headers["Authorization"] == "Bearer t"
        body = PAYLOAD[start:]
        return _FakeResponse(206, {"Content-Length": str(len(body)), "ETag": '"v1"',
                                   "Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}"}, body)

    monkeypatch.setattr(extended.KaggleApi, "authenticate", lambda self: None)
    monkeypatch.setattr(extended.KaggleApi, "build_kaggle_client", lambda self: Client())
    monkeypatch.setattr(requests, "get", ranged_get)
    (tmp_path / "data.zip.part").write_bytes(PAYLOAD[:123_456])
    (tmp_path / "data.zip.part.json").write_text(json.dumps(
        {"dataset": "nih-chest-xrays/data", "total": len(PAYLOAD), "md5": hashlib.md5(PAYLOAD).hexdigest(),
         "validator": '"v1"'}))
    path = dl.download_dataset(tmp_path, progress=False)
    assert path.read_bytes() == PAYLOAD and requested == [("nih-chest-xrays", "data")]
