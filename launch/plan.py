"""What a multi-process launch needs: process and node counts, rendezvous, hosts, SLURM settings.

A ``LaunchPlan`` is built from a preset (``launch/configs/<name>.yaml``: one CPU box, one 8-GPU
node, N nodes) and command-line flags on top; ``launch.commands`` and ``launch.slurm`` turn it into
a command line or a batch script. Every launcher starts the same entry point,
``python -m dist_train`` (what ``cxr-sr train`` runs), with the training arguments unchanged.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dist_train.config import find_yaml, yaml_names

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LAUNCHERS = ("torchrun", "deepspeed", "slurm")


class LaunchError(ValueError):
    """A launch setting that cannot work; the message names the flag and the fix."""


@dataclass
class LaunchPlan:
    launcher: str = "torchrun"
    nproc_per_node: int = 1
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str = ""  # host:port of the rendezvous (multi-node torchrun); "" = standalone
    rdzv_id: str = "cxr-sr"
    master_port: int = 29500  # deepspeed's master port (torchrun picks a free one when standalone)
    # torchrun restarts every node's workers this many times after a failure; they resume from
    # the newest complete checkpoint, so a restart implies --resume
    max_restarts: int = 0
    hosts: tuple[str, ...] = ()  # deepspeed multi-node: "host:slots" entries, written to a hostfile
    hostfile: str = ""  # deepspeed: an existing hostfile instead of hosts
    # SLURM batch script settings
    partition: str = ""
    account: str = ""
    time_limit: str = "24:00:00"
    gpus_per_node: int = 8  # 0 = no GPU request (CPU partition)
    cpus_per_task: int = 16
    job_name: str = "cxr-sr"
    signal_lead_s: int = 300  # SLURM warns this long before the time limit (checkpoint, requeue)
    # the training run every launcher starts
    config: str = "tiny_cpu"
    overrides: tuple[str, ...] = ()
    resume: bool = False
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the processes

    def __post_init__(self):
        self.hosts, self.overrides = tuple(self.hosts), tuple(self.overrides)
        if self.launcher not in LAUNCHERS:
            raise LaunchError(f"--launcher {self.launcher!r}: use one of {', '.join(LAUNCHERS)}")
        for name in ("nproc_per_node", "nnodes", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise LaunchError(f"--{name.replace('_', '-')} must be >= 1")
        if self.max_restarts < 0:
            raise LaunchError("--max-restarts must be >= 0 (0 = a failure ends the run)")
        if self.max_restarts and self.launcher == "deepspeed":
            raise LaunchError("--max-restarts needs --launcher torchrun or slurm (the deepspeed launcher does not restart)")
        if self.gpus_per_node < 0:
            raise LaunchError("--gpus-per-node must be >= 0 (0 = a CPU partition)")
        if not 0 <= self.node_rank < self.nnodes:
            raise LaunchError(f"--node-rank {self.node_rank} must be in 0..{self.nnodes - 1}")
        if self.launcher == "torchrun" and self.nnodes > 1 and not self.rdzv_endpoint:
            raise LaunchError("--nnodes > 1 with torchrun needs --rdzv-endpoint HOST:PORT (the first node)")
        if self.rdzv_endpoint and ":" not in self.rdzv_endpoint:
            raise LaunchError(f"--rdzv-endpoint {self.rdzv_endpoint!r}: give HOST:PORT")
        if self.launcher == "deepspeed" and self.nnodes > 1 and not (self.hosts or self.hostfile):
            raise LaunchError("--nnodes > 1 with deepspeed needs --hosts host1:8,host2:8 or --hostfile FILE")
        if self.hosts and len(self.hosts) != self.nnodes:
            raise LaunchError(f"--hosts names {len(self.hosts)} node(s) but --nnodes is {self.nnodes}: make them agree")
        for host in self.hosts:
            name, _, slots = host.partition(":")
            if not name or not slots.isdigit():
                raise LaunchError(f"--hosts entry {host!r}: write HOST:SLOTS, e.g. node1:8")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    def train_args(self) -> list[str]:
        """The arguments of ``python -m dist_train`` (the same for every launcher)."""
        resume = self.resume or self.max_restarts > 0
        args = ["--config", self.config] + (["--resume"] if resume else []) + list(self.overrides)
        if self.launcher == "deepspeed" and not any(o.startswith("dist.backend=") for o in self.overrides):
            args.append("dist.backend=deepspeed")
        return args


def preset_names() -> list[str]:
    return yaml_names(CONFIG_DIR)


def load_preset(name: str) -> dict:
    """Launch settings of a preset: a YAML path or a name under launch/configs."""
    path = find_yaml(name, CONFIG_DIR)
    if path is None:
        raise LaunchError(f"--preset {name!r} not found; give a YAML path or one of: {', '.join(preset_names())}")
    tree = yaml.safe_load(path.read_text()) or {}
    known = {f.name for f in dataclasses.fields(LaunchPlan)}
    unknown = sorted(set(tree) - known)
    if unknown:
        raise LaunchError(f"{path}: unknown setting '{unknown[0]}'; known: {', '.join(sorted(known))}")
    return tree


def build_plan(preset: str | None, **flags) -> LaunchPlan:
    """A preset's settings with every flag that is not None on top."""
    values = load_preset(preset) if preset else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    return LaunchPlan(**values)
