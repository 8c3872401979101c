"""Shard sets for the loader tests (no tests here): tiny, deterministic, made the project's way."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dist_train.config import Config, load_config


def write_shards(out: Path, sizes_px: list[tuple[int, int]], split: str = "train",
                 samples_per_shard: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Write ``split`` shards of random-textured 8-bit PNGs (CONTRACTS §2) and a manifest.

    Returns the images in storage order. Used until data_prep's shard writer is available.
    """
    out.mkdir(parents=True, exist_ok=True)
    import webdataset as wds
    rng = np.random.default_rng(seed)
    images = []
    shards = []
    for first in range(0, len(sizes_px), samples_per_shard):
        tar = out / f"{split}-{first // samples_per_shard:06d}.tar"
        names = []
        with wds.TarWriter(str(tar)) as writer:
            for i in range(first, min(first + samples_per_shard, len(sizes_px))):
                height, width = sizes_px[i]
                smooth = np.cumsum(rng.normal(0, 12, (height, width)), axis=1) + 128
                image = np.clip(smooth + rng.normal(0, 20, (height, width)), 0, 255).astype(np.uint8)
                images.append(image)
                png = io.BytesIO()
                Image.fromarray(image).save(png, format="PNG")
                key = f"{split}_{i:05d}"
                names.append(key)
                writer.write({"__key__": key, "png": png.getvalue(),
                              "json": json.dumps({"image": key + ".png"}).encode()})
        subprocess.run([str(Path(sys.executable).with_name("wds2idx")), str(tar),
                        str(tar.with_suffix(".idx"))], check=True, capture_output=True)
        shards.append({"name": tar.name, "samples": len(names)})
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"shards": []}
    manifest["shards"] += shards
    manifest_path.write_text(json.dumps(manifest))
    return images


def tiny_config(shards: Path, backend: str, **data) -> Config:
    """A config for loader tests: tiny patches and batches, given data overrides."""
    overrides = [f"data.backend={backend}", f"data.shards={shards}", "data.patch_px=32",
                 "data.batch_size=4", "data.workers=1"]
    overrides += [f"data.{key}={value}" for key, value in data.items()]
    return load_config(None, overrides)
