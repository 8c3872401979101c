// See image_io.h. No third-party image code: PGM and raw by hand, PNG through the system libpng.
#include "image_io.h"

#include <cctype>
#include <fstream>
#include <stdexcept>
#include <vector>

#ifdef CXR_SR_HAVE_PNG
#include <png.h>
#endif

namespace cxr_sr {
namespace {

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::runtime_error io_error(const std::string& path, const std::string& what) {
  return std::runtime_error(path + ": " + what);
}

// Integer samples (8 or 16 bit, already in host order) -> float tensor in [0, 1].
torch::Tensor to_unit_float(const std::vector<uint16_t>& samples, int64_t height, int64_t width,
                            int bit_depth) {
  auto pixels = torch::empty({height, width}, torch::kFloat32);
  float* out = pixels.data_ptr<float>();
  const float max_value = static_cast<float>((1 << bit_depth) - 1);
  for (size_t i = 0; i < samples.size(); ++i) out[i] = static_cast<float>(samples[i]) / max_value;
  return pixels;
}

// Float tensor in [0, 1] -> rounded integer samples at `bit_depth`.
std::vector<uint16_t> quantise(const torch::Tensor& pixels, int bit_depth) {
  const float max_value = static_cast<float>((1 << bit_depth) - 1);
  auto q = torch::round(pixels.to(torch::kCPU, torch::kFloat32).clamp(0, 1) * max_value)
               .to(torch::kInt32).contiguous();
  std::vector<uint16_t> out(q.numel());
  const int32_t* data = q.data_ptr<int32_t>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint16_t>(data[i]);
  return out;
}

// ---- PGM (P5) ----
int64_t read_pgm_number(std::istream& in) {
  int c = in.get();
  while (c != EOF && (std::isspace(c) || c == '#')) {
    if (c == '#') while (c != EOF && c != '\n') c = in.get();
    c = in.get();
  }
  int64_t value = 0;
  bool any = false;
  while (c != EOF && std::isdigit(c)) {
    value = value * 10 + (c - '0');
    any = true;
    c = in.get();
  }
  if (!any) throw std::runtime_error("malformed PGM header");
  return value;  // the single whitespace after the number has been consumed
}

GrayImage read_pgm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open");
  char magic[2] = {0, 0};
  in.read(magic, 2);
  if (magic[0] != 'P' || magic[1] != '5') throw io_error(path, "not a binary PGM (P5)");
  const int64_t width = read_pgm_number(in), height = read_pgm_number(in);
  const int64_t max_value = read_pgm_number(in);
  if (max_value != 255 && max_value != 65535)
    throw io_error(path, "PGM maxval must be 255 or 65535");
  const int bit_depth = max_value == 255 ? 8 : 16;
  const int64_t count = width * height;
  std::vector<unsigned char> bytes(count * (bit_depth / 8));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (in.gcount() != static_cast<std::streamsize>(bytes.size())) throw io_error(path, "truncated");
  std::vector<uint16_t> samples(count);
  for (int64_t i = 0; i < count; ++i)  // PGM is big-endian
    samples[i] = bit_depth == 8 ? bytes[i] : static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  return {to_unit_float(samples, height, width, bit_depth), bit_depth};
}

void write_pgm(const std::string& path, const torch::Tensor& pixels, int bit_depth) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw io_error(path, "cannot write");
  out << "P5\n" << pixels.size(1) << " " << pixels.size(0) << "\n" << ((1 << bit_depth) - 1) << "\n";
  for (uint16_t v : quantise(pixels, bit_depth)) {
    if (bit_depth == 16) out.put(static_cast<char>(v >> 8));
    out.put(static_cast<char>(v & 0xff));
  }
}

// ---- raw float32 ----
GrayImage read_raw(const std::string& path, int64_t height, int64_t width) {
  if (height <= 0 || width <= 0) throw io_error(path, "raw input needs --size HxW");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw io_error(path, "cannot open");
  auto pixels = torch::empty({height, width}, torch::kFloat32);
  const auto bytes = static_cast<std::streamsize>(pixels.numel() * sizeof(float));
  in.read(reinterpret_cast<char*>(pixels.data_ptr<float>()), bytes);
  if (in.gcount() != bytes) throw io_error(path, "shorter than --size says");
  return {pixels, 32};
}

void write_raw(const std::string& path, const torch::Tensor& pixels) {
  auto cpu = pixels.to(torch::kCPU, torch::kFloat32).contiguous();
  std::ofstream out(path, std::ios::binary);
  if (!out) throw io_error(path, "cannot write");
  out.write(reinterpret_cast<const char*>(cpu.data_ptr<float>()),
            static_cast<std::streamsize>(cpu.numel() * sizeof(float)));
}

#ifdef CXR_SR_HAVE_PNG
// ---- PNG (libpng) ----
struct PngFile {
  FILE* file;
  explicit PngFile(const std::string& path, const char* mode) : file(std::fopen(path.c_str(), mode)) {}
  ~PngFile() { if (file) std::fclose(file); }
};

GrayImage read_png(const std::string& path) {
  PngFile f(path, "rb");
  if (!f.file) throw io_error(path, "cannot open");
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw io_error(path, "not a readable PNG");
  }
  png_init_io(png, f.file);
  png_read_info(png, info);
  const int color_type = png_get_color_type(png, info);
  png_set_expand(png);  // palette / low-bit gray -> 8 bit
  png_set_strip_alpha(png);
  // ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B), as Pillow's convert("L") in the Python reader;
  // libpng's default (-1, -1) would be Rec.709, a different gray for the same colour file
  if (color_type & PNG_COLOR_MASK_COLOR) png_set_rgb_to_gray_fixed(png, 1, 29900, 58700);
  png_read_update_info(png, info);
  const int64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
  const int bit_depth = png_get_bit_depth(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  std::vector<unsigned char> bytes(row_bytes * height);
  std::vector<png_bytep> rows(height);
  for (int64_t y = 0; y < height; ++y) rows[y] = bytes.data() + y * row_bytes;
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  std::vector<uint16_t> samples(width * height);
  for (int64_t i = 0; i < width * height; ++i)  // PNG is big-endian
    samples[i] = bit_depth == 8 ? bytes[i] : static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  return {to_unit_float(samples, height, width, bit_depth), bit_depth};
}

void write_png(const std::string& path, const torch::Tensor& pixels, int bit_depth) {
  const int64_t height = pixels.size(0), width = pixels.size(1);
  const auto samples = quantise(pixels, bit_depth);
  std::vector<unsigned char> bytes(samples.size() * (bit_depth / 8));
  for (size_t i = 0; i < samples.size(); ++i) {
    if (bit_depth == 8) {
      bytes[i] = static_cast<unsigned char>(samples[i]);
    } else {
      bytes[2 * i] = static_cast<unsigned char>(samples[i] >> 8);
      bytes[2 * i + 1] = static_cast<unsigned char>(samples[i] & 0xff);
    }
  }
  PngFile f(path, "wb");
  if (!f.file) throw io_error(path, "cannot write");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw io_error(path, "PNG write failed");
  }
  png_init_io(png, f.file);
  png_set_IHDR(png, info, width, height, bit_depth, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t row_bytes = width * (bit_depth / 8);
  for (int64_t y = 0; y < height; ++y) png_write_row(png, bytes.data() + y * row_bytes);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
}
#endif

}  // namespace

GrayImage read_image(const std::string& path, int64_t raw_height, int64_t raw_width) {
  if (ends_with(path, ".pgm")) return read_pgm(path);
  if (ends_with(path, ".f32")) return read_raw(path, raw_height, raw_width);
#ifdef CXR_SR_HAVE_PNG
  if (ends_with(path, ".png")) return read_png(path);
#endif
  throw io_error(path, "unsupported format (use .pgm, .f32 or, with libpng, .png)");
}

void write_image(const std::string& path, const torch::Tensor& pixels, int bit_depth) {
  if (ends_with(path, ".f32")) return write_raw(path, pixels);
  const int depth = bit_depth == 16 ? 16 : 8;
  if (ends_with(path, ".pgm")) return write_pgm(path, pixels, depth);
#ifdef CXR_SR_HAVE_PNG
  if (ends_with(path, ".png")) return write_png(path, pixels, depth);
#endif
  throw io_error(path, "unsupported output format (use .pgm, .f32 or, with libpng, .png)");
}

}  // namespace cxr_sr
