"""DVC stage `export`: models/<v>/model.pt -> validated ONNX in exports/ (see gensr.export.stage).

    python pipelines/export.py [hydra.overrides ...]   e.g.  export.register=false
"""
import logging
import sys
from pathlib import Path

# This checkout's code first, also when another checkout's gensr is installed (editable) in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.errors import entry_point  # noqa: E402


@entry_point
def main(argv: list[str]) -> int:
    from omegaconf import OmegaConf

    from gensr.config import load_stage_config, repo_root, tracking_uri
    from gensr.tracking import check_store

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    root = repo_root()
    cfg = load_stage_config(argv, root=root)
    if cfg.export.get("register", True):  # registration comes last: check the store before the work
        check_store(tracking_uri(root), float(OmegaConf.select(cfg, "logger.connect_timeout_s", default=10)))
    from gensr.export.stage import run_stage

    report = run_stage(cfg, root)
    log = logging.getLogger("gensr.export")
    for variant, entry in report["variants"].items():
        lighter = ", ".join(f"{k} {'shipped' if entry[k]['shipped'] else 'rejected'} "
                            f"(PSNR-Y drop {entry[k]['psnr_y_drop_db']:+.3f} dB)" for k in ("fp16", "int8"))
        log.info("%s: parity max|diff| %.2e, PSNR-Y %.3f dB, ORT %.1f ms vs torch %.1f ms; %s",
                 variant, entry["parity"]["max_abs_diff"], entry["psnr_y"],
                 entry["speed"]["onnxruntime"]["latency_ms"], entry["speed"]["torch_eager"]["latency_ms"], lighter)
    if "champion_uri" in report.get("registry", {}):
        log.info("champion: %s", report["registry"]["champion_uri"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
