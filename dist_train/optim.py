"""Optimizers and learning-rate schedules for the two networks, from ``OptimConfig``.

The generator's schedule spans the whole run (PSNR and GAN phases); the discriminator's only the
GAN phase. Both are functions of the global training step, not counts of optimizer updates: an
update skipped as non-finite (or by an fp16 loss scaler) does not shift them, both backends
follow them identically, and a resume needs no scheduler state beyond the step itself. Step
milestones are global training steps for both.
"""
from __future__ import annotations

import math

import torch

from dist_train.config import Config


def build_optimizer(params, cfg: Config, net: str) -> torch.optim.Optimizer:
    """Adam for network ``g`` or ``d`` at that network's learning rate for step 0."""
    return torch.optim.Adam(params, lr=learning_rate(cfg, net, 0), betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)


def lr_factor(cfg: Config, net: str, global_step: int) -> float:
    """The learning-rate multiplier of network ``net`` for training step ``global_step`` (0-based)."""
    start = 0 if net == "g" else cfg.train.pretrain_steps
    span = cfg.train.total_steps if net == "g" else cfg.train.gan_steps
    progress = min(max(global_step - start, 0), span)
    if cfg.optim.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress / max(span, 1)))
    if cfg.optim.scheduler == "step":
        return 0.5 ** sum(global_step >= milestone for milestone in cfg.optim.step_milestones)
    return 1.0


def learning_rate(cfg: Config, net: str, global_step: int) -> float:
    """The learning rate of network ``net`` for training step ``global_step``."""
    base = cfg.optim.lr_g if net == "g" else cfg.optim.lr_d
    return base * lr_factor(cfg, net, global_step)
