"""The TorchScript export: contract of docs/contracts.md §4, parity, warnings, the CLI."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from export.jit_warnings import quiet_jit_deprecation
from export.meta import build_meta
from export.parity import ParityError, check_parity, real_inputs
from export.torchscript import export_torchscript, load_torchscript
from launch.cli import main as cxr_sr
from tests.export_helpers import tiny_generator, write_fake_run


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    generator = tiny_generator()
    path = tmp_path_factory.mktemp("ts") / "generator.pt"
    export_torchscript(generator, build_meta(4, {"features": 8, "blocks": 2}, step=7), path)
    return path, generator


def test_contract_shapes_range_and_meta(exported):
    """Contract §4: N x 1 x h x w -> N x 1 x 4h x 4w, clamped to [0, 1], meta.json carried.

    The generator itself is not clamped, so an input pushing it outside [0, 1] checks that the
    clamp made it into the exported graph.
    """
    path, _ = exported
    module, meta = load_torchscript(path)
    for batch, height, width in ((1, 8, 8), (3, 13, 21)):
        out = module(torch.rand(batch, 1, height, width) * 3 - 1)
        assert out.shape == (batch, 1, 4 * height, 4 * width) and out.dtype == torch.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    assert meta["scale"] == 4 and meta["channels"] == 1 and meta["value_range"] == [0.0, 1.0]
    assert meta["model_config"] == {"features": 8, "blocks": 2} and meta["training_step"] == 7
    assert {"metrics", "package_version", "torch_version"} <= set(meta)


def test_file_carries_no_compiled_copy_of_torch_functions(exported):
    """Scripting ``F.interpolate`` copies its body into the file, and that body changes between
    torch releases: torch 2.14's calls ``_upsample_lanczos2d_aa``, so such a file would not load
    in torch or libtorch 2.11 (the GPU machines'), as happened to the demo's model. The file may
    hold module code (which calls ATen ops by name), never torch's Python functions."""
    import zipfile

    path, _ = exported
    with zipfile.ZipFile(path) as archive:
        code = {name: archive.read(name).decode() for name in archive.namelist() if name.endswith(".py")}
    assert not [name for name in code if "/torch/nn/functional" in name]
    assert not [name for name, text in code.items() if "lanczos" in text]


def test_loads_and_runs_with_torch_alone(exported):
    """The user loads the file with `torch.jit.load` and no project code on the path."""
    path, _ = exported
    script = ("import sys, torch, json\n"
              "assert not any(m.split('.')[0] in ('export', 'dist_train') for m in sys.modules)\n"
              "files = {'meta.json': ''}\n"
              f"m = torch.jit.load({str(path)!r}, _extra_files=files)\n"
              "print(tuple(m(torch.rand(2, 1, 9, 10)).shape), json.loads(files['meta.json'])['scale'])\n")
    result = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True,
                            cwd=path.parent, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(2,", "1,", "36,", "40)", "4"]


def test_parity_with_eager_on_real_images(exported, realxray_dir):
    """Parity below 1e-5 on real radiographs too (not only on noise), alone and batched."""
    from export.image_io import read_image

    path, generator = exported
    module, _ = load_torchscript(path)
    images = [torch.from_numpy(read_image(p).to_unit()) for p in sorted(realxray_dir.glob("*.png"))[:2]]
    report = check_parity(lambda x: generator(x).clamp(0, 1), module, real_inputs(images, 4, crop_px=32))
    assert report.max_abs_diff <= 1e-5 and len(report.rows) == 3


def test_parity_failure_is_reported():
    """A model that differs from eager must fail the check, not pass silently."""
    with pytest.raises(ParityError, match="max abs diff"):
        check_parity(lambda x: x, lambda x: x + 1e-3, [("random", torch.rand(1, 1, 8, 8))])


def test_only_the_jit_deprecation_warning_is_silenced():
    """torch.jit's deprecation warning (a FutureWarning in torch 2.14, a DeprecationWarning in 2.11)
    is hidden; other deprecation warnings in the same block still show."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_jit_deprecation():
            torch.jit.script(torch.nn.Identity())
            warnings.warn("something else is deprecated", FutureWarning)
            warnings.warn("another thing is deprecated", DeprecationWarning)
    messages = [str(w.message) for w in caught]
    assert messages == ["something else is deprecated", "another thing is deprecated"]


def test_export_command_from_a_run(tmp_path, capsys):
    """`cxr-sr export --run DIR --out FILE` reads the checkpoint and writes a matching model."""
    generator = write_fake_run(tmp_path / "run")
    out = tmp_path / "model.pt"
    assert cxr_sr(["export", "--run", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert "parity ok" in capsys.readouterr().out
    module, meta = load_torchscript(out)
    assert meta["training_step"] == 80 and meta["weights"] == "ema" and meta["model_config"]["features"] == 16
    x = torch.rand(2, 1, 16, 12)
    assert torch.allclose(module(x), generator(x).clamp(0, 1), atol=1e-6)


def test_export_command_without_checkpoint_fails_in_one_line(tmp_path, capsys):
    """An empty run folder is a one-line error, not a traceback."""
    (tmp_path / "run").mkdir()
    assert cxr_sr(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "m.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("export_format, name", [("pt2", "model.pt"), ("torchscript", "model.pt2"),
                                                 ("both", "model.pt2")])
def test_export_rejects_an_out_name_the_loader_would_misread(tmp_path, capsys, export_format, name):
    """`--format pt2 --out model.pt` wrote a package that load_exported (which goes by suffix)
    then opened as TorchScript and could not load; now it is a one-line error and no file."""
    write_fake_run(tmp_path / "run")
    out = tmp_path / name
    assert cxr_sr(["export", "--run", str(tmp_path / "run"), "--out", str(out), "--format", export_format]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "*.pt2" in err and not out.exists()


@pytest.mark.parametrize("export_format", ["torchscript", "pt2"])
def test_failed_recheck_of_the_saved_file_leaves_nothing(tmp_path, monkeypatch, export_format):
    """The re-check of the file as saved runs after the temporary file is written; a failure there
    must leave no `*.tmp` (or `*.tmp.pt2`) behind, as the docstring promises nothing is written.
    The .pt2 compile is replaced by a stub writing junk: the cleanup, not AOTInductor, is tested."""
    import export.pt2
    import export.torchscript

    def unloadable(path, device="cpu"):
        raise RuntimeError(f"{path}: corrupt")

    out = tmp_path / ("model.pt2" if export_format == "pt2" else "model.pt")
    generator, meta = tiny_generator(), build_meta(4)
    if export_format == "pt2":
        monkeypatch.setattr(torch._inductor, "aoti_compile_and_package",
                            lambda program, package_path, **_: Path(package_path).write_bytes(b"junk"))
        monkeypatch.setattr(export.pt2, "load_pt2", unloadable)
        with pytest.raises(RuntimeError, match="corrupt"):
            export.pt2.export_pt2(generator, meta, out)
    else:
        monkeypatch.setattr(export.torchscript, "load_torchscript", unloadable)
        with pytest.raises(RuntimeError, match="corrupt"):
            export_torchscript(generator, meta, out)
    assert list(tmp_path.iterdir()) == []


def test_upscale_report_and_outputs_are_written_atomically(tmp_path, monkeypatch):
    """The report and the PNG/DICOM outputs go through one atomic writer: a crash must leave
    neither half a JSON nor a temp file when saving fails."""
    import numpy as np

    from export.dicom_out import write_dicom
    from export.image_io import write_png
    from export.report import ImageResult, write_report

    class Unsaveable:
        def save_as(self, target, **_):
            if isinstance(target, (str, Path)):
                Path(target).write_bytes(b"partial")
            else:
                target.write(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_dicom(tmp_path / "out.dcm", Unsaveable())
    with pytest.raises(OSError):
        write_png(tmp_path / "out.png", np.zeros((8, 8), np.float32))  # Pillow cannot write mode F as PNG
    assert list(tmp_path.iterdir()) == []

    replaced = []
    monkeypatch.setattr("os.replace", lambda src, dst: replaced.append(Path(dst).name))
    for name in ("report.json", "report.csv"):
        write_report(tmp_path / name, [ImageResult(input="a.png", notes=["x"])], {"scale": 4})
    assert replaced == ["report.json", "report.csv"]


@pytest.mark.parametrize("arch", ["srresnet", "compact"])
def test_upscale_loads_the_frozen_form_when_it_matches_the_file(tmp_path, arch):
    """On the CPU `load_exported` runs TorchScript frozen and optimised for inference (the fastest
    CPU form, benchmarks/RESULTS.md), but only because it matches the file as exported: both
    generators, random and real-sized inputs."""
    from export.model_file import load_exported
    from tests.export_helpers import exported_fake_run

    path = exported_fake_run(tmp_path, arch=arch)
    plain, _ = load_torchscript(path)
    model = load_exported(path, "cpu")
    assert model.meta["runtime"] == "torchscript frozen"
    assert isinstance(model.forward, torch.jit.ScriptModule) and model.forward is not plain
    x = torch.rand(2, 1, 40, 36)
    with torch.inference_mode():
        assert (model(x) - plain(x)).abs().max() <= 1e-5
