"""A damaged newest checkpoint and a disk that fills while a checkpoint is written, one process.

Both happen on real clusters (a torn copy, a lost block, a quota) and both used to end a run
with a traceback and no way forward but deleting files by hand. What must hold instead:

* a newest checkpoint with a missing or unreadable file is set aside as ``step_N.unreadable``
  (nothing deleted) and ``--resume`` continues from the one before it, on the uninterrupted
  trajectory; when every checkpoint is damaged the run stops with one line instead of training
  from a half-loaded state;
* a write refused by the kernel (RLIMIT_FSIZE, which fails like a full disk: EFBIG instead of
  ENOSPC) ends the run with one line naming the ``.partial`` folder and the intact newest
  checkpoint, and ``--resume`` once there is room continues on the uninterrupted trajectory.

The multi-process rows of the same faults are in tests/test_fault_matrix.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dist_train.checkpoint import complete_checkpoints, latest_checkpoint, load_file
from tests.dist_helpers import WORKERS, copy_run, process_env, run, tail, tiny_args, write_tiny_images
from tests.test_distributed import assert_same_trajectory

# 3 PSNR steps then 3 GAN steps, checkpoints at 2, 4 and 6: the resume from 2 crosses into the GAN phase.
SCHEDULE = ("train.pretrain_steps=3", "train.gan_steps=3", "train.ckpt_every=2", "train.keep_ckpts=5")
CHECKPOINT_STEPS = [2, 4, 6]


def train_command(images: Path, out: Path, *flags: str, script: str | None = None) -> list[str]:
    target = [str(WORKERS / script)] if script else ["-m", "dist_train"]
    return [sys.executable, *target, *flags, *tiny_args(images, out, *SCHEDULE)]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_tiny_images(tmp_path_factory.mktemp("images"), count=8)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, images) -> Path:
    """One process, uninterrupted, with the same thread count as every run compared against it."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run(train_command(images, out), out.parent / "log.txt")
    return out


def checkpoint_steps(out: Path) -> list[int]:
    return [int(folder.name[len("step_"):]) for folder in complete_checkpoints(out)]


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.startswith("cxr-sr train:")]


@pytest.mark.parametrize("damage", ["truncated networks.pt", "missing rank0.pt", "empty trainer.pt"])
def test_damaged_newest_checkpoint_is_set_aside_and_the_one_before_resumes(tmp_path, images, reference, damage):
    how, name = damage.split()
    out = copy_run(reference, tmp_path / "run", drop_after_step=4)
    damaged = out / "checkpoints" / "step_00000004" / name
    if how == "missing":
        damaged.unlink()
    else:
        damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2 if how == "truncated" else 0])
    log = tmp_path / "resumed.txt"
    run(train_command(images, out, "--resume"), log)
    text = log.read_text(errors="replace")
    assert f"cannot resume from {damaged.parent}: {damaged}: " in text, tail(log)
    assert f"resumed from {out / 'checkpoints' / 'step_00000002'} at step 2" in text
    assert (out / "checkpoints" / "step_00000004.unreadable").is_dir()  # kept for a post-mortem
    assert checkpoint_steps(out) == CHECKPOINT_STEPS  # 4 written again, readable
    load_file(out / "checkpoints" / "step_00000004" / name)
    assert_same_trajectory(out, reference)


def test_every_checkpoint_damaged_stops_with_one_line(tmp_path, images, reference):
    out = copy_run(reference, tmp_path / "run", drop_after_step=4)
    for step in (2, 4):
        (out / "checkpoints" / f"step_{step:08d}" / "trainer.pt").write_bytes(b"")
    log = tmp_path / "resumed.txt"
    result = run(train_command(images, out, "--resume"), log, expect_ok=False)
    assert result.returncode == 1, tail(log)
    assert "Traceback" not in log.read_text(errors="replace")
    assert error_lines(log) == [f"cxr-sr train: {out / 'checkpoints'}: every checkpoint is damaged (set aside as "
                                "*.unreadable); run again to start from step 0"]
    assert complete_checkpoints(out) == []
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_00000002.unreadable",
                                                                       "step_00000004.unreadable"]


def test_full_disk_while_writing_a_checkpoint_is_one_line_and_resume_continues(tmp_path, images, reference):
    out = tmp_path / "run"
    # below networks.pt (the largest file): the kernel refuses the write partway, as a full disk does
    limit = (reference / "checkpoints" / "step_00000002" / "networks.pt").stat().st_size // 2
    log = tmp_path / "full.txt"
    result = run(train_command(images, out, script="fault_train.py"), log, expect_ok=False,
                 env=process_env(CXR_SR_TEST_FSIZE=f"4:{limit}"))
    assert result.returncode == 1, tail(log)
    assert "Traceback" not in log.read_text(errors="replace")
    assert error_lines(log) == [
        f"cxr-sr train: {out / 'checkpoints' / 'step_00000004.partial'}: writing the checkpoint failed (File too "
        f"large); the newest complete checkpoint, {out / 'checkpoints' / 'step_00000002'}, is intact: free space "
        "and resume"]
    assert latest_checkpoint(out).name == "step_00000002"
    for path in latest_checkpoint(out).iterdir():
        load_file(path)
    log = tmp_path / "resumed.txt"
    run(train_command(images, out, "--resume"), log)
    assert f"resumed from {out / 'checkpoints' / 'step_00000002'} at step 2" in log.read_text()
    assert checkpoint_steps(out) == CHECKPOINT_STEPS
    assert not list(out.rglob("*.partial"))
    assert_same_trajectory(out, reference)
