"""Tiled inference with overlap and linear blending, streaming finished output rows.

Images too large for one forward pass are cut into tiles of ``tile_px`` LR pixels (cores), each
run with ``overlap_px`` of context on every side. Neighbouring outputs are cross-faded with linear
ramps ``overlap_px`` wide centred on the seam, so each output pixel is a convex combination of
tiles that all saw at least ``overlap_px / 2`` of context around it; the ramps of two neighbours
sum to one, so no weight buffer or division is needed. Rows are handed to ``emit_rows`` as soon
as no later tile can touch them, so memory is bounded by one band of tiles, never the output.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_OVERLAP_PX = 32  # LR px of context per side (and blend width): well past SRResNet's receptive field
RunBatch = Callable[[torch.Tensor], torch.Tensor]  # N x 1 x h x w -> N x 1 x sh x sw
ReadRegion = Callable[[slice, slice], np.ndarray]  # LR float32 [0, 1] of (rows, cols)


@dataclass(frozen=True)
class AxisTile:
    """One tile along one axis: its core (owned pixels) and extent (core plus context), LR px."""

    core: tuple[int, int]
    extent: tuple[int, int]


def axis_tiles(length: int, tile_px: int, overlap_px: int) -> list[AxisTile]:
    """Tiles covering ``[0, length)``; a last core shorter than the overlap joins its neighbour."""
    if tile_px < max(overlap_px, 1):
        raise ValueError(f"tile size {tile_px} px must be at least the overlap {overlap_px} px")
    starts = list(range(0, length, tile_px))
    if len(starts) > 1 and length - starts[-1] < max(overlap_px, 1):
        starts.pop()
    bounds = starts + [length]
    return [AxisTile((a, b), (max(0, a - overlap_px), min(length, b + overlap_px)))
            for a, b in zip(bounds[:-1], bounds[1:])]


def axis_weights(tile: AxisTile, length: int, overlap_px: int, scale: int) -> np.ndarray:
    """Blend weight of each output pixel of the tile's extent (float32, ``scale`` per LR px)."""
    start, stop = tile.extent
    centres = (np.arange(scale * start, scale * stop, dtype=np.float64) + 0.5) / scale
    core_start, core_stop = tile.core
    if overlap_px == 0:
        return ((centres >= core_start) & (centres < core_stop)).astype(np.float32)
    half = overlap_px / 2.0
    weights = np.ones_like(centres)
    if core_start > 0:
        weights *= np.clip((centres - (core_start - half)) / overlap_px, 0.0, 1.0)
    if core_stop < length:
        weights *= np.clip(((core_stop + half) - centres) / overlap_px, 0.0, 1.0)
    return weights.astype(np.float32)


def _nonzero_span(weights: np.ndarray) -> tuple[int, int]:
    nonzero = np.flatnonzero(weights)
    return int(nonzero[0]), int(nonzero[-1]) + 1


def upscale_tiled(read_region: ReadRegion, height: int, width: int, scale: int, run_batch: RunBatch,
                  emit_rows: Callable[[np.ndarray], None], tile_px: int, overlap_px: int,
                  batch_size: int = 4, on_tile: Callable[[], None] | None = None) -> None:
    """Upscales an ``height x width`` LR image tile by tile; output rows go to ``emit_rows`` in order.

    ``emit_rows`` receives float32 arrays ``k x (scale*width)``, unclamped blend of the clamped
    tile outputs; together they hold all ``scale*height`` rows exactly once. The array is a view
    of a buffer reused afterwards: copy what you keep. Memory: one buffer of about
    ``scale * (tile_px + 2 * overlap_px)`` output rows, whatever the image height.
    """
    rows, cols = axis_tiles(height, tile_px, overlap_px), axis_tiles(width, tile_px, overlap_px)
    col_weights = [axis_weights(c, width, overlap_px, scale) for c in cols]
    row_weights = [axis_weights(r, height, overlap_px, scale) for r in rows]
    row_spans = [_nonzero_span(w) for w in row_weights]
    # a tile row touches at most (its nonzero span) rows beyond the first row not yet emitted,
    # so one fixed buffer of that height serves the whole image
    band = np.zeros((max(hi - lo for lo, hi in row_spans), scale * width), np.float32)
    band_start = 0  # output row held in band[0]
    for row_index, row in enumerate(rows):
        (row_lo, row_hi), out_top = row_spans[row_index], scale * row.extent[0]
        by_shape: dict[int, list[int]] = {}
        for col_index, col in enumerate(cols):
            by_shape.setdefault(col.extent[1] - col.extent[0], []).append(col_index)
        for indices in by_shape.values():
            for chunk_start in range(0, len(indices), batch_size):
                chunk = indices[chunk_start:chunk_start + batch_size]
                lr = np.stack([read_region(slice(*row.extent), slice(*cols[i].extent)) for i in chunk])
                sr = run_batch(torch.from_numpy(lr[:, None])).float().cpu().numpy()[:, 0]
                for tile_sr, col_index in zip(sr, chunk):
                    col_lo, col_hi = _nonzero_span(col_weights[col_index])
                    weight = row_weights[row_index][row_lo:row_hi, None] * col_weights[col_index][None, col_lo:col_hi]
                    left = scale * cols[col_index].extent[0]
                    top = out_top + row_lo - band_start
                    band[top:top + row_hi - row_lo, left + col_lo:left + col_hi] += \
                        tile_sr[row_lo:row_hi, col_lo:col_hi] * weight
                    if on_tile is not None:
                        on_tile()
        if row_index + 1 < len(rows):
            final_stop = scale * rows[row_index + 1].extent[0] + row_spans[row_index + 1][0]
        else:
            final_stop = scale * height
        ready = final_stop - band_start
        if ready > 0:
            emit_rows(band[:ready])
            kept = out_top + row_hi - final_stop  # rows already touched that later tiles add to
            band[:max(kept, 0)] = band[ready:ready + max(kept, 0)].copy()
            band[max(kept, 0):] = 0.0
            band_start = final_stop


def tile_count(height: int, width: int, tile_px: int, overlap_px: int) -> int:
    """How many tiles `upscale_tiled` runs for an image (for progress bars)."""
    return len(axis_tiles(height, tile_px, overlap_px)) * len(axis_tiles(width, tile_px, overlap_px))


def upscale_image(run_batch: RunBatch, lr: np.ndarray, scale: int, tile_px: int,
                  overlap_px: int = DEFAULT_OVERLAP_PX, batch_size: int = 4) -> np.ndarray:
    """The SR of one whole ``h x w`` float LR image: float32 ``scale*h x scale*w`` in [0, 1], in memory.

    One forward pass when the image fits in a tile (or ``tile_px`` is 0), else `upscale_tiled`.
    `cxr-sr upscale`, the app and the quality bench all go through here, so that one image gets
    the same SR whichever of them made it.
    """
    height, width = lr.shape
    if tile_px == 0 or (height <= tile_px and width <= tile_px):
        batch = torch.from_numpy(np.ascontiguousarray(lr, np.float32))[None, None]
        return run_batch(batch).float().cpu().numpy()[0, 0]
    sr = np.empty((scale * height, scale * width), np.float32)
    filled = 0

    def fill(rows: np.ndarray) -> None:
        nonlocal filled
        sr[filled:filled + rows.shape[0]] = rows
        filled += rows.shape[0]

    upscale_tiled(lambda r, c: lr[r, c], height, width, scale, run_batch, fill,
                  tile_px=tile_px, overlap_px=overlap_px, batch_size=batch_size)
    # a convex blend of clamped tiles: clipping only removes float rounding
    return np.clip(sr, 0.0, 1.0, out=sr)
