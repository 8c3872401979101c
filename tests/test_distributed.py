"""Two-process DDP runs on the CPU (gloo, torchrun): the distributed behaviour that single-process
tests cannot see. Every test starts real processes; they share one uninterrupted reference run.

* two ranks give the same parameters as one process on the same global batch;
* only rank 0 writes logs, tensorboard, CSV and the shared checkpoint files;
* ``kill -9`` of one rank mid-run makes the other exit within ``dist.timeout_s`` instead of
  hanging, and a resume reproduces the uninterrupted loss trajectory exactly;
* ``kill -9`` of the whole run during a checkpoint write leaves the previous checkpoint usable,
  and the resumed run again reproduces the trajectory;
* a NaN loss on one rank skips the update on both, is counted in tensorboard, and K consecutive
  ones stop the run with a clear message and the last good checkpoint intact.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmarks.train_bench import read_scalars
from dist_train.checkpoint import complete_checkpoints, latest_checkpoint
from tests.dist_helpers import (kill_tree, process_env, run, start, tail, tiny_args, torchrun, wait_for, worker_pids)

pytestmark = pytest.mark.slow
# 3 PSNR steps then 5 GAN steps, checkpoints at 3, 6 and 8: resumes land in both phases.
SCHEDULE = ("train.pretrain_steps=3", "train.gan_steps=5", "train.ckpt_every=3", "train.keep_ckpts=5")
TOTAL_STEPS = 8
TRAJECTORY_TAGS = ("train/g_total", "train/g_pixel", "train/d_loss")


@pytest.fixture(scope="module")
def images(multinode_images) -> Path:
    return multinode_images  # the session's tiny images (tests/multinode_runs.py): read, never written


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, images) -> Path:
    """Two ranks, uninterrupted, through ``cxr-sr launch --launcher torchrun`` (the user's command)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    command = [sys.executable, "-m", "launch", "launch", "--launcher", "torchrun", "--nproc", "2",
               *tiny_args(images, out, *SCHEDULE)]
    run(command, out.parent / "log.txt")
    return out


def trajectory(run_dir: Path) -> dict[str, dict[int, float]]:
    """Per-step losses of rank 0; for steps logged twice (before a kill, after the resume) the later one."""
    scalars = read_scalars(run_dir)
    return {tag: scalars[tag] for tag in TRAJECTORY_TAGS}


def assert_same_trajectory(resumed: Path, reference: Path) -> None:
    got, want = trajectory(resumed), trajectory(reference)
    for tag in TRAJECTORY_TAGS:
        assert sorted(got[tag]) == sorted(want[tag]), f"{tag}: logged steps differ"
        for step, value in want[tag].items():
            assert got[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-9), f"{tag} differs at step {step}"


def test_reference_run_trains_and_only_rank0_writes(reference_run):
    """Rank 1 trains too, but every shared file has exactly one writer: rank 0."""
    assert [p.name for p in complete_checkpoints(reference_run)] == ["step_00000003", "step_00000006",
                                                                     "step_00000008"]
    assert len(list((reference_run / "tensorboard").iterdir())) == 1  # one events file: one writer
    rows = (reference_run / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 2  # header + the final validation, not one per rank
    for folder in complete_checkpoints(reference_run):
        assert sorted(p.name for p in folder.iterdir()) == ["networks.pt", "rank0.pt", "rank1.pt", "trainer.pt"]
    assert not list(reference_run.rglob("*.tmp")) and not list(reference_run.rglob("*.partial"))
    losses = trajectory(reference_run)["train/g_total"]
    assert sorted(losses) == list(range(1, TOTAL_STEPS + 1))


# Gradient agreement between 1 and 2 ranks, as a share of the gradient's norm. Summation order
# alone (gloo's all-reduce, a CPU's GEMM kernels) moves it by ~1e-6 at the first step and, once
# Adam has turned near-zero gradients of either sign into lr-sized steps, by up to ~1e-3 later; a
# gradient summed instead of averaged is off by 1.0, a rank on the wrong samples by far more.
GRADIENT_FIRST_STEP_RTOL = 1e-4
GRADIENT_LATER_STEPS_RTOL = 2e-2


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


def test_two_ranks_equal_one_process_on_the_same_global_batch(tmp_path, images):
    """DDP's gradient average over 2 x 4 samples must be what one process gets from 8.

    Gradients are compared, not final weights: Adam turns a near-zero gradient whose sign depends
    on the reduction order into a full lr-sized step, so weights after a few steps differ by
    summation order on one CPU and not another, while a gradient stays well conditioned and a real
    DDP fault (not averaged, a rank seeing the wrong batch, a network not synchronised) moves it by
    a large share of its norm. Adam is blind to a gradient's scale, which is another reason to look
    at the gradients themselves.
    """
    gradients = {}
    for nproc in (1, 2):
        out = tmp_path / f"nproc{nproc}"
        args = tiny_args(images, out, "train.pretrain_steps=2", "train.gan_steps=3", f"data.batch_size={8 // nproc}")
        run(torchrun(nproc, args, script="fault_train.py"), tmp_path / f"log{nproc}.txt",
            env=process_env(CXR_SR_TEST_GLOBAL_BATCH="8", CXR_SR_TEST_GRADIENTS="1"))
        gradients[nproc] = torch.load(out / "gradients.pt", map_location="cpu", weights_only=True)
    one, two = gradients[1], gradients[2]
    assert sorted(one) == sorted(two) == [0, 1, 2, 3, 4]
    assert sorted(one[0]) == ["g"] and sorted(one[2]) == ["d", "g"]  # D steps in the GAN phase only
    for step, nets in one.items():
        tolerance = GRADIENT_FIRST_STEP_RTOL if step == 0 else GRADIENT_LATER_STEPS_RTOL
        for net, named in nets.items():
            assert sorted(two[step][net]) == sorted(named), f"step {step} {net}: other parameters got gradients"
            for name, want in named.items():
                difference = relative_difference(two[step][net][name], want)
                assert difference <= tolerance, f"step {step} {net}.{name}: gradients differ by {difference:.2e} of their norm"


def test_kill_one_rank_then_resume_matches_uninterrupted(tmp_path, images, reference_run):
    """kill -9 of rank 1 while rank 0 waits for it inside step 5's collectives: rank 0 must not
    hang (gloo sees the peer gone, or dist.timeout_s expires), torchrun exits non-zero, and the
    resumed run's losses equal the uninterrupted run's."""
    out = tmp_path / "run"
    log = tmp_path / "killed.txt"
    launcher = start(torchrun(2, tiny_args(images, out, *SCHEDULE, "dist.timeout_s=30"), script="fault_train.py"),
                     log, env=process_env(CXR_SR_TEST_HANG_STEP="1:4"))
    try:
        _, rank1 = worker_pids(launcher, 2)
        wait_for(lambda: (out / "hang_marker").exists(), 180, "rank 1 to reach step 5", log)
        time.sleep(1.0)  # rank 0 is now blocked in a collective of step 5
        killed_at = time.monotonic()
        os.kill(rank1, signal.SIGKILL)
        code = launcher.wait(timeout=90)
        exit_s = time.monotonic() - killed_at
    finally:
        kill_tree(launcher)
    assert code != 0
    assert exit_s < 60, f"the surviving rank took {exit_s:.0f} s to exit"
    assert latest_checkpoint(out).name == "step_00000003"
    run(torchrun(2, ["--resume", *tiny_args(images, out, *SCHEDULE)]), tmp_path / "resumed.txt")
    assert "resumed from" in (tmp_path / "resumed.txt").read_text()
    assert_same_trajectory(out, reference_run)


def test_hung_rank_is_given_up_after_dist_timeout(tmp_path, images):
    """A rank that hangs (alive, so torchrun sees nothing wrong) must not hang the others for ever:
    rank 0's collective gives up after dist.timeout_s, it exits non-zero, and torchrun stops the rest."""
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    launcher = start(torchrun(2, tiny_args(images, out, *SCHEDULE, "dist.timeout_s=8"), script="fault_train.py"),
                     log, env=process_env(CXR_SR_TEST_HANG_STEP="1:4"))
    try:
        wait_for(lambda: (out / "hang_marker").exists(), 180, "rank 1 to hang before step 5", log)
        hung_at = time.monotonic()
        code = launcher.wait(timeout=120)
        exit_s = time.monotonic() - hung_at
    finally:
        kill_tree(launcher)
    assert code != 0
    assert 6 <= exit_s < 60, f"rank 0 gave up after {exit_s:.0f} s with dist.timeout_s=8"
    assert "Timed out" in log.read_text(errors="replace")
    assert latest_checkpoint(out).name == "step_00000003"


def test_kill_during_checkpoint_write_keeps_previous_checkpoint(tmp_path, images, reference_run):
    """kill -9 of every process while checkpoint 6 is half written: checkpoint 3 stays the newest
    complete one, the resume starts there, and the trajectory is still the uninterrupted one."""
    out = tmp_path / "run"
    log = tmp_path / "killed.txt"
    launcher = start(torchrun(2, tiny_args(images, out, *SCHEDULE), script="fault_train.py"), log,
                     env=process_env(CXR_SR_TEST_HANG_CHECKPOINT="6"))
    try:
        wait_for(lambda: (out / "hang_marker").exists(), 180, "the checkpoint write at step 6", log)
    finally:
        kill_tree(launcher)
    partial = out / "checkpoints" / "step_00000006.partial"
    assert partial.is_dir() and not (partial / "trainer.pt").exists()
    assert latest_checkpoint(out).name == "step_00000003"
    run(torchrun(2, ["--resume", *tiny_args(images, out, *SCHEDULE)]), tmp_path / "resumed.txt")
    assert "resumed from" in (tmp_path / "resumed.txt").read_text() and "step_00000003" in tail(tmp_path / "resumed.txt", 400)
    assert not partial.exists()
    assert [p.name for p in complete_checkpoints(out)] == ["step_00000003", "step_00000006", "step_00000008"]
    assert_same_trajectory(out, reference_run)


def test_nan_on_one_rank_skips_everywhere_and_consecutive_bad_steps_stop(tmp_path, images):
    """A NaN generator loss on rank 1 only must skip G's update on both ranks (or DDP would hang),
    be counted in tensorboard, and 3 in a row must stop the run, keeping the last good checkpoint."""
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    args = tiny_args(images, out, "train.pretrain_steps=2", "train.gan_steps=6", "train.ckpt_every=2",
                     "train.keep_ckpts=5", "train.max_bad_steps=3")
    result = run(torchrun(2, args, script="fault_train.py"), log, expect_ok=False,
                 env=process_env(CXR_SR_TEST_NAN="1:1,4,5,6"))
    text = log.read_text(errors="replace")
    assert result.returncode != 0
    assert "3 consecutive non-finite losses at step 6" in text and "last good checkpoint" in text
    assert read_scalars(out)["train/bad_steps"] == {1: 1.0, 4: 2.0, 5: 3.0, 6: 4.0}
    assert [p.name for p in complete_checkpoints(out)] == ["step_00000002", "step_00000004", "step_00000006"]
    before, last = (torch.load(out / "checkpoints" / name / "trainer.pt", map_location="cpu", weights_only=False)
                    for name in ("step_00000004", "step_00000006"))
    for name, weight in last["generator"].items():
        assert torch.isfinite(weight).all()
        assert torch.equal(weight, before["generator"][name]), f"skipped steps changed G.{name}"
    assert last["bad_steps"] == {"total": 3, "consecutive": 2}


def test_stop_signal_on_one_rank_checkpoints_every_rank_and_exits_zero(tmp_path, images):
    """SIGUSR1 to rank 1 alone (a node-local preemption notice): the ranks agree at the next step
    boundary, write one complete checkpoint together and all exit 0, in bounded time."""
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    launcher = start(torchrun(2, tiny_args(images, out, "train.pretrain_steps=100", "train.gan_steps=100",
                                           "train.ckpt_every=1000")), log)
    try:
        _, rank1 = worker_pids(launcher, 2)
        wait_for(lambda: "step 3/200" in log.read_text(errors="replace"), 180, "step 3", log)
        signalled = time.monotonic()
        os.kill(rank1, signal.SIGUSR1)
        code = launcher.wait(timeout=120)
        stop_s = time.monotonic() - signalled
    finally:
        kill_tree(launcher)
    assert code == 0, tail(log)
    assert stop_s < 60
    assert "stopped by a signal" in log.read_text(errors="replace")
    folder = latest_checkpoint(out)
    step = torch.load(folder / "trainer.pt", map_location="cpu", weights_only=False)["step"]
    assert 3 <= step < 200 and folder.name == f"step_{step:08d}"
    assert sorted(p.name for p in folder.iterdir()) == ["networks.pt", "rank0.pt", "rank1.pt", "trainer.pt"]
