"""Command lines for torchrun and the deepspeed launcher, and the deepspeed hostfile.

Both start ``python -m dist_train`` (the ``cxr-sr train`` entry point) on every process. The
interpreter is this one (``sys.executable``), so a launch from a virtual environment stays in it.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from data_prep.atomic import write_bytes_atomic
from dist_train.trainer import STOP_SIGNALS
from launch.plan import LaunchError, LaunchPlan

ENTRY_MODULE = "dist_train"
# torchrun forwards these to the workers (torch >= 2.8 reads it; older ones forward SIGTERM/SIGINT
# anyway), so a SLURM warning signal reaches the trainer, which checkpoints and exits 0.
SIGNALS_TO_FORWARD = ",".join(sig.name for sig in STOP_SIGNALS)
SHUTDOWN_GRACE_S = 120  # torchrun waits this long for the workers' checkpoint before SIGKILL


def restart_env(plan: LaunchPlan) -> dict[str, str]:
    """What restarted workers need: a store of their own in every restart round.

    By default the workers share the rendezvous agent's store, which lives through restarts, so a
    restarted worker's gloo setup can read a dead worker's address left from the round before
    ("connection refused", then a timeout; pytorch/pytorch#135712). Torch prefixes keys with the
    agent's restart count, which differs between nodes, so no prefix fixes it. With sharing off
    the first rank hosts a fresh store each round.
    """
    return {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"} if plan.max_restarts else {}


def launcher_env(plan: LaunchPlan) -> dict[str, str]:
    """Environment additions for the launcher process (inherited by every worker)."""
    env = {"PET_SIGNALS_TO_HANDLE": SIGNALS_TO_FORWARD, "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(SHUTDOWN_GRACE_S)}
    env.update(restart_env(plan))
    env.update(plan.env)
    return env


def torchrun_command(plan: LaunchPlan, python: str | None = None) -> list[str]:
    """``python -m torch.distributed.run ... -m dist_train ARGS``: standalone on one node, c10d rendezvous on several."""
    command = [python or sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(plan.nproc_per_node)]
    if plan.max_restarts:
        command += ["--max_restarts", str(plan.max_restarts)]
    if plan.nnodes == 1 and not plan.rdzv_endpoint:
        command.append("--standalone")  # a private rendezvous on a free port: runs side by side never clash
    else:
        command += ["--nnodes", str(plan.nnodes), "--rdzv_backend", "c10d", "--rdzv_endpoint", plan.rdzv_endpoint,
                    "--rdzv_id", plan.rdzv_id]
        if plan.nnodes > 1 and plan.node_rank:
            command += ["--node_rank", str(plan.node_rank)]
    return command + ["-m", ENTRY_MODULE] + plan.train_args()


def hostfile_text(hosts: tuple[str, ...]) -> str:
    """A deepspeed hostfile: one ``HOST slots=N`` line per ``HOST:N`` entry."""
    lines = []
    for host in hosts:
        name, _, slots = host.partition(":")
        lines.append(f"{name} slots={slots}")
    return "\n".join(lines) + "\n"


def deepspeed_executable() -> str:
    """The ``deepspeed`` launcher next to this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("deepspeed")
    found = str(beside) if beside.is_file() else shutil.which("deepspeed")
    if not found:
        raise LaunchError("the deepspeed launcher is not installed: pip install deepspeed, or use --launcher torchrun")
    return found


def deepspeed_command(plan: LaunchPlan, hostfile: Path | None = None, executable: str | None = None) -> list[str]:
    """``deepspeed --num_gpus N [--hostfile F --num_nodes M] --no_local_rank --module dist_train ARGS``.

    ``--no_local_rank``: the trainer reads LOCAL_RANK from the environment like under torchrun.
    """
    command = [executable or deepspeed_executable(), "--num_gpus", str(plan.nproc_per_node),
               "--master_port", str(plan.master_port)]
    if plan.nnodes > 1:
        hostfile = hostfile or Path(plan.hostfile)
        first_host = plan.hosts[0].partition(":")[0] if plan.hosts else None
        command += ["--hostfile", str(hostfile), "--num_nodes", str(plan.nnodes)]
        if first_host:
            command += ["--master_addr", first_host]
    return command + ["--no_local_rank", "--module", ENTRY_MODULE] + plan.train_args()


def write_hostfile(plan: LaunchPlan, folder: Path) -> Path | None:
    """Write ``--hosts`` as a deepspeed hostfile under ``folder`` (None when not needed)."""
    if plan.launcher != "deepspeed" or not plan.hosts:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hostfile"
    write_bytes_atomic(path, hostfile_text(plan.hosts).encode("utf-8"))
    return path
