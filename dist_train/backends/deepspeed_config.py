"""The DeepSpeed JSON of each network, generated from our Config and an optional base JSON.

Division of labour: the base JSON (``dist.deepspeed_config``, e.g. ``launch/configs/*.json``)
carries DeepSpeed-only settings (ZeRO options, loss-scale knobs, communication settings); our
Config owns everything the DDP backend also has (batch size, clipping, precision, the optimizers
and their schedules), so switching ``dist.backend`` never changes what is trained. A base JSON that
tries to set one of those is an error rather than a silent override.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from dist_train.config import Config, ConfigError

# Keys our Config owns; a base JSON naming one of them is refused (with the field to use instead).
OWNED_KEYS = {
    "train_batch_size": "data.batch_size (per process)",
    "train_micro_batch_size_per_gpu": "data.batch_size (per process)",
    "gradient_accumulation_steps": "data.batch_size (one micro-batch per step)",
    "gradient_clipping": "optim.grad_clip",
    # A configured optimizer would also JIT-compile DeepSpeed's fused_adam (~50 s per machine).
    "optimizer": "optim.* (each network gets a torch Adam as DeepSpeed's client optimizer)",
    "scheduler": "optim.scheduler",
    "torch_autocast": "train.precision (autocast is decided by dist_train.precision)",
    "amp": "train.precision",
}
_HALF = {"bf16": "bf16", "fp16": "fp16"}
FP16_DEFAULTS = {"loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000, "hysteresis": 2,
                 "min_loss_scale": 1}


def _error(source: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {message}")


def load_base(path: str) -> dict:
    """The base JSON named by ``dist.deepspeed_config`` ({} when empty)."""
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise _error("config field 'dist.deepspeed_config'", f"{path} does not exist; give a DeepSpeed .json "
                     "(e.g. launch/configs/ds_zero2_bf16.json) or leave it empty")
    try:
        tree = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise _error(path, f"not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(tree, dict):
        raise _error(path, "the top level must be a JSON object")
    return tree


def _json_precision(base: dict) -> str | None:
    enabled = [mode for mode in _HALF if isinstance(base.get(mode), dict) and base[mode].get("enabled", False)]
    if len(enabled) > 1:
        raise ConfigError("dist.deepspeed_config: both bf16 and fp16 are enabled; enable at most one")
    return enabled[0] if enabled else None


def resolve_zero_stage(cfg: Config, base: dict) -> int:
    """``dist.zero_stage``, or the base JSON's stage, or 2; the two must agree when both are given."""
    file_stage = base.get("zero_optimization", {}).get("stage")
    stage = cfg.dist.zero_stage
    if stage == -1:
        stage = 2 if file_stage is None else file_stage
    elif file_stage is not None and file_stage != stage:
        raise ConfigError(f"config field 'dist.zero_stage': {stage} but {cfg.dist.deepspeed_config} says stage "
                          f"{file_stage}; drop one of them or make them equal")
    if stage not in (0, 1, 2):
        raise ConfigError(f"config field 'dist.zero_stage': stage {stage} is not supported; use 0, 1 or 2 "
                          "(ZeRO-3 partitions the weights, which the GAN step's frozen-D call needs whole)")
    return stage


def deepspeed_config(cfg: Config, base: dict | None = None) -> dict:
    """The complete DeepSpeed config for one network (both networks get the same one)."""
    base = copy.deepcopy(load_base(cfg.dist.deepspeed_config) if base is None else base)
    source = cfg.dist.deepspeed_config or "the DeepSpeed config"
    for key, owner in OWNED_KEYS.items():
        if key in base:
            raise _error(source, f"remove '{key}': it comes from {owner}")
    json_precision = _json_precision(base)
    precision = cfg.train.precision
    if json_precision is not None and json_precision != precision:
        raise _error(source, f"enables {json_precision} but train.precision={precision}; "
                     f"set train.precision={json_precision} or use a matching JSON")
    zero = dict(base.pop("zero_optimization", {}))
    zero["stage"] = resolve_zero_stage(cfg, {"zero_optimization": zero})
    config = {
        "train_micro_batch_size_per_gpu": cfg.data.batch_size,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # our RunLogger reports; keep DeepSpeed's own step log quiet
        "wall_clock_breakdown": False,
        **base,
    }
    for mode in _HALF:
        config.pop(mode, None)
    if precision in _HALF:
        defaults = FP16_DEFAULTS if precision == "fp16" else {}
        config[precision] = {**defaults, **base.get(precision, {}), "enabled": True}
        # Buffers (BatchNorm statistics) in the parameters' dtype: mixed dtypes break batch_norm.
        config["data_types"] = {"buffer_dtype": precision, **base.get("data_types", {})}
    return config
