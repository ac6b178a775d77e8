"""The static rank explorer: a slider over every rank of one image, with no kernel behind it.

The page carries the image's SVD factors (per channel ``U``, ``S``, ``V`` up to the full rank
``r = min(H, W)``; ``U`` and ``V`` as int8 codes with one float32 scale per column) and each
model's top-5 at every rank ``0..r``, precomputed here in one batched pass per model. A few
lines of inline JavaScript recompose the rank-k image on a canvas as the slider moves:
``x_k = clip(sum_{i<k} s_i u_i v_i^T, 0, 1)``, as :func:`rankcore.low_rank` with
``clamp=True``; at ``k = r`` the page shows the image itself (an embedded PNG), as
``low_rank`` returns ``x`` for ``k >= min(H, W)``.

Quantisation (:func:`quantise_columns`): column ``i`` with largest magnitude ``m_i`` gets the
scale ``m_i / 127`` and codes ``round(u / scale)`` in ``[-127, 127]``, so every dequantised
entry is within half a scale of the exact one. The images are 8-bit pictures: an image that
is not a multiple of 1/255 is rounded to one first (the picture the reader sees), so the PNG,
the factors and the top-5 all describe the same image.

Size for a 224 x 224 RGB image (chapters 01 and 02 of the smoke book, one model each: 541
and 536 KB of HTML): 301 KB of codes, 401 KB in base64, plus the PNG (104-109 KB in base64)
plus 16 KB of top-5 per model. Cost: one forward pass per model over the 225 rank-k images
(EfficientNet-Lite0 on 2 busy CPU cores: 43 s); the page's script redraws rank 10 in 14 ms
and rank 223 in 117 ms (headless Chromium, same machine).
"""
from __future__ import annotations

import base64
import html as html_lib
import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..torch_utils import predict

__all__ = ["Factors", "LEVELS", "quantise_columns", "eight_bit", "factors", "rank_images",
           "top_predictions", "top_table", "payload", "explorer_html", "read_payload", "decode"]

#: Largest int8 code; codes lie in ``[-LEVELS, LEVELS]`` (symmetric, so 0 stays exact).
LEVELS = 127


@dataclass(frozen=True)
class Factors:
    """Quantised SVD factors of one image ``(C, H, W)``, ``r = min(H, W)``.

    ``u[c, :, i] * u_scale[c, i]`` is the dequantised ``i``-th left singular vector of
    channel ``c`` (same for ``v``, the right ones); ``s`` the singular values, float32.
    """

    s: np.ndarray        # (C, r) float32
    u: np.ndarray        # (C, H, r) int8
    u_scale: np.ndarray  # (C, r) float32
    v: np.ndarray        # (C, W, r) int8
    v_scale: np.ndarray  # (C, r) float32

    def dequantised(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` in float64, ``a = s * u_hat`` ``(C, H, r)`` and ``b = v_hat`` ``(C, W, r)``,
        the products the page's script forms."""
        a = self.s[:, None, :].astype(np.float64) * (self.u * self.u_scale[:, None, :].astype(np.float64))
        b = self.v * self.v_scale[:, None, :].astype(np.float64)
        return a, b

    def reconstruct(self, k: int) -> np.ndarray:
        """The rank-k image ``(C, H, W)`` from the quantised factors, clipped to ``[0, 1]``."""
        a, b = self.dequantised()
        return np.clip(a[:, :, :k] @ b[:, :, :k].transpose(0, 2, 1), 0.0, 1.0)


def quantise_columns(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes and float32 scales ``(..., r)`` of the columns of ``m`` ``(..., N, r)``.

    Each dequantised entry ``code * scale`` lies within ``scale / 2`` of ``m`` (the scale is
    rounded up to float32, so no code needs clipping). An all-zero column gets scale 1.
    """
    peak = np.abs(m).max(axis=-2)
    scale = (peak / LEVELS).astype(np.float32)
    low = scale.astype(np.float64) * LEVELS < peak     # float32 rounded the scale down
    scale[low] = np.nextafter(scale[low], np.float32(np.inf))
    scale[peak == 0] = 1.0
    codes = np.rint(m / scale[..., None, :].astype(np.float64))
    return codes.astype(np.int8), scale


def eight_bit(image: Tensor) -> Tensor:
    """``image`` ``(C, H, W)`` rounded to a multiple of 1/255 in ``[0, 1]``, float32."""
    return (image.detach().float().cpu().clamp(0, 1) * 255).round() / 255


def factors(image: Tensor) -> Factors:
    """Quantised SVD factors of an 8-bit image ``(C, H, W)`` (see :func:`eight_bit`)."""
    U, S, Vh = torch.linalg.svd(image.double(), full_matrices=False)
    u, u_scale = quantise_columns(U.numpy())
    v, v_scale = quantise_columns(Vh.transpose(-1, -2).numpy())
    return Factors(S.numpy().astype(np.float32), u, u_scale, v, v_scale)


def rank_images(image: Tensor, chunk: int = 16) -> Iterator[Tensor]:
    """The rank-k images of ``image`` ``(C, H, W)`` for ``k = 0..min(H, W)``, clipped to [0, 1],
    as float32 chunks ``(<= chunk, C, H, W)``; one float64 SVD, rank-one updates.

    ``k = min(H, W)`` gives ``image`` itself, as :func:`rankcore.low_rank` does.
    """
    U, S, Vh = torch.linalg.svd(image.double(), full_matrices=False)
    r = S.shape[-1]
    acc = torch.zeros_like(image, dtype=torch.float64)
    block = []
    for k in range(r + 1):
        if k == r:
            block.append(image.float())
        else:
            block.append(acc.clamp(0, 1).float())
            acc += S[:, k, None, None] * U[:, :, k, None] * Vh[:, None, k, :]
        if len(block) == chunk or k == r:
            yield torch.stack(block)
            block = []


def top_table(models: Sequence[tuple[str, nn.Module]], image: Tensor, top: int = 5,
              chunk: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each model's top-``top`` at every rank: ``(probabilities, indices)``, each ``(r + 1, top)``.

    The rank-k images are built once (:func:`rank_images`) and each chunk goes through
    every model, on the model's own device.
    """
    probs = [[] for _ in models]
    indices = [[] for _ in models]
    with torch.no_grad():
        for xs in rank_images(image, chunk):
            for j, (_, model) in enumerate(models):
                p, i = top_predictions(model, xs, top, chunk)
                probs[j].append(p.numpy())
                indices[j].append(i.numpy())
    return [(np.concatenate(p), np.concatenate(i)) for p, i in zip(probs, indices)]


def top_predictions(model: nn.Module, x: Tensor, k: int, batch_size: int = 16) -> tuple[Tensor, Tensor]:
    """Probabilities and indices of the ``k`` (at most the number of classes) most likely
    classes of images ``x`` ``(B, C, H, W)``, each ``(B, k)``, on the CPU."""
    probs = predict(model, x, batch_size=max(1, batch_size)).softmax(1)
    p, i = probs.topk(min(k, probs.shape[1]), dim=1)
    return p.cpu(), i.cpu()


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _png(image: Tensor) -> str:
    from PIL import Image

    a = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def payload(image: Tensor, models: Sequence[tuple[str, nn.Module, Sequence[str] | None]],
            top: int = 5) -> dict:
    """Everything the page's script reads about ``image`` ``(C, H, W)``, C = 1 or 3, rounded
    to 8 bits first (:func:`eight_bit`), as JSON-ready values (see the module docstring).

    ``models[j]["top"][k]`` lists ``[class, probability]`` pairs at rank ``k``, the class an
    index into that model's ``classes`` (only the names that occur), probabilities rounded
    to 4 decimals.
    """
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (1 or 3, H, W), got {tuple(image.shape)}")
    image = eight_bit(image)
    f = factors(image)
    tables = top_table([(name, m) for name, m, _ in models], image, top)
    out_models = []
    for (name, _, names), (p, idx) in zip(models, tables):
        used = sorted(set(idx.ravel().tolist()))
        local = {c: j for j, c in enumerate(used)}
        label = [names[c] if names is not None and c < len(names) else f"class {c}" for c in used]
        rows = [[[local[int(c)], round(float(q), 4)] for c, q in zip(ir, pr)] for ir, pr in zip(idx, p)]
        out_models.append({"name": name, "classes": label, "top": rows})
    C, H, W = image.shape
    return {"c": C, "h": H, "w": W, "r": min(H, W), "s": _b64(f.s), "u": _b64(f.u),
            "u_scale": _b64(f.u_scale), "v": _b64(f.v), "v_scale": _b64(f.v_scale),
            "png": _png(image), "models": out_models}


def read_payload(html: str) -> list[dict]:
    """The payloads of every explorer in ``html`` (the inverse of :func:`explorer_html`)."""
    return [json.loads(m) for m in re.findall(
        r'<script type="application/json" class="rank-explorer-data">(.*?)</script>', html, re.S)]


def decode(data: dict) -> Factors:
    """The :class:`Factors` a payload holds."""
    C, H, W, r = data["c"], data["h"], data["w"], data["r"]

    def arr(key, dtype, shape):
        return np.frombuffer(base64.b64decode(data[key]), dtype=dtype).reshape(shape)

    return Factors(arr("s", np.float32, (C, r)), arr("u", np.int8, (C, H, r)),
                   arr("u_scale", np.float32, (C, r)), arr("v", np.int8, (C, W, r)),
                   arr("v_scale", np.float32, (C, r)))


def explorer_html(data: dict, ticks: Sequence[int], value: int) -> str:
    """The explorer's HTML: slider, canvases, top-5 panels, the payload and the script."""
    uid = f"rank-explorer-{uuid.uuid4().hex[:12]}"  # unique on a page with several explorers
    r, h, w = data["r"], data["h"], data["w"]
    scale = max(1, 192 // max(h, w))  # small images (CIFAR) drawn larger, pixels kept sharp
    options = "".join(f'<option value="{k}" label="{k}"></option>' for k in ticks)
    panels = "".join(
        f'<div class="rx-model" style="flex:1 1 200px;min-width:180px">'
        f'<div style="font-weight:600">{html_lib.escape(m["name"])}: top-{len(m["top"][0])}</div>'
        f'<ol class="rx-top" style="margin:4px 0 0 1.2em;padding:0"></ol></div>'
        for m in data["models"])
    payload_json = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        f'<div class="rank-explorer" id="{uid}" style="font:14px/1.35 sans-serif;max-width:700px">'
        f'<label style="display:flex;align-items:center;gap:8px">rank k '
        f'<input type="range" class="rx-slider" min="0" max="{r}" step="1" value="{value}" '
        f'list="{uid}-ticks" style="flex:1"> <output class="rx-k">{value}</output> of {r}</label>'
        f'<datalist id="{uid}-ticks">{options}</datalist>'
        f'<div style="display:flex;flex-wrap:wrap;gap:12px;margin-top:6px">'
        f'<canvas class="rx-image" width="{w}" height="{h}" '
        f'style="width:{w * scale}px;height:{h * scale}px;image-rendering:pixelated"></canvas>'
        f'<div><canvas class="rx-spectrum" width="240" height="160"></canvas>'
        f'<div class="rx-energy"></div></div>{panels}</div>'
        f'<script type="application/json" class="rank-explorer-data">{payload_json}</script>'
        f'<script>({_SCRIPT})(document.getElementById("{uid}"));</script></div>')


# Plain JavaScript, no library: decode the payload, then redraw on every slider move.
_SCRIPT = r"""function (root) {
  const d = JSON.parse(root.querySelector('script.rank-explorer-data').textContent);
  const raw = s => Uint8Array.from(atob(s), c => c.charCodeAt(0)).buffer;
  const C = d.c, H = d.h, W = d.w, R = d.r;
  const S = new Float32Array(raw(d.s)), us = new Float32Array(raw(d.u_scale));
  const vs = new Float32Array(raw(d.v_scale)), uq = new Int8Array(raw(d.u)), vq = new Int8Array(raw(d.v));
  // a[c][i][p] = s_i * u_hat_i(p), b[c][i][q] = v_hat_i(q), one contiguous row per rank
  const A = new Float64Array(C * R * H), B = new Float64Array(C * R * W);
  for (let c = 0; c < C; c++) for (let i = 0; i < R; i++) {
    const ci = c * R + i;
    for (let p = 0; p < H; p++) A[ci * H + p] = S[ci] * (uq[(c * H + p) * R + i] * us[ci]);
    for (let q = 0; q < W; q++) B[ci * W + q] = vq[(c * W + q) * R + i] * vs[ci];
  }
  const energy = new Float64Array(R + 1);
  for (let i = 0; i < R; i++) { let e = 0; for (let c = 0; c < C; c++) e += S[c * R + i] ** 2; energy[i + 1] = energy[i] + e; }
  const slider = root.querySelector('.rx-slider'), out = root.querySelector('.rx-k');
  const ctx = root.querySelector('.rx-image').getContext('2d'), img = ctx.createImageData(W, H);
  const acc = new Float64Array(H * W);
  let full = null;
  function image(k) {
    if (k >= R && full) { img.data.set(full); ctx.putImageData(img, 0, 0); return; }
    for (let c = 0; c < C; c++) {
      acc.fill(0);
      for (let i = 0; i < k; i++) {
        const a = A.subarray((c * R + i) * H, (c * R + i + 1) * H), b = B.subarray((c * R + i) * W, (c * R + i + 1) * W);
        for (let p = 0; p < H; p++) { const ap = a[p], row = p * W; for (let q = 0; q < W; q++) acc[row + q] += ap * b[q]; }
      }
      for (let j = 0; j < H * W; j++) {
        const v = Math.round(255 * Math.min(1, Math.max(0, acc[j])));
        if (C === 1) { img.data[4 * j] = img.data[4 * j + 1] = img.data[4 * j + 2] = v; } else img.data[4 * j + c] = v;
      }
    }
    for (let j = 0; j < H * W; j++) img.data[4 * j + 3] = 255;
    ctx.putImageData(img, 0, 0);
  }
  const sp = root.querySelector('.rx-spectrum').getContext('2d'), SW = 240, SH = 160;
  const logs = Array.from(S, s => Math.log10(Math.max(s, 1e-8)));
  const top = Math.max(...logs), bottom = Math.min(...logs, top - 1);
  const X = i => 30 + (SW - 36) * i / Math.max(1, R - 1), Y = l => 8 + (SH - 28) * (top - l) / (top - bottom);
  function spectrum(k) {
    sp.clearRect(0, 0, SW, SH);
    sp.fillStyle = '#ddd'; sp.fillRect(X(k - 0.5), 8, SW - 6 - X(k - 0.5), SH - 28);
    const colours = C === 1 ? ['#444'] : ['#d62728', '#2ca02c', '#1f77b4'];
    for (let c = 0; c < C; c++) {
      sp.strokeStyle = colours[c]; sp.beginPath();
      for (let i = 0; i < R; i++) sp[i ? 'lineTo' : 'moveTo'](X(i), Y(logs[c * R + i]));
      sp.stroke();
    }
    sp.fillStyle = '#000'; sp.font = '11px sans-serif';
    sp.fillText((10 ** top).toPrecision(2), 0, 14); sp.fillText((10 ** bottom).toPrecision(2), 0, SH - 20);
    sp.fillText('singular value index (grey: removed)', 30, SH - 4);
    root.querySelector('.rx-energy').textContent = (100 * energy[k] / energy[R]).toFixed(1) + '% of the energy kept';
  }
  const lists = root.querySelectorAll('.rx-top');
  function predictions(k) {
    d.models.forEach((m, j) => {
      lists[j].replaceChildren(...m.top[k].map(([c, p]) => {
        const li = document.createElement('li');
        li.innerHTML = '<span class="rx-name"></span> <span class="rx-p"></span>' +
          '<div style="height:5px;background:#1f77b4;width:' + (100 * p).toFixed(1) + '%"></div>';
        li.querySelector('.rx-name').textContent = m.classes[c];
        li.querySelector('.rx-p').textContent = (100 * p).toFixed(1) + '%';
        return li;
      }));
    });
  }
  let last = -1;
  function show(force) {
    const k = Number(slider.value);
    if (k === last && force !== true) return;  // input events queued behind a slow redraw
    last = k; out.textContent = k; image(k); spectrum(k); predictions(k);
  }
  slider.addEventListener('input', show);
  show(true);
  const png = new Image();
  png.src = 'data:image/png;base64,' + d.png;
  png.decode().then(() => {
    const c = document.createElement('canvas'); c.width = W; c.height = H;
    const x = c.getContext('2d'); x.drawImage(png, 0, 0);
    full = x.getImageData(0, 0, W, H).data;
    show(true); root.dataset.ready = '1';
  });
}"""
