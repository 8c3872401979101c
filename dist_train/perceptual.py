"""VGG19 feature extractor for the perceptual loss, with weights from a local file only.

No network access at run time and no silent random VGG: when the weights are missing the error
names the file that was expected and how to provide it.
"""
from __future__ import annotations

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


def build_vgg19_features(layer: str = "relu5_4", weights_path: str | Path = "") -> GrayVGGFeatures:
    """VGG19 features up to and including ``layer``, weights read from ``weights_path``.

    ``weights_path`` empty means torchvision's file in the torch hub cache. Raises
    VGGWeightsMissing (one line, naming the expected path) when the file is absent.
    """
    names = vgg19_layer_names()
    if layer not in names:
        raise ValueError(f"unknown VGG19 layer '{layer}'; choose one of {', '.join(names)}")
    path = Path(weights_path) if weights_path else default_vgg19_weights_path()
    if not path.is_file():
        raise VGGWeightsMissing(
            f"VGG19 weights for the perceptual loss not found at {path}: copy torchvision's "
            f"vgg19-dcbb9e9d.pth there (or set loss.perceptual_weights=FILE, or loss.perceptual_weight=0)")
    vgg = torchvision.models.vgg19(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    vgg.load_state_dict(state)
    return GrayVGGFeatures(vgg.features[: names.index(layer) + 1])
