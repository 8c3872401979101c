"""Typed training configuration: nested dataclasses, YAML files, ``key=value`` overrides.

Every section validates itself in ``__post_init__`` and raises ``ConfigError`` with one line that
names the field and the fix. ``load_config`` is the only way configs enter the program.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the field and the fix."""


def _require(ok: bool, field_name: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"config field '{field_name}': {fix}")


def _one_of(value: Any, allowed: tuple, field_name: str) -> None:
    _require(value in allowed, field_name, f"got {value!r}, use one of {', '.join(map(str, allowed))}")


@dataclass
class ModelConfig:
    arch: str = "srresnet"  # srresnet (SRGAN's generator) | compact (CompactSR: every conv at LR, for CPUs)
    scale: int = 4
    features: int = 64
    blocks: int = 16
    batchnorm: bool = False  # True gives the original SRGAN generator; False the MSRResNet form
    global_residual: bool = True  # output = bicubic(x) + residual; untrained G equals bicubic
    d_features: int = 64
    d_batchnorm: bool = False  # BatchNorm in the discriminator (the original SRGAN has it)
    d_spectral_norm: bool = True  # spectral normalisation of every D layer (Real-ESRGAN's D)
    # D's fixed input stem: each patch standardised to its own contrast, plus a high-pass channel
    # in gray levels; without them D sees raw intensities, where SR and HR differ by ~1 level.
    d_standardise: bool = True
    d_high_pass: bool = True
    d_quantize: bool = True  # D sees 8-bit levels (as HR PNGs are), so off-grid SR values give nothing away
    d_head: str = "pooled"  # pooled: one logit per patch; patch: one per 16 x 16 px cell (PatchGAN)

    def __post_init__(self):
        from dist_train.models import DISCRIMINATOR_HEADS, GENERATOR_ARCHS
        _one_of(self.arch, GENERATOR_ARCHS, "model.arch")
        _require(self.arch == "srresnet" or (self.global_residual and not self.batchnorm), "model.arch",
                 "compact always predicts a residual over bicubic and has no BatchNorm; "
                 "leave model.global_residual/batchnorm at their defaults")
        _one_of(self.scale, (2, 4, 8), "model.scale")
        _require(self.features >= 1, "model.features", "must be a positive number of channels")
        _require(self.blocks >= 1, "model.blocks", "must be at least 1 residual block")
        _require(self.d_features >= 1, "model.d_features", "must be a positive number of channels")
        _one_of(self.d_head, DISCRIMINATOR_HEADS, "model.d_head")


@dataclass
class LossConfig:
    pixel: str = "l1"
    pixel_weight: float = 1.0
    # vgg: L1 of ImageNet VGG19 features (weights on disk or downloaded once); d_features: L1 of
    # the discriminator's block activations (pix2pixHD feature matching; no weights, GAN phase
    # only); none: no perceptual term
    perceptual: str = "vgg"
    perceptual_weight: float = 1.0
    perceptual_layer: str = "relu5_4"  # a VGG19 layer name, e.g. relu2_2, relu5_4, conv5_4
    perceptual_weights: str = ""  # VGG19 state dict; "" = torchvision's file in the torch hub cache
    adversarial: str = "bce"  # bce | ragan (relativistic average)
    adversarial_weight: float = 5e-3
    tv_weight: float = 0.0

    def __post_init__(self):
        _one_of(self.pixel, ("l1", "mse"), "loss.pixel")
        _one_of(self.adversarial, ("bce", "ragan"), "loss.adversarial")
        _one_of(self.perceptual, ("vgg", "d_features", "none"), "loss.perceptual")
        from dist_train.perceptual import vgg19_layer_names
        _one_of(self.perceptual_layer, tuple(vgg19_layer_names()), "loss.perceptual_layer")
        for name in ("pixel_weight", "perceptual_weight", "adversarial_weight", "tv_weight"):
            _require(getattr(self, name) >= 0, f"loss.{name}", "must be >= 0 (0 switches the term off)")


@dataclass
class OptimConfig:
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping
    scheduler: str = "constant"  # constant | cosine | step
    step_milestones: tuple[int, ...] = ()  # for scheduler=step, global steps where lr halves
    d_steps: int = 1  # discriminator updates per generator update in the GAN phase (same batch)
    # warn when D's accuracy stays at chance for this many consecutive logging intervals of the
    # GAN phase (its adversarial term is then noise); 0 = never warn
    d_chance_intervals: int = 5

    def __post_init__(self):
        self.betas = tuple(self.betas)
        self.step_milestones = tuple(self.step_milestones)
        _require(self.lr_g > 0 and self.lr_d > 0, "optim.lr_g/lr_d", "learning rates must be > 0")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas",
                 "give two numbers in [0, 1), e.g. [0.9, 0.99]")
        _require(self.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0 disables clipping)")
        _one_of(self.scheduler, ("constant", "cosine", "step"), "optim.scheduler")
        _require(self.d_steps >= 1, "optim.d_steps", "must be >= 1 discriminator update per generator update")
        _require(self.d_chance_intervals >= 0, "optim.d_chance_intervals", "must be >= 0 (0 = never warn)")


@dataclass
class DataConfig:
    backend: str = "folder"  # folder (PNG folder) | torch (shards, PyTorch) | dali (shards, DALI)
    device: str = "cpu"  # where DALI decodes: cpu | gpu (mixed)
    images: str = ""  # folder of PNGs for backend=folder
    shards: str = ""  # shard set directory (docs/contracts.md §2) for backend=torch|dali
    patch_px: int = 96  # HR training patch; LR patch = patch_px / scale
    batch_size: int = 16  # per process
    workers: int = 2
    val_crop_px: int = 0  # centre crop of validation images; 0 = whole image
    val_count: int = 8  # backend=folder: images held out for validation (the last by name)
    val_max_images: int = 0  # cap on validation images per evaluation; 0 = all
    # Random patches cut from each decoded training image (each with its own crop and symmetry).
    # Decoding a 1024 px PNG costs 7-9 ms of CPU, cutting and degrading a 384 px patch well under
    # 1 ms (benchmarks/RESULTS.md), so below k = 16 decoding still dominates; a batch of 16 then
    # mixes patches of ~10 of the group's 16 images.
    patches_per_image: int = 16
    cache: str = "none"  # none | decoded: keep the decoded train split in memory, decode once
    cache_max_mb: int = 4096  # data.cache=decoded refuses a split larger than this

    def __post_init__(self):
        _one_of(self.backend, ("folder", "torch", "dali"), "data.backend")
        _one_of(self.device, ("cpu", "gpu"), "data.device")
        _require(self.patch_px >= 16, "data.patch_px", "must be at least 16 px")
        _require(self.batch_size >= 1, "data.batch_size", "must be >= 1")
        _require(self.workers >= 0, "data.workers", "must be >= 0")
        _require(self.val_crop_px >= 0, "data.val_crop_px", "must be >= 0 (0 = whole images)")
        _require(self.patches_per_image >= 1, "data.patches_per_image", "must be >= 1 (1 = one patch per decode)")
        _one_of(self.cache, ("none", "decoded"), "data.cache")
        _require(self.cache_max_mb >= 1, "data.cache_max_mb", "must be >= 1 MB")


@dataclass
class TrainConfig:
    out_dir: str = "runs/default"
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16 (one grad scaler per network) | auto (bf16 where native)
    pretrain_steps: int = 1000  # PSNR phase: pixel loss only
    gan_steps: int = 1000  # GAN phase after pretraining
    ema_decay: float = 0.999
    val_every: int = 500
    ckpt_every: int = 500
    keep_ckpts: int = 3
    log_every: int = 10
    seed: int = 0
    max_bad_steps: int = 20  # consecutive non-finite losses before the run stops
    # the generator's starting weights (dist_train/init_generator.py): "" = random, "default" = the
    # shipped model, or an exported .pt file or a checkpoint folder, e.g. to fine-tune it as a GAN
    init_generator: str = ""

    def __post_init__(self):
        _one_of(self.device, ("auto", "cpu", "cuda"), "train.device")
        _one_of(self.precision, ("fp32", "bf16", "fp16", "auto"), "train.precision")
        _require(self.pretrain_steps >= 0 and self.gan_steps >= 0, "train.pretrain_steps/gan_steps",
                 "step counts must be >= 0")
        _require(self.pretrain_steps + self.gan_steps > 0, "train.pretrain_steps",
                 "nothing to train: give pretrain_steps or gan_steps > 0")
        _require(0 <= self.ema_decay < 1, "train.ema_decay", "must be in [0, 1)")
        for name in ("val_every", "ckpt_every", "log_every", "max_bad_steps"):
            _require(getattr(self, name) >= 1, f"train.{name}", "must be >= 1")
        _require(self.keep_ckpts >= 1, "train.keep_ckpts", "keep at least 1 checkpoint")

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.gan_steps


@dataclass
class DistConfig:
    backend: str = "ddp"  # ddp (torchrun, or a single process) | deepspeed
    comm: str = "auto"  # auto (nccl on GPU, gloo on CPU) | nccl | gloo
    timeout_s: int = 600  # collective timeout: a dead rank stops the others after this long
    # backend=deepspeed only. zero_stage -1 = the stage in deepspeed_config, or 2 without one.
    zero_stage: int = -1
    # A DeepSpeed JSON (e.g. launch/configs/ds_zero2_bf16.json) for DeepSpeed-only settings;
    # batch size, clipping, precision, optimizers and schedules always come from this config.
    deepspeed_config: str = ""

    def __post_init__(self):
        _one_of(self.backend, ("ddp", "deepspeed"), "dist.backend")
        _one_of(self.comm, ("auto", "nccl", "gloo"), "dist.comm")
        _require(self.timeout_s >= 1, "dist.timeout_s", "must be >= 1 second")
        _one_of(self.zero_stage, (-1, 0, 1, 2), "dist.zero_stage")
        _require(not self.deepspeed_config or self.deepspeed_config.endswith(".json"), "dist.deepspeed_config",
                 "give the path of a DeepSpeed .json file, or leave it empty")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self):
        _require(self.data.patch_px % self.model.scale == 0, "data.patch_px",
                 f"must be a multiple of model.scale={self.model.scale}")
        _require(self.data.val_crop_px % self.model.scale == 0, "data.val_crop_px",
                 f"must be a multiple of model.scale={self.model.scale}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(value: Any, annotation: Any, field_name: str) -> Any:
    """Turn a YAML or command-line value into the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            if not isinstance(value, bool):
                raise ValueError(value)
            return value
        if annotation in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            if annotation is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return annotation(value) if not isinstance(value, str) else annotation(float(value) if annotation is float else int(value))
        if annotation is str:
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                value = yaml.safe_load(value if value.strip().startswith("[") else f"[{value}]")
            item_type = typing.get_args(annotation)[0]
            return tuple(_coerce(v, item_type, field_name) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"config field '{field_name}': {value!r} is not a valid {getattr(annotation, '__name__', annotation)}") from None
    return value


def _build(cls: type, values: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"config field '{prefix}{unknown[0]}' does not exist; known fields of "
                          f"'{prefix.rstrip('.') or 'config'}': {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config field '{prefix}{name}' must be a section (a mapping)")
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config field '{dotted}': '{part}' is not a section")
    node[leaf] = value


def find_yaml(name: str | Path, folder: Path) -> Path | None:
    """``name`` as a path to a file, else as the name of a YAML file in ``folder``; None if neither."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = folder / f"{path.stem}.yaml"
    return bundled if bundled.is_file() and path.suffix in ("", ".yaml") else None


def yaml_names(folder: Path) -> list[str]:
    """The names ``find_yaml`` accepts in ``folder``, for error messages."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def resolve_config_path(name: str | Path) -> Path:
    """A YAML path, or the name of a bundled config (``tiny_cpu`` -> dist_train/configs/tiny_cpu.yaml)."""
    path = find_yaml(name, CONFIG_DIR)
    if path is None:
        raise ConfigError(f"config file '{name}' not found; give a YAML path or one of: "
                          f"{', '.join(yaml_names(CONFIG_DIR))}")
    return path


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Config from an optional YAML file plus ``section.key=value`` overrides (later wins)."""
    tree: dict = {}
    if path is not None:
        config_path = resolve_config_path(path)
        try:
            tree = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{config_path}: not valid YAML ({str(err).splitlines()[0]})") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{config_path}: the top level must be a mapping of sections")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return _build(Config, tree, "")


def save_config(config: Config, path: Path) -> None:
    """Write the resolved config as YAML, atomically."""
    from data_prep.atomic import write_bytes_atomic

    write_bytes_atomic(Path(path), yaml.safe_dump(config_to_plain(config), sort_keys=False).encode("utf-8"))


def config_to_plain(config: Config) -> dict:
    """The config as plain YAML-friendly types (tuples become lists)."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(config.to_dict())


def config_from_dict(tree: dict) -> Config:
    """Rebuild a Config from ``config_to_plain`` output (e.g. the copy inside a checkpoint)."""
    return _build(Config, tree, "")
