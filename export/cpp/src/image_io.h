// Gray image files <-> float tensors in [0, 1] for the cxr-sr C++ example.
//
// Formats, chosen by extension: .pgm (binary P5, 8 or 16 bit), .png (8/16-bit gray, RGB or RGBA
// reduced to gray; only when built with libpng) and .f32 (raw float32, native byte order, size
// given on the command line; written back unquantised so that outputs can be compared exactly).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace cxr_sr {

struct GrayImage {
  torch::Tensor pixels;  // float32, H x W, values in [0, 1]
  int bit_depth = 8;     // 8 or 16 for PGM/PNG, 32 for raw float
};

// Reads `path`; `raw_height`/`raw_width` are used only for .f32 files.
GrayImage read_image(const std::string& path, int64_t raw_height, int64_t raw_width);

// Writes an H x W float tensor in [0, 1]: quantised as round(v * (2^bit_depth - 1)) for
// PGM/PNG (the rounding Python's `upscale` uses), raw float32 for .f32.
void write_image(const std::string& path, const torch::Tensor& pixels, int bit_depth);

}  // namespace cxr_sr
