"""DVC stage `export`: models/<v>/model.pt -> validated ONNX in exports/ (see gensr.export.stage).

    python pipelines/export.py [hydra.overrides ...]   e.g.  export.register=false
"""
import logging
import sys
from pathlib import Path

# This checkout's code first, also when another checkout's gensr is installed (editable) in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.checkpoint import CheckpointMismatchError  # noqa: E402
from gensr.config import load_stage_config, repo_root  # noqa: E402
from gensr.export.onnx_export import ExportError  # noqa: E402
from gensr.export.stage import ExportValidationError, run_stage  # noqa: E402
from gensr.tracking import TrackingUnavailableError  # noqa: E402


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_stage_config(argv)
    log = logging.getLogger("gensr.export")
    try:
        report = run_stage(cfg, repo_root())
    except (ExportValidationError, ExportError, CheckpointMismatchError, FileNotFoundError,
            TrackingUnavailableError) as e:  # the message names the variant/file and the problem
        log.error("%s", e)
        return 1
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
