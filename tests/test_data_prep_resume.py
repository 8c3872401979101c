"""Kill during sharding, then resume: only incomplete shards are redone, the result is identical.

The full NIH set takes a while to shard on a node; a pre-empted job must not start over, and it
must never leave a torn shard that a later run or the loader would take for a complete one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep.shard import shard_dataset
from data_prep.shard_writer import STATE_DIR
from data_prep.synth import make_synthetic
from data_prep.verify import verify_shards
from tests.data_prep_fixtures import gradient, png_bytes, read_shard

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# The child shards one sample per shard and pauses after each, so the kill lands mid-run.
CHILD = """
import sys, time
import data_prep.shard as shard
original = shard.write_shard
def slow(*args, **kwargs):
    record = original(*args, **kwargs)
    time.sleep(0.3)
    return record
shard.write_shard = slow
shard.shard_dataset(sys.argv[1], sys.argv[2], seed=0, samples_per_shard=1, workers=1, progress=False)
"""


def _wait_for_states(state_dir: Path, count: int, child: subprocess.Popen, timeout_s: float = 60) -> None:
    """Block until the child has completed `count` shards (their state files exist)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if state_dir.is_dir() and len(list(state_dir.glob("*.json"))) >= count:
            return
        if child.poll() is not None:
            pytest.fail(f"the sharding child exited early: {child.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("the sharding child made no progress")


def test_kill_then_resume_redoes_only_incomplete_shards(tmp_path: Path) -> None:
    """SIGKILL mid-run leaves no manifest; the re-run keeps the finished shards untouched,
    writes the rest, cleans up, and ends byte-identical to an uninterrupted run."""
    source = make_synthetic(tmp_path / "src", 10, seed=2, size_px=96)
    reference = tmp_path / "reference"
    shard_dataset(source, reference, seed=0, samples_per_shard=1, workers=1, progress=False)

    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(out)], cwd=PROJECT_ROOT,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_states(out / STATE_DIR, 3, child)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert not (out / "manifest.json").exists(), "a killed run must not look complete"
    finished = {p.stem for p in (out / STATE_DIR).glob("*.json")}
    stamps = {name: (out / f"{name}.tar").stat().st_mtime_ns for name in finished}

    messages: list[str] = []
    shard_dataset(source, out, seed=0, samples_per_shard=1, workers=1, progress=False, log=messages.append)

    assert any(f"{len(finished)} already complete" in m for m in messages), messages
    assert {name: (out / f"{name}.tar").stat().st_mtime_ns for name in finished} == stamps
    assert not list(out.glob(".*.tmp")) and not (out / STATE_DIR).exists()
    for path in reference.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name
    assert verify_shards(out) == []


def test_a_torn_shard_is_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard cut short after its state was written (disk trouble, a partial copy) no longer
    matches its recorded size: the next run rewrites it and keeps the intact ones."""
    import data_prep.shard as shard

    source = make_synthetic(tmp_path / "src", 6, seed=2, size_px=96)
    reference = tmp_path / "reference"
    shard_dataset(source, reference, seed=0, samples_per_shard=2, workers=1, progress=False)

    def killed_before_manifest(*args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(shard, "write_manifest", killed_before_manifest)
        with pytest.raises(KeyboardInterrupt):
            shard_dataset(source, out, seed=0, samples_per_shard=2, workers=1, progress=False)
    torn = out / "train-000000.tar"
    torn.write_bytes(torn.read_bytes()[:1000])
    intact = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar") if p != torn}

    messages: list[str] = []
    shard_dataset(source, out, seed=0, samples_per_shard=2, workers=1, progress=False, log=messages.append)
    assert any(f"{len(intact)} already complete" in m for m in messages), messages
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar") if p != torn} == intact
    for path in reference.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


def test_shard_left_without_samples_loses_its_old_files(tmp_path: Path) -> None:
    """A planned shard whose images all fail now writes no tar, so the tar of an earlier run under
    the same name survived and verify reported it as not listed in the manifest."""
    source = tmp_path / "mine"
    source.mkdir()
    for i in range(4):
        (source / f"img{i}.png").write_bytes(png_bytes(gradient(96, seed=i)))
    out = tmp_path / "out"
    settings = dict(val_fraction=0.0, test_fraction=0.0, samples_per_shard=2, workers=1, progress=False)
    shard_dataset(source, out, **settings)
    for key in read_shard(out / "train-000001.tar"):
        (source / f"{key}.png").write_bytes(b"not a png")
    manifest = shard_dataset(source, out, overwrite=True, **settings)
    assert [s["file"] for s in manifest["shards"]] == ["train-000000.tar"] and manifest["counts"]["skipped"] == 2
    assert not (out / "train-000001.tar").exists() and not (out / "train-000001.idx").exists()
    assert verify_shards(out) == []
