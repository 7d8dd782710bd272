"""bench/speed.py's pure helpers and its deployment table (no timing is asserted: the figures
depend on the machine)."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gensr.checkpoint import load_model

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


# ---- (f) the deployment table, on a tiny exported models folder (no timing asserted) ----------
@pytest.fixture(scope="module")
def deploy_project(tmp_path_factory) -> Path:
    """exports/models/<v>/ as the export stage writes it, models/<v>/model.pt, a tiny Set5/Set14:
    `sharp` (a sharpening LinearUpsample: not bicubic) with its int8 file, `local` exported from a
    net with no model file and no int8 file, `stale` whose model file is a later training run."""
    import eval_fixtures as fx
    import onnx
    from export_helpers import LocalSR, export_file

    from gensr.export import lighten
    from gensr.export.onnx_export import build_metadata, set_metadata
    from gensr.export.stage import FILES

    root = tmp_path_factory.mktemp("deploy")
    exports, models = root / "exports" / "models", root / "models"
    for name, run_id in (("sharp", None), ("stale", "a-later-run")):
        fx.write_model(models, name, 2, run_id=run_id, kind="gan")
        net, _ = load_model(models / name / "model.pt", scale=2, channels=3)
        export_file(net, exports / name / FILES["fp32"], name, 2, 3)  # its metadata: mlflow_run_id r0
    torch.manual_seed(0)
    export_file(LocalSR(), exports / "local" / FILES["fp32"], "local", 2, 3)
    proto = onnx.load(exports / "sharp" / FILES["fp32"])
    patches = [np.random.default_rng(i).random((3, 16, 16), dtype=np.float32) for i in range(4)]
    int8 = lighten.to_int8(proto, patches)
    set_metadata(int8, build_metadata({"variant": "sharp", "scale": 2, "channels": 3}, 18, precision="int8"))
    onnx.save_model(int8, exports / "sharp" / FILES["int8"])
    fx.write_benchmark(root / "benchmarks" / "Set5", [("rocket", 41, 38), ("astronaut", 36, 44)])
    fx.write_benchmark(root / "benchmarks" / "Set14", [("coffee", 36, 45)])
    return root


def test_deployment_table_has_a_row_per_shipped_variant(deploy_project, monkeypatch, capsys):
    import onnxruntime as ort

    from gensr.data.ops import modcrop
    from gensr.data.resize import bicubic_upscale
    from gensr.io import read_image
    from gensr.metrics import psnr_y

    root = deploy_project
    monkeypatch.setattr(speed, "ROOT", root)  # bench/runs/speed-quick.json lands in the temp folder
    threads = torch.get_num_threads()  # --quick sets 1
    try:
        rc = speed.main(["--only", "f", "--quick", "--exports", str(root / "exports" / "models"),
                         "--models", str(root / "models"), "--benchmarks", str(root / "benchmarks")])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    table = json.loads((root / "bench" / "runs" / "speed-quick.json").read_text())["tables"]["deployment"]
    rows = {r["variant"]: r for r in table["rows"]}
    assert list(rows) == ["local", "sharp", "stale"]
    for r in rows.values():
        assert r["fp32_mps"] > 0 and r["providers"]["fp32"] == ["CPUExecutionProvider"]
        assert set(r["sets"]) == {"Set5", "Set14"} and all(np.isfinite(g["gain_db"]) for g in r["sets"].values())
    assert rows["sharp"]["int8_mps"] > 0 and rows["local"]["int8_mps"] is None is rows["stale"]["int8_mps"]

    # params and GFLOPs/MP from the trained model file, only when it is the exported one
    net, _ = load_model(root / "models" / "sharp" / "model.pt", scale=2, channels=3)
    w, h = speed.QUICK["sizes"][-1]
    assert rows["sharp"]["params"] == sum(p.numel() for p in net.parameters())
    flops = speed.count_flops(net, torch.rand(1, 3, h, w))
    assert rows["sharp"]["gflops_per_mp"] == pytest.approx(flops / 1e9 / (4 * w * h / 1e6))
    assert rows["local"]["params"] is None and "absent" in rows["local"]["note"]
    assert rows["stale"]["params"] is None and "a-later-run" in rows["stale"]["note"]

    # The gain by hand on Set14's one image: the ONNX file run whole (the image is inside one
    # tile), minus the project's bicubic, PSNR-Y with 2 pixels shaved.
    hr = modcrop(read_image(root / "benchmarks" / "Set14" / "HR" / "coffee.png"), 2)
    lr = read_image(root / "benchmarks" / "Set14" / "LR_bicubic" / "X2" / "coffeex2.png")
    session = ort.InferenceSession(str(root / "exports" / "models" / "sharp" / "model.onnx"))
    sr = session.run(None, {"lr": lr.transpose(2, 0, 1)[None].astype(np.float32)})[0][0].transpose(1, 2, 0)
    gain = psnr_y(sr, hr, 2) - psnr_y(bicubic_upscale(lr, 2), hr, 2)
    assert abs(gain) > 0.05  # a sharpening net, not the bicubic baseline
    assert rows["sharp"]["sets"]["Set14"]["gain_db"] == pytest.approx(gain, abs=1e-4)
    out = capsys.readouterr().out
    assert "| variant | params | GFLOPs/MP | fp32 MP/s | int8 MP/s | Set5 ΔPSNR-Y | Set14 ΔPSNR-Y |" in out
    assert f"| sharp (x2) | {rows['sharp']['params'] / 1e3:.0f}K |" in out and "| local (x2) | – |" in out


def test_deployment_table_without_benchmarks_still_times(deploy_project, tmp_path):
    say = []
    cfg = {**speed.QUICK, "where": speed.deploy_table.Where(deploy_project / "exports" / "models",
                                                            deploy_project / "models", tmp_path / "none")}
    assert speed.deploy_table.section_f(cfg, say.append) == []  # its one result is the table
    rows = cfg["tables"]["deployment"]["rows"]
    assert [r["variant"] for r in rows] == ["local", "sharp", "stale"] and all(r["sets"] == {} for r in rows)
    assert any("no PSNR-Y gains" in line for line in say)
    assert all(r["fp32_mps"] > 0 for r in rows) and rows[1]["int8_mps"] > 0
    assert "| sharp (x2) |" in cfg["tables"]["deployment"]["markdown"]
    with pytest.raises(FileNotFoundError, match="no such folder"):
        speed.deploy_table.shipped(tmp_path / "none")


# ---- (g) a real run's wall time in optimisation steps, read from its timings.json ----------------
def _timings(folder: Path, optim: float) -> Path:
    """models/ae_res/timings.json as gensr.training.timing writes it, `optim` of the wall optimising."""
    from gensr.training.timing import PHASES

    rest = (1.0 - optim) / (len(PHASES) - 1)
    fractions = {p: optim if p == "optim" else rest for p in PHASES}
    wall, steps = 3600.0, 8000
    folder.mkdir(parents=True)
    (folder / "timings.json").write_text(json.dumps({
        "variant": "ae_res", "steps": steps, "wall_s": wall, "fractions": fractions,
        "seconds": {p: f * wall for p, f in fractions.items()},
        "optim_ms_per_step": 1e3 * optim * wall / steps, "wall_ms_per_step": 1e3 * wall / steps}))
    return folder


def test_loop_time_section_reads_a_runs_timings(tmp_path, monkeypatch):
    monkeypatch.setattr(speed, "ROOT", tmp_path)  # bench/runs/speed-quick.json lands in the temp folder
    run = _timings(tmp_path / "fast" / "models" / "ae_res", 0.95)
    threads = torch.get_num_threads()
    try:
        assert speed.main(["--only", "g", "--quick", "--run-dir", str(run)]) == 0
    finally:
        torch.set_num_threads(threads)
    figures = json.loads((tmp_path / "bench" / "runs" / "speed-quick.json").read_text())["figures"]
    optim = figures[0]
    assert optim["value"] == 0.95 and optim["target"] == ">= 0.93" and optim["met"] is True
    loader = next(f for f in figures if f["figure"] == "(g) real run: fraction in loader")
    assert loader["value"] == pytest.approx(0.05 / 6, abs=1e-4) and loader["met"] is None
    per_step = {f["figure"]: f["value"] for f in figures if "ms/step" in f["figure"]}
    assert list(per_step.values()) == pytest.approx([427.5, 450.0])

    say = []
    slow = _timings(tmp_path / "slow", 0.80) / "timings.json"  # the file itself will do too
    rows = speed.loop_time.section_g({"run_dir": slow}, say.append)
    assert rows[0][1:] == (0.8, ">= 0.93", False)
    assert "80.0% in optimisation steps" in say[0] and "val 3.3%" in say[0]
    with pytest.raises(FileNotFoundError, match="no timings.json"):
        speed.loop_time.section_g({"run_dir": tmp_path / "none"}, say.append)


def test_step_ratio_section_runs_on_the_shipped_ae_res_config():
    # (a) once refused to run when a profile gave ae_res an L1 -> MSE switch: it must measure the
    # shipped config's step with the plain loop's loss, whatever the recipe's loss schedule is.
    threads, lines = torch.get_num_threads(), []
    try:
        torch.set_num_threads(1)
        rows = speed.section_a(dict(speed.QUICK), lines.append)
    finally:
        torch.set_num_threads(threads)
    (name, ratio, target, _), = rows
    assert name == "(a) Lightning / plain loop, training steps/s" and target == ">= 0.95" and ratio > 0
    assert "ratio Lightning/plain" in lines[0]
