"""The real ``python -m dist_train`` with test-only changes chosen by environment variables.

Started by torchrun in place of ``-m dist_train`` (tests/test_distributed*.py). Each change is
the smallest needed to make one fault or one comparison reproducible with real processes:

* ``CXR_SR_TEST_NAN=R:S1,S2,...``: on rank R, the generator loss of steps S1, S2, ... (0-based)
  is NaN, as an fp16 overflow would make it.
* ``CXR_SR_TEST_HANG_CHECKPOINT=S``: while writing checkpoint S, after every other file and just
  before ``trainer.pt``, rank 0 touches ``RUN/hang_marker`` and sleeps: a window for ``kill -9``.
* ``CXR_SR_TEST_HANG_STEP=R:S``: rank R touches ``RUN/hang_marker`` and hangs before step S
  (until a stop signal) while the other ranks go on into that step's collectives.
* ``CXR_SR_TEST_GLOBAL_BATCH=N``: every rank draws the global batch of N from one world-size-
  independent source (the folder loader as rank 0 of 1) and keeps its own slice, so runs with
  different process counts see exactly the same samples per step.
* ``CXR_SR_TEST_SIGNAL_STEPS=R:SIG:S0,S1,...``: rank R sends itself SIG (KILL, TERM, USR1) in
  step S_i once i faults have fired, after the gradients' all-reduce and before the update: a
  kill -9 or a stop signal at a chosen point of training, once per restart.
* ``CXR_SR_TEST_KILL_WRITES=C0/FILE0@F0,C1/FILE1@F1,...``: once i faults have fired, the process
  writing FILE_i of checkpoint C_i writes the first fraction F_i of its bytes, syncs them and
  SIGKILLs itself.
* ``CXR_SR_TEST_FSIZE=C:BYTES``: rank 0 lowers its RLIMIT_FSIZE to BYTES as checkpoint C starts
  (before any other fault): the kernel then refuses any larger file, as a full disk would.
* Each injected fault appends one line to ``RUN/faults.txt``, and that file's length is the
  count of faults fired: torchrun's TORCHELASTIC_RESTART_COUNT cannot be, since each node's agent
  counts only the failures it saw itself.
* ``CXR_SR_TEST_GRADIENTS=1``: rank 0 records each network's gradients just before every
  optimizer step (after DDP's all-reduce, before clipping) and writes them to
  ``RUN/gradients.pt`` as ``{step: {net: {name: tensor}}}``.
"""
from __future__ import annotations

import io
import os
import resource
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from dist_train import trainer as trainer_module
from dist_train.checkpoint import TRAINER_FILE
from dist_train.train import main

_RealTrainer = trainer_module.Trainer
_real_torch_save_atomic = trainer_module.torch_save_atomic
_real_torch_save = torch.save


def _faults_fired(run_dir: Path) -> int:
    path = run_dir / "faults.txt"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def _record_fault(run_dir: Path, what: str) -> None:
    fired = _faults_fired(run_dir)
    with open(run_dir / "faults.txt", "a") as handle:  # closed, so on disk before a SIGKILL
        handle.write(f"fault {fired} rank {os.environ.get('RANK', '0')}: {what}\n")


class _PoisonedObjective:
    """The real generator objective, returning a NaN total on chosen steps of one rank."""

    def __init__(self, objective, trainer, rank: int, steps: set[int]):
        self.objective, self.trainer, self.rank, self.steps = objective, trainer, rank, steps

    def __getattr__(self, name):  # everything but the call is the real objective's (cfg, flags, ...)
        return getattr(self.objective, name)

    def __call__(self, *args, **kwargs):
        total, terms = self.objective(*args, **kwargs)
        if self.trainer.env.rank == self.rank and self.trainer.step in self.steps:
            total = total * float("nan")
        return total, terms


class _GlobalBatchSlices:
    """Rank r's slice of one global batch from a loader that knows nothing of the world size."""

    def __init__(self, cfg, global_batch: int, rank: int, world_size: int, device):
        from dist_train.data.folder import build_folder_train_loader
        single = replace(cfg, data=replace(cfg.data, batch_size=global_batch))
        self.loader = build_folder_train_loader(single, 0, 1, device)
        self.part = slice(rank * global_batch // world_size, (rank + 1) * global_batch // world_size)

    def next_batch(self):
        lr, hr = self.loader.next_batch()
        return lr[self.part], hr[self.part]

    def state_dict(self):
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)

    def close(self):
        self.loader.close()


class FaultyTrainer(_RealTrainer):
    def __init__(self, cfg, env, feature_net=None):
        super().__init__(cfg, env, feature_net)
        if os.environ.get("CXR_SR_TEST_NAN"):
            rank, _, steps = os.environ["CXR_SR_TEST_NAN"].partition(":")
            self.objective = _PoisonedObjective(self.objective, self, int(rank), {int(s) for s in steps.split(",")})
        if os.environ.get("CXR_SR_TEST_GLOBAL_BATCH"):
            self.train_batches.close()
            self.train_batches = _GlobalBatchSlices(cfg, int(os.environ["CXR_SR_TEST_GLOBAL_BATCH"]), env.rank,
                                                    env.world_size, env.device)
        if os.environ.get("CXR_SR_TEST_HANG_STEP"):
            rank, _, step = os.environ["CXR_SR_TEST_HANG_STEP"].partition(":")
            if env.rank == int(rank):
                self._hang_before_step(int(step))
        if os.environ.get("CXR_SR_TEST_GRADIENTS") and env.is_main:
            self._record_gradients()
        if os.environ.get("CXR_SR_TEST_SIGNAL_STEPS"):
            rank, name, steps = os.environ["CXR_SR_TEST_SIGNAL_STEPS"].split(":")
            steps = [int(s) for s in steps.split(",")]
            fired = _faults_fired(self.run_dir)
            if env.rank == int(rank) and fired < len(steps):
                self._signal_in_step(steps[fired], signal.Signals[f"SIG{name}"])

    def _signal_in_step(self, step: int, signum: signal.Signals) -> None:
        real_step = self.backend.step

        def step_with_signal(net):
            if net == "g" and self.step == step:
                _record_fault(self.run_dir, f"{signum.name} in step {step}")
                os.kill(os.getpid(), signum)
            real_step(net)
        self.backend.step = step_with_signal

    def _record_gradients(self) -> None:
        self.gradients: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
        real_step = self.backend.step

        def step(net):
            module = self.backend.module(net)
            self.gradients.setdefault(self.step, {})[net] = {
                name: param.grad.detach().clone() for name, param in module.named_parameters()
                if param.grad is not None}
            torch.save(self.gradients, self.run_dir / "gradients.pt")
            real_step(net)
        self.backend.step = step

    def _hang_before_step(self, step: int) -> None:
        real_next_batch = self.train_batches.next_batch

        def next_batch():
            if self.step == step:
                (self.run_dir / "hang_marker").touch()
                while self._stop_signal is None:  # hung, but torchrun's SIGTERM ends it at once
                    time.sleep(0.05)
                raise SystemExit(1)
            return real_next_batch()
        self.train_batches.next_batch = next_batch


def _hanging_torch_save_atomic(obj, path):
    hang_step = os.environ.get("CXR_SR_TEST_HANG_CHECKPOINT")
    if hang_step and path.name == TRAINER_FILE and obj["step"] == int(hang_step):
        (path.parents[2] / "hang_marker").touch()
        time.sleep(600)
    _real_torch_save_atomic(obj, path)


def _write_fault(path: Path, run_dir: Path) -> tuple[str, str] | None:
    """The fault planned for this file now: ("kill", fraction) or ("fsize", bytes)."""
    folder = next((p for p in path.parents if p.name.endswith(".partial")), None)
    if folder is None:
        return None
    step, fired = int(folder.name[len("step_"):-len(".partial")]), _faults_fired(run_dir)
    kills = os.environ.get("CXR_SR_TEST_KILL_WRITES", "")
    if kills and fired < len(kills.split(",")):
        target, _, fraction = kills.split(",")[fired].partition("@")
        target_step, _, name = target.partition("/")
        if int(target_step) == step and name in path.name:
            return "kill", fraction
    fsize_step, _, limit = os.environ.get("CXR_SR_TEST_FSIZE", "").partition(":")
    if fsize_step and int(fsize_step) == step and fired == 0 and os.environ.get("RANK", "0") == "0":
        return "fsize", limit
    return None


def _faulty_torch_save(obj, f, *args, **kwargs):
    path = Path(f.name if hasattr(f, "write") else f)
    run_dir = next((p.parent for p in path.parents if p.name == "checkpoints"), path.parent)
    fault = _write_fault(path, run_dir)
    if fault and fault[0] == "fsize":
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(fault[1]), resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        _record_fault(run_dir, f"RLIMIT_FSIZE {fault[1]} bytes while writing {path.name}")
    if not fault or fault[0] != "kill":
        return _real_torch_save(obj, f, *args, **kwargs)
    buffer = io.BytesIO()
    _real_torch_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    cut = int(len(data) * float(fault[1]))
    handle = f if hasattr(f, "write") else open(path, "wb")
    handle.write(data[:cut])
    handle.flush()
    os.fsync(handle.fileno())
    _record_fault(run_dir, f"SIGKILL after {cut} of {len(data)} bytes of {path.name} in {path.parent.name}")
    os.kill(os.getpid(), signal.SIGKILL)


trainer_module.Trainer = FaultyTrainer
trainer_module.torch_save_atomic = _hanging_torch_save_atomic
torch.save = _faulty_torch_save

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
