"""The real NIH sample (312 PNGs, Kaggle layout, NIH's full 112k-row table): a partial download.

Shards it from the folder and from a zip of it, as `prep shard` would the real Kaggle download.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from data_prep.cli import main as prep_main
from data_prep.metadata import parse_data_entry
from data_prep.shard import shard_dataset
from data_prep.verify import verify_shards
from tests.data_prep_fixtures import read_shard, read_shard_set, zip_folder


@pytest.fixture(scope="module")
def nih_shards(nih_sample_dir: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The NIH sample sharded from its folder with two worker processes: (folder, manifest)."""
    out = tmp_path_factory.mktemp("nih") / "shards"
    manifest = shard_dataset(nih_sample_dir, out, seed=0, samples_per_shard=100, workers=2, progress=False)
    return out, manifest


def test_partial_download_shards_with_every_image_and_counts_missing_rows(nih_sample_dir: Path,
                                                                         nih_shards: tuple[Path, dict]) -> None:
    """All 312 real images go in (4 RGBA ones converted), the 111,808 rows whose images were not
    downloaded are counted, not fatal, and metadata is joined from NIH's table."""
    out, manifest = nih_shards
    counts = manifest["counts"]
    assert counts["total"] == 312 and counts["skipped"] == 0
    assert counts["metadata_rows_without_image"] == 112_120 - 312
    assert manifest["conversions"] == {"converted": 4, "passthrough": 308}
    assert manifest["source"]["metadata_file"] == "Data_Entry_2017_v2020.csv.gz"
    records = read_shard_set(out)
    table = parse_data_entry((nih_sample_dir / "Data_Entry_2017_v2020.csv.gz").read_bytes(), "csv")
    for key in sorted(records)[:20]:
        record, row = records[key], table[f"{key}.png"]
        assert record["patient_id_from"] == "metadata" and record["patient_id"] == row.patient_id
        assert (record["labels"], record["age"], record["sex"], record["view"]) == \
            (list(row.labels), row.age, row.sex, row.view)
        assert record["nih_original_image_size"] == list(row.original_size)


def test_real_pngs_round_trip_bit_exactly(nih_sample_dir: Path, nih_shards: tuple[Path, dict]) -> None:
    """Training must see NIH's pixels untouched: original PNG bytes are stored as they are, and
    every sample names the sha256 of its source file."""
    out, _ = nih_shards
    sources = {p.stem: p for p in nih_sample_dir.glob("images_*/images/*.png")}
    for tar_path in out.glob("*.tar"):
        for key, fields in read_shard(tar_path).items():
            record = json.loads(fields["json"])
            original = sources[key].read_bytes()
            assert record["source_sha256"] == hashlib.sha256(original).hexdigest()
            if record["conversion"] is None:
                assert fields["png"] == original


def test_splits_are_patient_disjoint_with_requested_fractions(nih_shards: tuple[Path, dict]) -> None:
    """No official list in the sample, so the seeded patient split applies: about 10% test and
    10% of the rest validation, no patient in two splits; verify agrees."""
    out, manifest = nih_shards
    assert sum(manifest["patients"].values()) == 312  # one image per patient in this sample
    assert 25 <= manifest["counts"]["test"] <= 37 and 22 <= manifest["counts"]["val"] <= 34
    assert verify_shards(out) == []


def test_zip_of_the_sample_gives_the_same_shards(nih_sample_dir: Path, nih_shards: tuple[Path, dict],
                                                 tmp_path: Path) -> None:
    """The Kaggle download is a zip, read in place: same shards as the extracted folder."""
    out, _ = nih_shards
    archive = zip_folder(nih_sample_dir, tmp_path / "archive.zip")
    zipped = tmp_path / "from-zip"
    shard_dataset(archive, zipped, seed=0, samples_per_shard=100, workers=1, progress=False)
    for path in sorted(out.glob("*.tar")) + sorted(out.glob("*.idx")):
        assert (zipped / path.name).read_bytes() == path.read_bytes(), path.name


def test_cli_shard_then_verify_report_the_split_counts(nih_shards: tuple[Path, dict], capsys) -> None:
    """`prep verify` succeeds on the set and reports the split counts;
    a tampered set makes it exit non-zero naming the file."""
    out, manifest = nih_shards
    assert prep_main(["verify", str(out)]) == 0
    line = capsys.readouterr().out
    assert f"train {manifest['counts']['train']} images" in line and "ok" in line
    assert prep_main(["verify", str(out.parent / "nothing-here")]) == 1
    assert "manifest.json" in capsys.readouterr().err
