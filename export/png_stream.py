"""A PNG writer fed row by row, for outputs larger than memory (an 80,000 px square is 6.4 GB).

Pillow needs the whole image in memory before it can encode; PNG itself is a zlib stream of
filtered rows, so writing it incrementally needs only the standard library.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from data_prep.atomic import tmp_path_for

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDAT_BYTES = 1 << 20


class PngRowWriter:
    """Grayscale 8/16-bit PNG written atomically from successive row blocks (filter 0 rows)."""

    def __init__(self, path: Path, width: int, height: int, bit_depth: int, level: int = 3):
        if bit_depth not in (8, 16):
            raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
        self.path, self.width, self.height, self.bit_depth = Path(path), width, height, bit_depth
        self._tmp = tmp_path_for(self.path)
        self._file = self._tmp.open("wb")
        self._compressor = zlib.compressobj(level)
        self._pending = bytearray()
        self._rows_written = 0
        self._file.write(PNG_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0))

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._file.write(struct.pack(">I", len(data)) + kind + data)
        self._file.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def write_rows(self, rows: np.ndarray) -> None:
        """Appends a ``k x width`` uint8/uint16 block."""
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"rows of shape {rows.shape}; expected k x {self.width}")
        dtype = np.dtype(">u2") if self.bit_depth == 16 else np.dtype("u1")
        raw = np.ascontiguousarray(rows, dtype=dtype).view(np.uint8).reshape(rows.shape[0], -1)
        filtered = np.concatenate([np.zeros((rows.shape[0], 1), np.uint8), raw], axis=1)
        self._pending += self._compressor.compress(filtered.tobytes())
        self._rows_written += rows.shape[0]
        while len(self._pending) >= IDAT_BYTES:
            self._chunk(b"IDAT", bytes(self._pending[:IDAT_BYTES]))
            del self._pending[:IDAT_BYTES]

    def close(self) -> None:
        """Finishes the file; raises if the rows written do not match the declared height."""
        if self._rows_written != self.height:
            self.abort()
            raise ValueError(f"{self.path}: {self._rows_written} rows written, {self.height} declared")
        self._pending += self._compressor.flush()
        if self._pending:
            self._chunk(b"IDAT", bytes(self._pending))
        self._chunk(b"IEND", b"")
        self._file.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        """Closes and removes the partial file."""
        self._file.close()
        self._tmp.unlink(missing_ok=True)
