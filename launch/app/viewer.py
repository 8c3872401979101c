"""The side-by-side viewer: LR, bicubic and SR panes sharing one zoom and pan.

Streamlit has no linked image views, so this is a small HTML component: the three images are
inline PNGs drawn in the same coordinate frame (LR stretched x scale with nearest-neighbour
rendering), and one transform, changed by the mouse wheel, dragging or the buttons, applies to
all three panes. No script or style is fetched from the network.
"""
from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

MAX_VIEW_PX = 2048  # larger outputs are shown as their central 2048 px window (downloads are full size)

_TEMPLATE = """
<div id="cxr-viewer" style="font-family: sans-serif">
  <div style="margin-bottom:6px">
    <button data-zoom="1.5">zoom in</button> <button data-zoom="0.667">zoom out</button>
    <button data-fit="1">fit</button> <button data-one="1">1:1</button>
    <span style="color:#666;font-size:13px">wheel: zoom, drag: pan (all panes together)</span>
  </div>
  <div style="display:flex;gap:8px">__PANES__</div>
</div>
<script>
(function() {
  const W = __WIDTH__, H = __HEIGHT__;
  const panes = Array.from(document.querySelectorAll('#cxr-viewer .pane'));
  const imgs = panes.map(p => p.querySelector('img'));
  let s = 1, tx = 0, ty = 0;
  function fit() { const p = panes[0]; s = Math.min(p.clientWidth / W, p.clientHeight / H); tx = (p.clientWidth - W * s) / 2; ty = (p.clientHeight - H * s) / 2; }
  function apply() { imgs.forEach(i => { i.style.transform = `translate(${tx}px, ${ty}px) scale(${s})`; }); }
  function zoomAt(factor, cx, cy) { tx = cx - (cx - tx) * factor; ty = cy - (cy - ty) * factor; s *= factor; apply(); }
  panes.forEach(p => {
    p.addEventListener('wheel', e => { e.preventDefault(); const r = p.getBoundingClientRect(); zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top); }, {passive: false});
    let drag = null;
    p.addEventListener('mousedown', e => { drag = [e.clientX, e.clientY]; e.preventDefault(); });
    window.addEventListener('mouseup', () => { drag = null; });
    window.addEventListener('mousemove', e => { if (!drag) return; tx += e.clientX - drag[0]; ty += e.clientY - drag[1]; drag = [e.clientX, e.clientY]; apply(); });
  });
  document.querySelectorAll('#cxr-viewer button').forEach(b => b.addEventListener('click', () => {
    const p = panes[0];
    if (b.dataset.zoom) zoomAt(parseFloat(b.dataset.zoom), p.clientWidth / 2, p.clientHeight / 2);
    if (b.dataset.fit) { fit(); apply(); }
    if (b.dataset.one) { zoomAt(1 / s, p.clientWidth / 2, p.clientHeight / 2); }
  }));
  fit(); apply();
})();
</script>
"""

_PANE = """<div style="flex:1;min-width:0">
  <div style="font-size:14px;margin-bottom:2px"><b>__TITLE__</b></div>
  <div class="pane" data-name="__NAME__" style="position:relative;overflow:hidden;height:__PANE_H__px;background:#111;cursor:grab;border:1px solid #ccc">
    <img alt="__TITLE__" src="data:image/png;base64,__DATA__" width="__W__" height="__H__" draggable="false"
         style="position:absolute;left:0;top:0;transform-origin:0 0;image-rendering:__RENDERING__;max-width:none">
  </div>
</div>"""


def png_base64(image: np.ndarray) -> str:
    """An 8-bit gray PNG of a [0, 1] array, base64-encoded for an inline ``<img>``."""
    buffer = io.BytesIO()
    Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def view_window(height: int, width: int, scale: int) -> tuple[slice, slice]:
    """The central window of the output shown in the viewer, aligned to the LR grid."""
    def axis(n: int) -> slice:
        size = min(n, MAX_VIEW_PX) // scale * scale
        start = (n - size) // 2 // scale * scale
        return slice(start, start + size)
    return axis(height), axis(width)


def viewer_html(lr: np.ndarray, bicubic: np.ndarray, sr: np.ndarray, scale: int, pane_px: int = 420) -> str:
    """The HTML of the three linked panes (outputs cropped to ``view_window``)."""
    rows, cols = view_window(*sr.shape, scale)
    lr_rows = slice(rows.start // scale, rows.stop // scale)
    lr_cols = slice(cols.start // scale, cols.stop // scale)
    height, width = rows.stop - rows.start, cols.stop - cols.start
    panes = []
    for name, title, image, rendering in (("lr", f"LR input (x{scale} nearest)", lr[lr_rows, lr_cols], "pixelated"),
                                          ("bicubic", "bicubic", bicubic[rows, cols], "auto"),
                                          ("sr", "SR (model)", sr[rows, cols], "auto")):
        panes.append(_PANE.replace("__TITLE__", title).replace("__NAME__", name).replace("__PANE_H__", str(pane_px))
                     .replace("__DATA__", png_base64(image)).replace("__W__", str(width))
                     .replace("__H__", str(height)).replace("__RENDERING__", rendering))
    return (_TEMPLATE.replace("__PANES__", "".join(panes)).replace("__WIDTH__", str(width))
            .replace("__HEIGHT__", str(height)))
