"""Complete, atomic checkpoints and the way back from them.

A checkpoint is a folder ``RUN/checkpoints/step_NNNNNNNN``. It is written as
``step_NNNNNNNN.partial`` by every rank (each rank its own files, the backend its own) and renamed
by rank 0 only when all ranks have finished, so a folder without the suffix is always complete:
a kill at any moment leaves the previous checkpoint usable. Only rank 0 deletes old ones.

Files: ``trainer.pt`` (rank 0: step, config, EMA and raw generator weights, counters, metrics),
``rank{R}.pt`` (each rank: RNG states and data position), plus the backend's own files.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from data_prep.atomic import atomic_open, fsync_folder
from dist_train import distributed
from dist_train.distributed import DistEnv

TRAINER_FILE = "trainer.pt"
_STEP_DIR = re.compile(r"^step_(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the folder and the problem."""


class DamagedCheckpoint(CheckpointError):
    """A checkpoint file that is missing or cannot be unpickled (torn, truncated, overwritten)."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _STEP_DIR.match(p.name)]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    found = complete_checkpoints(run_dir)
    return found[-1] if found else None


def _fsync_tree(folder: Path) -> None:
    """Files and folder entries under ``folder`` on disk, before the rename that makes it count."""
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_folder(path)
    fsync_folder(folder)


def save_checkpoint(run_dir: Path, step: int, env: DistEnv, keep: int, write: Callable[[Path], None]) -> Path:
    """Collective: every rank calls ``write(partial_folder)``; returns the complete folder.

    A checkpoint already complete for ``step`` is kept as it is.
    """
    final = checkpoint_dir(run_dir) / f"step_{step:08d}"
    partial = final.with_name(final.name + ".partial")
    if final.is_dir():
        return final
    if env.is_main:
        shutil.rmtree(partial, ignore_errors=True)  # left by a kill during an earlier write
        partial.mkdir(parents=True)
    distributed.barrier()
    try:
        write(partial)
    except (OSError, RuntimeError) as err:
        reason = _write_refused(err)
        if reason is None:
            raise
        newest = latest_checkpoint(run_dir)  # the folder stays .partial and never counts
        raise CheckpointError(f"{partial}: writing the checkpoint failed ({reason}); the newest "
                              f"complete checkpoint, {newest or 'none'}, is intact: free space and resume") from None
    distributed.barrier()
    if env.is_main:
        _fsync_tree(partial)
        os.replace(partial, final)
        fsync_folder(final.parent)
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()
    return final


def _write_refused(err: BaseException) -> str | None:
    """Why the file system refused a checkpoint write (a full disk, a quota, a file-size limit), or
    None for any other failure. ``torch.save`` reports a refused write as a RuntimeError of its zip
    writer, with the OSError of a file object's ``write`` as its context (none for a path)."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, RuntimeError) and ("inline_container" in str(err) or "iostream error" in str(err)):
        return "torch.save could not write a file"
    return None


def set_aside(folder: Path) -> Path:
    """Rename an unusable checkpoint to ``step_N.unreadable`` (rank 0): resume skips it, nothing is deleted."""
    target = folder.with_name(folder.name + ".unreadable")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(folder, target)
    return target


def torch_save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename into place."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)


def load_file(path: Path, expected_keys: set[str] | None = None, map_location="cpu") -> dict:
    """Load one checkpoint file; missing or unknown top-level keys are an error."""
    if not path.is_file():
        raise DamagedCheckpoint(f"{path}: missing from the checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise DamagedCheckpoint(f"{path}: not a readable checkpoint file ({type(err).__name__})") from None
    if expected_keys is not None and set(state) != expected_keys:
        missing, unknown = expected_keys - set(state), set(state) - expected_keys
        raise CheckpointError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    return state


def load_generator(run_dir: Path, ema: bool = True, checkpoint: Path | None = None) -> tuple[nn.Module, dict]:
    """The generator of a run's newest complete checkpoint (EMA weights unless ``ema=False``).

    Returns the module in eval mode on the CPU and a dict with ``config`` (plain dict), ``step``,
    ``metrics`` (the last validation) and ``checkpoint`` (its folder).
    """
    from dist_train.config import config_from_dict
    from dist_train.models import build_generator

    folder = checkpoint or latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint under {checkpoint_dir(run_dir)}")
    state = load_file(Path(folder) / TRAINER_FILE)
    config = config_from_dict(state["config"])
    generator = build_generator(config.model)
    weights = state["ema"]["module"] if ema else state["generator"]
    generator.load_state_dict(weights)
    info = {"config": state["config"], "step": state["step"], "metrics": state["metrics"],
            "checkpoint": str(folder), "weights": "ema" if ema else "raw"}
    return generator.eval(), info
