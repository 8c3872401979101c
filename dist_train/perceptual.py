"""VGG19 feature extractor for the perceptual loss, with ImageNet weights from a file.

Weights come from ``loss.perceptual_weights`` or torchvision's file in the torch hub cache. Only
when that cache file is absent is torchvision's own download tried, once, announced in one line;
offline, the error is one line naming the file and where to put it. Never a silent random VGG.
``loss.perceptual=d_features`` needs no weights at all (see dist_train/losses.py).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchvision
from torch import nn

# torchvision's ImageNet statistics, applied after replicating gray to three channels.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGGWeightsMissing(FileNotFoundError):
    """The VGG19 weight file for the perceptual loss is not on disk."""


def vgg19_layer_names() -> list[str]:
    """Names of torchvision's ``vgg19().features`` layers in order: conv1_1, relu1_1, ..., pool5."""
    names, block, conv = [], 1, 1
    # torchvision builds vgg19().features from this list: a width is conv + ReLU, "M" a max-pool
    for entry in torchvision.models.vgg.cfgs["E"]:
        if entry == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def default_vgg19_weights_path() -> Path:
    """Where torchvision keeps the ImageNet VGG19 weights: ``$TORCH_HOME/hub/checkpoints/vgg19-*.pth``."""
    url = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class GrayVGGFeatures(nn.Module):
    """Frozen VGG19 features up to ``layer`` for one-channel input in [0, 1]."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "GrayVGGFeatures":
        # The frozen VGG stays in eval mode whatever the trainer does to its parents.
        return super().train(False)

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        rgb = gray.expand(-1, 3, -1, -1)
        return self.features((rgb - self.mean.to(rgb.dtype)) / self.std.to(rgb.dtype))


_NO_WEIGHTS_FIX = "or set loss.perceptual_weights=FILE, or loss.perceptual=d_features (needs no weights)"


def _download_to_hub_cache(path: Path) -> None:
    """torchvision's own download of the ImageNet VGG19 weights into the hub cache (``path``)."""
    weights = torchvision.models.VGG19_Weights.IMAGENET1K_V1
    print(f"perceptual loss: {path} is absent; downloading torchvision's VGG19 weights (548 MB) from "
          f"{weights.url}", file=sys.stderr, flush=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # torch.hub's downloader, as torchvision's weights use it: a temp file renamed into place
        # once complete, checked against the hash prefix in the file name
        hash_prefix = torch.hub.HASH_REGEX.search(path.name).group(1)
        torch.hub.download_url_to_file(weights.url, str(path), hash_prefix, progress=False)
    except (OSError, RuntimeError) as err:  # no network (URLError is an OSError), or a bad hash
        reason = " ".join(str(err).split())
        raise VGGWeightsMissing(f"VGG19 weights for the perceptual loss not found at {path} and the download "
                                f"failed ({reason}): copy torchvision's vgg19-dcbb9e9d.pth there, "
                                f"{_NO_WEIGHTS_FIX}") from None


def build_vgg19_features(layer: str = "relu5_4", weights_path: str | Path = "") -> GrayVGGFeatures:
    """VGG19 features up to and including ``layer``, weights read from ``weights_path``.

    ``weights_path`` empty means torchvision's file in the torch hub cache, downloaded there by
    torchvision when absent. A given ``weights_path`` is never replaced by a download. Raises
    VGGWeightsMissing (one line, naming the expected path) when no weights can be had. Only the
    ``features.*`` entries up to ``layer`` are read, so a file holding just those will do.
    """
    names = vgg19_layer_names()
    if layer not in names:
        raise ValueError(f"unknown VGG19 layer '{layer}'; choose one of {', '.join(names)}")
    path = Path(weights_path) if weights_path else default_vgg19_weights_path()
    if not path.is_file() and not weights_path:
        _download_to_hub_cache(path)
    if not path.is_file():
        raise VGGWeightsMissing(
            f"VGG19 weights for the perceptual loss not found at {path}: copy torchvision's "
            f"vgg19-dcbb9e9d.pth there ({_NO_WEIGHTS_FIX})")
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])[: names.index(layer) + 1]
    state = torch.load(path, map_location="cpu", weights_only=True)
    wanted = {f"features.{key}" for key in features.state_dict()}
    missing = sorted(wanted - set(state))
    if missing:
        raise VGGWeightsMissing(f"{path} is not a VGG19 state dict: it lacks {missing[0]} "
                                f"(expected torchvision's vgg19-dcbb9e9d.pth; {_NO_WEIGHTS_FIX})")
    features.load_state_dict({key.removeprefix("features."): state[key] for key in wanted})
    return GrayVGGFeatures(features)
