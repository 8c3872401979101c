// cxr_sr_upscale: run an exported cxr-sr generator on one image.
//
//   cxr_sr_upscale MODEL INPUT OUTPUT [--size HxW] [--device cpu|cuda]
//
// MODEL is the TorchScript file of `cxr-sr export` (or, when built with AOTInductor support, its
// .pt2 package); INPUT/OUTPUT are .png, .pgm or raw .f32 (see image_io.h). The model follows
// docs/contracts.md §4: N x 1 x h x w float32 in [0, 1] -> N x 1 x sh x sw, clamped.
#include "image_io.h"

#include <torch/script.h>
#include <torch/torch.h>

#ifdef CXR_SR_HAVE_AOTI
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#endif

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

struct Options {
  std::string model, input, output, device = "cpu";
  int64_t raw_height = 0, raw_width = 0;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "error: " << problem << "\n"
            << "usage: cxr_sr_upscale MODEL INPUT OUTPUT [--size HxW] [--device cpu|cuda]\n";
  std::exit(2);
}

// A --size side: digits only and positive, else usage (std::stoll alone would throw past main's
// error handling on "abc", and accept "12abc" or "-3")
int64_t parse_side(const std::string& text) {
  const bool digits = !text.empty() && text.size() <= 9 &&
                      text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits || std::stoll(text) == 0) usage("--size must be HxW with positive integers, e.g. 256x256");
  return std::stoll(text);
}

Options parse(int argc, char** argv) {
  Options options;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--size" || arg == "--device") && i + 1 >= argc) usage(arg + " needs a value");
    if (arg == "--size") {
      const std::string size = argv[++i];
      const auto x = size.find('x');
      if (x == std::string::npos) usage("--size must be HxW, e.g. 256x256");
      options.raw_height = parse_side(size.substr(0, x));
      options.raw_width = parse_side(size.substr(x + 1));
    } else if (arg == "--device") {
      options.device = argv[++i];
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 3) usage("expected MODEL INPUT OUTPUT");
  options.model = positional[0];
  options.input = positional[1];
  options.output = positional[2];
  return options;
}

bool is_pt2(const std::string& path) {
  return path.size() > 4 && path.compare(path.size() - 4, 4, ".pt2") == 0;
}

// One forward pass of the model at `path` on a 1 x 1 x h x w batch.
torch::Tensor run_model(const Options& options, const torch::Tensor& batch) {
  const torch::Device device(options.device);
  if (is_pt2(options.model)) {
#ifdef CXR_SR_HAVE_AOTI
    torch::inductor::AOTIModelPackageLoader loader(options.model);
    return loader.run({batch.to(device)})[0];
#else
    throw std::runtime_error(options.model + ": built without AOTInductor support");
#endif
  }
  torch::jit::ExtraFilesMap extra_files{{"meta.json", ""}};
  torch::jit::Module module = torch::jit::load(options.model, device, extra_files);
  module.eval();
  if (!extra_files["meta.json"].empty()) std::cerr << "meta.json: " << extra_files["meta.json"] << "\n";
  return module.forward({batch.to(device)}).toTensor();
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  try {
    torch::InferenceMode inference_mode;
    const auto image = cxr_sr::read_image(options.input, options.raw_height, options.raw_width);
    const auto batch = image.pixels.unsqueeze(0).unsqueeze(0);
    const auto output = run_model(options, batch).to(torch::kCPU);
    if (output.dim() != 4 || output.size(0) != 1 || output.size(1) != 1)
      throw std::runtime_error(options.model + ": output is not 1 x 1 x H x W");
    cxr_sr::write_image(options.output, output[0][0], image.bit_depth);
    std::cerr << options.input << " (" << batch.size(2) << "x" << batch.size(3) << ") -> "
              << options.output << " (" << output.size(2) << "x" << output.size(3) << ")\n";
  } catch (const std::exception& error) {
    // c10::Error carries a backtrace after its message (which may begin with a newline): keep
    // the first line that says something
    std::string message = error.what();
    const auto start = message.find_first_not_of(" \n\r\t");
    message = start == std::string::npos ? "unknown error" : message.substr(start);
    std::cerr << "error: " << message.substr(0, message.find('\n')) << "\n";
    return 1;
  }
  return 0;
}
