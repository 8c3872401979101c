"""Every kind of bad input the sharder meets, each with its expected outcome.

DALI cannot skip a corrupt sample at training time (it loses the whole batch and breaks epoch
counting), so anything that is not a complete image must be caught here, skipped and listed.
"""
from __future__ import annotations

import io
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.catalog import _keys
from data_prep.shard import shard_dataset
from data_prep.verify import verify_shards
from tests.bad_input_helpers import one_error, run_cli, snapshot
from tests.data_prep_fixtures import (BAD_INPUT_EXPECTATIONS, build_bad_inputs, csv_row, gradient, png_bytes,
                                      read_shard, read_shard_set, write_csv, zip_folder)


@pytest.fixture(scope="module")
def bad_source(tmp_path_factory) -> Path:
    """The bad-input folder (Kaggle layout), built once for the module."""
    return build_bad_inputs(tmp_path_factory.mktemp("bad") / "src")


@pytest.fixture(scope="module")
def bad_shards(bad_source: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The bad inputs sharded with a 96 px size rule: (shard folder, manifest)."""
    out = tmp_path_factory.mktemp("bad-shards") / "out"
    manifest = shard_dataset(bad_source, out, seed=0, samples_per_shard=4, expect_size_px=96,
                             workers=1, progress=False)
    return out, manifest


def test_each_bad_input_has_its_expected_outcome(bad_shards: tuple[Path, dict]) -> None:
    """Truncated, corrupt, zero-byte, non-image and wrong-size files are skipped with their
    reason; RGBA/LA/palette/16-bit/colour PNGs are converted and recorded; good ones pass through."""
    out, manifest = bad_shards
    skipped = {Path(s["name"]).name: s["reason"] for s in manifest["skipped"]}
    records = {r["image"]: r for r in read_shard_set(out).values()}
    for name, expected in BAD_INPUT_EXPECTATIONS.items():
        if expected in ("passthrough", "converted"):
            assert name in records, f"{name} should be in the shards"
            converted = records[name]["conversion"] is not None
            assert converted == (expected == "converted"), name
        else:
            assert skipped.get(name, "").startswith(expected), f"{name}: {skipped.get(name)}"
    assert manifest["counts"]["skipped"] == len(skipped) == 5
    assert manifest["skipped_by_reason"]["zero-byte file"] == 1
    assert verify_shards(out, deep=True) == []


def test_converted_images_are_8_bit_gray_with_the_record(bad_shards: tuple[Path, dict]) -> None:
    """The loader assumes 8-bit gray PNGs; the json must say what was done to non-gray originals."""
    out, _ = bad_shards
    for tar_path in out.glob("*.tar"):
        for fields in read_shard(tar_path).values():
            record = json.loads(fields["json"])
            image = Image.open(io.BytesIO(fields["png"]))
            assert image.mode == "L" and list(image.size) == record["original_size"]
            if record["image"] == "00000006_000.png":
                assert record["original_mode"] == "RGBA" and "R=G=B: took one channel" in record["conversion"]["steps"]
                assert np.array_equal(np.asarray(image), gradient(96))


def test_missing_images_and_unlisted_images_are_reported_not_fatal(bad_shards: tuple[Path, dict]) -> None:
    """A partial download leaves metadata rows without images (counted); an image without a row
    gets its patient from its NIH-style name."""
    out, manifest = bad_shards
    assert manifest["counts"]["metadata_rows_without_image"] == 1
    assert manifest["metadata_rows_without_image"]["examples"] == ["00000010_000.png"]
    unlisted = next(r for r in read_shard_set(out).values() if r["image"] == "00000009_000.png")
    assert unlisted["patient_id"] == "00000009" and unlisted["patient_id_from"] == "nih-name"


def test_unlisted_refuse_skips_images_without_metadata(bad_source: Path, tmp_path: Path) -> None:
    """With --unlisted refuse an image with no metadata row is skipped and listed, not guessed."""
    manifest = shard_dataset(bad_source, tmp_path / "out", unlisted="refuse", workers=1, progress=False)
    reasons = {Path(s["name"]).name: s["reason"] for s in manifest["skipped"]}
    assert reasons["00000009_000.png"].startswith("no metadata row")


def test_zip_member_escaping_the_folder_is_refused(bad_source: Path, tmp_path: Path) -> None:
    """A zip member named ../x or /x must never be used (zip slip), even though nothing is extracted."""
    archive = zip_folder(bad_source, tmp_path / "evil.zip", extra={
        "../../escape.png": png_bytes(gradient(96)), "/abs/00000020_000.png": png_bytes(gradient(96))})
    manifest = shard_dataset(archive, tmp_path / "out", expect_size_px=96, workers=1, progress=False)
    reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["../../escape.png"].startswith("unsafe member name")
    assert reasons["/abs/00000020_000.png"].startswith("unsafe member name")
    assert not (tmp_path / "escape.png").exists()
    assert manifest["counts"]["total"] == 7


def test_corrupt_zip_member_is_skipped(tmp_path: Path) -> None:
    """A member whose stored bytes fail the zip CRC is skipped with the reason, not fatal."""
    folder = tmp_path / "src" / "images_001" / "images"
    folder.mkdir(parents=True)
    for i in range(2):
        (folder / f"0000000{i + 1}_000.png").write_bytes(png_bytes(gradient(96, seed=i)))
    archive = zip_folder(tmp_path / "src", tmp_path / "a.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as handle:
        info = handle.getinfo("images_001/images/00000001_000.png")
    data[info.header_offset + 30 + len(info.filename) + 200] ^= 0xFF
    archive.write_bytes(bytes(data))
    manifest = shard_dataset(archive, tmp_path / "out", workers=1, progress=False)
    assert manifest["counts"]["total"] == 1
    assert "cannot read" in manifest["skipped"][0]["reason"]


def test_folder_of_dicoms_and_pngs_without_metadata(realxray_dir: Path, tmp_path: Path) -> None:
    """A user's own folder: DICOMs (one MONOCHROME1 15-bit, one JPEG) and PNGs, no csv. Keys must
    lose the dots of DICOM UIDs (a dot splits a webdataset key) and patients come from PatientID."""
    folder = tmp_path / "mine"
    folder.mkdir()
    for path in list(realxray_dir.glob("*.dcm")) + [realxray_dir / "00000100_000.png"]:
        shutil.copy(path, folder / path.name)
    out = tmp_path / "out"
    manifest = shard_dataset(folder, out, val_fraction=0.0, test_fraction=0.0, workers=1, progress=False)
    records = read_shard_set(out)
    assert manifest["counts"]["total"] == 3 and manifest["counts"]["skipped"] == 0
    assert all("." not in key for key in records)
    by_image = {r["image"]: r for r in records.values()}
    dicom = by_image["RG1_UNCR.dcm"]
    assert dicom["original_mode"] == "MONOCHROME1" and dicom["patient_id_from"] == "dicom"
    assert "MONOCHROME1 inverted" in dicom["conversion"]["steps"]
    assert verify_shards(out, deep=True) == []


@pytest.mark.parametrize("names", [["d/x.png", "d/x.dcm"], ["a.b/c.png", "a_b/c.png"],
                                   ["x/y.png", "z/y.png", "x__y.png"]])
def test_different_files_never_share_a_sample_key(names: list[str]) -> None:
    """Two files with one key merge into one webdataset sample (one image silently lost or
    mixed); the suffix, the character cleaning and a stem that looks like a path all used to
    collide. Keys must stay extension-free (a key ending in .png breaks DALI) and deterministic."""
    keys = _keys(names)
    assert len(set(keys.values())) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", key) for key in keys.values())
    assert _keys(list(reversed(names))) == keys


def _prep(argv: list[str], capsys) -> tuple[int, str]:
    """`cxr-sr prep ARGV` through its main(); (exit code, stderr)."""
    from data_prep.cli import main

    code = main(argv)
    return code, capsys.readouterr().err


def _kaggle_folder(root: Path, count: int = 3) -> Path:
    folder = root / "images_001" / "images"
    folder.mkdir(parents=True)
    for i in range(count):
        (folder / f"{i + 1:08d}_000.png").write_bytes(png_bytes(gradient(96, seed=i)))
    return root


@pytest.mark.parametrize("damage, fragment", [
    ("truncated gzip", "truncated or corrupt gzip"),
    ("bad patient id", "bad row for 00000001_000.png"),
    ("no header", "not an NIH Data_Entry table"),
    ("binary", "not UTF-8 text"),
])
def test_a_broken_metadata_csv_is_one_line_that_says_what_to_do(tmp_path, capsys, damage, fragment):
    """A partial download of Data_Entry_2017_v2020.csv.gz was an EOFError traceback."""
    import gzip

    source = _kaggle_folder(tmp_path / "src")
    rows = [csv_row(f"{i + 1:08d}_000.png", i + 1, 0) for i in range(3)]
    if damage == "bad patient id":
        rows[0][3] = "patient-one"
    write_csv(source / "Data_Entry_2017.csv", rows)
    text = (source / "Data_Entry_2017.csv").read_bytes()
    (source / "Data_Entry_2017.csv").unlink()
    data = {"truncated gzip": gzip.compress(text)[:60], "bad patient id": text,
            "no header": b"a,b,c\n1,2,3\n", "binary": b"Image Index,Patient ID\n\xff\xfe\x00x"}[damage]
    name = "Data_Entry_2017_v2020.csv.gz" if damage == "truncated gzip" else "Data_Entry_2017.csv"
    (source / name).write_bytes(data)
    before = snapshot(source)
    code, err = _prep(["shard", "--source", str(source), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 1
    line = one_error(err, name, fragment)
    assert "download it again" in line or "fix the row" in line
    assert snapshot(source) == before and not (tmp_path / "out" / "manifest.json").exists()


def test_a_truncated_zip_says_the_download_is_incomplete(tmp_path, capsys):
    """A cut-off archive has no central directory; it was called "not a folder or a zip"."""
    archive = zip_folder(_kaggle_folder(tmp_path / "src"), tmp_path / "data.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    before = snapshot(archive)
    code, err = _prep(["shard", "--source", str(archive), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert code == 1
    one_error(err, str(archive), "truncated zip", "cxr-sr prep download")
    assert snapshot(archive) == before


def test_unlisted_refuse_with_no_metadata_is_an_error_not_an_empty_set(tmp_path, capsys):
    """With no csv and --unlisted refuse every image is refused: that gave an empty shard set
    that `prep verify` called ok. Now nothing is written and one line says to use infer."""
    source = _kaggle_folder(tmp_path / "src")
    before = snapshot(source)
    out = tmp_path / "out"
    code, err = _prep(["shard", "--source", str(source), "--out", str(out), "--unlisted", "refuse", "--quiet"], capsys)
    assert code == 1
    one_error(err, "nothing to shard", "--unlisted infer")
    assert not out.exists() and snapshot(source) == before


def test_a_source_of_only_broken_images_fails_and_verify_fails_its_shard_set(tmp_path, capsys):
    """Every image skipped leaves a manifest with no sample: shard exits 1 and verify rejects it."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"")
    (folder / "b.png").write_bytes(png_bytes(gradient(96))[:50])
    out = tmp_path / "out"
    code, err = _prep(["shard", "--source", str(folder), "--out", str(out), "--quiet"], capsys)
    assert code == 1
    one_error(err, "no image could be used", "manifest.json lists them all")
    code, err = _prep(["verify", str(out), "--quiet"], capsys)
    assert code == 1 and "no samples in any shard" in err and "Traceback" not in err


@pytest.mark.parametrize("where, fragment", [
    ("the source", "is or lies inside the source folder"),
    ("inside the source", "is or lies inside the source folder"),
    ("around the source", "contains the source"),
    ("a file", "is a file, not a folder"),
    ("below a file", "which is a file"),
])
def test_an_output_folder_among_the_inputs_or_on_a_file_is_refused(tmp_path, capsys, where, fragment):
    """Shards written into the source folder would mix with the originals (and stale-shard
    cleanup deletes by name there); a file as --out was an errno message."""
    source = _kaggle_folder(tmp_path / "data" / "src")
    (tmp_path / "taken").write_text("a user's file")
    out = {"the source": source, "inside the source": source / "shards", "around the source": tmp_path / "data",
           "a file": tmp_path / "taken", "below a file": tmp_path / "taken" / "shards"}[where]
    before = snapshot(tmp_path)
    code, err = _prep(["shard", "--source", str(source), "--out", str(out), "--quiet"], capsys)
    assert code == 1
    one_error(err, f"--out {out}", fragment)
    assert snapshot(tmp_path) == before


def test_disk_full_while_sharding_is_one_line_and_the_rerun_completes(tmp_path, capsys):
    """Under a file-size limit the shard write fails (EFBIG, like ENOSPC): one line, exit 1, no
    manifest, no torn shard; a run without the limit then finishes and leaves no temp file."""
    source = _kaggle_folder(tmp_path / "src", count=4)
    before = snapshot(source)
    out = tmp_path / "out"
    args = ["prep", "shard", "--source", str(source), "--out", str(out), "--quiet", "--workers", "1",
            "--samples-per-shard", "2", "--val-fraction", "0", "--test-fraction", "0"]
    result = run_cli(args, file_size_bytes=15_000)
    assert result.returncode == 1, result.stderr
    one_error(result.stderr, "File too large")
    assert not (out / "manifest.json").exists()
    assert not list(out.glob("*.tar"))  # each tar is ~20 kB: none fits, so none may exist
    assert run_cli(args).returncode == 0
    assert not list(out.rglob(".*.tmp")) and verify_shards(out) == []
    assert snapshot(source) == before
