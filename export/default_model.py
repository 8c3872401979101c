"""The model shipped with the package: what `cxr-sr upscale` and `cxr-sr app` use without --model.

It is package data (export/models/), so a non-editable install finds it too. Its model card
(export/models/MODEL_CARD.md) is rendered from the ``card`` entry of its own meta.json, and
export/models/make_default_model.sh remakes both from ../shared/nih-sample.
"""
from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "cxr_sr_x4.pt"
MODEL_CARD = MODELS_DIR / "MODEL_CARD.md"


def default_model_path() -> Path:
    """The shipped TorchScript file; FileNotFoundError (one line) when the install lacks it."""
    if not DEFAULT_MODEL.is_file():
        raise FileNotFoundError(f"{DEFAULT_MODEL}: the shipped default model is missing from this install; "
                                "pass --model FILE (made by `cxr-sr export`)")
    return DEFAULT_MODEL


def default_model_notice() -> str:
    """The one line said when the default model is used."""
    return (f"no --model given: using the shipped default model {DEFAULT_MODEL.name} "
            f"(CompactSR x4 trained on the 312-image NIH sample; card: {MODEL_CARD})")
