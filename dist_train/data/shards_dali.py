"""Backend ``dali``: the shard set decoded by DALI (``mixed`` on GPU, ``cpu`` without one).

``data.device=gpu`` runs decoding ("mixed"), augmentation and the degradation on the GPU. Note
that nvImageCodec has no GPU PNG decoder, so for the PNG shards of docs/contracts.md §2 the inflate step
stays on the CPU even then; only the operators after it move. The test suite runs the ``cpu``
operators only (it needs no GPU); the ``mixed`` path needs a GPU machine with DALI installed.

Semantics (see ``sampling`` for the shared plan):

* One pipeline per epoch. Its reader is DALI's own shard ``(rank + epoch) % world_size`` of
  ``world_size`` with ``stick_to_shard`` and ``pad_last_batch``, so the ranks read disjoint
  contiguous chunks that together cover the split, in every epoch.
* Shuffling is DALI's shuffle buffer (``random_shuffle``, ``initial_fill``) inside that chunk,
  seeded by ``sampling.pipeline_seed(seed, rank, epoch)``: same seed, same batches; but not the
  permutation the torch twin draws, so the two backends agree on *which* samples a rank sees in an
  epoch and (with shuffling off) on every pixel, not on the order when shuffling.
* Padding: all ranks run ``sampling.batches_per_epoch`` groups of ``batch_size`` images; DALI
  fills the tail of a short chunk by repeating its last sample (the torch twin cycles the chunk).
* Patches per image (``sampling``): one pipeline run decodes one group of ``batch_size`` images
  and cuts ``data.patches_per_image`` patches from each (one graph branch per patch); the
  group's patches are then shuffled together by ``sampling.group_patch_order`` and served as
  ``patches_per_image`` batches.
* The augmentation parameters come from ``sampling.group_augments`` through an external source,
  so a group depends only on (seed, rank, epoch, group index) and the samples the reader gives.
* LR is made once per decoded image, on the whole image (trimmed to a multiple of the scale), and
  each patch pair is cut from the image and its LR at the same place (``dali_graph.random_pair``),
  as the twin does (``samples.augment_pair``).
* ``data.cache=decoded``: the train split and its LR are made once (``cache.DecodedImages``) and
  enter through an external source in the twin's order (``sampling.batch_indices``) instead of
  the reader, so the cached DALI loader gives the twin's batches.
* Resume: rebuild the epoch's pipeline and run (and drop) the groups already consumed. Exact, and
  costs at most one epoch of decoding once per resume (none of earlier groups with the cache).
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Iterator

import numpy as np
import torch

try:
    from nvidia.dali import fn, pipeline_def, types
    from nvidia.dali.pipeline import Pipeline
    from nvidia.dali.tensors import TensorCPU
    from nvidia.dali.plugin.pytorch import feed_ndarray

    from dist_train.data import dali_graph
except ImportError as err:  # a machine without DALI: say how to go on
    raise ImportError(f"data.backend=dali needs NVIDIA DALI ({err}); `pip install "
                      "nvidia-dali-cuda130` or set data.backend=torch") from err

from dist_train.config import Config, ConfigError
from dist_train.data import sampling
from dist_train.data.cache import DecodedImages
from dist_train.data.positioned import TrainPosition
from dist_train.data.shards_torch import shard_images
from dist_train.data.shardset import SplitShards, load_split

READER_NAME = "shards"


def _dali_device(cfg: Config, device: torch.device) -> tuple[str, int | None]:
    """(device of the operators after decoding, DALI device_id). ``device_id`` must be None on a
    machine without a GPU: any integer fails there, even for CPU-only pipelines."""
    if cfg.data.device == "gpu":
        if device.type != "cuda":
            raise ConfigError("config field 'data.device': gpu decodes on the GPU and needs train.device "
                              "cuda; set data.device=cpu")
        return "gpu", device.index if device.index is not None else torch.cuda.current_device()
    return "cpu", None


def _read(split: SplitShards, shard_id: int, num_shards: int, shuffle: bool, pad: bool):
    """The reader: (encoded PNG, source_info bytes) of each sample of DALI's shard ``shard_id``."""
    png = fn.readers.webdataset(
        paths=split.tar_paths, index_paths=split.index_paths, ext=["png"],
        missing_component_behavior="error", name=READER_NAME, shard_id=shard_id,
        num_shards=num_shards, stick_to_shard=True, pad_last_batch=pad, random_shuffle=shuffle)
    return png, png.property("source_info")


def _augment_source(seed: int, rank: int, epoch: int, batch_size: int, patches_per_image: int,
                    images: Callable | None = None) -> Callable:
    """External-source callback: for the group DALI asks for, the HR and LR images of
    ``images(group)`` (when given) and
    the four ``sampling.Augment`` fields of each of its ``patches_per_image`` patch branches
    (branch ``i`` of sample ``j`` is the group's patch ``j * patches_per_image + i``)."""
    def source(info) -> tuple[list, ...]:
        augments = sampling.group_augments(seed, rank, epoch, info.iteration, batch_size, patches_per_image)
        outputs = list(images(info.iteration)) if images is not None else []
        for branch in range(patches_per_image):
            mine = augments[branch::patches_per_image]
            outputs += [[np.array([a.crop_y, a.crop_x], dtype=np.float32) for a in mine],
                        [np.array(a.transpose) for a in mine],
                        [np.array(a.flip_h, dtype=np.int32) for a in mine],
                        [np.array(a.flip_v, dtype=np.int32) for a in mine]]
        return tuple(outputs)
    return source


def _patch_branches(hr_image, lr_image, augments: list, patch_px: int, scale: int) -> list:
    """``[lr_0, ..., lr_{k-1}, hr_0, ..., hr_{k-1}]``: the ``k = len(augments) // 4`` patch pairs
    of each image (uint8 HR trimmed to a multiple of ``scale``, its LR as float on the 8-bit
    grid), ``1 x h x w`` float in [0, 1]."""
    lrs, hrs = [], []
    for branch in range(len(augments) // 4):
        crop_uv, transpose, flip_h, flip_v = augments[4 * branch:4 * branch + 4]
        hr, lr = dali_graph.random_pair(hr_image, lr_image, crop_uv, patch_px, scale)
        hrs.append(dali_graph.to_chw(dali_graph.to_unit_float(dali_graph.dihedral(hr, transpose, flip_h, flip_v))))
        lrs.append(dali_graph.to_chw(dali_graph.dihedral(lr, transpose, flip_h, flip_v)))
    return lrs + hrs


@pipeline_def(enable_conditionals=True)
def _train_pipeline(split: SplitShards, shard_id: int, num_shards: int, shuffle: bool,
                    augment_source: Callable, patch_px: int, scale: int, device: str,
                    patches_per_image: int):
    png, source_info = _read(split, shard_id, num_shards, shuffle, True)
    augments = fn.external_source(source=augment_source, num_outputs=4 * patches_per_image,
                                  batch=True, batch_info=True)
    image = fn.decoders.image(png, device="mixed" if device == "gpu" else "cpu", output_type=types.GRAY)
    hr = dali_graph.val_patch(image, 0, scale)  # the image trimmed to a multiple of the scale
    lr = dali_graph.downsample(dali_graph.to_unit_float(hr), scale, device)  # once per image
    return (*_patch_branches(hr, lr, list(augments), patch_px, scale), source_info)


@pipeline_def(enable_conditionals=True)
def _cached_train_pipeline(augment_source: Callable, patch_px: int, scale: int, device: str,
                           patches_per_image: int):
    hr, lr, *augments = fn.external_source(source=augment_source, num_outputs=2 + 4 * patches_per_image,
                                           batch=True, batch_info=True)
    hr, lr = fn.reshape(hr, layout="HWC"), fn.reshape(lr, layout="HWC")
    if device == "gpu":
        hr, lr = hr.gpu(), lr.gpu()
    return tuple(_patch_branches(hr, dali_graph.to_unit_float(lr), augments, patch_px, scale))


@pipeline_def
def _val_pipeline(split: SplitShards, shard_id: int, num_shards: int, crop_px: int, scale: int,
                  device: str):
    png, source_info = _read(split, shard_id, num_shards, False, False)
    image = fn.decoders.image(png, device="mixed" if device == "gpu" else "cpu",
                              output_type=types.GRAY)
    hr = dali_graph.to_unit_float(dali_graph.val_patch(image, crop_px, scale))
    lr = dali_graph.downsample(hr, scale, device)
    return dali_graph.to_chw(lr), dali_graph.to_chw(hr), source_info


def _to_torch(batch, device: torch.device) -> torch.Tensor:
    """Copy a uniform DALI batch into a new torch tensor on ``device`` (DALI reuses its buffers
    next run).

    ``feed_ndarray`` copies with a host memcpy for CPU output and a device copy for GPU output,
    into whatever pointer it is given, so the target must live where the batch does: CPU output
    (``data.device=cpu``) goes into a host tensor, pinned when CUDA is available so that the move
    to a GPU is an asynchronous copy on the current stream; GPU output goes straight into a
    tensor on ``device``.
    """
    dense = batch.as_tensor()
    if isinstance(dense, TensorCPU):
        pin = device.type == "cuda" and torch.cuda.is_available()
        host = torch.empty(dense.shape(), dtype=torch.float32, pin_memory=pin)
        feed_ndarray(dense, host)
        return host if device.type == "cpu" else host.to(device, non_blocking=True)
    if device.type != "cuda":
        raise ValueError(f"a GPU DALI batch cannot be copied to {device}; data.device=gpu needs "
                         "train.device=cuda")
    out = torch.empty(dense.shape(), dtype=torch.float32, device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream(device))
    return out


def _keys(source_info) -> list[str]:
    """Sample keys from DALI's ``source_info`` (``tar:offset:name.png``)."""
    infos = [np.array(source_info[i]).tobytes().decode() for i in range(len(source_info))]
    return [info.rsplit(":", 1)[-1].rsplit(".", 1)[0] for info in infos]


class DaliTrainLoader:
    """``TrainLoader`` over the train split: DALI decoding, in-graph LR, resumable position."""

    def __init__(self, cfg: Config, rank: int, world_size: int, device: torch.device,
                 split: SplitShards | None = None, shuffle: bool = True):
        self._cfg = cfg
        self._rank, self._world_size = rank, world_size
        self._device = device
        self._op_device, self._device_id = _dali_device(cfg, device)
        self._split = split if split is not None else load_split(cfg.data.shards, "train")
        self._shuffle = shuffle
        self._cache = (DecodedImages(shard_images(self._split), cfg.data.cache_max_mb, cfg.data.workers,
                                     cfg.model.scale)
                       if cfg.data.cache == "decoded" else None)
        k = cfg.data.patches_per_image
        groups = sampling.batches_per_epoch(self._split.n_samples, world_size, cfg.data.batch_size)
        # The cached loader reads the twin's order, not the reader's: another plan, another label.
        backend = "dali" if self._cache is None else "dali-cached"
        self._position = TrainPosition(backend, world_size, cfg.data.batch_size, groups * k, k)
        self._pipe: Pipeline | None = None
        self._pending: deque = deque()  # the batches of the current group not yet consumed
        self.last_keys: list[str] = []  # sample keys of the last batch, for tests and debugging

    @property
    def batches_per_epoch(self) -> int:
        return self._position.batches_per_epoch

    def _group_indices(self, epoch: int, group: int) -> np.ndarray:
        return sampling.batch_indices(self._split.n_samples, self._rank, self._world_size, epoch, group,
                                      self._cfg.train.seed, self._cfg.data.batch_size, self._shuffle)

    def _cached_images(self, epoch: int) -> Callable:
        scale = self._cfg.model.scale

        def images(group: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
            pairs = [self._cache.pair(int(i), scale) for i in self._group_indices(epoch, group)]
            return ([np.ascontiguousarray(hr)[:, :, None] for hr, _ in pairs],
                    [lr[:, :, None] for _, lr in pairs])
        return images

    def _build(self, epoch: int) -> Pipeline:
        data, seed = self._cfg.data, self._cfg.train.seed
        settings = dict(patch_px=data.patch_px, scale=self._cfg.model.scale, device=self._op_device,
                        patches_per_image=data.patches_per_image, batch_size=data.batch_size,
                        num_threads=max(1, data.workers), device_id=self._device_id,
                        seed=sampling.pipeline_seed(seed, self._rank, epoch))
        if self._cache is not None:
            source = _augment_source(seed, self._rank, epoch, data.batch_size, data.patches_per_image,
                                     self._cached_images(epoch))
            pipe = _cached_train_pipeline(source, **settings)
        else:
            source = _augment_source(seed, self._rank, epoch, data.batch_size, data.patches_per_image)
            pipe = _train_pipeline(self._split, sampling.rank_chunk(self._rank, self._world_size, epoch),
                                   self._world_size, self._shuffle, source, **settings)
        pipe.build()
        return pipe

    def _run_group(self, epoch: int, group: int, skip: int = 0) -> None:
        """Run the pipeline once: the group's patches, mixed (``sampling.group_patch_order``) and
        queued as batches, the first ``skip`` of them dropped."""
        outputs = self._pipe.run()
        k, size = self._cfg.data.patches_per_image, self._cfg.data.batch_size
        if self._cache is None:
            *outputs, source_info = outputs
            image_keys = _keys(source_info)
        else:
            image_keys = [self._cache.key(int(i)) for i in self._group_indices(epoch, group)]
        # branch i, sample j -> patch j * k + i, the numbering of sampling.group_augments
        lr_all = torch.stack([_to_torch(batch, self._device) for batch in outputs[:k]], dim=1).flatten(0, 1)
        hr_all = torch.stack([_to_torch(batch, self._device) for batch in outputs[k:]], dim=1).flatten(0, 1)
        order = sampling.group_patch_order(self._cfg.train.seed, self._rank, epoch, group, size, k,
                                           self._shuffle)
        for start in range(skip * size, len(order), size):
            slots = order[start:start + size]
            index = torch.from_numpy(slots).to(lr_all.device)
            self._pending.append((lr_all[index], hr_all[index], [image_keys[p // k] for p in slots]))

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``(lr_batch, hr_batch)``; a new epoch's pipeline is built when one ends."""
        epoch, k = self._position.epoch, self._cfg.data.patches_per_image
        group, skip = divmod(self._position.batch, k)
        if self._pipe is None:
            self._pipe = self._build(epoch)
            for _ in range(group):  # resume: replay the consumed groups of the epoch
                self._pipe.run()
            self._run_group(epoch, group, skip)
        elif not self._pending:
            self._run_group(epoch, group)
        lr_batch, hr_batch, self.last_keys = self._pending.popleft()
        if self._position.advance():
            self._pipe = None  # the next epoch reads other chunks: a new pipeline
        return lr_batch, hr_batch

    def state_dict(self) -> dict:
        """Position of the next batch, with what it depends on."""
        return self._position.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state``'s position; the plan must be the one that wrote it."""
        self._position.load_state_dict(state)
        self.close()

    def close(self) -> None:
        self._pipe = None
        self._pending.clear()


class DaliValLoader:
    """Validation batches of this rank: ``sampling.val_indices`` of the val split, no augmentation.

    Whole images come one per batch (their sizes differ); centre crops come in batches of
    ``data.batch_size``. Uncapped, the reader reads DALI's shard ``rank``; with
    ``data.val_max_images`` below the split size (or a split smaller than the world) every rank
    reads the split from its start and
    skips to its part (at most ``val_max_images`` wasted decodes), so the evaluated images do not
    depend on the world size. A fresh pipeline per pass keeps every pass identical.
    """

    def __init__(self, cfg: Config, rank: int, world_size: int, device: torch.device,
                 split: SplitShards | None = None):
        self._cfg = cfg
        self._device = device
        self._op_device, self._device_id = _dali_device(cfg, device)
        self._split = split if split is not None else load_split(cfg.data.shards, "val")
        indices = sampling.val_indices(self._split.n_samples, rank, world_size,
                                       cfg.data.val_max_images)
        self._count = len(indices)
        # DALI refuses more shards than samples, so a split smaller than the world is read like
        # a capped one: from its start, skipping to this rank's part (possibly empty).
        from_start = (0 < cfg.data.val_max_images < self._split.n_samples
                      or self._split.n_samples < world_size)
        self._shard_id, self._num_shards = (0, 1) if from_start else (rank, world_size)
        self._skip = int(indices[0]) if from_start and self._count else 0
        self._batch_size = cfg.data.batch_size if cfg.data.val_crop_px else 1
        self.keys: list[str] = []  # keys of the last pass, in order

    def __len__(self) -> int:
        return -(-self._count // self._batch_size)

    def _samples(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        """This rank's (lr, hr, key) one sample at a time, from a fresh pipeline."""
        if self._count == 0:
            return
        pipe = _val_pipeline(self._split, self._shard_id, self._num_shards,
                             self._cfg.data.val_crop_px, self._cfg.model.scale, self._op_device,
                             batch_size=self._batch_size,
                             num_threads=max(1, self._cfg.data.workers), device_id=self._device_id,
                             seed=0)
        pipe.build()
        position, end = 0, self._skip + self._count
        while position < end:
            lr, hr, source_info = pipe.run()
            keys = _keys(source_info)
            lr_batch, hr_batch = _to_torch(lr, self._device), _to_torch(hr, self._device)
            for i, key in enumerate(keys):  # the last batch may wrap into the next pass
                if self._skip <= position < end:
                    yield lr_batch[i:i + 1], hr_batch[i:i + 1], key
                position += 1

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.keys = []
        lr_parts, hr_parts = [], []
        for lr, hr, key in self._samples():
            self.keys.append(key)
            lr_parts.append(lr)
            hr_parts.append(hr)
            if len(lr_parts) == self._batch_size:
                yield torch.cat(lr_parts), torch.cat(hr_parts)
                lr_parts, hr_parts = [], []
        if lr_parts:
            yield torch.cat(lr_parts), torch.cat(hr_parts)
