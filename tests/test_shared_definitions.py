"""One definition of each idea several commands share, so that they cannot drift apart again.

Three suffix lists once disagreed (`prep shard` took JPEG and TIFF that `upscale` and the folder
loader skipped without a word); four crops to a multiple of the scale disagreed (the app cut at
the top left, validation and the quality bench in the centre, so one image scored differently);
five temp-then-rename writers used a temp name that the stale-file cleanup never finds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.export_helpers import smooth_image


def test_prep_shard_upscale_and_the_folder_loader_take_the_same_files(realxray_dir, tmp_path):
    """One folder of every accepted kind plus files that are not images: the three listings agree."""
    from data_prep.catalog import build_catalog
    from data_prep.sources import FolderSource
    from dist_train.data.folder import list_images
    from export.inputs import scan_inputs

    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    pixels = np.rint(smooth_image(96, 96) * 255).astype(np.uint8)
    for name in ("a.png", "b.jpg", "c.JPEG", "d.tif", "sub/e.tiff"):
        Image.fromarray(pixels).save(folder / name)
    dicom = next(realxray_dir.glob("*.dcm")).read_bytes()
    for name in ("f.dcm", "g.dicom", "h.dic", "i_no_suffix"):
        (folder / name).write_bytes(dicom)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    taken = {"a.png", "b.jpg", "c.JPEG", "d.tif", "sub/e.tiff", "f.dcm", "g.dicom", "h.dic", "i_no_suffix"}

    by_upscale = {p.relative_to(folder).as_posix() for p in scan_inputs([folder]).files}
    by_loader = {p.relative_to(folder).as_posix() for p in list_images(folder)}
    by_shard = {c.name for c in build_catalog(FolderSource(folder)).candidates}
    assert by_upscale == by_loader == by_shard == taken


def test_one_centred_crop_to_a_multiple_of_the_scale(tmp_path):
    """crop_to_scale is centred (as validation always was) and is what the quality bench, the
    export parity check and the app use; an odd-sized image gives all of them the same pixels."""
    import torch

    from benchmarks.quality import centre_crop
    from dist_train.data.samples import val_crop
    from dist_train.degradation import crop_to_scale

    image = np.arange(39 * 42, dtype=np.float32).reshape(39, 42)
    crop = crop_to_scale(image, 4)
    assert crop.shape == (36, 40) and crop[0, 0] == image[1, 1]  # (39 - 36) // 2, (42 - 40) // 2
    assert np.array_equal(centre_crop(image, 0, 4), crop) and np.array_equal(val_crop(image, 0, 4), crop)
    assert np.array_equal(crop_to_scale(image, 4, 16), image[11:27, 13:29])
    assert torch.equal(crop_to_scale(torch.from_numpy(image)[None, None], 4)[0, 0], torch.from_numpy(crop))


def test_the_app_scores_the_centred_crop(tmp_path):
    """The app's HR mode cut odd-sized uploads at the top left; it must compare the centred crop."""
    from dist_train.degradation import crop_to_scale
    from export.model_file import load_exported
    from launch.app import processing
    from tests.export_helpers import ToyGenerator, export_model

    model = load_exported(export_model(tmp_path / "toy.pt", ToyGenerator()))
    upload_path = tmp_path / "hr.png"
    Image.fromarray(np.rint(smooth_image(135, 130) * 255).astype(np.uint8)).save(upload_path)
    upload = processing.decode_upload("hr.png", upload_path.read_bytes(), 10**7)
    result = processing.compare(model, upload, processing.HR_MODE)
    assert np.array_equal(result.hr, crop_to_scale(upload.to_unit(), 4))
    assert not np.array_equal(result.hr, upload.to_unit()[:132, :128])


def test_every_temp_then_rename_writer_uses_the_atomic_temp_name(tmp_path, monkeypatch):
    """Each writer asks data_prep.atomic for its temp name, so remove_stale_tmp can find what a
    killed writer leaves; none leaves a temp file when it completes."""
    import torch

    import data_prep.atomic as atomic
    from dist_train.checkpoint import torch_save_atomic
    from dist_train.config import load_config, save_config
    from export.png_stream import PngRowWriter
    from launch.commands import write_hostfile
    from launch.plan import LaunchPlan, build_plan
    from launch.slurm import write_slurm_script

    asked: list[str] = []
    real = atomic.tmp_path_for

    def recording(path, *args, **kwargs):
        asked.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "tmp_path_for", recording)
    import export.png_stream as png_stream

    monkeypatch.setattr(png_stream, "tmp_path_for", recording)
    save_config(load_config("tiny_cpu", []), tmp_path / "config.yaml")
    torch_save_atomic({"x": torch.zeros(1)}, tmp_path / "state.pt")
    write_hostfile(LaunchPlan(launcher="deepspeed", nproc_per_node=8, nnodes=2, hosts=("a:8", "b:8")), tmp_path)
    write_slurm_script(build_plan("multi_node", launcher="slurm", nnodes=2), tmp_path / "job.sbatch", tmp_path / "logs")
    writer = PngRowWriter(tmp_path / "big.png", 4, 2, 8)
    writer.write_rows(np.zeros((2, 4), np.uint8))
    writer.close()
    assert asked == ["config.yaml", "state.pt", "hostfile", "job.sbatch", "big.png"]
    assert os.access(tmp_path / "job.sbatch", os.X_OK)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stale_cleanup_finds_an_abandoned_streamed_png_and_pt2_name(tmp_path):
    """What a writer killed mid-file leaves is removed by the next run (its pid is gone, or it is
    this fresh process's own number); a user's hidden files stay."""
    from data_prep.atomic import TMP_NAME, remove_stale_tmp, tmp_path_for
    from export.png_stream import PngRowWriter

    writer = PngRowWriter(tmp_path / "big.png", 4, 4, 8)
    writer.write_rows(np.zeros((2, 4), np.uint8))  # never closed: as after kill -9
    writer._file.close()
    pt2 = tmp_path_for(tmp_path / "model.pt2", keep_suffix=True)
    pt2.write_bytes(b"partial package")
    assert pt2.name.endswith(".pt2") and TMP_NAME.match(pt2.name)
    (tmp_path / ".user-notes.tmp").write_text("mine")
    removed = {p.name for p in remove_stale_tmp(tmp_path)}
    assert removed == {f".big.png.{os.getpid()}.tmp", pt2.name}
    assert (tmp_path / ".user-notes.tmp").exists()


@pytest.mark.parametrize("name", ["scan.PNG", "scan.Jpg", "scan.tif", "scan.dcm"])
def test_suffixes_are_matched_without_case(tmp_path, name):
    """Scanners write .JPG and .DCM as often as the lower-case names."""
    from data_prep.image_io import folder_skip_reason

    assert folder_skip_reason(tmp_path / name) is None
