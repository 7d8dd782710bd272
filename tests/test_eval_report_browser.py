"""reports/index.html in a real headless browser, offline: it must render (not a blank page)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from gensr.evaluate import plots, results
from gensr.evaluate.compare import Panels, comparison_picture
from gensr.data.resize import bicubic_upscale
from gensr.evaluate.report import Report, write_report
from gensr.evaluate.sets import bicubic_degrade
from gensr.io import save_png
from gensr.metrics import psnr_y

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); "
                "install Debian's `chromium` to run this check")


def _report(tmp_path):
    """A report with the real builders: one comparison picture, the chart, a leaderboard."""
    from skimage import data

    hr = data.astronaut()[96:224, 160:288].astype(np.float32) / 255.0
    lr = bicubic_degrade(hr, 2)
    outputs = {"bicubic": bicubic_upscale(lr, 2), "gan": np.clip(bicubic_upscale(lr, 2) * 1.02, 0, 1)}
    psnrs = {k: psnr_y(v, hr, 2) for k, v in outputs.items()}
    pic, _ = comparison_picture(hr, lr, Panels(outputs, psnrs), 2)
    pic_path = save_png(tmp_path / "reports" / "comparisons" / "test" / "astronaut.png", pic)
    rows = [{"set": "test", "image": "astronaut", "method": m, "height": 128, "width": 128, "psnr_y": psnrs[m],
             "ssim_y": 0.9, "psnr_rgb": psnrs[m] - 1, "texture_distance": 0.2, "hf_ratio": 0.5, "gmsd": 0.01,
             "seconds": 0.01}
            for m in outputs]
    summary = results.summarise(rows, {"gan": 12345})
    champ = results.champion(summary, "test", ["gan"])
    champ["perceptual"] = results.perceptual_champion(summary, "test", ["gan"], 1.0)
    chart = plots.comparison_chart([{"variant": m, **e} for m, e in summary["test"].items()], "test",
                                   tmp_path / "reports" / "plots" / "comparison.png")
    return write_report(tmp_path / "reports" / "index.html", Report(
        summary=summary, split_id="test", champ=champ, scale=2, run_ids={"gan": "abc123"},
        charts=[("Per-variant comparison", chart)], comparisons={"test": [("astronaut", pic_path, "astronaut (128x128)")]},
        notes=["LPIPS skipped: test."]))


def test_report_renders_offline_in_headless_chromium(tmp_path):
    browser = _browser()
    html = _report(tmp_path)
    shot = tmp_path / "shot.png"
    cmd = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: a page needing a CDN would break here
        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
        html.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    img = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert img.shape[:2] == (2000, 1280)
    flat = img.reshape(-1, 3)
    assert flat.std() > 20, "screenshot is (nearly) one flat colour: the page did not render"
    assert len(np.unique(flat, axis=0)) > 500, "too few colours: no pictures rendered"
    assert (flat.sum(axis=1) < 600).mean() > 0.05, "almost nothing drawn on the white page"
    # The inlined comparison picture's red crop outline and the champion row's green CSS background.
    red = (np.abs(flat - [230, 40, 40]).max(axis=1) < 25).sum()
    green = (np.abs(flat - [231, 246, 231]).max(axis=1) < 3).sum()
    assert red > 50, "the inlined comparison picture did not render"
    assert green > 500, "the inline CSS did not apply"
