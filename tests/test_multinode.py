"""Two nodes on one machine: two torchrun agents of one worker each, meeting at a c10d rendezvous
on loopback (gloo), as two machines of a cluster would. Real processes throughout.

* two nodes train exactly what one node of two processes trains (DDP, and DeepSpeed ZeRO-2 bf16),
  with every checkpoint file written once;
* ``cxr-sr launch --max-restarts 1``: ``kill -9`` of one node's worker makes both nodes restart
  their workers, which resume from the newest complete checkpoint and finish on the
  uninterrupted trajectory;
* a whole node lost: the other stops within ``dist.timeout_s``, naming the lost node and the
  checkpoint to resume from, and a restart of both nodes resumes from it.
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
from dist_train.checkpoint import complete_checkpoints, latest_checkpoint, load_file
from dist_train.config import load_config
from tests.dist_helpers import (free_port, kill_tree, port_open, process_env, process_environ, run, start, start_nodes,
                                tail, tiny_args, torchrun, trainer_pid, wait_for, wait_nodes)
from tests.multinode_runs import CHECKPOINT_STEPS, SCHEDULE
from tests.test_distributed import (GRADIENT_FIRST_STEP_RTOL, TRAJECTORY_TAGS, assert_same_trajectory,
                                    relative_difference)

pytestmark = pytest.mark.slow
RANK_FILES = ["networks.pt", "rank0.pt", "rank1.pt", "trainer.pt"]
# Rounding of one float32 forward pass: the first step's loss, before any update.
FIRST_STEP_LOSS_RTOL = 1e-6
# Growth of the loss tolerance per update taken, as a share of the learning rate (see below).
DRIFT_PER_UPDATE_OF_LR = 0.01


def loss_tolerance(step: int, lr: float) -> float:
    """Relative tolerance for a loss logged at ``step`` (1-based) of two runs doing the same arithmetic.

    Two nodes and one node of two processes use the same ranks, samples and two-rank gloo
    all-reduce, so they are expected to agree exactly; what may legitimately differ is rounding
    in the reduction, which Adam can turn into a flipped sign on a near-zero gradient: that one
    weight moves by 2 lr instead of 0. For the tiny generator a single weight moved by lr changes
    the mean L1 loss by far less than 1 % of lr, so 1 % of lr per update is a generous bound for
    a few such flips, and a step-size-independent fault (a rank on the wrong samples, gradients
    summed, a network not synchronised) shows at the first step's gradients, checked separately.
    """
    return FIRST_STEP_LOSS_RTOL + DRIFT_PER_UPDATE_OF_LR * lr * (step - 1)


def assert_losses_agree(got: Path, want: Path, lr: float, tags=TRAJECTORY_TAGS) -> None:
    got_scalars, want_scalars = read_scalars(got), read_scalars(want)
    for tag in tags:
        assert sorted(got_scalars[tag]) == sorted(want_scalars[tag]), f"{tag}: logged steps differ"
        for step, value in want_scalars[tag].items():
            rtol = loss_tolerance(step, lr)
            assert got_scalars[tag][step] == pytest.approx(value, rel=rtol), f"{tag} at step {step} beyond {rtol:.1e}"


def both_logs(prefix: Path) -> str:
    """Rank 0's console lines may be on either node: torchrun numbers the nodes as they arrive."""
    return "\n".join(Path(f"{prefix}{r}.txt").read_text(errors="replace") for r in range(2))


def test_two_nodes_equal_one_node_of_two_processes(one_node_run, two_node_run):
    """The c10d rendezvous, per-node ranks and cross-node all-reduce give what one node gives:
    the same first-step gradients and the same losses at every step, and every shared file has one
    writer (each checkpoint holds each rank's file once and rank 0's files once)."""
    lr = load_config("tiny_cpu").optim.lr_g
    assert_losses_agree(two_node_run, one_node_run, lr)
    one, two = (torch.load(r / "gradients.pt", map_location="cpu", weights_only=True)
                for r in (one_node_run, two_node_run))
    for net, named in one[0].items():
        for name, want in named.items():
            difference = relative_difference(two[0][net][name], want)
            assert difference <= GRADIENT_FIRST_STEP_RTOL, f"step 0 {net}.{name}: gradients differ by {difference:.2e}"
    assert [int(p.name[5:]) for p in complete_checkpoints(two_node_run)] == list(CHECKPOINT_STEPS)
    for folder in complete_checkpoints(two_node_run):
        assert sorted(p.name for p in folder.iterdir()) == RANK_FILES
    assert len(list((two_node_run / "tensorboard").iterdir())) == 1
    assert not list(two_node_run.rglob("*.tmp")) and not list(two_node_run.rglob("*.partial"))


def cxr_sr_launch_nodes(args: list[str], logs: Path, *flags: str) -> list:
    """``cxr-sr launch --launcher torchrun`` on two "nodes", node 0 first (it holds the rendezvous)."""
    port, nodes = free_port(), []
    env = process_env(PYTHONUNBUFFERED="1")
    for node_rank in range(2):
        nodes.append(start([sys.executable, "-m", "launch", "launch", "--launcher", "torchrun", "--nproc", "1",
                            "--nnodes", "2", "--node-rank", str(node_rank), "--rdzv-endpoint", f"127.0.0.1:{port}",
                            *flags, *args], Path(f"{logs}{node_rank}.txt"), env=env))
        if node_rank == 0:
            wait_for(lambda: port_open(port), 120, "node 0's rendezvous store", Path(f"{logs}0.txt"))
    return nodes


# ZeRO-2 in bf16 through DeepSpeed's CPU accelerator: 2 PSNR steps, 3 GAN steps, checkpoints at 3 and 5.
DEEPSPEED_SCHEDULE = ("train.pretrain_steps=2", "train.gan_steps=3", "train.ckpt_every=3", "train.precision=bf16",
                      "dist.backend=deepspeed", "dist.zero_stage=2")
DEEPSPEED_FILES = ["bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt", "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt",
                   "mp_rank_00_model_states.pt"]


def test_deepspeed_zero2_bf16_on_two_nodes_equals_one_node(tmp_path, multinode_images):
    """The same for DeepSpeed: two nodes give one node's losses, and each engine's checkpoint holds
    each rank's optimizer partition once and the model states once."""
    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    run(torchrun(2, tiny_args(multinode_images, one, *DEEPSPEED_SCHEDULE)), tmp_path / "one.txt")
    nodes = start_nodes(tiny_args(multinode_images, two, *DEEPSPEED_SCHEDULE), tmp_path / "node")
    codes = wait_nodes(nodes)
    assert codes == [0, 0], both_logs(tmp_path / "node")[-4000:]
    assert_losses_agree(two, one, load_config("tiny_cpu").optim.lr_g)
    assert [p.name for p in complete_checkpoints(two)] == ["step_00000003", "step_00000005"]
    for folder in complete_checkpoints(two):
        for net in ("g", "d"):
            assert sorted(p.name for p in (folder / f"engine_{net}").iterdir()) == DEEPSPEED_FILES
        for name in ("rank0.pt", "rank1.pt", "trainer.pt"):
            load_file(folder / name)


def test_max_restarts_resumes_both_nodes_after_kill_9_of_one_worker(tmp_path, multinode_images, two_node_run):
    """kill -9 of node 1's trainer after checkpoint 3: both agents restart their workers, which
    resume from the newest complete checkpoint by themselves, finish, and log the uninterrupted
    losses; every checkpoint is complete and loads."""
    out = tmp_path / "run"
    nodes = cxr_sr_launch_nodes(tiny_args(multinode_images, out, *SCHEDULE), tmp_path / "node", "--max-restarts", "1")
    try:
        victim = trainer_pid(nodes[1])
        wait_for(lambda: latest_checkpoint(out) is not None, 180, "checkpoint 3", tmp_path / "node0.txt")
        os.kill(victim, signal.SIGKILL)
    finally:
        codes = wait_nodes(nodes)
    logs = both_logs(tmp_path / "node")
    assert codes == [0, 0], logs[-4000:]
    resumed = [line for line in logs.splitlines() if line.startswith("resumed from")]
    assert len(resumed) == 1 and ("step_00000003" in resumed[0] or "step_00000006" in resumed[0]), resumed
    assert [int(p.name[5:]) for p in complete_checkpoints(out)] == list(CHECKPOINT_STEPS)
    for folder in complete_checkpoints(out):
        for name in RANK_FILES:
            load_file(folder / name)
    assert_same_trajectory(out, two_node_run)


def test_lost_node_stops_the_other_naming_it_and_the_checkpoint_then_both_resume(tmp_path, multinode_images,
                                                                                 two_node_run):
    """Node 1's agent and worker killed (a machine gone): node 0 must stop within dist.timeout_s
    with one line naming the lost rank and node and the checkpoint to resume from; starting both
    nodes again resumes there and ends on the uninterrupted trajectory."""
    out = tmp_path / "run"
    timeout_s = 20
    args = tiny_args(multinode_images, out, *SCHEDULE, f"dist.timeout_s={timeout_s}")
    nodes = start_nodes(args, tmp_path / "node", env=process_env(PYTHONUNBUFFERED="1"))
    try:
        lost = process_environ(trainer_pid(nodes[1]))
        wait_for(lambda: latest_checkpoint(out) is not None, 180, "checkpoint 3", tmp_path / "node0.txt")
        kill_tree(nodes[1])
        killed_at = time.monotonic()
        code = nodes[0].wait(timeout=120)
        stop_s = time.monotonic() - killed_at
    finally:
        wait_nodes(nodes, timeout_s=1)
    log = tmp_path / "node0.txt"
    assert code != 0
    assert stop_s < timeout_s, f"node 0 took {stop_s:.0f} s to stop"
    newest = latest_checkpoint(out)
    message = [line for line in log.read_text(errors="replace").splitlines() if "lost contact with" in line]
    assert message, tail(log)
    assert f"lost contact with rank {lost['RANK']} on node {lost['GROUP_RANK']} (" in message[0], message[0]
    assert f"the newest complete checkpoint is {newest}" in message[0], message[0]

    restarted = start_nodes(["--resume", *args], tmp_path / "again")
    assert wait_nodes(restarted) == [0, 0], both_logs(tmp_path / "again")[-4000:]
    assert f"resumed from {newest}" in both_logs(tmp_path / "again")
    assert_same_trajectory(out, two_node_run)
