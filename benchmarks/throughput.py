"""`cxr-sr bench throughput`: the generator against bicubic, 256 -> 1024 by default.

For each method (TorchScript, eager, the .pt2 package, torch bicubic on the same device, PIL
bicubic, OpenCV bicubic if installed) and each batch size: warm-up calls, then the median and
95th percentile of repeated timed calls (CUDA events on a GPU), images/s, output megapixels/s and
peak GPU memory. The best batch is the one with most images/s; the ratios model/bicubic compare
methods measured in the same run, which is the only fair comparison.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_LR_PX = 256
BICUBIC_METHODS = ("bicubic_torch", "bicubic_pil", "bicubic_opencv")


@dataclass
class Measurement:
    """One method at one batch size."""

    method: str
    batch: int
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    images_per_s: float | None = None
    megapixels_per_s: float | None = None  # output pixels
    peak_memory_mb: float | None = None  # GPU only
    error: str | None = None


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("throughput", help="images/s, latency and memory of the model vs bicubic",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="TorchScript file of `cxr-sr export` "
                        "(default: the default generator with random weights: speed does not depend on them)")
    parser.add_argument("--pt2", type=Path, help="a .pt2 package of the same model, to time as well")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=None,
                        help="model precision (default: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--lr-px", type=int, default=DEFAULT_LR_PX, help="input side, px")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default: 1,8,32,64,128 on GPU, 1,2 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls (default 10 GPU, 3 CPU: TorchScript optimises on its first calls)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 30 GPU, 3 CPU)")
    parser.add_argument("--methods",
                        default="torchscript,torchscript_frozen,eager,pt2,bicubic_torch,bicubic_pil,bicubic_opencv")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="NHWC memory format for the models (auto: on for GPU, where convs want it)")
    parser.add_argument("--features", type=int, help="default generator only: override its width")
    parser.add_argument("--blocks", type=int, help="default generator only: override its depth")
    parser.add_argument("--arch", choices=("srresnet", "compact"), default="srresnet",
                        help="default generator only: its architecture (model.arch)")
    parser.add_argument("--json", type=Path, help="write JSON here instead of stdout")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.set_defaults(run=run)
    return parser


# ---- the methods ----
def _models(args: argparse.Namespace, device, dtype, channels_last: bool = False) -> dict[str, Callable]:
    """name -> callable(batch on device) for the model methods that were asked for and exist."""
    import torch

    from dist_train.config import ModelConfig
    from dist_train.models import build_generator
    from export.torchscript import freeze_for_inference, load_torchscript, script_generator
    from export.wrapper import ClampedGenerator

    if args.model is not None:
        scripted, meta = load_torchscript(args.model)
        try:  # eager twin: the generator of meta.json's config with the scripted weights
            config = ModelConfig(**meta.get("model_config", {}))
            eager = build_generator(config)
            eager.load_state_dict(scripted.generator.state_dict())
        except (TypeError, ValueError, RuntimeError) as exc:
            print(f"bench throughput: no eager twin for {args.model} ({str(exc).splitlines()[0]})",
                  file=sys.stderr)
            config, eager = ModelConfig(scale=int(meta.get("scale", 4))), None
    else:
        overrides = {k: v for k, v in (("features", args.features), ("blocks", args.blocks)) if v}
        overrides["arch"] = args.arch
        config = ModelConfig(**overrides)
        eager = build_generator(config)
        torch.nn.init.normal_(eager.tail.weight, std=0.01)
        scripted = script_generator(eager, config.scale)
    wanted = args.methods.split(",")
    models: dict[str, Callable] = {}
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if "torchscript" in wanted:
        models["torchscript"] = scripted.to(device, dtype, memory_format=memory_format).eval()
    if "torchscript_frozen" in wanted:
        models["torchscript_frozen"] = freeze_for_inference(scripted.to(device, dtype, memory_format=memory_format))
    if "eager" in wanted and eager is not None:
        models["eager"] = ClampedGenerator(eager, config.scale).to(device, dtype, memory_format=memory_format).eval()
    if "pt2" in wanted and args.pt2 is not None:
        from export.pt2 import load_pt2

        models["pt2"], _ = load_pt2(args.pt2, device)
    return models


def _bicubic(wanted: list[str], scale: int) -> dict[str, tuple[Callable, str]]:
    """name -> (callable(list of uint8 arrays or a tensor), input kind) for the bicubic baselines."""
    import torch.nn.functional as F

    methods: dict[str, tuple[Callable, str]] = {}
    if "bicubic_torch" in wanted:
        methods["bicubic_torch"] = (lambda x: F.interpolate(x, scale_factor=scale, mode="bicubic",
                                                            align_corners=False).clamp_(0, 1), "tensor")
    if "bicubic_pil" in wanted:
        from PIL import Image

        def pil(images):
            return [Image.fromarray(a).resize((a.shape[1] * scale, a.shape[0] * scale), Image.BICUBIC)
                    for a in images]

        methods["bicubic_pil"] = (pil, "uint8")
    if "bicubic_opencv" in wanted:
        try:
            import cv2
        except ImportError:
            pass
        else:
            methods["bicubic_opencv"] = (lambda images: [cv2.resize(a, None, fx=scale, fy=scale,
                                                                    interpolation=cv2.INTER_CUBIC)
                                                         for a in images], "uint8")
    return methods


# ---- timing ----
def _time_calls(call: Callable[[], Any], device, warmup: int, repeats: int) -> list[float]:
    """Seconds per call, after `warmup` untimed calls; CUDA events on a GPU."""
    import torch

    for _ in range(warmup):
        call()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            stop.record()
            stop.synchronize()
            times.append(start.elapsed_time(stop) / 1000.0)
        return times
    for _ in range(repeats):
        start_s = time.perf_counter()
        call()
        times.append(time.perf_counter() - start_s)
    return times


def measure(name: str, call: Callable[[], Any], batch: int, out_pixels: int, device,
            warmup: int, repeats: int) -> Measurement:
    """Times `call` (one batch of `batch` images); OOM and other failures become `error`."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with torch.inference_mode():
            times = _time_calls(call, device, warmup, repeats)
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        return Measurement(name, batch, error=str(exc).strip().splitlines()[0][:200])
    median_s = statistics.median(times)
    p95_s = sorted(times)[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Measurement(name, batch, latency_ms_p50=median_s * 1e3, latency_ms_p95=p95_s * 1e3,
                       images_per_s=batch / median_s, megapixels_per_s=batch * out_pixels / median_s / 1e6,
                       peak_memory_mb=peak)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements, the best batch of each method and the model/bicubic ratios."""
    import numpy as np
    import torch

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    dtype = getattr(torch, args.dtype or ("bfloat16" if on_gpu else "float32"))
    batches = [int(b) for b in (args.batch_sizes or ("1,8,32,64,128" if on_gpu else "1,2")).split(",")]
    warmup = args.warmup if args.warmup is not None else (10 if on_gpu else 3)
    repeats = args.repeats if args.repeats is not None else (30 if on_gpu else 3)
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and on_gpu)
    if on_gpu:  # scoped to this benchmark run: pick the fastest conv algorithms for these shapes
        torch.backends.cudnn.benchmark = True
    models = _models(args, device, dtype, channels_last)
    scale = 4
    wanted = args.methods.split(",")
    baselines = _bicubic(wanted, scale)
    out_pixels = (scale * args.lr_px) ** 2
    rng = np.random.default_rng(0)
    results: list[Measurement] = []
    for batch in batches:
        lr = torch.from_numpy(rng.random((batch, 1, args.lr_px, args.lr_px), dtype=np.float32))
        lr_device = lr.to(device)
        lr_uint8 = [np.rint(a[0] * 255).astype(np.uint8) for a in lr.numpy()]
        for name, model in models.items():
            # the .pt2 package is compiled for float32 inputs; the others run in `dtype`
            x = lr_device if name == "pt2" else lr_device.to(dtype)
            if channels_last and name != "pt2":
                x = x.contiguous(memory_format=torch.channels_last)
            results.append(measure(name, lambda m=model, x=x: m(x), batch, out_pixels, device, warmup, repeats))
        for name, (call, kind) in baselines.items():
            if kind == "tensor":
                x = lr_device.to(dtype)
                results.append(measure(name, lambda c=call, x=x: c(x), batch, out_pixels, device, warmup, repeats))
            else:  # PIL and OpenCV run on the CPU whatever the device
                results.append(measure(name, lambda c=call: c(lr_uint8), batch, out_pixels,
                                       torch.device("cpu"), warmup, repeats))
    best: dict[str, Measurement] = {}
    for m in results:
        if m.images_per_s is not None and (m.method not in best or m.images_per_s > best[m.method].images_per_s):
            best[m.method] = m
    ratios = {f"{model}/{baseline}": best[model].images_per_s / best[baseline].images_per_s
              for model in models if model in best for baseline in baselines if baseline in best}
    return {"settings": {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "lr_px": args.lr_px,
                         "channels_last": channels_last,
                         "out_px": scale * args.lr_px, "batch_sizes": batches, "warmup": warmup,
                         "repeats": repeats, "model": str(args.model) if args.model else "default generator"},
            "results": [asdict(m) for m in results],
            "best_batch": {name: asdict(m) for name, m in best.items()},
            "ratios_model_over_bicubic_images_per_s": ratios}


def table(document: dict[str, Any]) -> str:
    from benchmarks.bench_report import markdown_table

    rows = []
    for m in document["results"]:
        best = document["best_batch"].get(m["method"], {})
        mark = " (best)" if best.get("batch") == m["batch"] else ""
        rows.append([m["method"] + mark, m["batch"], m["images_per_s"], m["megapixels_per_s"],
                     m["latency_ms_p50"], m["latency_ms_p95"], m["peak_memory_mb"], m["error"]])
    text = markdown_table(["method", "batch", "images/s", "MP/s (out)", "p50 ms", "p95 ms", "peak GPU MB", "error"], rows)
    ratios = document["ratios_model_over_bicubic_images_per_s"]
    if ratios:
        text += "\n\n" + markdown_table(["ratio (best batch images/s)", "value"], [[k, v] for k, v in ratios.items()])
    return text


def run(args: argparse.Namespace) -> int:
    from benchmarks.bench_report import emit, header

    document = {"header": header(), **run_benchmark(args)}
    emit(document, table(document), args.json, args.markdown)
    return 0
