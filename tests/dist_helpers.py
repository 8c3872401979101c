"""Helpers for the multi-process tests: tiny images, real launches (torchrun/deepspeed), scalars.

Every launch is a real process tree on the CPU with gloo: one thread per process (two processes
share the CI machine's cores), DeepSpeed's CPU accelerator, and DeepSpeed's compiled ops cached in
``TORCH_EXTENSIONS_DIR`` (CI exports it; otherwise ``~/.cache/cxr-sr/torch_extensions``), so the
one-off ~50 s build of ``shm_comm`` happens once per machine, not once per test.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKERS = Path(__file__).resolve().parent / "workers"
DEFAULT_EXTENSIONS_DIR = Path.home() / ".cache" / "cxr-sr" / "torch_extensions"
RUN_TIMEOUT_S = 300


def write_tiny_images(folder: Path, count: int = 20, size_px: int = 128, seed: int = 0) -> Path:
    """``count`` smooth grayscale PNGs with fine detail: fast to decode, deterministic."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size_px, 0:size_px] / size_px
    for index in range(count):
        a, b, c = rng.random(3)
        image = (0.5 + 0.3 * np.sin(2 * np.pi * (4 * a * x + 3 * b * y)) + 0.15 * np.cos(12 * np.pi * c * x * y)
                 + 0.05 * rng.standard_normal((size_px, size_px)))
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(folder / f"img_{index:03d}.png")
    return folder


def tiny_args(images: Path, out_dir: Path, *extra: str) -> list[str]:
    """``--config tiny_cpu`` at test size: 32 px patches, 4 per process, a scalar per step."""
    return ["--config", "tiny_cpu", f"data.images={images}", f"train.out_dir={out_dir}", "data.workers=0",
            "data.patch_px=32", "data.batch_size=4", "data.val_crop_px=64", "data.val_count=2",
            "train.log_every=1", "train.val_every=1000", "dist.timeout_s=60", *extra]


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(DEFAULT_EXTENSIONS_DIR))
    env.update({"OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "CUDA_VISIBLE_DEVICES": "",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")])),
                "PYTHONWARNINGS": "ignore"})
    env.update(extra)
    return env


def torchrun(nproc: int, args: list[str], script: str | None = None) -> list[str]:
    """``torchrun --standalone`` (a private free port) running ``-m dist_train`` or a worker script."""
    target = ["-m", "dist_train"] if script is None else [str(WORKERS / script)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            *target, *args]


def run(command: list[str], log: Path, timeout_s: float = RUN_TIMEOUT_S, env: dict | None = None,
        expect_ok: bool = True) -> subprocess.CompletedProcess:
    """Run to completion with output in ``log``; a failure shows the log's tail."""
    with open(log, "w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env or process_env(),
                                timeout=timeout_s, cwd=PROJECT_ROOT)
    if expect_ok and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}: {' '.join(command)}\n{tail(log)}")
    return result


def start(command: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """Start in a new session (so the whole tree can be killed at once), output in ``log``."""
    handle = open(log, "w")
    return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env or process_env(),
                            cwd=PROJECT_ROOT, start_new_session=True)


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def wait_for(condition, timeout_s: float, what: str, log: Path | None = None, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail(log) if log else ''}")
        time.sleep(poll_s)


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return sorted(found)


def worker_pids(launcher: subprocess.Popen, count: int, timeout_s: float = 60) -> list[int]:
    """The ``count`` trainer processes torchrun started (its direct children)."""
    wait_for(lambda: len(children(launcher.pid)) >= count, timeout_s, f"{count} workers")
    return children(launcher.pid)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    found, todo = [], children(pid)
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process started with ``start`` and everything below it.

    torchrun starts each worker in a session of its own, so killing the launcher's session alone
    would leave the workers running: they are found through /proc and killed one by one.
    """
    for pid in [*descendants(process.pid), process.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def launch_command(plan, script: str | None = None) -> list[str]:
    """``launch.commands.torchrun_command(plan)``, running a worker script in place of ``-m dist_train``."""
    from launch.commands import torchrun_command

    command = torchrun_command(plan)
    if script is not None:
        at = command.index("-m", 3)
        command[at:at + 2] = [str(WORKERS / script)]
    return command


def start_nodes(args: list[str], logs: Path, nnodes: int = 2, script: str | None = None, env: dict | None = None,
                **plan_fields) -> list[subprocess.Popen]:
    """``nnodes`` torchrun agents on this machine, one "node" each, meeting at a c10d rendezvous on
    loopback; ``args`` are the training arguments (``--config NAME ...``), logs ``{logs}{R}.txt``.

    Node 0 starts first and holds the rendezvous store (the others wait until its port answers),
    as the first node of an allocation does, so killing any other node leaves the store alive.
    """
    from launch.commands import launcher_env
    from launch.plan import LaunchPlan

    port, nodes = free_port(), []
    resume = "--resume" in args
    train = [a for a in args if a != "--resume"]
    for node_rank in range(nnodes):
        plan = LaunchPlan(nproc_per_node=1, nnodes=nnodes, node_rank=node_rank, rdzv_endpoint=f"127.0.0.1:{port}",
                          config=train[1], overrides=tuple(train[2:]), resume=resume, **plan_fields)
        node_env = {**(env or process_env()), **launcher_env(plan)}
        nodes.append(start(launch_command(plan, script), Path(f"{logs}{node_rank}.txt"), env=node_env))
        if node_rank == 0:
            wait_for(lambda: port_open(port), 120, "node 0's rendezvous store", Path(f"{logs}0.txt"))
    return nodes


def wait_nodes(nodes: list[subprocess.Popen], timeout_s: float = RUN_TIMEOUT_S) -> list[int]:
    """Every node's exit code; the whole tree of each is killed if it overruns."""
    deadline = time.monotonic() + timeout_s
    try:
        return [node.wait(timeout=max(1.0, deadline - time.monotonic())) for node in nodes]
    finally:
        for node in nodes:
            kill_tree(node)


def trainer_pid(launcher: subprocess.Popen, timeout_s: float = 120) -> int:
    """The one trainer process below a launcher (torchrun's worker, not torchrun itself)."""
    def trainers():
        return [pid for pid in descendants(launcher.pid) if _is_trainer(pid)]
    wait_for(lambda: len(trainers()) == 1, timeout_s, "the trainer process")
    return trainers()[0]


def _is_trainer(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"torch.distributed.run" not in argv and (b"dist_train" in argv or any(a.endswith(b".py") for a in argv))


def process_environ(pid: int) -> dict[str, str]:
    """The environment a live process started with (RANK, GROUP_RANK, ... of a torchrun worker)."""
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p)


def copy_run(source: Path, target: Path, drop_after_step: int | None = None) -> Path:
    """Copy a run folder, optionally deleting its checkpoints after ``drop_after_step``."""
    shutil.copytree(source, target)
    if drop_after_step is not None:
        for folder in (target / "checkpoints").iterdir():
            if int(folder.name.split("_")[1].split(".")[0]) > drop_after_step:
                shutil.rmtree(folder)
    return target
