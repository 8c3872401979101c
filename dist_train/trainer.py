"""The training loop: PSNR pretraining, then the GAN phase, with EMA, validation, checkpoints.

The trainer is checkpointable state (step, networks through the backend, EMA, counters, RNG and
data position per rank). It never tests the backend or the data source: those plug in by config.
"""
from __future__ import annotations

import collections
import itertools
import signal
import time
from dataclasses import replace
from pathlib import Path

import torch

from dist_train import distributed
from dist_train.backends import build_backend
from dist_train.checkpoint import (TRAINER_FILE, CheckpointError, DamagedCheckpoint, checkpoint_dir,
                                   complete_checkpoints, load_file, save_checkpoint, set_aside, torch_save_atomic)
from dist_train.config import Config, config_to_plain, save_config
from dist_train.data import build_train_loader, build_val_loader
from dist_train.degradation import bicubic_upsample
from dist_train.distributed import STOP_SIGNALS, DistEnv
from dist_train.ema import EMA
from dist_train.gan_step import ChanceWatch, train_step
from dist_train.init_generator import initial_generator_state
from dist_train.losses import GeneratorLoss, uses_vgg
from dist_train.metrics import BICUBIC_NAMES, METRIC_NAMES, MODEL_NAMES, MetricAccumulator, evaluate
from dist_train.models import build_discriminator, build_generator
from dist_train.perceptual import build_vgg19_features
from dist_train.precision import Precision, resolve_precision
from dist_train.run_logger import RunLogger

LOSS_HISTORY_STEPS = 10_000
_TRAINER_KEYS = {"step", "config", "ema", "generator", "bad_steps", "metrics"}
_RANK_KEYS = {"rng", "data"}


class TooManyBadSteps(RuntimeError):
    """Consecutive non-finite losses: the run stops and the last good checkpoint stays as it is."""


class Trainer:
    """Builds everything from a Config and trains ``train.total_steps`` steps."""

    def __init__(self, cfg: Config, env: DistEnv, feature_net: torch.nn.Module | None = None):
        # train.precision=auto becomes what this device runs natively, and is saved as such
        cfg = replace(cfg, train=replace(cfg.train, precision=resolve_precision(cfg.train.precision, env.device)))
        self.cfg, self.env = cfg, env
        self.run_dir = Path(cfg.train.out_dir)
        self.precision = Precision(cfg.train.precision, env.device)
        distributed.seed_everything(cfg.train.seed, rank=0)  # identical initial weights on every rank
        generator, discriminator = build_generator(cfg.model), build_discriminator(cfg.model)
        initialised_from = None
        if cfg.train.init_generator:
            state, initialised_from = initial_generator_state(cfg.train.init_generator, cfg.model)
            generator.load_state_dict(state)
        distributed.seed_everything(cfg.train.seed, rank=env.rank)
        self.backend = build_backend(cfg, env, self.precision)
        self.backend.wrap(generator, discriminator)
        self.ema = EMA(self.backend.module("g"), cfg.train.ema_decay)
        self.ema.module.float()  # DeepSpeed bf16/fp16 engines hold half weights; the EMA stays fp32
        if feature_net is None and uses_vgg(cfg.loss):
            feature_net = build_vgg19_features(cfg.loss.perceptual_layer, cfg.loss.perceptual_weights)
        self.objective = GeneratorLoss(cfg.loss, feature_net).to(env.device)
        self.train_batches = build_train_loader(cfg, env.rank, env.world_size, env.device)
        self.val_batches = build_val_loader(cfg, env.rank, env.world_size, env.device)
        self.logger = RunLogger(self.run_dir, env.is_main)
        if initialised_from is not None:
            self.logger.console(f"generator initialised from {initialised_from} (train.init_generator)")
        self.step = 0
        self.bad_steps = {"total": 0, "consecutive": 0}
        self.metrics: dict[str, float] = {}
        self._bicubic_metrics: dict[str, float] | None = None  # measured at the first validation
        # per step on this rank, for tests and reports; bounded so a long run does not grow without limit
        self.loss_history: collections.deque[dict[str, float]] = collections.deque(maxlen=LOSS_HISTORY_STEPS)
        self._stop_signal: int | None = None
        self.d_chance = ChanceWatch(cfg.optim.d_chance_intervals)
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")

    # ----- checkpoint state -------------------------------------------------------------------
    def _write_checkpoint(self, folder: Path) -> None:
        self.backend.save(folder)
        torch_save_atomic({"rng": distributed.rng_state(), "data": self.train_batches.state_dict()},
                          folder / f"rank{self.env.rank}.pt")
        if self.env.is_main:
            torch_save_atomic({
                "step": self.step, "config": config_to_plain(self.cfg), "ema": self.ema.state_dict(),
                "generator": self.backend.module("g").state_dict(), "bad_steps": dict(self.bad_steps),
                "metrics": dict(self.metrics)}, folder / TRAINER_FILE)

    def save(self) -> Path:
        """Collective: a complete checkpoint of the current step."""
        folder = save_checkpoint(self.run_dir, self.step, self.env, self.cfg.train.keep_ckpts,
                                 self._write_checkpoint)
        self.logger.console(f"checkpoint: {folder}")
        return folder

    def resume(self, folder: Path | None = None) -> bool:
        """Continue from ``folder``, or else from the newest complete checkpoint every rank can read.

        Without ``folder``, a checkpoint with a damaged file on any rank is renamed
        ``step_N.unreadable`` and the one before it is tried, so an automatic restart never loops
        on it. Returns False when there is no checkpoint (the run starts from step 0).
        """
        if folder is not None:
            self._load(folder)
            self.logger.console(f"resumed from {folder} at step {self.step}")
            return True
        candidates = complete_checkpoints(self.run_dir)[::-1]
        for candidate in candidates:
            damage = None
            try:
                self._load(candidate)
            except DamagedCheckpoint as err:
                damage = err
            if not distributed.any_rank(damage is not None, self.env.device):
                self.logger.console(f"resumed from {candidate} at step {self.step}")
                return True
            self.logger.console(f"cannot resume from {candidate}: {damage or 'a file of another rank is damaged'}; "
                                f"set aside as {candidate.name}.unreadable, trying the checkpoint before it")
            if self.env.is_main:
                set_aside(candidate)
        if candidates:  # what the failed loads left behind must not train: a restart starts clean
            raise CheckpointError(f"{checkpoint_dir(self.run_dir)}: every checkpoint is damaged (set aside as "
                                  "*.unreadable); run again to start from step 0")
        self.logger.console(f"no checkpoint under {self.run_dir}: starting from step 0")
        self.logger.forget_after(self.step)
        return False

    def _load(self, folder: Path) -> None:
        state = load_file(folder / TRAINER_FILE, _TRAINER_KEYS)
        if state["config"]["model"] != config_to_plain(self.cfg)["model"]:
            raise CheckpointError(f"{folder}: saved with another model config; resume with the same model.*")
        rank_state = load_file(folder / f"rank{self.env.rank}.pt", _RANK_KEYS)
        self.backend.load(folder)
        self.ema.load_state_dict(state["ema"])
        self.step, self.bad_steps, self.metrics = state["step"], state["bad_steps"], state["metrics"]
        self.train_batches.load_state_dict(rank_state["data"])
        distributed.set_rng_state(rank_state["rng"])
        self.logger.forget_after(self.step)

    # ----- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Protocol metrics of the EMA generator (fp32) over the whole validation split, all ranks."""
        model, scale = self.ema.module.eval(), self.cfg.model.scale
        with_bicubic = self._bicubic_metrics is None  # the same validation set every time: once is enough
        accumulator, first = MetricAccumulator(METRIC_NAMES if with_bicubic else MODEL_NAMES), None
        for lr, hr in self.val_batches:
            sr = model(lr.float())
            accumulator.add(evaluate(sr, hr, lr, scale, with_bicubic))
            first = first or (lr, sr, hr)
        reduced = distributed.all_reduce_sum(accumulator.as_tensor().to(self.env.device)).cpu()
        measured = accumulator.means(reduced)
        if with_bicubic:
            self._bicubic_metrics = {name: measured[name] for name in BICUBIC_NAMES}
        measured |= self._bicubic_metrics
        self.metrics = {name: measured[name] for name in (*METRIC_NAMES, "images")}
        self.logger.scalars(self.step, self.metrics, "val")
        if first is not None:
            lr, sr, hr = first
            self.logger.images(self.step, lr, bicubic_upsample(lr.float(), scale), sr, hr)
        self.logger.metrics_row({"step": self.step, "epoch": self.train_batches.state_dict()["epoch"],
                                 "phase": self._phase(self.step - 1), **self.metrics})  # of the last update
        self.logger.console(f"step {self.step} val: PSNR {self.metrics['psnr_db']:.2f} dB "
                            f"(bicubic {self.metrics['bicubic_psnr_db']:.2f}), SSIM {self.metrics['ssim']:.4f}, "
                            f"consistency {self.metrics['consistency_psnr_db']:.2f} dB")
        return self.metrics

    # ----- the loop ---------------------------------------------------------------------------
    def _phase(self, step: int) -> str:
        return "psnr" if step < self.cfg.train.pretrain_steps else "gan"

    def _on_signal(self, signum, _frame) -> None:
        self._stop_signal = signum

    def _record_outcome(self, outcome) -> None:
        # The EMA follows G's updates alone: a step where only D's loss was non-finite still moved G.
        if outcome.stepped["g"]:
            self.ema.update(self.backend.module("g"))
        if outcome.bad:
            self.bad_steps["total"] += 1
            self.bad_steps["consecutive"] += 1
            self.logger.scalars(self.step, {"bad_steps": self.bad_steps["total"]}, "train")
            if self.bad_steps["consecutive"] >= self.cfg.train.max_bad_steps:
                raise TooManyBadSteps(
                    f"{self.bad_steps['consecutive']} consecutive non-finite losses at step {self.step}: "
                    f"stopping; the last good checkpoint under {self.run_dir / 'checkpoints'} is intact "
                    f"(lower optim.lr_g/lr_d or use train.precision=bf16/fp32)")
        else:
            self.bad_steps["consecutive"] = 0

    def train(self) -> int:
        """Train to ``train.total_steps``; returns the process exit code (0 also after a stop signal)."""
        cfg = self.cfg.train
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        self.logger.console(f"run folder: {self.run_dir}  (tensorboard --logdir {self.logger.tensorboard_dir})")
        try:
            window_start, wait_s = time.perf_counter(), 0.0
            while self.step < cfg.total_steps:
                fetch_start = time.perf_counter()
                lr_batch, hr_batch = self.train_batches.next_batch()
                wait_s += time.perf_counter() - fetch_start
                self.backend.set_step(self.step)
                outcome = train_step(self.backend, self.objective, lr_batch, hr_batch,
                                     gan_phase=self.step >= cfg.pretrain_steps)
                self.loss_history.append(outcome.losses)
                self._record_outcome(outcome)
                self.step += 1
                if self.step % cfg.log_every == 0:
                    elapsed = time.perf_counter() - window_start
                    patches = cfg.log_every * lr_batch.shape[0] * self.env.world_size
                    interval = itertools.islice(reversed(self.loss_history), cfg.log_every)
                    accuracies = [s["d_accuracy"] for s in interval if "d_accuracy" in s]
                    # one batch's accuracy moves by 1/16ths; the interval's mean is the trend to watch
                    d_trend = {"d_accuracy_interval": sum(accuracies) / len(accuracies)} if accuracies else {}
                    self.logger.scalars(self.step, outcome.losses | d_trend | {
                        "lr_g": self.backend.learning_rate("g"), "lr_d": self.backend.learning_rate("d"),
                        "patches_per_s": patches / elapsed, "data_wait_fraction": wait_s / elapsed}, "train")
                    self.logger.console(f"step {self.step}/{cfg.total_steps} [{self._phase(self.step - 1)}] "
                                        + " ".join(f"{k}={v:.4g}" for k, v in outcome.losses.items()))
                    window_start, wait_s = time.perf_counter(), 0.0
                    warning = self.d_chance.update(accuracies)
                    if warning:
                        self.logger.console(warning)
                if self.step % cfg.val_every == 0 or self.step == cfg.total_steps:
                    self.validate()
                if self.step % cfg.ckpt_every == 0 or self.step == cfg.total_steps:
                    self.save()
                if distributed.any_rank(self._stop_signal is not None, self.env.device):
                    self.save()
                    self.logger.console(f"stopped by a signal at step {self.step}; resume with --resume")
                    return 0
            self.logger.console(f"done: {self.step} steps; checkpoints in {self.run_dir / 'checkpoints'}, "
                                f"tensorboard logs in {self.logger.tensorboard_dir}")
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.logger.flush()

    def close(self) -> None:
        self.train_batches.close()
        self.logger.close()
