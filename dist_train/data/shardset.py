"""The shard set of docs/contracts.md §2 as the loaders see it: shards per split, in order.

The order of samples in a split is fixed here, once, for every backend: shards sorted by name,
samples in the order of their DALI index (= their order in the tar). Sample ``i`` of a split is
therefore the same image for the torch twin and for DALI's reader, which is what lets the two
backends share one sampling plan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from data_prep.manifest import MANIFEST_NAME

SPLITS = ("train", "val", "test")


class ShardSetError(ValueError):
    """The shard set on disk is missing, incomplete or disagrees with its manifest."""


@dataclass(frozen=True)
class SampleRef:
    """Where one sample's PNG lies: ``key`` is the image name without extension."""

    key: str
    tar: Path
    png_offset: int
    png_size: int


@dataclass(frozen=True)
class Shard:
    """One tar of a split, its DALI index and its sample count."""

    tar: Path
    index: Path
    samples: int


@dataclass(frozen=True)
class SplitShards:
    """The shards of one split, in storage order."""

    split: str
    shards: tuple[Shard, ...]

    @property
    def n_samples(self) -> int:
        return sum(shard.samples for shard in self.shards)

    @property
    def tar_paths(self) -> list[str]:
        return [str(shard.tar) for shard in self.shards]

    @property
    def index_paths(self) -> list[str]:
        return [str(shard.index) for shard in self.shards]

    def sample_refs(self) -> list[SampleRef]:
        """Every sample of the split in storage order, read from the DALI index files."""
        refs: list[SampleRef] = []
        for shard in self.shards:
            refs.extend(read_index(shard))
        return refs


def read_index(shard: Shard) -> list[SampleRef]:
    """The samples of one shard from its wds2idx file (``v1.2 N`` then one line per sample).

    A sample line lists ``ext offset size name`` for each of its files; a sample without a
    ``png`` raises, as DALI's ``missing_component_behavior="error"`` does.
    """
    lines = shard.index.read_text().splitlines()
    header = lines[0].split() if lines else []
    if len(header) != 2 or not header[0].startswith("v1."):
        raise ShardSetError(f"{shard.index}: not a DALI wds2idx index (first line {header})")
    refs = []
    for line in lines[1:int(header[1]) + 1]:
        fields = line.split()
        entries = {fields[i]: fields[i:i + 4] for i in range(0, len(fields) - 3, 4)}
        if "png" not in entries:
            raise ShardSetError(f"{shard.index}: sample {fields[3] if len(fields) > 3 else '?'} "
                                "has no png field")
        _, offset, size, name = entries["png"]
        refs.append(SampleRef(name.rsplit(".", 1)[0], shard.tar, int(offset), int(size)))
    if len(refs) != shard.samples:
        raise ShardSetError(f"{shard.index}: indexes {len(refs)} samples, the manifest says "
                            f"{shard.samples}; re-run `cxr-sr prep verify`")
    return refs


def _manifest_entries(manifest: dict, split: str) -> list[dict]:
    """The manifest's shard records of ``split`` (``file``, ``index_file``, ``samples``), by name."""
    entries = manifest.get("shards")
    if not isinstance(entries, list):
        raise ShardSetError("manifest.json has no 'shards' list; re-make it with `cxr-sr prep shard`")
    return sorted((entry for entry in entries if entry.get("split") == split),
                  key=lambda entry: entry["file"])


def load_split(shard_dir: str | Path, split: str) -> SplitShards:
    """The shards of ``split`` in ``shard_dir``, checked against manifest.json; raises if empty."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: use one of {', '.join(SPLITS)}")
    root = Path(shard_dir)
    manifest_path = root / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ShardSetError(f"{manifest_path} is missing: give data.shards a directory made by "
                            "`cxr-sr prep shard`")
    manifest = json.loads(manifest_path.read_text())
    shards = []
    for entry in _manifest_entries(manifest, split):
        tar, index = root / Path(entry["file"]).name, root / Path(entry["index_file"]).name
        for path in (tar, index):
            if not path.is_file():
                raise ShardSetError(f"{path} is listed in the manifest but missing")
        shards.append(Shard(tar, index, int(entry["samples"])))
    if not shards:
        raise ShardSetError(f"{root}: the manifest lists no '{split}' shards")
    result = SplitShards(split, tuple(shards))
    expected = manifest.get("counts", {}).get(split, result.n_samples)
    if result.n_samples != expected:
        raise ShardSetError(f"{manifest_path}: '{split}' shards hold {result.n_samples} samples, "
                            f"counts says {expected}; re-run `cxr-sr prep verify`")
    return result
