"""`cxr-sr prep ...` and `python -m data_prep ...`: shard then verify, end to end on synth."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from data_prep.shard import plan_shards
from launch.cli import main as cxr_sr

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_synth_shard_verify_through_the_console_script(tmp_path: Path, capsys) -> None:
    """`prep synth` makes a dataset that `prep shard` turns into a set `prep verify` accepts,
    each printing one summary line with the split counts."""
    source, shards = tmp_path / "synth", tmp_path / "shards"
    assert cxr_sr(["prep", "synth", "--out", str(source), "-n", "12", "--size", "96"]) == 0
    assert cxr_sr(["prep", "shard", "--source", str(source), "--out", str(shards), "--workers", "1",
                   "--samples-per-shard", "5", "--quiet"]) == 0
    assert cxr_sr(["prep", "verify", str(shards), "--deep"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and "train" in lines[1] and lines[2].startswith(f"{shards}: ok; train ")
    assert json.loads((shards / "manifest.json").read_text())["counts"]["total"] == 12


def test_bad_arguments_and_bad_sources_are_one_line_errors(tmp_path: Path, capsys) -> None:
    """A typo in a path or a fraction must not end in a traceback."""
    assert cxr_sr(["prep", "shard", "--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert cxr_sr(["prep", "shard", "--source", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--test-fraction", "1.0"]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "source does not exist" in errors[0] and "test_fraction" in errors[1]


def test_python_dash_m_data_prep_is_the_same_command(tmp_path: Path) -> None:
    """`python -m data_prep` must work where the console script is not on PATH."""
    result = subprocess.run([sys.executable, "-m", "data_prep", "synth", "--out", str(tmp_path / "s"),
                             "-n", "2", "--size", "64"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "s").glob("images_001/images/*.png"))) == 2


def test_byte_target_caps_shards_by_source_size() -> None:
    """--shard-bytes keeps shards near a size DALI and object stores like, whatever the count."""
    from data_prep.catalog import Candidate
    from data_prep.metadata import ImageMeta

    items = [Candidate(f"{i:08d}_000.png", f"{i:08d}_000", 400, ImageMeta(f"{i:08d}_000.png", f"{i:08d}"), "metadata")
             for i in range(10)]
    tasks = plan_shards(items, {c.meta.patient_id: "train" for c in items}, seed=0,
                        samples_per_shard=100, shard_bytes=1000, settings_digest="x")
    assert [len(t.items) for t in tasks] == [2, 2, 2, 2, 2]
