"""``cxr-sr launch``: build and run (or, for SLURM, write) the multi-process training command.

    cxr-sr launch --launcher torchrun --nproc 2 --config tiny_cpu train.out_dir=runs/two
    cxr-sr launch --launcher deepspeed --preset gpu_node_8 --config default
    cxr-sr launch --launcher slurm --preset multi_node --nnodes 4 --config default --script job.sh

Whatever the launcher, every process runs ``python -m dist_train`` with the training arguments
given here (``--config``, ``--resume``, ``section.key=value``), exactly as ``cxr-sr train`` takes them.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from launch.commands import deepspeed_command, launcher_env, torchrun_command, write_hostfile
from launch.plan import LAUNCHERS, LaunchError, build_plan, preset_names

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


def register(subparsers) -> None:
    parser = subparsers.add_parser("launch", help="run training under torchrun/deepspeed, or write a SLURM script",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--launcher", choices=LAUNCHERS, required=True)
    parser.add_argument("--preset", help=f"launch settings: a YAML path or one of {', '.join(preset_names())}")
    parser.add_argument("--nproc", dest="nproc_per_node", type=int, help="processes per node (GPUs per node)")
    parser.add_argument("--nnodes", type=int, help="number of nodes")
    parser.add_argument("--node-rank", type=int, help="this node's rank (multi-node torchrun)")
    parser.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous (multi-node torchrun)")
    parser.add_argument("--rdzv-id", help="rendezvous id shared by all nodes of one run")
    parser.add_argument("--master-port", type=int, help="deepspeed master port")
    parser.add_argument("--max-restarts", type=int,
                        help="torchrun/slurm: restart the workers up to N times after a failure, each time "
                             "resuming from the newest complete checkpoint (implies --resume)")
    parser.add_argument("--hosts", help="deepspeed multi-node: host1:8,host2:8 (written as a hostfile)")
    parser.add_argument("--hostfile", help="deepspeed multi-node: an existing hostfile")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--account", help="SLURM account")
    parser.add_argument("--time", dest="time_limit", help="SLURM time limit, e.g. 24:00:00")
    parser.add_argument("--gpus-per-node", type=int, help="SLURM GPUs per node (0 = CPU partition)")
    parser.add_argument("--cpus-per-task", type=int, help="SLURM CPUs per node task")
    parser.add_argument("--script", help="SLURM: where to write the batch script (default: OUT_DIR/slurm_train.sh)")
    parser.add_argument("--submit", action="store_true", help="SLURM: also run sbatch on the script")
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of running it")
    parser.add_argument("--config", help="training config (YAML path or bundled name); default: the preset's, else tiny_cpu")
    parser.add_argument("--resume", action="store_true", default=None, help="continue from the newest checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="training config overrides")
    parser.set_defaults(run=run)


def _plan(args: argparse.Namespace):
    flags = {name: getattr(args, name) for name in (
        "launcher", "nproc_per_node", "nnodes", "node_rank", "rdzv_endpoint", "rdzv_id", "master_port",
        "max_restarts", "hostfile", "partition", "account", "time_limit", "gpus_per_node", "cpus_per_task",
        "config", "resume")}
    if args.hosts:
        flags["hosts"] = tuple(h for h in args.hosts.split(",") if h)
    plan = build_plan(args.preset, **flags)
    plan.overrides = plan.overrides + tuple(args.overrides)  # the preset's first, so the command line wins
    return plan


def _run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Run the launcher; a stop signal sent to us goes on to it (and from it to the trainers)."""
    process = subprocess.Popen(command, env=env)
    previous = {sig: signal.signal(sig, lambda signum, _frame: process.send_signal(signum)) for sig in _FORWARDED}
    try:
        return process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _out_dir(plan) -> Path:
    from dist_train.config import load_config
    return Path(load_config(plan.config, plan.overrides).train.out_dir)


def run(args: argparse.Namespace) -> int:
    from dist_train.config import ConfigError
    try:
        plan = _plan(args)
        out_dir = _out_dir(plan)  # also validates the training config before anything starts
        if plan.launcher == "slurm":
            from launch.slurm import write_slurm_script
            script = write_slurm_script(plan, Path(args.script or out_dir / "slurm_train.sh"), out_dir)
            print(f"wrote {script}; submit it with: sbatch {script}", file=sys.stderr)
            return subprocess.call(["sbatch", str(script)]) if args.submit else 0
        if plan.launcher == "torchrun":
            command = torchrun_command(plan)
        else:
            hostfile = None if args.dry_run else write_hostfile(plan, out_dir)
            command = deepspeed_command(plan, hostfile=hostfile or (out_dir / "hostfile" if plan.hosts else None))
    except (LaunchError, ConfigError) as err:
        print(f"cxr-sr launch: {err}", file=sys.stderr)
        return 2
    env = launcher_env(plan)
    print("+ " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command),
          file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    return _run_forwarding_signals(command, {**os.environ, **env})
