"""Where a fine-tuning run's generator starts: an exported model or a checkpoint, not random weights.

``train.init_generator`` names one of
* ``default``: the model shipped with the package (export/models/cxr_sr_x4.pt);
* a TorchScript file written by ``cxr-sr export`` (the weights it serves; its meta.json says the
  generator's model config);
* a checkpoint folder ``RUN/checkpoints/step_NNNNNNNN`` (its EMA weights, the validated ones).

Only the generator starts from it: D, the optimizers, the EMA's update count and the step start
fresh, as for a GAN phase that fine-tunes a PSNR model. A run resumed with ``--resume`` from its
own checkpoint takes every weight from there instead.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dist_train.checkpoint import TRAINER_FILE, CheckpointError, load_file
from dist_train.config import ModelConfig

# The model fields that decide the generator's parameters (the rest configure D).
GENERATOR_FIELDS = ("arch", "scale", "features", "blocks", "batchnorm", "global_residual")


def _exported_state(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from export.torchscript import load_torchscript  # the export format, read where it is defined

    try:
        module, meta = load_torchscript(path)
    except Exception as err:  # noqa: BLE001 - any load failure means this is not an exported model
        raise CheckpointError(f"{path}: not a TorchScript model from `cxr-sr export` ({type(err).__name__})") from None
    prefix = "generator."  # export.wrapper.ClampedGenerator holds the generator under this name
    state = {name[len(prefix):]: value for name, value in module.state_dict().items() if name.startswith(prefix)}
    return state, meta.get("model_config") or {}


def _checkpoint_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict]:
    state = load_file(folder / TRAINER_FILE)
    if "ema" not in state or "config" not in state:
        raise CheckpointError(f"{folder / TRAINER_FILE}: not a cxr-sr trainer checkpoint (no EMA weights)")
    return state["ema"]["module"], state["config"]["model"]


def resolve_source(source: str) -> Path:
    """The file or folder ``train.init_generator`` names; FileNotFoundError (one line) if absent."""
    if source == "default":
        from export.default_model import default_model_path

        return default_model_path()
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: train.init_generator names no such file or checkpoint folder")
    return path


def initial_generator_state(source: str, model: ModelConfig) -> tuple[dict[str, torch.Tensor], Path]:
    """(generator state dict, the path it came from) for ``train.init_generator=source``.

    A generator of another shape than ``model.*`` is a CheckpointError naming the differing fields.
    """
    path = resolve_source(source)
    state, saved = _checkpoint_state(path) if path.is_dir() else _exported_state(path)
    wanted = dataclasses.asdict(model)
    differ = [f"{name}={saved.get(name)!r} (this run: {wanted[name]!r})" for name in GENERATOR_FIELDS
              if saved.get(name) != wanted[name]]
    if differ:
        raise CheckpointError(f"{path}: its generator differs from model.*: {', '.join(differ)}; "
                              "set those model.* values to fine-tune it")
    return state, path
