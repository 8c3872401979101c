"""The SLURM batch script: srun + torchrun c10d rendezvous, with requeue on preemption.

The template is ``launch/templates/slurm_train.sh`` (``{{name}}`` placeholders); its header
comment documents how signals flow (SLURM -> script -> srun -> torchrun -> trainers).
"""
from __future__ import annotations

import datetime
import os
import re
import shlex
import sys
from pathlib import Path

from data_prep.atomic import atomic_open
from launch.commands import SHUTDOWN_GRACE_S, SIGNALS_TO_FORWARD, restart_env
from launch.plan import LaunchError, LaunchPlan

TEMPLATE = Path(__file__).resolve().parent / "templates" / "slurm_train.sh"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
RDZV_PORT = 29500


def render(template: str, values: dict[str, str]) -> str:
    """Fill ``{{name}}`` placeholders; a placeholder without a value is an error."""
    missing = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if missing:
        raise LaunchError(f"SLURM template: no value for {{{{{missing[0]}}}}}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def slurm_script(plan: LaunchPlan, script_path: Path, log_dir: Path, python: str | None = None) -> str:
    """The batch script text for ``plan`` (the trainer always runs with --resume, for requeues)."""
    if plan.launcher != "slurm":
        raise LaunchError("slurm_script needs --launcher slurm")
    optional = []
    if plan.gpus_per_node:
        optional.append(f"#SBATCH --gpus-per-node={plan.gpus_per_node}")
    if plan.partition:
        optional.append(f"#SBATCH --partition={plan.partition}")
    if plan.account:
        optional.append(f"#SBATCH --account={plan.account}")
    train_args = plan.train_args()
    if "--resume" not in train_args:
        train_args.insert(2, "--resume")
    values = {
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "script": str(script_path),
        "job_name": plan.job_name,
        "nnodes": str(plan.nnodes),
        "nproc_per_node": str(plan.nproc_per_node),
        "world_size": str(plan.world_size),
        "cpus_per_task": str(plan.cpus_per_task),
        "time_limit": plan.time_limit,
        "signal_lead_s": str(plan.signal_lead_s),
        "log_dir": str(log_dir),
        "optional_sbatch_lines": "\n".join(optional),
        "rdzv_port": str(RDZV_PORT),
        "max_restarts": str(plan.max_restarts),
        "signals": SIGNALS_TO_FORWARD,
        "shutdown_grace_s": str(SHUTDOWN_GRACE_S),
        "env_lines": "".join(f"export {k}={shlex.quote(v)}\n"
                             for k, v in sorted((restart_env(plan) | plan.env).items())),
        "python": shlex.quote(python or sys.executable),
        "train_args": " ".join(shlex.quote(a) for a in train_args),
    }
    return render(TEMPLATE.read_text(), values)


def write_slurm_script(plan: LaunchPlan, script_path: Path, log_dir: Path) -> Path:
    """Write the batch script (executable) atomically and return its path."""
    script_path = Path(script_path)
    script_path.parent.mkdir(parents=True, exist_ok=True)
    Path(log_dir).mkdir(parents=True, exist_ok=True)  # SLURM cannot open --output in a missing folder
    with atomic_open(script_path, "w") as handle:
        handle.write(slurm_script(plan, script_path, log_dir))
        os.chmod(handle.name, 0o755)
    return script_path
