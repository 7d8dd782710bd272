"""Side-by-side comparison pictures: the same zoomed crop of LR, bicubic, every variant and HR.

The crop is where the HR has the most fine detail (largest high-frequency energy in a
crop-sized window), which is where SR methods differ most; its corner sits on the LR grid so the
LR panel shows exactly the pixels the models saw. Panels are enlarged with nearest-neighbour (no
smoothing added by the picture itself) and labelled with the method and its PSNR-Y on the
whole image. A thumbnail of the full HR with the crop outlined comes first. A variational model's
crop is followed by its uncertainty map (gensr.evaluate.uncertainty), labelled with its range.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import uniform_filter

from gensr.evaluate.texture import high_pass
from gensr.evaluate.uncertainty import display_max, heat_map
from gensr.io import to_uint8
from gensr.metrics import y_channel

_BG, _FG, _BOX = (255, 255, 255), (20, 20, 20), (230, 40, 40)
_LABEL_H = 22
_GAP = 6


def detail_crop(hr: np.ndarray, crop: int, scale: int, border: int = 0) -> tuple[int, int, int]:
    """(top, left, side) of the crop-sized HR window with the most high-frequency energy."""
    h, w = hr.shape[:2]
    side = min(crop, h - 2 * border, w - 2 * border)
    side = max(side - side % scale, scale)
    if side > min(h, w):  # tiny image: take all of it
        return 0, 0, min(h, w) - min(h, w) % scale
    energy = high_pass(y_channel(hr)) ** 2
    # Mean energy of the window whose top-left is (i, j) = uniform_filter value at its centre.
    mean = uniform_filter(energy, size=side, mode="constant")
    c = side // 2
    tops = np.arange(border, h - border - side + 1)
    lefts = np.arange(border, w - border - side + 1)
    tops, lefts = tops[tops % scale == 0], lefts[lefts % scale == 0]
    if len(tops) == 0 or len(lefts) == 0:
        return 0, 0, side
    grid = mean[np.ix_(tops + c, lefts + c)]
    i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(tops[i]), int(lefts[j]), side


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _rgb(img: np.ndarray) -> np.ndarray:
    q = to_uint8(img)
    return np.repeat(q, 3, axis=2) if q.shape[2] == 1 else q


def _panel(crop: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(_rgb(crop)).resize((size, size), Image.NEAREST)


def _thumbnail(hr: np.ndarray, box: tuple[int, int, int], size: int) -> Image.Image:
    im = Image.fromarray(_rgb(hr))
    f = size / max(im.size)
    thumb = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.BILINEAR)
    top, left, side = box
    draw = ImageDraw.Draw(thumb)
    draw.rectangle(
        [left * f, top * f, (left + side) * f - 1, (top + side) * f - 1], outline=_BOX, width=2
    )
    canvas = Image.new("RGB", (size, size), _BG)
    canvas.paste(thumb, ((size - thumb.width) // 2, (size - thumb.height) // 2))
    return canvas


@dataclass(frozen=True)
class Panels:
    """The methods a picture shows, in order: SR image, its PSNR-Y on the whole image, and for a
    variational model its per-pixel sample standard deviation over the crop ([0, 1] units)."""

    outputs: dict[str, np.ndarray]
    psnrs: dict[str, float]
    uncertainty: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    crop: int = 64      # HR side of the zoomed crop (when no box is given)
    panel: int = 192    # pixels per panel side
    columns: int = 5


def comparison_picture(
    hr: np.ndarray, lr: np.ndarray, panels: Panels, scale: int, layout: Layout = Layout(),
    box: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The labelled grid as an HxWx3 uint8 array, and the (top, left, side) crop it shows
    (`box`, default: `detail_crop`). A method's uncertainty map comes right after its crop."""
    panel = layout.panel
    top, left, side = box or detail_crop(hr, layout.crop, scale, border=scale)
    sl = np.s_[top : top + side, left : left + side]
    lr_sl = np.s_[top // scale : (top + side) // scale, left // scale : (left + side) // scale]
    tiles: list[tuple[str, Image.Image]] = [
        (f"HR {hr.shape[1]}x{hr.shape[0]}, crop", _thumbnail(hr, (top, left, side), panel)),
        (f"LR x{scale} (nearest)", _panel(lr[lr_sl], panel)),
    ]
    for name, sr in panels.outputs.items():
        tiles.append((f"{name} {panels.psnrs[name]:.2f} dB", _panel(sr[sl], panel)))
        if name in panels.uncertainty:
            std = panels.uncertainty[name]
            vmax = display_max(std)
            # ASCII only: the bitmap fallback font has no sigma or dash glyphs.
            tiles.append((f"{name} std 0-{vmax:.1f}/255", _panel(heat_map(std, vmax), panel)))
    tiles.append(("HR (reference)", _panel(hr[sl], panel)))

    columns = max(1, min(layout.columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    cell_w, cell_h = panel + _GAP, panel + _LABEL_H + _GAP
    sheet = Image.new("RGB", (columns * cell_w + _GAP, rows * cell_h + _GAP), _BG)
    draw, font = ImageDraw.Draw(sheet), _font()
    for k, (label, im) in enumerate(tiles):
        x = _GAP + (k % columns) * cell_w
        y = _GAP + (k // columns) * cell_h
        sheet.paste(im, (x, y + _LABEL_H))
        draw.text((x + 2, y + 3), _fit(draw, label, font, panel - 4), fill=_FG, font=font)
    return np.asarray(sheet), (top, left, side)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Shorten a label with an ellipsis until it fits the panel width."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
