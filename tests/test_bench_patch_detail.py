"""bench/patch_detail.py: the crops training draws, flat or detailed, for each min_detail threshold."""
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from gensr.evaluate.sets import bicubic_degrade
from gensr.io import to_uint8

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_patch_detail", ROOT / "bench" / "patch_detail.py")
patch_detail = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(patch_detail)


def _row(out: str, threshold: str) -> list[str]:
    return next(line.split("|")[1:-1] for line in out.splitlines() if line.startswith(f"| {threshold} |"))


def test_a_threshold_draws_fewer_flat_crops_and_more_error(tmp_path, monkeypatch, capsys):
    # A photo that is flat grey on the left half and textured on the right, as the prepare stage writes it.
    hr = np.full((96, 96, 3), 0.5, np.float32)
    hr[:, 48:] = np.random.default_rng(0).random((96, 48, 3), dtype=np.float32)
    for name, img in (("hr", hr), ("lr", bicubic_degrade(hr, 2))):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.fromarray(to_uint8(img)).save(tmp_path / "train" / name / "photo.png")
    monkeypatch.setattr("sys.argv", ["patch_detail.py", "--prepared", str(tmp_path), "--scale", "2", "--patch", "24",
                                     "--samples", "60", "--thresholds", "0", "10"])
    patch_detail.main()
    out = capsys.readouterr().out
    uniform, picky = _row(out, "0"), _row(out, "10")
    flat = lambda row: int(row[2].strip().rstrip("%"))  # noqa: E731  share of crops above 50 dB
    assert flat(uniform) >= 20 and flat(picky) < flat(uniform)
    assert float(uniform[3]) == 1.0 and float(picky[3]) > 1.2  # more bicubic error per crop: more to learn
    assert "min_detail 10: keeps" in out
