"""``train.init_generator``: a run that starts its generator from an exported model or a checkpoint."""
import subprocess
import sys

import pytest
import torch

from conftest import tiny_config
from dist_train.checkpoint import CheckpointError, latest_checkpoint, load_file
from dist_train.distributed import DistEnv
from dist_train.trainer import Trainer
from export.default_model import DEFAULT_MODEL
from export.torchscript import load_torchscript

CPU = DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
SHIPPED_SHAPE = ("model.arch=compact", "model.features=32", "model.blocks=6")


def _short(tmp_path, images, *overrides):
    return tiny_config(tmp_path, images, "train.pretrain_steps=0", "train.gan_steps=2", "train.val_every=100",
                       "train.ckpt_every=100", "data.patch_px=32", "data.batch_size=2", "data.val_crop_px=64",
                       "data.val_max_images=1", *overrides)


def test_default_starts_from_the_shipped_model_and_only_the_generator_is_taken(synth_images, tmp_path):
    trainer = Trainer(_short(tmp_path / "run", synth_images, *SHIPPED_SHAPE, "train.init_generator=default"), CPU)
    shipped, _ = load_torchscript(DEFAULT_MODEL)
    lr = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        want = shipped(lr)
        for generator in (trainer.backend.module("g"), trainer.ema.module):  # both start from it
            torch.testing.assert_close(generator(lr).clamp(0, 1), want, rtol=0, atol=1e-6)
    assert trainer.step == 0 and trainer.ema.updates == 0
    trainer.train()  # the GAN phase runs from it: D was built fresh, not loaded
    trainer.close()
    assert "d_loss" in trainer.loss_history[-1]


def test_a_checkpoint_folder_gives_its_ema_weights(synth_images, tmp_path):
    first = Trainer(_short(tmp_path / "first", synth_images), CPU)
    first.train()
    first.close()
    folder = latest_checkpoint(tmp_path / "first")
    ema = load_file(folder / "trainer.pt")["ema"]["module"]
    second = Trainer(_short(tmp_path / "second", synth_images, f"train.init_generator={folder}"), CPU)
    for name, value in second.backend.module("g").state_dict().items():
        torch.testing.assert_close(value, ema[name], rtol=0, atol=0)
    assert any(not torch.equal(value, first.backend.module("g").state_dict()[name])  # EMA, not raw G
               for name, value in ema.items())
    second.close()


def test_another_generator_shape_is_refused_naming_the_file_and_fields(synth_images, tmp_path):
    cfg = _short(tmp_path / "run", synth_images, "model.arch=compact", "model.features=16", "model.blocks=6",
                 "train.init_generator=default")
    with pytest.raises(CheckpointError, match=r"cxr_sr_x4\.pt: .*features=32 \(this run: 16\)"):
        Trainer(cfg, CPU)


@pytest.mark.parametrize("content, message", [(None, "no such file or checkpoint folder"),
                                              (b"not a model", "not a TorchScript model")])
def test_cli_names_a_missing_or_unreadable_source_in_one_line(synth_images, tmp_path, content, message):
    source = tmp_path / "g.pt"
    if content is not None:
        source.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "dist_train", "--config", "tiny_cpu",
                             f"data.images={synth_images}", f"train.out_dir={tmp_path / 'run'}",
                             f"train.init_generator={source}"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("cxr-sr train:")]
    assert len(lines) == 1 and str(source) in lines[0] and message in lines[0], result.stderr
    assert content is None or source.read_bytes() == content  # the user's file is left as it was
