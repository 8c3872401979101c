"""Backend ``folder``: training straight from a folder of PNG/DICOM images, no shards needed.

Images are listed recursively and sorted by name; the last ``data.val_count`` are held out for
validation (a patient-disjoint split is the job of ``cxr-sr prep shard``). Sampling, padding and
augmentation follow ``dist_train.data.sampling``, so a batch is a pure function of its position
(epoch, batch) and a resumed run continues with exactly the batch it would have seen.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from data_prep.image_io import folder_skip_reason, read_gray8
from dist_train.config import Config
from dist_train.data.batches import ImageSource, ValBatches, positioned_train_loader
from dist_train.data.positioned import PositionedTrainLoader


def list_images(folder: Path) -> list[Path]:
    """Every image under ``folder`` that `prep shard` and `upscale` would take too, sorted by path."""
    if not folder.is_dir():
        raise FileNotFoundError(f"data.images: folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and folder_skip_reason(p) is None)
    if not paths:
        raise FileNotFoundError(f"data.images: no PNG, JPEG, TIFF or DICOM files under {folder}")
    return paths


def split_paths(cfg: Config) -> tuple[list[Path], list[Path]]:
    """(train, val) paths: the last ``val_count`` by name are validation."""
    paths = list_images(Path(cfg.data.images))
    held_out = min(cfg.data.val_count, len(paths) - 1)
    return paths[:len(paths) - held_out], paths[len(paths) - held_out:]


def decode_file(path: Path) -> np.ndarray:
    """One PNG/DICOM file as uint8 ``H x W``."""
    return read_gray8(path)[0]


def file_stem(path: Path) -> str:
    return path.stem


def file_shape(path: Path) -> tuple[int, int]:
    """``(H, W)`` of one image file from its header (DICOM: Rows x Columns), without decoding."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except UnidentifiedImageError:  # not a Pillow format: a DICOM file
        import pydicom
        header = pydicom.dcmread(path, stop_before_pixels=True)
        return int(header.Rows), int(header.Columns)


def folder_images(paths: list[Path]) -> ImageSource:
    """Image files as an image source (``dist_train.data.batches``); keys are the file stems."""
    return ImageSource(paths, decode_file, file_stem, file_shape)


def build_folder_train_loader(cfg: Config, rank: int, world_size: int, device: torch.device) -> PositionedTrainLoader:
    """Endless training batches from a folder, with a resumable position."""
    paths, _ = split_paths(cfg)
    return positioned_train_loader(folder_images(paths), cfg, rank, world_size, device, "folder")


def build_folder_val_loader(cfg: Config, rank: int, world_size: int, device: torch.device) -> ValBatches:
    """This rank's held-out images (the folder is listed once, here)."""
    _, paths = split_paths(cfg)
    return ValBatches(folder_images(paths), cfg, rank, world_size, device)
