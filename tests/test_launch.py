"""``cxr-sr launch``: the commands each launcher gets, the SLURM batch script, and (slow) that
script's preemption path run for real on this machine with stand-ins for ``srun``/``scontrol``.

The real two-process launches of ``--launcher torchrun`` and ``--launcher deepspeed`` are the
reference run of tests/test_distributed.py and the ZeRO-2 run of tests/test_deepspeed.py.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dist_train.checkpoint import latest_checkpoint, load_file
from launch.cli import main as cxr_sr
from launch.commands import deepspeed_command, hostfile_text, launcher_env, torchrun_command
from launch.plan import LaunchError, LaunchPlan, build_plan, preset_names
from launch.slurm import slurm_script
from tests.dist_helpers import free_port, kill_tree, process_env, start, tail, tiny_args, wait_for, write_tiny_images


def test_presets_cover_one_cpu_box_one_gpu_node_and_n_nodes():
    assert {"cpu_box", "gpu_node_8", "multi_node"} <= set(preset_names())
    assert build_plan("cpu_box", launcher="torchrun").world_size == 2
    assert build_plan("gpu_node_8", launcher="deepspeed").world_size == 8
    assert build_plan("multi_node", launcher="slurm", nnodes=4).world_size == 32


def test_single_node_torchrun_is_standalone_and_runs_the_train_entry_point():
    command = torchrun_command(LaunchPlan(nproc_per_node=2, overrides=("train.out_dir=x",)), python="py")
    assert command == ["py", "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                       "-m", "dist_train", "--config", "tiny_cpu", "train.out_dir=x"]


def test_multi_node_torchrun_uses_a_c10d_rendezvous():
    plan = LaunchPlan(nproc_per_node=8, nnodes=4, node_rank=2, rdzv_endpoint="node0:29500", config="default")
    command = torchrun_command(plan, python="py")
    joined = " ".join(command)
    assert "--nnodes 4 --rdzv_backend c10d --rdzv_endpoint node0:29500 --rdzv_id cxr-sr --node_rank 2" in joined
    with pytest.raises(LaunchError, match="rdzv-endpoint"):
        LaunchPlan(nnodes=2)


def test_max_restarts_makes_torchrun_and_slurm_restart_and_always_resume(tmp_path):
    """A restarted worker must continue from the newest checkpoint, so --max-restarts implies --resume."""
    plan = LaunchPlan(nproc_per_node=2, max_restarts=2, overrides=("train.out_dir=x",))
    assert torchrun_command(plan, python="py") == ["py", "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                                   "--max_restarts", "2", "--standalone", "-m", "dist_train",
                                                   "--config", "tiny_cpu", "--resume", "train.out_dir=x"]
    assert launcher_env(plan)["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"  # a fresh store per restart round
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE" not in launcher_env(LaunchPlan())
    script = slurm_script(LaunchPlan(launcher="slurm", max_restarts=3), tmp_path / "job.sh", tmp_path)
    assert "--max_restarts 3" in script and "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1\n" in script
    with pytest.raises(LaunchError, match="--max-restarts needs --launcher torchrun"):
        LaunchPlan(launcher="deepspeed", max_restarts=1)
    with pytest.raises(LaunchError, match="--max-restarts must be >= 0"):
        LaunchPlan(max_restarts=-1)


def test_deepspeed_gets_a_hostfile_and_the_deepspeed_backend():
    plan = LaunchPlan(launcher="deepspeed", nproc_per_node=8, nnodes=2, hosts=("a:8", "b:8"), master_port=1234)
    assert hostfile_text(plan.hosts) == "a slots=8\nb slots=8\n"
    command = deepspeed_command(plan, hostfile=Path("/run/hostfile"), executable="deepspeed")
    assert command == ["deepspeed", "--num_gpus", "8", "--master_port", "1234", "--hostfile", "/run/hostfile",
                       "--num_nodes", "2", "--master_addr", "a", "--no_local_rank", "--module", "dist_train",
                       "--config", "tiny_cpu", "dist.backend=deepspeed"]
    with pytest.raises(LaunchError, match="--hosts"):
        LaunchPlan(launcher="deepspeed", nnodes=2)
    with pytest.raises(LaunchError, match="HOST:SLOTS"):
        LaunchPlan(launcher="deepspeed", hosts=("a",))
    with pytest.raises(LaunchError, match="make them agree"):  # two hosts must not train on one node
        LaunchPlan(launcher="deepspeed", hosts=("a:8", "b:8"))


def test_slurm_script_requeues_on_preemption_and_always_resumes(tmp_path):
    plan = build_plan("multi_node", launcher="slurm", nnodes=4, partition="gpu", overrides=("train.out_dir=r",))
    script = slurm_script(plan, tmp_path / "job.sh", tmp_path)
    for line in ("#SBATCH --nodes=4", "#SBATCH --gpus-per-node=8", "#SBATCH --partition=gpu", "#SBATCH --requeue",
                 "#SBATCH --signal=B:USR1@300", "trap 'forward_stop SIGUSR1' USR1", "trap 'forward_stop SIGTERM' TERM",
                 'scontrol requeue "$SLURM_JOB_ID"', "--rdzv_backend c10d", "--nproc_per_node 8",
                 "-m dist_train --config default --resume train.out_dir=r"):
        assert line in script, line
    (tmp_path / "job.sh").write_text(script)
    assert subprocess.run(["bash", "-n", str(tmp_path / "job.sh")]).returncode == 0


def test_launch_cli_dry_run_prints_the_command(capsys):
    assert cxr_sr(["launch", "--launcher", "torchrun", "--preset", "cpu_box", "--dry-run", "train.out_dir=/tmp/x"]) == 0
    printed = capsys.readouterr().err
    assert "OMP_NUM_THREADS=1" in printed and "--standalone -m dist_train --config tiny_cpu train.out_dir=/tmp/x" in printed


def test_launch_cli_rejects_a_bad_training_config_before_starting(capsys):
    assert cxr_sr(["launch", "--launcher", "torchrun", "--dry-run", "train.nonsense=1"]) == 2
    assert "train.nonsense" in capsys.readouterr().err


def test_launch_cli_writes_the_slurm_script_into_the_run_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "big"
    assert cxr_sr(["launch", "--launcher", "slurm", "--preset", "multi_node", "--nnodes", "3",
                   f"train.out_dir={out}"]) == 0
    script = out / "slurm_train.sh"
    assert os.access(script, os.X_OK) and "#SBATCH --nodes=3" in script.read_text()
    assert f"sbatch {script}" in capsys.readouterr().err


STUB_SRUN = """#!/bin/bash
# Stand-in for srun on one node: drop srun's own options, run the task.
while [[ "$1" == --* ]]; do shift; done
exec "$@"
"""
STUB_SCONTROL = """#!/bin/bash
# Stand-in for scontrol: one host for `show hostnames`; every other call is recorded.
if [ "$1" = show ]; then echo localhost; else echo "$*" >> "$SCONTROL_LOG"; fi
"""


@pytest.mark.slow
def test_slurm_script_checkpoints_and_requeues_on_the_time_limit_signal(tmp_path):
    """The generated batch script, run by bash with srun/scontrol stand-ins: SIGUSR1 (SLURM's
    time-limit warning) reaches both trainers through srun and torchrun, they write a checkpoint and
    exit cleanly within a bounded time, and the script requeues the job."""
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", STUB_SRUN), ("scontrol", STUB_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    train = tiny_args(images, out, "train.pretrain_steps=100", "train.gan_steps=100", "train.ckpt_every=1000")
    plan = LaunchPlan(launcher="slurm", nproc_per_node=2, gpus_per_node=0, config="tiny_cpu",
                      overrides=tuple(train[2:]))
    script = tmp_path / "job.sh"
    script.write_text(slurm_script(plan, script, tmp_path))
    env = process_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_NNODES="1",
                      SLURM_JOB_NODELIST="localhost", CXR_SR_RDZV_PORT=str(free_port()),
                      SCONTROL_LOG=str(tmp_path / "scontrol.log"))
    log = tmp_path / "job.log"
    job = start(["bash", str(script)], log, env=env)
    try:
        wait_for(lambda: "step 3/200" in log.read_text(errors="replace"), 180, "step 3", log)
        signalled = time.monotonic()
        job.send_signal(signal.SIGUSR1)
        job.wait(timeout=120)
        stop_s = time.monotonic() - signalled
    finally:
        kill_tree(job)
    text = log.read_text(errors="replace")
    assert "stopped by a signal" in text, tail(log)
    assert stop_s < 60
    folder = latest_checkpoint(out)
    assert folder is not None, tail(log)
    step = load_file(folder / "trainer.pt")["step"]
    assert 3 <= step < 200 and folder.name == f"step_{step:08d}"
    assert {"rank0.pt", "rank1.pt"} <= {p.name for p in folder.iterdir()}
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert sys.executable in script.read_text()


@pytest.mark.slow
def test_sigterm_to_cxr_sr_launch_reaches_the_trainers_and_leaves_a_checkpoint(tmp_path):
    """SIGTERM to `cxr-sr launch` (e.g. from a scheduler that only knows that process) goes on to
    torchrun and from it to both trainers, which write a checkpoint before exiting."""
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    log = tmp_path / "log.txt"
    train = tiny_args(images, out, "train.pretrain_steps=100", "train.gan_steps=100", "train.ckpt_every=1000")
    job = start([sys.executable, "-m", "launch", "launch", "--launcher", "torchrun", "--nproc", "2", *train], log)
    try:
        wait_for(lambda: "step 3/200" in log.read_text(errors="replace"), 180, "step 3", log)
        job.send_signal(signal.SIGTERM)
        job.wait(timeout=120)
    finally:
        kill_tree(job)
    assert "stopped by a signal" in log.read_text(errors="replace"), tail(log)
    step = load_file(latest_checkpoint(out) / "trainer.pt")["step"]
    assert 3 <= step < 200
