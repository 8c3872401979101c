"""`cxr-sr demo` end to end at a reduced size, its reuse of completed steps, and its failure message.

Why: the demo is the README's first command, so it must run on a fresh CPU machine without
../shared and produce a report whose figures open. The run is the real pipeline (synth, shards,
two-process DDP with the DALI CPU loader, export, benchmarks), only smaller (--quick).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from launch.demo.steps import Step, StepFailed, StepRunner

PROJECT_ROOT = Path(__file__).resolve().parents[1]
STEPS = ("data", "shard", "verify", "holdback", "train", "export", "cpp", "quality-holdback",
         "quality-radiograph", "quality-default", "throughput", "figures", "report")


def _demo(out: Path, *extra: str, timeout_s: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch", "demo", "--quick", "--out", str(out), *extra],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    pytest.importorskip("nvidia.dali", reason="the demo trains with the DALI CPU loader")
    out = tmp_path_factory.mktemp("demo") / "out"
    result = _demo(out)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return out, result


def test_quick_demo_writes_report_with_valid_figures(quick_demo):
    """Every step completes; report.md has the summary table and links figures that are real PNGs."""
    out, result = quick_demo
    for number, name in enumerate(STEPS, 1):
        assert f"[{number}/{len(STEPS)}] {name}:" in result.stderr
    report = (out / "report.md").read_text()
    assert "| model (SR) |" in report and "| bicubic |" in report and "RG1_UNCR.dcm" in report
    # the packaged model is reported on the real radiograph beside the demo's own
    assert "| RG1_UNCR.dcm (1 img) | shipped default model |" in report
    assert "| RG1_UNCR.dcm (1 img) | this demo's model |" in report
    linked = re.findall(r"\]\(([^)]+\.png)\)", report)
    assert len(linked) >= 7  # comparison, two loss figures, throughput, consistency, two bench figures
    for relative in linked:
        with Image.open(out / relative) as figure:
            figure.verify()  # a complete, valid PNG
        with Image.open(out / relative) as figure:
            assert figure.format == "PNG" and min(figure.size) >= 100
    for label in ("run:", "model:", "report:"):
        assert label in result.stdout
    assert (out / "model" / "cxr_sr_x4.pt").is_file()
    assert list((out / "run" / "tensorboard").glob("events.out.tfevents.*"))


def test_summary_shows_model_against_bicubic_on_both_datasets(quick_demo):
    """The printed table has numbers (not dashes) for the model and bicubic on both datasets."""
    _, result = quick_demo
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| ")}
    for method in ("model (SR)", "bicubic"):
        cells = [c.strip() for c in rows[method].split("|")[2:-1]]
        assert len(cells) == 7 and all(re.fullmatch(r"[0-9.]+", c) for c in cells), rows[method]


def test_holdback_is_the_test_split_byte_for_byte(quick_demo):
    """The benchmarked images are the first test-split samples (patients never trained on), unchanged."""
    from dist_train.data.shardset import load_split
    from dist_train.data.shards_torch import read_png

    out, _ = quick_demo
    written = sorted((out / "holdback").glob("*.png"))
    refs = load_split(out / "shards", "test").sample_refs()[:len(written)]
    assert written and [path.stem for path in written] == sorted(ref.key for ref in refs)
    by_key = {ref.key: ref for ref in refs}
    assert all(path.read_bytes() == read_png(by_key[path.stem]) for path in written)


def test_rerun_reuses_completed_steps(quick_demo):
    """A second run with the same settings reuses every step and prints the same table."""
    out, first = quick_demo
    again = _demo(out, timeout_s=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("complete from an earlier run, reused") == len(STEPS)
    table = [line for line in first.stdout.splitlines() if line.startswith("| ")]
    assert table == [line for line in again.stdout.splitlines() if line.startswith("| ")]


def test_failing_step_names_itself_and_its_log(tmp_path):
    """A step that raises stops the demo with its name and log path; no marker, so it runs again next time."""
    def broken(context) -> None:
        context.say("about to fail")
        raise ValueError("the disk is full")

    runner = StepRunner(tmp_path, digest="d1")
    with pytest.raises(StepFailed) as failure:
        runner.run_all([Step("ok", "fine", lambda context: None), Step("bad", "breaks", broken)])
    message = str(failure.value)
    assert "step 'bad' failed" in message and "the disk is full" in message
    assert str(tmp_path / "logs" / "bad.log") in message
    assert "Traceback" in (tmp_path / "logs" / "bad.log").read_text()
    assert runner.completed("ok") is not None and runner.completed("bad") is None


def test_changed_settings_rerun_and_later_steps_follow(tmp_path):
    """A marker counts only under the same settings digest, and once a step reruns every later one does."""
    calls: list[str] = []
    steps = [Step(name, name, lambda context, name=name: calls.append(name)) for name in ("a", "b", "c")]
    StepRunner(tmp_path, digest="d1").run_all(steps)
    (tmp_path / ".demo" / "steps" / "b.json").unlink()
    StepRunner(tmp_path, digest="d1").run_all(steps)
    StepRunner(tmp_path, digest="d2").run_all(steps)
    assert calls == ["a", "b", "c", "b", "c", "a", "b", "c"]


def test_skipped_step_is_tried_again_next_run(tmp_path):
    """The C++ step skips when the example is not built and says "build it, then re-run the demo":
    the re-run must then run it (and the steps after it, which report its result)."""
    calls: list[str] = []
    built = {"cpp": False}

    def cpp(context) -> None:
        calls.append("cpp")
        if not built["cpp"]:
            context.results["skipped"] = "not built"

    steps = [Step("a", "a", lambda context: calls.append("a")), Step("cpp", "cpp", cpp),
             Step("report", "report", lambda context: calls.append("report"))]
    StepRunner(tmp_path, digest="d").run_all(steps)
    built["cpp"] = True
    StepRunner(tmp_path, digest="d").run_all(steps)
    StepRunner(tmp_path, digest="d").run_all(steps)
    assert calls == ["a", "cpp", "report", "cpp", "report"]


def test_command_failure_reports_step_and_log(tmp_path):
    """A command that exits non-zero is reported as `cxr-sr ...` with its last line, pointing at the log."""
    def verify_nothing(context) -> None:
        context.run([sys.executable, "-m", "launch", "prep", "verify", str(tmp_path / "no-such-shards")])

    with pytest.raises(StepFailed) as failure:
        StepRunner(tmp_path, digest="d").run_all([Step("verify", "verify", verify_nothing)])
    assert "`cxr-sr prep verify ...` exited with 1" in str(failure.value)
    assert (tmp_path / "logs" / "verify.log").read_text().startswith("# cxr-sr demo step 'verify'")


def test_demo_takes_only_the_cpp_build_made_for_its_own_torch(tmp_path, monkeypatch):
    """A build cached by another venv (another torch) links another libtorch, which may not load
    this torch's TorchScript file: the demo once ran such a build and failed. Only the build
    under this checkout's key counts, however recent the other one is."""
    import os
    import time

    import launch.demo.cpp as demo_cpp
    from export.cpp_cache import BINARY_NAME, build_folder

    monkeypatch.setenv("CXR_SR_CPP_BUILD_DIR", str(tmp_path))
    monkeypatch.delenv("CXR_SR_CPP_BINARY", raising=False)
    monkeypatch.setattr(demo_cpp, "PROJECT_ROOT", tmp_path / "checkout")  # no build/ of its own

    def fake_binary(folder: Path) -> Path:
        folder.mkdir(parents=True)
        binary = folder / BINARY_NAME
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
        return binary

    ours = fake_binary(build_folder())
    other = fake_binary(tmp_path / "cpp-0123456789abcdef")
    later = time.time() + 60
    os.utime(other, (later, later))
    assert demo_cpp.find_binary() == ours
    ours.unlink()
    assert demo_cpp.find_binary() is None


def test_cpp_build_key_is_the_same_for_every_entry_point_of_one_venv():
    """The tests build under ``python -m pytest`` and the demo runs as the ``cxr-sr`` console
    script, whose interpreter path may be ``python3``: when the key held the interpreter's path,
    the demo never found the tests' build."""
    from export.cpp_cache import build_folder

    folders = set()
    for name in ("python", "python3"):
        interpreter = Path(sys.executable).with_name(name)
        if interpreter.exists():
            folders.add(subprocess.run([str(interpreter), "-c", "from export.cpp_cache import build_folder; "
                                        "print(build_folder())"], capture_output=True, text=True, check=True,
                                       cwd=Path(__file__).resolve().parents[1]).stdout.strip())
    assert folders == {str(build_folder())}
