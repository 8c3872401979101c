"""The cxr-sr Streamlit page: upload an X-ray, compare LR, bicubic and SR, download the result.

Start it with `cxr-sr app` (or `streamlit run launch/app/streamlit_app.py -- --model FILE`). The
computing lives in ``launch.app.processing``; this file only lays out the page. Every failure an
upload can cause is shown as a sentence in the page; anything unexpected is summarised in one
line on the page and logged in full on the server's console.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:  # `streamlit run FILE` puts only the file's folder on the path
    sys.path.insert(0, str(PROJECT_ROOT))

DEMO_MODEL = Path("runs/demo/model/cxr_sr_x4.pt")
DIFF_GAIN = 16.0
LOG = logging.getLogger("cxr_sr.app")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="streamlit_app.py")
    parser.add_argument("--model", type=Path, default=None, help="default TorchScript model")
    args, _unknown = parser.parse_known_args(sys.argv[1:])
    return args


def model_choices(default: Path | None) -> list[str]:
    """The --model file (or the shipped default model) first, then the demo's and other
    TorchScript files found under ./runs."""
    from export.default_model import DEFAULT_MODEL

    found = [default] if default is not None else []
    found += [path for path in (DEFAULT_MODEL, DEMO_MODEL) if path.is_file()]
    found += sorted(Path("runs").glob("**/model/*.pt"))[:20] if Path("runs").is_dir() else []
    unique: list[str] = []
    for path in found:
        if str(path) not in unique:
            unique.append(str(path))
    return unique


def sidebar_model(st, default: Path | None):
    """The model chosen in the sidebar, or None (with a message saying what to do)."""
    from export.model_file import ModelFileError, describe, load_exported

    @st.cache_resource(show_spinner="loading the model")  # one load per file version, across reruns
    def _load_model(path: str, mtime: float):
        return load_exported(Path(path))

    with st.sidebar:
        st.header("Model")
        choices = model_choices(default)
        chosen = st.selectbox("TorchScript model", choices + ["another path..."], index=0) if choices else None
        if chosen in (None, "another path..."):
            chosen = st.text_input("Path of a TorchScript file from `cxr-sr export`", value="")
        if not chosen:
            st.warning("No model: this install lacks the shipped default model; run `cxr-sr demo` (it exports "
                       "runs/demo/model/cxr_sr_x4.pt), or give the path of a `cxr-sr export` file.")
            return None
        try:
            model = _load_model(chosen, Path(chosen).stat().st_mtime if Path(chosen).exists() else 0.0)
        except ModelFileError as exc:
            st.error(f"This model cannot be used: {exc}")
            return None
        st.caption(describe(model))
        return model


def main() -> None:
    import streamlit as st

    from launch.app import processing
    from launch.app.processing import HR_MODE, LR_MODE, UploadError

    st.set_page_config(page_title="cxr-sr: chest X-ray super-resolution", layout="wide")
    st.title("cxr-sr: 4x super-resolution of chest X-rays")
    args = _arguments()

    model = sidebar_model(st, args.model)
    if model is None:
        return

    mode = st.radio("What is your upload?", (HR_MODE, LR_MODE), horizontal=True, format_func=lambda m: {
        HR_MODE: "a high-resolution original (downsample it 4x, upscale, compare)",
        LR_MODE: "a low-resolution image (upscale it as it is)"}[m])
    upload = st.file_uploader("Chest X-ray: PNG or DICOM", key="upload")
    reference = None
    if mode == LR_MODE:
        reference = st.file_uploader("Optional: its high-resolution original (for PSNR/SSIM)", key="reference")
    if upload is None:
        st.info("Upload a PNG or DICOM chest X-ray to start.")
        return
    limit = processing.MAX_HR_PIXELS if mode == HR_MODE else processing.MAX_LR_PIXELS
    try:
        source = processing.decode_upload(upload.name, upload.getvalue(), limit)
        original = (processing.decode_upload(reference.name, reference.getvalue(), processing.MAX_HR_PIXELS)
                    if reference is not None else None)
        with st.spinner("upscaling..."):
            comparison = processing.compare(model, source, mode, original)
    except UploadError as exc:
        st.error(str(exc))
        return
    except Exception as exc:  # a bug, not the user's doing: one line here, the traceback in the server log
        LOG.exception("processing %s failed", upload.name)
        st.error(f"Something went wrong while processing '{upload.name}' ({type(exc).__name__}). "
                 "The details are in the app's console.")
        return
    show(st, comparison, upload.name)


def show(st, comparison, name: str) -> None:
    """The viewer, the metrics, the difference maps and the downloads of one comparison."""
    import streamlit.components.v1 as components

    from launch.app import processing
    from launch.app.dicom_download import dicom_bytes
    from launch.app.processing import HR_MODE
    from launch.app.viewer import MAX_VIEW_PX, viewer_html
    from launch.demo.figures import improvement_rgb

    scale, source = comparison.scale, comparison.source
    lr_h, lr_w = comparison.lr.shape
    if comparison.mode == HR_MODE:
        st.info(f"No separate high-resolution original: your upload ({source.width} x {source.height} px) is treated "
                f"as the original. It was downsampled {scale}x first (antialiased bicubic, the project's "
                f"degradation) to {lr_w} x {lr_h} px, then upscaled back and compared with it.")
    elif comparison.hr is None:
        st.info("No high-resolution original given: PSNR and SSIM need one; the consistency figure does not.")
    for note in source.notes:
        st.caption(note)
    if max(comparison.sr.shape) > MAX_VIEW_PX:
        st.caption(f"The viewer shows the central {MAX_VIEW_PX} px of the {comparison.sr.shape[1]} x "
                   f"{comparison.sr.shape[0]} px result; the downloads are full size.")
    components.html(viewer_html(comparison.lr, comparison.bicubic, comparison.sr, scale), height=480)

    st.subheader("Figures")
    rows = []
    for method, label in (("model", "SR (model)"), ("bicubic", "bicubic")):
        values = comparison.metrics[method]
        rows.append({"method": label, "PSNR dB": values.get("psnr_db"), "SSIM": values.get("ssim"),
                     "consistency dB": values["consistency_psnr_db"]})
    st.table(rows)
    st.caption("PSNR/SSIM against the high-resolution original as uint8 with a 4 px border crop; consistency = "
               "PSNR between the downsampled output and the LR input (docs/contracts.md §5).")

    columns = st.columns(2 if comparison.hr is not None else 1)
    difference = np.clip(np.abs(comparison.sr - comparison.bicubic) * DIFF_GAIN, 0, 1)
    columns[0].image(processing.to_uint8(difference), clamp=True,
                     caption=f"Difference map: |SR - bicubic| x{DIFF_GAIN:g} (what the model adds)")
    if comparison.hr is not None:
        columns[1].image(improvement_rgb(comparison.sr, comparison.bicubic, comparison.hr, DIFF_GAIN * 2),
                         caption="Against the original: blue where SR is closer than bicubic, red where further")

    stem = Path(name).stem
    down = st.columns(2)
    down[0].download_button("Download SR as PNG", processing.png_bytes(comparison), file_name=f"{stem}_sr_x{scale}.png",
                            mime="image/png")
    try:
        dicom = dicom_bytes(comparison)
    except ValueError as exc:  # e.g. larger than DICOM's 65535 px per side
        down[1].caption(f"No DICOM download: {exc}")
    else:
        down[1].download_button("Download SR as DICOM", dicom, file_name=f"{stem}_sr_x{scale}.dcm",
                                mime="application/dicom")


if __name__ == "__main__":
    main()
