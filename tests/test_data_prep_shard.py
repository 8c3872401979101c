"""Sharding the synthetic set: the shard-set contract (docs/contracts.md §2) that the loaders rely on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_prep.shard import shard_dataset
from data_prep.synth import make_synthetic
from data_prep.verify import verify_shards
from tests.data_prep_fixtures import read_shard, read_shard_set, zip_folder

CONTRACT_FIELDS = {"image", "patient_id", "follow_up", "view", "age", "sex", "labels", "original_size",
                   "original_mode", "source_sha256"}


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """24 synthetic 128 px images (several per patient)."""
    return make_synthetic(tmp_path_factory.mktemp("synth") / "src", 24, seed=1, size_px=128)


@pytest.fixture(scope="module")
def shards(source: Path, tmp_path_factory) -> Path:
    """`source` sharded in one process, 4 samples per shard, 20% val and test."""
    out = tmp_path_factory.mktemp("shards") / "a"
    shard_dataset(source, out, seed=5, val_fraction=0.2, test_fraction=0.2, samples_per_shard=4,
                  workers=1, progress=False)
    return out


def _shard_bytes(root: Path) -> dict[str, bytes]:
    """{file name: bytes} of every tar and idx in `root`."""
    return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.suffix in (".tar", ".idx")}


def test_samples_are_keyed_without_extension_and_keep_the_original_png(source: Path, shards: Path) -> None:
    """A key ending in .png makes DALI return empty tensors silently; original 8-bit PNGs must
    round-trip bit-exactly; the json carries the contract's fields."""
    originals = {p.stem: p.read_bytes() for p in source.glob("images_*/images/*.png")}
    seen = 0
    for tar_path in shards.glob("*.tar"):
        for key, fields in read_shard(tar_path).items():
            assert "." not in key and sorted(fields) == ["json", "png"]
            assert fields["png"] == originals[key]
            record = json.loads(fields["json"])
            assert CONTRACT_FIELDS <= set(record) and record["conversion"] is None
            assert record["image"] == f"{key}.png" and record["split"] == tar_path.name.split("-")[0]
            seen += 1
    assert seen == len(originals) == 24


def test_splits_are_patient_disjoint_and_cover_every_image(shards: Path) -> None:
    """A patient in both train and val leaks the answer into validation (the research code's bug)."""
    records = read_shard_set(shards)
    splits_of_patient: dict[str, set[str]] = {}
    for record in records.values():
        splits_of_patient.setdefault(record["patient_id"], set()).add(record["split"])
    assert all(len(s) == 1 for s in splits_of_patient.values())
    manifest = json.loads((shards / "manifest.json").read_text())
    assert {s for r in records.values() for s in [r["split"]]} == {"train", "val", "test"}
    assert sum(manifest["counts"][s] for s in ("train", "val", "test")) == len(records) == 24
    assert all(entry["samples"] <= 4 for entry in manifest["shards"])
    assert [e["file"] for e in manifest["shards"] if e["split"] == "val"][0] == "val-000000.tar"


def test_same_input_and_seed_give_identical_bytes_also_in_parallel(source: Path, shards: Path, tmp_path: Path) -> None:
    """Reproducible data: one process or a pool, the shards and indexes are byte-identical."""
    out = tmp_path / "again"
    shard_dataset(source, out, seed=5, val_fraction=0.2, test_fraction=0.2, samples_per_shard=4,
                  workers=2, progress=False)
    assert _shard_bytes(out) == _shard_bytes(shards)
    assert (out / "manifest.json").read_bytes() == (shards / "manifest.json").read_bytes()


def test_zip_source_gives_the_same_shards_as_the_folder(source: Path, shards: Path, tmp_path: Path) -> None:
    """The Kaggle zip is read in place; it must give exactly what its extracted folder gives."""
    archive = zip_folder(source, tmp_path / "archive.zip")
    out = tmp_path / "from-zip"
    manifest = shard_dataset(archive, out, seed=5, val_fraction=0.2, test_fraction=0.2,
                             samples_per_shard=4, workers=1, progress=False)
    assert manifest["source"]["kind"] == "zip"
    assert _shard_bytes(out) == _shard_bytes(shards)
    assert not list(tmp_path.glob("from-zip/images_*")), "nothing may be extracted"


def test_webdataset_reads_the_shards(source: Path, shards: Path) -> None:
    """The torch twin of the loader reads shards with webdataset: keys and decoded pixels."""
    import webdataset as wds

    urls = [str(p) for p in sorted(shards.glob("train-*.tar"))]
    dataset = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("l").to_tuple("__key__", "png", "json")
    samples = list(dataset)
    assert len(samples) == json.loads((shards / "manifest.json").read_text())["counts"]["train"]
    key, pixels, record = samples[0]
    original = np.asarray(Image.open(next(source.glob(f"images_*/images/{key}.png"))), np.float32) / 255
    assert np.allclose(pixels, original) and record["patient_id"]


def test_dali_cpu_pipeline_reads_the_shards_with_their_indexes(source: Path, shards: Path) -> None:
    """Training reads with DALI's webdataset reader; on CPU (device_id=None) it must see every
    sample with its pixels intact and the index files must be accepted."""
    from nvidia.dali import fn, pipeline_def, types

    tars = sorted(shards.glob("*.tar"))

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipeline():
        png, meta = fn.readers.webdataset(paths=[str(p) for p in tars],
                                          index_paths=[str(p.with_suffix(".idx")) for p in tars],
                                          ext=["png", "json"], missing_component_behavior="error", name="reader")
        return fn.decoders.image(png, device="cpu", output_type=types.GRAY), meta

    pipe = pipeline()
    pipe.build()
    assert pipe.epoch_size("reader") == 24
    originals = {p.stem: np.asarray(Image.open(p)) for p in source.glob("images_*/images/*.png")}
    for _ in range(6):
        images, metas = pipe.run()
        for i in range(len(images)):
            key = json.loads(bytes(metas.at(i)))["key"]
            assert np.array_equal(np.asarray(images.at(i))[..., 0], originals[key])


def test_official_test_list_decides_the_test_split(source: Path, tmp_path: Path) -> None:
    """When Kaggle's test_list.txt is present the official split is used, not a seeded one."""
    folder = tmp_path / "with-list"
    shutil.copytree(source, folder)
    chosen = sorted(p.name for p in source.glob("images_*/images/*.png") if p.name.startswith("00000002_"))
    (folder / "test_list.txt").write_text("\n".join(chosen) + "\n")
    out = tmp_path / "out"
    manifest = shard_dataset(folder, out, seed=0, samples_per_shard=50, workers=1, progress=False)
    test_images = {r["image"] for r in read_shard_set(out).values() if r["split"] == "test"}
    assert test_images == set(chosen) and manifest["source"]["official_test_list"]


def test_verify_passes_a_good_set_and_names_each_problem(shards: Path, tmp_path: Path) -> None:
    """verify is the gate before a long training run: it must catch a changed shard, a missing
    index and a stray shard, and say which file is wrong."""
    assert verify_shards(shards, deep=True) == []
    broken = tmp_path / "broken"
    shutil.copytree(shards, broken)
    tar = broken / "train-000001.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 0xFF
    tar.write_bytes(bytes(data))
    (broken / "val-000000.idx").unlink()
    shutil.copy(broken / "test-000000.tar", broken / "test-000009.tar")
    problems = verify_shards(broken)
    assert any(p.startswith("train-000001.tar: size or sha256") for p in problems)
    assert any(p.startswith("val-000000.idx: index missing") for p in problems)
    assert any(p.startswith("test-000009.tar: shard file not listed") for p in problems)


def test_rerun_is_a_no_op_and_other_settings_are_refused(source: Path, shards: Path, tmp_path: Path) -> None:
    """Re-running the same command must not rewrite a finished set; a different seed into the same
    folder must not silently mix two sets."""
    out = tmp_path / "copy"
    shutil.copytree(shards, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    shard_dataset(source, out, seed=5, val_fraction=0.2, test_fraction=0.2, samples_per_shard=4,
                  workers=1, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    with pytest.raises(ValueError, match="other input or settings"):
        shard_dataset(source, out, seed=6, samples_per_shard=4, workers=1, progress=False)
    manifest = shard_dataset(source, out, seed=6, samples_per_shard=4, workers=1, progress=False, overwrite=True)
    assert manifest["settings"]["seed"] == 6 and verify_shards(out) == []


def test_verify_catches_a_patient_in_two_splits(shards: Path, tmp_path: Path) -> None:
    """The leak the research code had: a val sample whose patient is also in train. The shard is
    rewritten consistently (hash, index, manifest updated), as a buggy sharder would leave it,
    so only the patient check can catch it."""
    import hashlib

    import webdataset as wds

    from data_prep.shard_writer import write_dali_index

    leaky = tmp_path / "leaky"
    shutil.copytree(shards, leaky)
    train_patient = next(r["patient_id"] for r in read_shard_set(leaky).values() if r["split"] == "train")
    target = leaky / "val-000000.tar"
    samples = read_shard(target)
    with open(target, "wb") as handle, wds.TarWriter(handle) as writer:
        for i, (key, fields) in enumerate(samples.items()):
            record = json.loads(fields["json"])
            if i == 0:
                record["patient_id"] = train_patient
            writer.write({"__key__": key, "png": fields["png"], "json": json.dumps(record).encode()})
    write_dali_index(target, target.with_suffix(".idx"))
    manifest = json.loads((leaky / "manifest.json").read_text())
    entry = next(e for e in manifest["shards"] if e["file"] == target.name)
    entry["bytes"], entry["sha256"] = target.stat().st_size, hashlib.sha256(target.read_bytes()).hexdigest()
    (leaky / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_shards(leaky)
    assert any(p.startswith("patients in both train and val: 1") for p in problems), problems
