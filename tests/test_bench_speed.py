"""bench/speed.py's pure helpers (no timing is asserted: the figures depend on the machine)."""
import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "bench" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)


@pytest.mark.parametrize("cin,cout,k,h,w", [(3, 5, 3, 8, 10), (16, 4, 1, 7, 3), (2, 2, 5, 12, 12)])
def test_flops_of_one_conv_are_twice_its_macs(cin, cout, k, h, w):
    conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2)  # 'same' output size: H x W positions
    assert speed.count_flops(conv, torch.rand(1, cin, h, w)) == 2 * cin * cout * k * k * h * w


def test_flops_scale_with_batch_and_add_up_over_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 1))
    one = 2 * (3 * 8 * 9 + 8 * 3) * 6 * 6
    assert speed.count_flops(net, torch.rand(1, 3, 6, 6)) == one
    assert speed.count_flops(net, torch.rand(4, 3, 6, 6)) == 4 * one


def test_output_megapixels_per_second():
    # 2 images of 540x960 at x2 -> 2 x 1080 x 1920 output pixels, in half a second
    assert speed.mpix_per_s((2, 3, 540, 960), 2, 0.5) == pytest.approx(2 * 1080 * 1920 / 1e6 / 0.5)
    assert speed.mpix_per_s((1, 3, 100, 100), 4, 1.0) == pytest.approx(0.16)


def test_steady_rate_leaves_out_the_warm_up_steps():
    stamps = [10.0, 10.5, 11.0, 11.5, 12.0]  # a slow first step ended at t=10, then 0.5 s per step
    assert speed.steady_rate(stamps, warm=1) == pytest.approx(2.0)
    assert speed.steady_rate([0.0, 5.0, 6.0, 7.0], warm=2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        speed.steady_rate([1.0, 2.0], warm=2)
