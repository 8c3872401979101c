"""DeepSpeed backend: one engine per network (G and D), each with its own optimizer and JSON config.

Facts this design rests on (DeepSpeed 0.19, measured on CPU with gloo):

* The GAN step calls D's *bare module* with D frozen inside the G step; calling D's engine there
  breaks ZeRO stages 0 and 2 (its gradient hooks fire for a backward that is not D's).
* Both engines would share one ``latest`` file in a common folder, so each saves under an explicit
  tag (``engine_g/``, ``engine_d/``) inside the trainer's checkpoint folder with
  ``save_latest=False`` and loads by that tag: the trainer's atomic ``.partial`` rename is what
  makes the whole checkpoint (engines + trainer state) count, never DeepSpeed's ``latest``.
* Optimizers are client torch Adam instances (DeepSpeed then compiles no fused_adam op), and no
  scheduler is handed to the engines: the trainer sets both learning rates from the global step
  (``TrainBackend.set_step``), as in the DDP backend. An engine steps its scheduler only on an
  applied update (not on an fp16 overflow, nor on a step the trainer skipped), so a schedule left
  to it would drift from the DDP backend's.
* With bf16/fp16 the engines hold half-precision weights (fp32 masters live in the optimizer);
  buffers follow the parameters' dtype (``data_types.buffer_dtype``) so BatchNorm works.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from torch import nn

from dist_train import distributed
from dist_train.backends.base import NETS, TrainBackend
from dist_train.backends.deepspeed_config import deepspeed_config
from dist_train.checkpoint import CheckpointError
from dist_train.config import ConfigError
from dist_train.optim import build_optimizer


def engine_tag(net: str) -> str:
    """Subfolder of the checkpoint folder that holds network ``net``'s engine."""
    return f"engine_{net}"


class DeepSpeedBackend(TrainBackend):
    """G and D each in a ``deepspeed.initialize`` engine (ZeRO 0/1/2, fp32/bf16/fp16)."""

    def wrap(self, generator: nn.Module, discriminator: nn.Module) -> None:
        # On a CPU run say so up front, rather than letting DeepSpeed probe for a GPU.
        if self.env.device.type == "cpu":
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
            if self.cfg.train.precision == "fp16":
                raise ConfigError("config field 'train.precision': DeepSpeed has no fp16 on the CPU; "
                                  "use bf16 or fp32 there (fp16 is for GPUs)")
        self.ds_config = deepspeed_config(self.cfg)  # config mistakes surface before the slow import
        import deepspeed

        # Our process group (timeout from dist.timeout_s) is the one DeepSpeed wraps; a single
        # process gets a one-rank group so that no launcher is needed.
        distributed.ensure_process_group(self.env, self.cfg.dist.comm, self.cfg.dist.timeout_s)
        self.engines = {}
        for net, module in (("g", generator), ("d", discriminator)):
            module = module.to(self.env.device)
            engine, _, _, _ = deepspeed.initialize(
                model=module,
                optimizer=build_optimizer(module.parameters(), self.cfg, net),
                config=copy.deepcopy(self.ds_config),  # DeepSpeed may edit what it is given
                dist_init_required=False)
            self.engines[net] = engine

    def forward(self, net: str, x: torch.Tensor) -> torch.Tensor:
        return self.engines[net](x)

    def module(self, net: str) -> nn.Module:
        return self.engines[net].module

    def backward(self, net: str, loss: torch.Tensor) -> None:
        self.engines[net].backward(loss)

    def step(self, net: str) -> None:
        self.engines[net].step()  # clipping, (loss-scaled) optimizer step, zero_grad

    def param_groups(self, net: str) -> list[dict]:
        # DeepSpeed's ZeRO and bf16/fp16 wrappers forward these to the client optimizer's groups
        return self.engines[net].optimizer.param_groups

    def save(self, folder: Path) -> None:
        for net in NETS:
            self.engines[net].save_checkpoint(str(folder), tag=engine_tag(net), client_state={},
                                              save_latest=False)
        if self.env.is_main:
            (folder / "deepspeed_config.json").write_text(json.dumps(self.ds_config, indent=2))

    def load(self, folder: Path) -> None:
        for net in NETS:
            if not (folder / engine_tag(net)).is_dir():
                raise CheckpointError(f"{folder / engine_tag(net)}: missing; this checkpoint was not written "
                                        "by dist.backend=deepspeed (resume with the backend that wrote it)")
            path, _ = self.engines[net].load_checkpoint(str(folder), tag=engine_tag(net),
                                                        load_optimizer_states=True, load_lr_scheduler_states=True)
            if path is None:
                raise CheckpointError(f"{folder / engine_tag(net)}: DeepSpeed could not load this engine")
