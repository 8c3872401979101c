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
from tests.data_prep_fixtures import (BAD_INPUT_EXPECTATIONS, build_bad_inputs, gradient, png_bytes,
                                      read_shard, read_shard_set, zip_folder)


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
