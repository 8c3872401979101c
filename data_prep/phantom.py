"""Procedural chest radiograph phantoms: one 2-D numpy image from a set of anatomy parameters.

The picture follows radiographic convention (bone and soft tissue bright, air dark) and is built
from the structures that give a real chest film its edges: lung fields with a domed diaphragm,
the heart shadow, a segmented spine, posterior ribs with brighter cortical margins, clavicles,
branching vessel-like lung texture and quantum noise. Everything is vectorised over the pixel
grid, so a 1024 px image takes a fraction of a second.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Anatomy:
    """Per-patient shape parameters (follow-up images of a patient reuse them, slightly jittered)."""

    torso_w: float
    torso_h: float
    lung_w: float
    lung_top: float
    diaphragm_y: float
    heart_w: float
    heart_shift: float
    rib_count: int
    rib_spacing: float
    rib_curve: float
    clavicle_y: float
    density: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Anatomy":
        """Draw a plausible adult anatomy."""
        return cls(
            torso_w=rng.uniform(0.78, 0.92), torso_h=rng.uniform(1.05, 1.25),
            lung_w=rng.uniform(0.30, 0.38), lung_top=rng.uniform(-0.72, -0.62),
            diaphragm_y=rng.uniform(0.42, 0.58), heart_w=rng.uniform(0.24, 0.33),
            heart_shift=rng.uniform(0.04, 0.12), rib_count=int(rng.integers(8, 10)),
            rib_spacing=rng.uniform(0.095, 0.11), rib_curve=rng.uniform(0.35, 0.6),
            clavicle_y=rng.uniform(-0.72, -0.62), density=rng.uniform(0.85, 1.15),
        )

    def jittered(self, rng: np.random.Generator, amount: float = 0.02) -> "Anatomy":
        """The same patient on another day: positioning and inspiration differ a little."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name, value in values.items():
            if isinstance(value, float):
                values[name] = value * (1.0 + rng.uniform(-amount, amount))
        return Anatomy(**values)


def _smoothstep(edge_distance: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (negative distance), 0 outside, with a linear edge `softness` wide (cheaper than exp)."""
    return np.clip(0.5 - edge_distance * (1.0 / softness), 0.0, 1.0)


def _ridge(distance: np.ndarray, half_width: float) -> np.ndarray:
    """A thin bright line at distance 0 falling to nothing at `half_width` (a bone margin)."""
    return np.clip(1.0 - np.abs(distance) * (1.0 / half_width), 0.0, 1.0)


def _ellipse_distance(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an ellipse boundary (negative inside)."""
    return (np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0) * min(rx, ry)


def _fractal_noise(rng: np.random.Generator, size_px: int, octaves: int, base_cells: int) -> np.ndarray:
    """Sum of bicubically upsampled random grids, each octave twice as fine and half as strong."""
    total = np.zeros((size_px, size_px), np.float32)
    amplitude, cells = 1.0, base_cells
    for _ in range(octaves):
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        up = Image.fromarray(grid).resize((size_px, size_px), Image.BICUBIC)
        total += amplitude * np.asarray(up, np.float32)
        amplitude *= 0.5
        cells = min(cells * 2, size_px)
    return total


def _lung_fields(x: np.ndarray, y: np.ndarray, a: Anatomy, soft: float) -> np.ndarray:
    """Both lungs: ellipses cut below by a domed diaphragm and medially by the mediastinum."""
    lungs = np.zeros_like(x)
    for side in (-1.0, 1.0):
        cx = side * (a.lung_w + 0.05)
        cy = (a.lung_top + a.diaphragm_y) / 2
        ry = (a.diaphragm_y - a.lung_top) / 2 + 0.08
        field = _smoothstep(_ellipse_distance(x, y, cx, cy, a.lung_w, ry), soft)
        dome = a.diaphragm_y - 0.18 * np.exp(-((x - cx) / (a.lung_w * 0.8)) ** 2)
        field *= _smoothstep(y - dome, soft)
        field *= _smoothstep(0.07 - side * x, soft)
        lungs = np.maximum(lungs, field)
    return lungs


def _spine(x: np.ndarray, y: np.ndarray, soft: float) -> np.ndarray:
    """A vertical band with vertebral bodies (bright blocks) and darker disc spaces."""
    band = _smoothstep(np.abs(x) - 0.055, soft)
    vertebrae = 0.75 + 0.25 * np.cos(y * np.pi / 0.045) ** 8
    return band * vertebrae


def _ribs(x: np.ndarray, y: np.ndarray, a: Anatomy, size_px: int) -> np.ndarray:
    """Posterior ribs: arcs leaving the spine, curving down, with bright cortical margins.

    All ribs of a side come from one pass: the distance to the nearest of the evenly spaced arcs.
    """
    width = 0.026
    edge = 2.5 / size_px + 0.002
    first_top = a.lung_top + 0.03
    ribs = np.zeros_like(x)
    for side in (-1.0, 1.0):
        lateral = side * x
        bend = a.rib_curve * np.maximum(lateral - 0.05, 0.0) ** 1.6 - 0.05 * lateral
        offset = y - bend - first_top
        index = np.floor(offset / a.rib_spacing + 0.5)
        d = np.abs(offset - index * a.rib_spacing)
        present = (index >= 0) & (index < a.rib_count)
        body = _smoothstep(d - width, edge)
        cortex = _ridge(d - width, 1.5 * edge)
        reach = _smoothstep(lateral - (a.torso_w - 0.06), 0.04) * _smoothstep(0.045 - lateral, 0.02)
        ribs = np.maximum(ribs, np.where(present, (0.55 * body + 0.6 * cortex) * reach, 0.0))
    return ribs


def _clavicles(x: np.ndarray, y: np.ndarray, a: Anatomy, size_px: int) -> np.ndarray:
    """Two S-shaped bars from the sternal notch out to the shoulders."""
    edge = 2.0 / size_px + 0.002
    arc_y = a.clavicle_y + 0.09 * np.sin(np.abs(x) * 3.2) - 0.12 * np.abs(x)
    d = np.abs(y - arc_y)
    span = _smoothstep(np.abs(x) - 0.62, 0.02) * _smoothstep(0.06 - np.abs(x), 0.01)
    return (_smoothstep(d - 0.03, edge) * 0.7 + _ridge(d - 0.03, 1.5 * edge) * 0.5) * span


def render_phantom(anatomy: Anatomy, rng: np.random.Generator, size_px: int) -> np.ndarray:
    """Render one `size_px` square radiograph as uint8 (0 = air)."""
    coords = np.linspace(-1.0, 1.0, size_px, dtype=np.float32)
    x, y = np.meshgrid(coords, coords * 1.05)
    soft = 6.0 / size_px + 0.004
    a = anatomy
    body = _smoothstep(_ellipse_distance(x, y - 0.1, 0.0, 0.0, a.torso_w, a.torso_h), 0.12)
    lungs = _lung_fields(x, y, a, soft)
    heart = _smoothstep(_ellipse_distance(x, y, -a.heart_shift, a.diaphragm_y - 0.2,
                                          a.heart_w, a.heart_w * 0.75), soft)
    vessels = 1.0 - np.abs(_fractal_noise(rng, size_px, 5, 16))
    vessels = np.clip(vessels, 0.0, None) ** 4
    mottle = _fractal_noise(rng, size_px, 4, 24)
    radial = np.exp(-(((np.abs(x) - 0.15) / 0.5) ** 2 + ((y - 0.0) / 0.6) ** 2))

    image = 0.62 * body * a.density
    image -= lungs * (0.42 - 0.18 * radial)
    image += lungs * (0.10 * vessels * (0.5 + radial) + 0.015 * mottle)
    image += 0.2 * heart * lungs * body
    image += 0.22 * _spine(x, y, soft) * body
    image += 0.20 * _ribs(x, y, a, size_px) * body
    image += 0.22 * _clavicles(x, y, a, size_px)
    image += 0.012 * rng.standard_normal(image.shape, dtype=np.float32)
    image = np.clip(image, 0.0, 1.0) ** 0.9
    return np.round(image * 255.0).astype(np.uint8)
