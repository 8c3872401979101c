"""Optimizers and learning-rate schedules for the two networks, from ``OptimConfig``.

The generator's schedule spans the whole run (PSNR and GAN phases); the discriminator's only the
GAN phase. Step milestones are global training steps for both.
"""
from __future__ import annotations

import math

import torch

from dist_train.config import Config


def build_optimizer(params, cfg: Config, net: str) -> torch.optim.Optimizer:
    """Adam for network ``g`` or ``d`` with that network's learning rate."""
    lr = cfg.optim.lr_g if net == "g" else cfg.optim.lr_d
    return torch.optim.Adam(params, lr=lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)


def lr_factor(cfg: Config, net: str, updates: int) -> float:
    """The learning-rate multiplier after ``updates`` optimizer steps of network ``net``."""
    offset = 0 if net == "g" else cfg.train.pretrain_steps
    span = cfg.train.total_steps if net == "g" else cfg.train.gan_steps
    global_step = updates + offset
    if cfg.optim.scheduler == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(updates, span) / max(span, 1)))
    if cfg.optim.scheduler == "step":
        return 0.5 ** sum(global_step >= milestone for milestone in cfg.optim.step_milestones)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, net: str) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda updates: lr_factor(cfg, net, updates))
