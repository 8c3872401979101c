"""The one home of rank logic: process group, rank/world size, device, collectives and seeding.

torchrun and the deepspeed launcher both set RANK, WORLD_SIZE and LOCAL_RANK; without them the
process is rank 0 of 1 and no process group is created. Collectives are no-ops then.
"""
from __future__ import annotations

import datetime
import gc
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int) -> torch.device:
    """``auto`` takes this rank's GPU when CUDA is available, otherwise the CPU."""
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device=cuda but CUDA is not available: use train.device=cpu or auto")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _comm_backend(comm: str, device: torch.device) -> str:
    """``dist.comm``: auto means nccl on a GPU and gloo on the CPU."""
    return comm if comm != "auto" else ("nccl" if device.type == "cuda" else "gloo")


def init_distributed(device_request: str = "auto", comm: str = "auto", timeout_s: int = 600) -> DistEnv:
    """Join the process group described by the launcher's environment (or none when alone)."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(device_request, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=_comm_backend(comm, device), timeout=datetime.timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
        _store().set(_NODE_KEY.format(rank=rank), node_name())
    return DistEnv(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


# Preemption (SIGTERM), SLURM's time-limit warning (SIGUSR1), Ctrl-C, a lost terminal and SIGQUIT:
# the trainer writes a checkpoint and exits 0 on each, loader workers ignore them, and
# launch/commands.py has torchrun forward exactly these.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

_NODE_KEY = "cxr_sr/node/{rank}"
_ALIVE_KEY = "cxr_sr/alive/{round}/{rank}"


def node_name() -> str:
    """This process's node: torchrun's number for it (GROUP_RANK) and its host name."""
    group = os.environ.get("GROUP_RANK")
    return f"node {group} ({socket.gethostname()})" if group is not None else socket.gethostname()


def _store() -> dist.Store:
    return dist.distributed_c10d._get_default_store()


def is_peer_failure(err: BaseException) -> bool:
    """A collective that failed because a peer died or hung (gloo raises plain RuntimeErrors)."""
    return isinstance(err, dist.DistError) or "/gloo/" in str(err)


def unresponsive_ranks(env: DistEnv, grace_s: float) -> str:
    """After a failed collective: the ranks, with their nodes, that miss a roll call in the store.

    The store outlives the ranks' own connections (under torchrun the first node's agent holds
    it, or rank 0's worker under --max-restarts, launch/commands.py), so every surviving rank
    checks in and waits ``grace_s`` for the others; one that never
    does is dead or hung. Returns a description such as ``rank 1 on node 1 (host)``.
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # a restarted run must not see old answers
    try:
        store = _store()
        store.set_timeout(datetime.timedelta(seconds=max(grace_s, 1.0)))
        store.set(_ALIVE_KEY.format(round=restart, rank=env.rank), "1")
        deadline = time.monotonic() + grace_s
        while True:
            missing = [r for r in range(env.world_size) if not store.check([_ALIVE_KEY.format(round=restart, rank=r)])]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        names = [f"rank {r} on {store.get(_NODE_KEY.format(rank=r)).decode()}" for r in missing]
    except Exception as err:  # noqa: BLE001 - the store may have gone with the node that held it
        return f"an unknown peer (the rendezvous store is unreachable too: {type(err).__name__})"
    return ", ".join(names) or "no rank (every rank answered the roll call)"


def ensure_process_group(env: DistEnv, comm: str = "auto", timeout_s: int = 600) -> None:
    """A process group even for a single process (DeepSpeed needs one); no-op when one exists.

    A single process gets an in-memory store, so no port is opened and no launcher is needed.
    """
    if dist.is_initialized():
        return
    if env.distributed:
        raise RuntimeError("ensure_process_group: several ranks but no process group; call init_distributed first")
    for name, value in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
        os.environ.setdefault(name, str(value))  # what a launcher would have set; DeepSpeed asserts them
    dist.init_process_group(backend=_comm_backend(comm, env.device), store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=timeout_s))


def shutdown(wait_for_peers: bool = False) -> None:
    """Leave the process group while the interpreter is still whole.

    Gloo groups that live on into interpreter teardown can abort a finished worker ('terminate
    called without an active exception', e.g. after a complete ZeRO-2 run). So the
    caller drops its engines first; DeepSpeed's own cached group references go through
    ``deepspeed.comm.destroy_process_group``; and the groups are collected here, not at exit.
    After a clean finish a barrier first makes sure no peer is still inside a collective when this
    rank's transport goes; after an error there is none, since a dead peer would hang it.
    """
    if not dist.is_initialized():
        return
    if wait_for_peers:
        dist.barrier()
    deepspeed_comm = sys.modules.get("deepspeed.comm")  # only when the DeepSpeed backend ran
    if deepspeed_comm is not None and deepspeed_comm.is_initialized():
        deepspeed_comm.destroy_process_group()
    else:
        dist.destroy_process_group()
    gc.collect()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place and returned (on CPU tensors for gloo, the device's for nccl)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool | torch.Tensor, device: torch.device) -> bool:
    """True when the flag is set on at least one rank: every rank must call it.

    A tensor flag stays on the device until the all-reduce, so the call waits on the device once.
    """
    value = flag.detach().reshape(1).to(device, torch.float32) if isinstance(flag, torch.Tensor) \
        else torch.tensor([1.0 if flag else 0.0], device=device)
    return all_reduce_sum(value).item() > 0


def seed_everything(seed: int, rank: int) -> None:
    """Seed python, numpy and torch per global rank, so ranks differ but runs repeat."""
    rank_seed = seed + 1000003 * rank
    random.seed(rank_seed)
    np.random.seed(rank_seed % 2**32)
    torch.manual_seed(rank_seed)


def rng_state() -> dict:
    """Every RNG state this process uses, for an exact resume."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
