"""DVC stage `evaluate`: every variant + bicubic -> reports/ (metrics, pictures, index.html) and MLflow.

    python pipelines/evaluate.py [hydra.overrides ...]   e.g.  evaluate.crop_size=96

Reads params.yaml (+ overrides); see gensr.evaluate.stage for what it writes.
"""
import sys
from pathlib import Path

# This checkout's code first, also when another checkout's gensr is installed (editable) in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.errors import entry_point  # noqa: E402


def _print_leaderboard(out: dict, report: Path) -> None:
    champ = out["champion"]
    split = champ["set"]
    print(f"{'method':<12} {'PSNR-Y':>8} {'SSIM-Y':>8} {'Δ bicubic':>10} | {'texture':>8} {'HF ratio':>9} "
          f"{'ms/MP':>9}   [{split}; texture = distance to HR's detail statistics, lower is better]")
    for method, e in sorted(out["summary"][split].items(), key=lambda kv: -kv[1]["psnr_y"]):
        print(f"{method:<12} {e['psnr_y']:8.2f} {e['ssim_y']:8.4f} {e.get('delta_psnr_y', 0.0):+10.2f} | "
              f"{e.get('texture_distance', float('nan')):8.4f} {e['hf_ratio']:9.3f} {e['ms_per_mp']:9.1f}")
    print(f"champion: {champ['variant']} ({champ['psnr_y']:.2f} dB PSNR-Y on {split}; fidelity)")
    perc = champ.get("perceptual") or {}
    if perc:
        print(f"perceptual champion: {perc['variant']} (texture distance {perc.get('texture_distance', float('nan')):.4f}, "
              f"{perc['psnr_y']:.2f} dB PSNR-Y" + ("" if perc.get("qualified", True) else f"; {perc.get('fallback')}") + ")")
    print(f"report: {report}")


@entry_point
def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from gensr.config import load_stage_config, repo_root, tracking_uri
    from gensr.tracking import check_store

    root = repo_root()
    cfg = load_stage_config(argv, root=root)
    if cfg.evaluate.get("mlflow", True):  # before torch is imported: a bad store fails at once
        check_store(tracking_uri(root), float(OmegaConf.select(cfg, "logger.connect_timeout_s", default=10)))
    from gensr.evaluate.stage import run_evaluation

    out = run_evaluation(cfg, root)
    _print_leaderboard(out, root / "reports" / "index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
