"""The fault matrix of benchmarks/RESULTS.md: each row is one of these tests (or one named there
from tests/test_distributed.py), run with real processes on the tiny two-rank schedule.

The faults are injected by tests/workers/fault_train.py at points drawn from a seeded generator
and shown in the test id, so a failure names its points and repeats. kill -9 rows run torchrun
with ``--max_restarts 3``: three kills at three points in one run, each followed by torchrun's
restart and the trainer's automatic resume (``--resume``: the newest complete checkpoint), with
the environment ``cxr-sr launch`` gives torchrun. Every row checks what the run did, the steps
lost (measured in rank 0's log as the steps trained twice: at most one checkpoint interval per
fault), that no complete checkpoint is lost or damaged, and that the final trajectory is the
uninterrupted one.
"""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from dist_train.checkpoint import complete_checkpoints, latest_checkpoint, load_file
from launch.commands import launcher_env
from launch.plan import LaunchPlan
from tests.dist_helpers import (copy_run, launch_command, process_env, run, start_nodes, tail, tiny_args, torchrun,
                                wait_nodes)
from tests.multinode_runs import CHECKPOINT_STEPS, SCHEDULE
from tests.test_distributed import TOTAL_STEPS, assert_same_trajectory

pytestmark = pytest.mark.slow
CKPT_EVERY = 3
CHECKPOINT_FILES = ("networks.pt", "rank0.pt", "rank1.pt", "trainer.pt")
_draw = random.Random(1234)
# 0-based steps in which a rank is killed (one per restart round); non-decreasing, so each is reached
TRAINING_KILLS = sorted(_draw.sample(range(1, TOTAL_STEPS), 3))
# (checkpoint step, file, share of its bytes written before the kill), one per restart round:
# three different files, at non-decreasing checkpoints
WRITE_KILLS = list(zip(sorted(_draw.choice(CHECKPOINT_STEPS) for _ in range(3)), _draw.sample(CHECKPOINT_FILES, 3),
                       [round(_draw.random(), 2) for _ in range(3)]))
SIGNAL_STEPS = {"TERM": _draw.randrange(1, TOTAL_STEPS - 1), "USR1": _draw.randrange(1, TOTAL_STEPS - 1)}


def resume_point(steps_done: int) -> int:
    """The newest checkpoint complete after ``steps_done`` steps (0: none)."""
    return max([0] + [c for c in CHECKPOINT_STEPS if c <= steps_done])


def console(logs: list[Path]) -> list[str]:
    return [line for log in logs for line in log.read_text(errors="replace").splitlines()]


def run_with_restarts(tmp_path: Path, images: Path, nodes: int, env: dict) -> tuple[Path, list[Path]]:
    """The schedule with up to 3 restarts on one node (2 processes) or two nodes (1 each)."""
    out = tmp_path / "run"
    args = ["--resume", *tiny_args(images, out, *SCHEDULE)]
    if nodes == 1:
        plan = LaunchPlan(nproc_per_node=2, max_restarts=3, resume=True, config=args[2], overrides=tuple(args[3:]))
        logs = [tmp_path / "log.txt"]
        run(launch_command(plan, "fault_train.py"), logs[0], env=process_env(**launcher_env(plan), **env))
    else:
        logs = [tmp_path / "node0.txt", tmp_path / "node1.txt"]
        codes = wait_nodes(start_nodes(args, tmp_path / "node", script="fault_train.py", env=process_env(**env),
                                       max_restarts=3))
        assert codes == [0, 0], "\n".join(tail(log) for log in logs)
    return out, logs


def steps_lost(lines: list[str]) -> tuple[list[int], list[int]]:
    """From rank 0's console: the step each start (the first, then each restart) began at, and
    per restart the steps trained again (the last step logged before it minus where it resumed)."""
    starts, last_logged = [], []
    for line in lines:
        if line.startswith(("resumed from", "no checkpoint under")):
            starts.append(int(re.search(r"at step (\d+)", line).group(1)) if "resumed" in line else 0)
            last_logged.append(starts[-1])
        elif match := re.match(rf"step (\d+)/{TOTAL_STEPS} ", line):
            last_logged[-1] = int(match.group(1))
    assert last_logged[-1] == TOTAL_STEPS, f"the last start ended at step {last_logged[-1]}"
    return starts, [done - start for done, start in zip(last_logged, starts[1:])]


def assert_recovered(out: Path, logs: list[Path], reference: Path, expected: list[int]) -> list[int]:
    """Three faults, three restarts from the newest checkpoint complete at each (``expected``),
    nothing lost beyond one checkpoint interval; returns the steps trained again per restart."""
    faults = (out / "faults.txt").read_text().splitlines()
    assert [line.split()[1] for line in faults] == ["0", "1", "2"], faults
    starts, lost = steps_lost(console(logs))
    assert starts == [0, *expected], f"started at {starts}, expected [0, {expected}]"
    assert all(steps <= CKPT_EVERY for steps in lost), f"steps lost {lost} exceed one checkpoint interval"
    assert [int(p.name[5:]) for p in complete_checkpoints(out)] == list(CHECKPOINT_STEPS)
    for folder in complete_checkpoints(out):
        for name in CHECKPOINT_FILES:
            load_file(folder / name)
    assert not list(out.rglob("*.partial"))
    assert_same_trajectory(out, reference)
    return lost


@pytest.mark.parametrize("nodes", [1, 2], ids=["one_node", "two_nodes"])
@pytest.mark.parametrize("steps", [TRAINING_KILLS], ids=lambda s: "kill9_in_steps_" + "_".join(map(str, s)))
def test_kill_9_during_training_three_times(tmp_path, multinode_images, one_node_run, two_node_run, nodes, steps):
    """SIGKILL of rank 1 mid-step (after the gradients' all-reduce, before the update)."""
    out, logs = run_with_restarts(tmp_path, multinode_images, nodes,
                                  {"CXR_SR_TEST_SIGNAL_STEPS": "1:KILL:" + ",".join(map(str, steps))})
    assert_recovered(out, logs, one_node_run if nodes == 1 else two_node_run, [resume_point(done) for done in steps])


@pytest.mark.parametrize("nodes", [1, 2], ids=["one_node", "two_nodes"])
@pytest.mark.parametrize("points", [WRITE_KILLS],
                         ids=lambda p: "kill9_writing_" + "_".join(f"{s}-{f}@{x}" for s, f, x in p))
def test_kill_9_during_checkpoint_writes_three_times(tmp_path, multinode_images, one_node_run, two_node_run, nodes,
                                                     points):
    """SIGKILL of the rank writing a checkpoint file, part of its bytes on disk."""
    spec = ",".join(f"{step}/{name}@{share}" for step, name, share in points)
    out, logs = run_with_restarts(tmp_path, multinode_images, nodes, {"CXR_SR_TEST_KILL_WRITES": spec})
    assert all("bytes of" in line for line in (out / "faults.txt").read_text().splitlines())
    # the checkpoint being written does not count yet
    assert_recovered(out, logs, one_node_run if nodes == 1 else two_node_run,
                     [resume_point(step - 1) for step, _, _ in points])


@pytest.mark.parametrize("name, step", sorted(SIGNAL_STEPS.items()), ids=lambda v: str(v))
def test_stop_signal_checkpoints_at_once_and_resumes_on_the_trajectory(tmp_path, multinode_images, one_node_run,
                                                                       name, step):
    """SIGTERM (preemption) or SIGUSR1 (SLURM's time-limit notice) to rank 1 in a seeded step: exit
    0 with a checkpoint of the step it was in (no step lost), and a resume ends on the trajectory."""
    out = tmp_path / "run"
    args = tiny_args(multinode_images, out, *SCHEDULE)
    run(torchrun(2, args, script="fault_train.py"), tmp_path / "stopped.txt",
        env=process_env(CXR_SR_TEST_SIGNAL_STEPS=f"1:{name}:{step}"))
    assert "stopped by a signal" in (tmp_path / "stopped.txt").read_text()
    assert latest_checkpoint(out).name == f"step_{step + 1:08d}"  # the step in progress finished and was saved
    run(torchrun(2, ["--resume", *args]), tmp_path / "resumed.txt")
    assert f"step_{step + 1:08d} at step {step + 1}" in (tmp_path / "resumed.txt").read_text()
    assert_same_trajectory(out, one_node_run)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, multinode_images, one_node_run):
    """RLIMIT_FSIZE below networks.pt's size as checkpoint 6 starts (the kernel refuses the write,
    as a full disk does): one line naming the folder and the reason, checkpoint 3 intact, and a
    resume once there is room ends on the uninterrupted trajectory."""
    out = tmp_path / "run"
    args = tiny_args(multinode_images, out, *SCHEDULE)
    limit = (complete_checkpoints(one_node_run)[0] / "networks.pt").stat().st_size // 2
    result = run(torchrun(2, args, script="fault_train.py"), tmp_path / "full.txt", expect_ok=False,
                 env=process_env(CXR_SR_TEST_FSIZE=f"6:{limit}"))
    text = (tmp_path / "full.txt").read_text(errors="replace")
    assert result.returncode != 0
    assert "step_00000006.partial: writing the checkpoint failed (File too large)" in text, tail(tmp_path / "full.txt")
    assert f"{out / 'checkpoints' / 'step_00000003'}, is intact" in text
    assert latest_checkpoint(out).name == "step_00000003"
    run(torchrun(2, ["--resume", *args]), tmp_path / "resumed.txt")
    assert [int(p.name[5:]) for p in complete_checkpoints(out)] == list(CHECKPOINT_STEPS)
    assert_same_trajectory(out, one_node_run)


def test_corrupted_newest_checkpoint_is_set_aside_and_the_one_before_used(tmp_path, one_node_run, multinode_images):
    """The newest checkpoint's trainer.pt truncated (a torn copy, a lost block): the resume names
    it, sets the folder aside as step_6.unreadable (nothing deleted), resumes from step 3, and ends
    on the uninterrupted trajectory with checkpoint 6 written again."""
    out = copy_run(one_node_run, tmp_path / "run", drop_after_step=6)
    damaged = out / "checkpoints" / "step_00000006" / "trainer.pt"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    run(torchrun(2, ["--resume", *tiny_args(multinode_images, out, *SCHEDULE)]), tmp_path / "resumed.txt")
    text = (tmp_path / "resumed.txt").read_text()
    assert f"cannot resume from {damaged.parent}: {damaged}: not a readable checkpoint file" in text
    assert "step_00000003 at step 3" in text
    assert (out / "checkpoints" / "step_00000006.unreadable" / "trainer.pt").is_file()
    assert [int(p.name[5:]) for p in complete_checkpoints(out)] == list(CHECKPOINT_STEPS)
    assert_same_trajectory(out, one_node_run)
