"""A stop signal sent to the whole process group checkpoints and exits 0, with loader workers.

Why: Ctrl-C in a terminal, and a scheduler signalling every process of a job, reach the
DataLoader worker processes as well as the trainer. A worker that dies of the signal makes the
trainer fail with "DataLoader worker ... killed by signal" instead of writing its stop checkpoint;
workers must leave stopping to the trainer.
"""
from __future__ import annotations

import os
import signal
import sys

import pytest

from dist_train.checkpoint import latest_checkpoint
from tests.dist_helpers import kill_tree, process_env, start, tail, tiny_args, wait_for, write_tiny_images

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_the_group_with_loader_workers_checkpoints_and_exits_zero(tmp_path, signum):
    images = write_tiny_images(tmp_path / "images")
    out = tmp_path / "run"
    args = [arg for arg in tiny_args(images, out, "train.pretrain_steps=100000", "train.gan_steps=0",
                                     "train.ckpt_every=100000") if arg != "data.workers=0"]
    log = tmp_path / "log.txt"
    process = start([sys.executable, "-m", "dist_train", *args, "data.workers=2"], log,
                    env=process_env(PYTHONUNBUFFERED="1"))
    try:
        wait_for(lambda: "step 3/" in log.read_text(), 180, "three training steps", log)
        os.killpg(process.pid, signum)  # the trainer and both loader workers
        code = process.wait(timeout=120)
    finally:
        kill_tree(process)
    assert code == 0, tail(log)
    assert "stopped by a signal" in log.read_text()
    assert latest_checkpoint(out) is not None


def test_workers_ignore_exactly_the_trainers_stop_signals():
    """The loader's list must follow the trainer's: a stop signal added to one and not the other
    would kill workers again."""
    from dist_train.data.positioned import WORKER_IGNORED_SIGNALS
    from dist_train.trainer import STOP_SIGNALS

    assert set(WORKER_IGNORED_SIGNALS) == set(STOP_SIGNALS)
