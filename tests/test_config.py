"""Typed config: YAML + overrides, and one-line errors that name the field and the fix."""
import subprocess
import sys

import pytest
import yaml

from dist_train.config import ConfigError, config_from_dict, config_to_plain, load_config, save_config


def test_bundled_config_with_typed_overrides():
    cfg = load_config("tiny_cpu", ["model.scale=2", "optim.betas=[0.5, 0.9]", "train.precision=bf16",
                                   "model.batchnorm=true", "loss.tv_weight=1e-3"])
    assert cfg.model.scale == 2 and cfg.optim.betas == (0.5, 0.9) and cfg.model.batchnorm is True
    assert cfg.train.precision == "bf16" and cfg.loss.tv_weight == pytest.approx(1e-3)
    assert cfg.model.features == 16  # from the YAML file, not the dataclass default


@pytest.mark.parametrize("override, field", [
    ("model.scale=3", "model.scale"),
    ("train.precision=fp8", "train.precision"),
    ("model.blocks=many", "model.blocks"),
    ("model.scalee=4", "model.scalee"),
    ("data.patch_px=98", "data.patch_px"),
    ("loss.adversarial_weight=-1", "loss.adversarial_weight"),
    ("model.batchnorm=maybe", "model.batchnorm"),
    ("loss.perceptual_layer=relu9_9", "loss.perceptual_layer"),
])
def test_bad_value_gives_one_line_error_naming_the_field(override, field):
    with pytest.raises(ConfigError) as error:
        load_config("tiny_cpu", [override])
    assert f"'{field}'" in str(error.value) and "\n" not in str(error.value)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("default", ["train.seed=7"])
    save_config(cfg, tmp_path / "config.yaml")
    again = config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text()))
    assert config_to_plain(again) == config_to_plain(cfg)


def test_cli_reports_a_bad_value_in_one_line_and_exit_code_2():
    result = subprocess.run([sys.executable, "-m", "dist_train", "--config", "tiny_cpu", "train.precision=fp8"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.precision" in lines[0] and "bf16" in lines[0]
